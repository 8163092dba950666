/* registry.h — the cluster-wide named-actor view: per (node, name) the entry with the highest
 * version, tombstones included; lookups return live instances ordered by node id. A plain data
 * structure: the caller (swim.c, under the cluster mutex) serialises access. */
#ifndef PUL_CLUSTER_REGISTRY_H
#define PUL_CLUSTER_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "pulsing/pulsing.h"

typedef struct {
    pul_id_t node;
    pul_id_t actor;
    uint64_t ver;
    int live;
    uint64_t learned; /* when this version was applied (swim.c: ages entries of unknown nodes) */
    char name[PUL_NAME_MAX + 1];
} pul__reg_entry_t;

typedef struct {
    pul__reg_entry_t *v;
    size_t n;
    size_t cap;
} pul__registry_t;

void pul__registry_init(pul__registry_t *r);
void pul__registry_free(pul__registry_t *r);
/* Keep e when it is newer (higher ver) than what is known for (e->node, e->name). Returns 1 when
 * the view changed, 0 when e was stale or equal, PUL_ENOMEM. e is copied. */
int pul__registry_apply(pul__registry_t *r, const pul__reg_entry_t *e);
/* Forget every entry of node (Dead, Left or reclaimed). */
void pul__registry_drop_node(pul__registry_t *r, pul_id_t node);
/* Live instances of name (normalized) whose node passes ok(arg, node), ordered by node id:
 * writes up to max into out and returns the total. */
int pul__registry_lookup(const pul__registry_t *r, const char *name,
                         int (*ok)(void *arg, pul_id_t node), void *arg, pul_instance_t *out,
                         size_t max);

int pul__id_cmp(pul_id_t a, pul_id_t b);

#endif
