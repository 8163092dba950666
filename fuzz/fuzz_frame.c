/* fuzz_frame.c — libFuzzer target for the frame codec (not built by default).
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *        fuzz/fuzz_frame.c src/wire/frame.c -o fuzz_frame && ./fuzz_frame */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pulsing/pulsing.h"
#include "wire/frame.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        pul__frame_t f;
        long n = pul__frame_decode(data + off, size - off, 4096, &f);
        if (n <= 0) {
            break;
        }
        /* Round trip: re-encoding a decoded frame gives back the same bytes. */
        uint8_t out[4096 + PUL__FRAME_HEADER];
        long m = pul__frame_encode(f.kind, f.body, f.len, 4096, out, sizeof out);
        if (m != n || memcmp(out, data + off, (size_t)n) != 0) {
            __builtin_trap();
        }
        off += (size_t)n;
    }
    return 0;
}
