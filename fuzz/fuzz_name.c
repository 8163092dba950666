/* fuzz_name.c — libFuzzer target for the name rules (not built by default).
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *        -DPUL_BUILDING_LIBRARY fuzz/fuzz_name.c src/wire/name.c -o fuzz_name && ./fuzz_name */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pulsing/pulsing.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[PUL_NAME_MAX + 1];
    int allow = size > 0 && (data[0] & 1);
    if (pul_name_normalize((const char *)data, size, allow, out, sizeof out) == 0) {
        /* A normalized name is a fixed point and fits the limit. */
        char again[PUL_NAME_MAX + 1];
        size_t len = strlen(out);
        if (len > PUL_NAME_MAX || pul_name_normalize(out, len, allow, again, sizeof again) != 0 ||
            strcmp(out, again) != 0) {
            __builtin_trap();
        }
    }
    return 0;
}
