/* id.c — random 128-bit ids from getrandom(), hex formatting and parsing. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "pulsing/pulsing.h"

pul_id_t
pul_id_random(void)
{
    pul_id_t id = {0, 0};
    for (;;) {
        uint64_t w[2];
        size_t got = 0;
        while (got < sizeof w) {
            ssize_t n = getrandom((char *)w + got, sizeof w - got, 0);
            if (n < 0) {
                if (errno == EINTR) {
                    continue;
                }
                /* getrandom cannot fail on a Linux >= 3.17 with a seeded pool; mix the clock so
                 * an id is still produced rather than aborting. */
                w[0] ^= (uint64_t)(uintptr_t)&id ^ (uint64_t)got;
                break;
            }
            got += (size_t)n;
        }
        id.hi = w[0];
        id.lo = w[1];
        if (id.hi != 0 || id.lo != 0) {
            return id;
        }
    }
}

int
pul_id_eq(pul_id_t a, pul_id_t b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

int
pul_id_is_zero(pul_id_t a)
{
    return a.hi == 0 && a.lo == 0;
}

void
pul_id_format(pul_id_t id, char buf[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        buf[i] = hex[(id.hi >> (60 - 4 * i)) & 0xf];
        buf[16 + i] = hex[(id.lo >> (60 - 4 * i)) & 0xf];
    }
    buf[32] = '\0';
}

int
pul_id_parse(const char *s, size_t len, pul_id_t *out)
{
    if (s == NULL || out == NULL || len == 0 || len > 32) {
        return PUL_EINVAL;
    }
    pul_id_t id = {0, 0};
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        unsigned v;
        if (c >= '0' && c <= '9') {
            v = (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v = (unsigned)(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v = (unsigned)(c - 'A' + 10);
        } else {
            return PUL_EINVAL;
        }
        id.hi = (id.hi << 4) | (id.lo >> 60);
        id.lo = (id.lo << 4) | v;
    }
    *out = id;
    return 0;
}
