/* errors.c — names for every PUL_E* return code. */
#include "pulsing/pulsing.h"

const char *
pul_strerror(int err)
{
    switch (err) {
    case PUL_OK:
        return "success";
#define PUL__ERR_CASE(name, val, str) \
    case PUL_##name:                  \
        return str;
        PUL_ERRNO_MAP(PUL__ERR_CASE)
#undef PUL__ERR_CASE
    default:
        return "unknown error";
    }
}
