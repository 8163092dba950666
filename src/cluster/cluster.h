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
void pul__cluster_free(pul__cluster_t *cl);

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
