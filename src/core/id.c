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
    for (int i = 0; i < 8; i++) {
        unsigned h = (unsigned)(id.hi >> (56 - 8 * i)) & 0xff;
        unsigned l = (unsigned)(id.lo >> (56 - 8 * i)) & 0xff;
        buf[2 * i] = hex[h >> 4];
        buf[2 * i + 1] = hex[h & 0xf];
        buf[16 + 2 * i] = hex[l >> 4];
        buf[16 + 2 * i + 1] = hex[l & 0xf];
    }
    buf[32] = '\0';
}

/* Hex digit value + 1, 0 for anything else (an id is parsed from every request path). */
static const signed char id_hexval[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,
    ['7'] = 8,  ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14,
    ['e'] = 15, ['f'] = 16, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15,
    ['F'] = 16,
};

int
pul_id_parse(const char *s, size_t len, pul_id_t *out)
{
    if (s == NULL || out == NULL || len == 0 || len > 32) {
        return PUL_EINVAL;
    }
    /* The last 16 digits are the low half, the ones before them the high half. */
    pul_id_t id = {0, 0};
    size_t split = len > 16 ? len - 16 : 0;
    for (size_t i = 0; i < len; i++) {
        int v = id_hexval[(unsigned char)s[i]] - 1;
        if (v < 0) {
            return PUL_EINVAL;
        }
        if (i < split) {
            id.hi = (id.hi << 4) | (unsigned)v;
        } else {
            id.lo = (id.lo << 4) | (unsigned)v;
        }
    }
    *out = id;
    return 0;
}
