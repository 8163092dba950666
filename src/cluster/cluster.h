/* cluster.h — membership (SWIM + Lifeguard), the named registry and head-node mode, on top of
 * the transport. Core thread only unless said. Protocol: docs/design/membership.md. */
#ifndef PUL_CLUSTER_CLUSTER_H
#define PUL_CLUSTER_CLUSTER_H

#include "net/net.h"
#include "pulsing/pulsing.h"

typedef struct pul__cluster_s pul__cluster_t;

/* Start membership for sys over net (after pul__net_start): registers the /cluster/ and /head/
 * handlers, starts the probe/gossip/push-pull timers and joins cfg->seeds (retried in the
 * background) or the head. Returns 0 or PUL_ENOMEM. */
int pul__cluster_start(pul_system_t *sys, pul__net_t *net, const char *self_addr,
                       pul__cluster_t **out);
/* Graceful leave (gossip Left to a few members, wait at most 500 ms for them), then stop the
 * timers. done(arg) runs on the core thread when the leave is over. */
void pul__cluster_leave(pul__cluster_t *cl, void (*done)(void *arg), void *arg);
/* Stop the timers and release the state machines. After the transport is closed (no more
 * handler calls); the struct itself goes when the last outstanding post has called back. Core
 * thread. Accepts NULL. */
void pul__cluster_free(pul__cluster_t *cl);

/* Test hook: the node goes silent as if its process froze or vanished — timers stop, nothing is
 * sent, every control request is answered 503 — so peers declare it Dead; a later shutdown skips
 * the leave. Core thread. */
void pul__cluster_silence(pul__cluster_t *cl);

/* Test hook: how many registry entries (live or tombstones) this node keeps for node. Any
 * thread. */
int pul__cluster_entries_of(pul__cluster_t *cl, pul_id_t node);

/* The transport operations the cluster uses: the pul__net_* functions, or an in-process network
 * in tests (tests/c/test_cluster_glue.c) so that the glue is tested without sockets. */
typedef struct {
    int (*post)(void *net, const char *addr, const char *path, const uint8_t *body, size_t len,
                uint64_t timeout_ms, pul__net_resp_cb cb, void *arg);
    int (*handle)(void *net, const char *prefix, pul__net_handler_fn fn, void *arg);
    int (*route_set)(void *net, pul_id_t node_id, const char *addr);
    void (*route_drop)(void *net, pul_id_t node_id);
} pul__cluster_net_ops_t;

/* pul__cluster_start over another transport (net is passed to every op). Core thread. */
int pul__cluster_start_with(pul_system_t *sys, void *net, const pul__cluster_net_ops_t *ops,
                            const char *self_addr, pul__cluster_t **out);

/* The local actor table registered or released a name (core thread or any thread: the call
 * posts itself to the core thread when needed). Bumps this node's registry version and
 * disseminates the entry. */
void pul__cluster_name_changed(pul__cluster_t *cl, const char *name, pul_id_t actor_id, int live);

/* Snapshots for the public API (any thread; under the cluster mutex). */
int pul__cluster_members(pul__cluster_t *cl, pul_member_t *out, size_t max);
int pul__cluster_resolve(pul__cluster_t *cl, const char *name, pul_instance_t *out, size_t max);
void pul__cluster_named_foreach(pul__cluster_t *cl,
                                void (*cb)(const char *name, pul_id_t node_id, pul_id_t actor_id,
                                           void *arg),
                                void *arg);
int pul__cluster_node_of(pul__cluster_t *cl, uint64_t prefix, pul_id_t *out_node);

#endif
