/* fuzz_gossip.c — libFuzzer target for the gossip packet and sync body codecs (not built by
 * default). Build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc fuzz/fuzz_gossip.c \
 *         src/wire/gossip.c src/core/alloc.c src/core/id.c \
 *         $(pkg-config --cflags --libs msgpack) -o fuzz_gossip && ./fuzz_gossip */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pulsing/pulsing.h"
#include "wire/gossip.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pul__gpacket_t p;
    if (pul__gpacket_decode(data, size, &p) == 0) {
        /* Whatever decodes re-encodes; decoding that and encoding again gives the same bytes
         * (fields a message type does not carry are dropped by the first encoding). */
        pul__gbuf_t b[2];
        for (int k = 0; k < 2; k++) {
            pul__gbuf_init(&b[k], 0);
            if (pul__gpacket_begin(&b[k], p.from, p.addr, p.nmsgs) != 0) {
                __builtin_trap();
            }
            for (size_t i = 0; i < p.nmsgs; i++) {
                if (pul__gmsg_encode(&b[k], &p.msgs[i]) != 0) {
                    __builtin_trap();
                }
            }
            pul__gpacket_clear(&p);
            if (k == 0 && pul__gpacket_decode(b[0].p, b[0].len, &p) != 0) {
                __builtin_trap();
            }
        }
        if (b[0].len != b[1].len || memcmp(b[0].p, b[1].p, b[0].len) != 0) {
            __builtin_trap();
        }
        pul__gbuf_free(&b[0]);
        pul__gbuf_free(&b[1]);
    }
    pul__gsync_t s;
    if (pul__gsync_decode(data, size, 1 << 20, &s) == 0) {
        pul__gsync_clear(&s);
    }
    return 0;
}
