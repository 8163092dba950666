/* fuzz_sframe.c — libFuzzer target for the incremental stream-frame reader (stream responses and
 * "tells" bodies; not built by default). Build: clang -g -O1 -fsanitize=fuzzer,address,undefined \
 *   -D_GNU_SOURCE -Iinclude -Isrc fuzz/fuzz_sframe.c src/wire/envelope.c src/core/alloc.c \
 *   src/actor/msg.c $(pkg-config --cflags --libs msgpack) -o fuzz_sframe && ./fuzz_sframe */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pulsing/pulsing.h"
#include "wire/envelope.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Fed in uneven pieces, bounded at 1 MiB: every event is consumed as the transport does. */
    pul__env_rx_t env;
    char type[256];
    pul__sframe_rx_t rx;
    pul__env_rx_init(&env, 1u << 20);
    pul__sframe_rx_init(&rx, 1u << 20,
                        1u << PUL__SFRAME_ITEM | 1u << PUL__SFRAME_END | 1u << PUL__SFRAME_ERROR,
                        size > 0 && (data[0] & 1), &env, type);
    size_t off = 0, step = 1;
    while (off < size) {
        size_t k = size - off < step ? size - off : step;
        pul__sfr_ev_t ev;
        long n = pul__sframe_rx_feed(&rx, data + off, k, &ev);
        if (n < 0) {
            break;
        }
        if (n == 0 && ev == PUL__SFR_NEED) {
            __builtin_trap(); /* no progress and no event */
        }
        off += (size_t)n;
        if (ev == PUL__SFR_ITEM) {
            pul_msg_t *m = pul__env_rx_take(&env, type);
            pul_msg_unref(m);
        } else if (ev == PUL__SFR_ERROR && (rx.chunk_len == 0 || rx.chunk < data ||
                                             rx.chunk + rx.chunk_len > data + size)) {
            __builtin_trap();
        }
        step = step * 3 % 61 + 1;
    }
    pul__env_rx_free(&env);
    return 0;
}
