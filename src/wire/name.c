/* name.c — actor name rules: paths of >= 2 segments of [A-Za-z0-9_-]; "x" means "actors/x". */
#include <string.h>

#include "pulsing/pulsing.h"

static int
name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

int
pul_name_normalize(const char *name, size_t len, int allow_system, char *out, size_t outsz)
{
    static const char prefix[] = "actors/";
    if (name == NULL || out == NULL || outsz == 0) {
        return PUL_EINVAL;
    }
    if (len == 0 || len > PUL_NAME_MAX) {
        return PUL_ENAME;
    }
    size_t segments = 1;
    size_t seglen = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/') {
            if (seglen == 0) {
                return PUL_ENAME;
            }
            segments++;
            seglen = 0;
        } else if (name_char_ok(c)) {
            seglen++;
        } else {
            return PUL_ENAME;
        }
    }
    if (seglen == 0) {
        return PUL_ENAME;
    }
    size_t plen = segments == 1 ? sizeof prefix - 1 : 0;
    if (plen + len > PUL_NAME_MAX) {
        return PUL_ENAME;
    }
    if (!allow_system && segments > 1 && len >= 7 && memcmp(name, "system/", 7) == 0) {
        return PUL_ENAME;
    }
    if (plen + len + 1 > outsz) {
        return PUL_EINVAL;
    }
    memcpy(out, prefix, plen);
    memcpy(out + plen, name, len);
    out[plen + len] = '\0';
    return 0;
}
