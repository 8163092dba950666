/* head.h — head-node mode, sans-I/O: the head keeps the cluster's view from workers'
 * heartbeats (POST /head/register) and answers each with the whole view; a worker adopts the
 * head's view as its own. Bodies are sync bodies (wire/gossip.h). Protocol: membership.md.
 * Same threading rules as swim.h: one thread drives it; callbacks must not call back in. */
#ifndef PUL_CLUSTER_HEAD_H
#define PUL_CLUSTER_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/registry.h"
#include "pulsing/pulsing.h"
#include "wire/gossip.h"

typedef struct pul__head_s pul__head_t;

/* A member changed status or address (not called for self). */
typedef void (*pul__head_event_fn)(void *arg, pul_id_t node, const char *addr,
                                   pul_member_status_t st);

/* is_head: this node is the head; else a worker. Returns 0, PUL_ENOMEM, PUL_EINVAL. */
int pul__head_new(int is_head, pul_id_t self, const char *self_addr,
                  const pul_cluster_timing_t *t, pul__head_event_fn ev, void *arg,
                  pul__head_t **out);
void pul__head_free(pul__head_t *h);

/* Head: a worker's heartbeat body; the answer (the whole view) is appended to resp.
 * Returns 0 or a decode error (answer 400). */
int pul__head_register(pul__head_t *h, const uint8_t *body, size_t len, size_t max,
                       uint64_t now, pul__gbuf_t *resp);
/* Head: declare workers silent for heartbeat_timeout Dead, forget old ones. Returns when to
 * call again. Workers: no-op. */
uint64_t pul__head_tick(pul__head_t *h, uint64_t now);

/* Worker: the heartbeat body (our id, address, status, our own names). leaving marks us Left. */
int pul__head_heartbeat_body(pul__head_t *h, int leaving, pul__gbuf_t *out);
/* Worker: adopt the head's answer. Members it omits stay for heartbeat_timeout if they were
 * live (a restarted head has not heard from everyone yet), then are Dead. Returns 0 or a decode
 * error (the old view is kept). */
int pul__head_view_recv(pul__head_t *h, const uint8_t *body, size_t len, size_t max,
                        uint64_t now);
/* Worker: a heartbeat got no view (refused, timed out, an error status). The head turns
 * Suspect (its route and names stay), and Dead once heartbeat_timeout has passed since the last
 * view; the rest of the view is kept as is. Returns 1 when the head's status changed. */
int pul__head_unreachable(pul__head_t *h, uint64_t now);

/* Our own name registered or released (both roles). */
int pul__head_name_changed(pul__head_t *h, const char *name, pul_id_t actor, int live);

/* Queries, as in swim.h. */
int pul__head_members(const pul__head_t *h, pul_member_t *out, size_t max);
int pul__head_node_ok(const pul__head_t *h, pul_id_t node);
int pul__head_node_of(const pul__head_t *h, uint64_t prefix, pul_id_t *out);
const pul__registry_t *pul__head_registry(const pul__head_t *h);

#endif
