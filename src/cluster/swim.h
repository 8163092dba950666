/* swim.h — the SWIM + Lifeguard membership state machine, sans-I/O: packets, ticks and transport
 * notices in; packets, sync requests and member events out through callbacks. Owns the named
 * registry, whose entries travel with membership. Protocol: docs/design/membership.md.
 * Not thread-safe: one thread drives it (the core thread; cluster.c adds the mutex that lets
 * other threads read snapshots). Callbacks run inside the call that caused them and must not
 * call back into the state machine. */
#ifndef PUL_CLUSTER_SWIM_H
#define PUL_CLUSTER_SWIM_H

#include <stddef.h>
#include <stdint.h>

#include "cluster/registry.h"
#include "pulsing/pulsing.h"
#include "wire/gossip.h"

typedef struct pul__swim_s pul__swim_t;

enum { PUL__SWIM_SEND_LEAVE = 1 }; /* flags of send: a packet of the graceful leave */

typedef struct {
    /* Send one encoded gossip packet to addr (POST /cluster/gossip). buf is valid during the
     * call only. A delivery failure is reported back with pul__swim_refused. */
    void (*send)(void *arg, const char *addr, const uint8_t *buf, size_t len, int flags);
    /* Start a push-pull exchange (POST /cluster/sync) with addr: the glue posts
     * pul__swim_sync_encode(join) and feeds the answer to pul__swim_sync_recv. */
    void (*sync)(void *arg, const char *addr, int join);
    /* Another member changed status (or address while Alive). */
    void (*event)(void *arg, pul_id_t node, const char *addr, pul_member_status_t st);
    void *arg;
} pul__swim_io_t;

typedef struct {
    pul_id_t self;
    const char *addr; /* advertised; copied */
    pul_cluster_timing_t timing;
    const char *const *seeds; /* copied; our own address is skipped */
    size_t nseeds;
    uint64_t rng_seed; /* 0 = random; tests pass a fixed one */
} pul__swim_cfg_t;

/* Create a state machine at time now. io is copied. Returns 0, PUL_ENOMEM, PUL_EINVAL. */
int pul__swim_new(const pul__swim_cfg_t *cfg, const pul__swim_io_t *io, uint64_t now,
                  pul__swim_t **out);
void pul__swim_free(pul__swim_t *s);

/* Run everything due at now (probes, timeouts, suspicion, gossip, push-pull, join retries,
 * reclaim). Returns the time of the next thing due: call again then (or on any input). */
uint64_t pul__swim_tick(pul__swim_t *s, uint64_t now);
/* A gossip packet arrived. Returns 0 or the decode error (the packet is dropped and counted). */
int pul__swim_recv(pul__swim_t *s, const uint8_t *buf, size_t len, uint64_t now);
/* Sending to addr failed at once (connection refused/reset): a direct probe or a helper's ping
 * to that address fails now instead of at its timeout. */
void pul__swim_refused(pul__swim_t *s, const char *addr, uint64_t now);

/* Encode this node's full state as a sync body (at most max bytes). Returns 0, PUL_ENOMEM,
 * PUL_ETOOBIG. out must be initialised by the caller. */
int pul__swim_sync_encode(pul__swim_t *s, int join, size_t max, pul__gbuf_t *out);
/* Merge a peer's sync body (a request we answer, or the answer to ours). Marks us joined.
 * Returns 0 or the decode error. */
int pul__swim_sync_recv(pul__swim_t *s, const uint8_t *buf, size_t len, size_t max,
                        uint64_t now);

/* A local named actor was registered (live) or released: bumps our registry version and
 * disseminates the entry. Returns 0, PUL_ENOMEM, PUL_ENAME. */
int pul__swim_name_changed(pul__swim_t *s, const char *name, pul_id_t actor, int live,
                           uint64_t now);
/* Graceful leave: mark ourselves Left and send it directly to up to gossip_nodes members (send
 * flag PUL__SWIM_SEND_LEAVE). Returns how many packets went out; afterwards the machine stays
 * silent. */
int pul__swim_leave(pul__swim_t *s, uint64_t now);

/* ---- queries (same thread, or under the owner's lock) ---- */

/* Members, self first; returns the total (may exceed max). */
int pul__swim_members(const pul__swim_t *s, pul_member_t *out, size_t max);
/* Nonzero when node is self or a known Alive/Suspect member. */
int pul__swim_node_ok(const pul__swim_t *s, pul_id_t node);
/* The member whose id has this 64-bit prefix (Alive/Suspect/self). 0 or PUL_ENOTFOUND. */
int pul__swim_node_of(const pul__swim_t *s, uint64_t prefix, pul_id_t *out);
const pul__registry_t *pul__swim_registry(const pul__swim_t *s);
uint32_t pul__swim_awareness(const pul__swim_t *s);
int pul__swim_joined(const pul__swim_t *s);
/* Packets dropped as malformed since creation. */
uint64_t pul__swim_bad_packets(const pul__swim_t *s);

#endif
