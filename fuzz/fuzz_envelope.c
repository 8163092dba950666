/* fuzz_envelope.c — libFuzzer target for the message encoding decoder and the error map (not
 * built by default). Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *   fuzz/fuzz_envelope.c src/wire/envelope.c src/core/alloc.c src/actor/msg.c \
 *   $(pkg-config --cflags --libs msgpack) -o fuzz_envelope && ./fuzz_envelope */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pulsing/pulsing.h"
#include "wire/envelope.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Fed in uneven pieces, bounded at 1 MiB: the decoder must never commit more than arrived. */
    pul__env_rx_t rx;
    pul__env_rx_init(&rx, 1u << 20);
    size_t off = 0, step = 1;
    while (off < size) {
        size_t k = size - off < step ? size - off : step;
        long n = pul__env_rx_feed(&rx, data + off, k);
        if (n < 0) {
            break;
        }
        off += (size_t)n;
        if (pul__env_rx_done(&rx)) {
            pul_msg_t *m = pul__env_rx_take(&rx, "t");
            if (m != NULL) {
                /* Re-encoding the header gives back the bytes that were read. */
                uint8_t hdr[4 + 8 * (1 + PUL__ENV_MAX_SEGS)];
                long h = pul__env_header_encode(m, hdr, sizeof hdr);
                if (h < 0 || (size_t)h > off || memcmp(hdr, data, (size_t)h) != 0) {
                    __builtin_trap();
                }
                pul_msg_unref(m);
            }
            break;
        }
        if ((size_t)n < k) {
            break;
        }
        step = step * 3 + 1;
    }
    pul__env_rx_free(&rx);
    pul_error_t e;
    if (pul__errmap_decode(data, size, &e) == 0) {
        pul__errmap_clear(&e);
    }
    return 0;
}
