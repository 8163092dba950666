/* net_stub.c — weak stand-ins for the transport functions the cluster uses, so the library links
 * until src/net/ lands (its strong definitions replace these). Removed at that merge. */
#include "net/net.h"

__attribute__((weak)) int
pul__net_post(pul__net_t *net, const char *addr, const char *path, const uint8_t *body,
              size_t len, uint64_t timeout_ms, pul__net_resp_cb cb, void *arg)
{
    return PUL_ECLOSED;
}

__attribute__((weak)) int
pul__net_handle(pul__net_t *net, const char *prefix, pul__net_handler_fn fn, void *arg)
{
    return 0;
}

__attribute__((weak)) int
pul__net_route_set(pul__net_t *net, pul_id_t node_id, const char *addr)
{
    return 0;
}

__attribute__((weak)) void
pul__net_route_drop(pul__net_t *net, pul_id_t node_id)
{
}
