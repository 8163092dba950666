/* registry.c — the named-actor view (see registry.h). Linear scans: a cluster holds hundreds of
 * names, not millions, and every access is on the core thread or a snapshot under the mutex. */
#include "cluster/registry.h"

#include <string.h>

#include "core/alloc.h"

int
pul__id_cmp(pul_id_t a, pul_id_t b)
{
    if (a.hi != b.hi) {
        return a.hi < b.hi ? -1 : 1;
    }
    if (a.lo != b.lo) {
        return a.lo < b.lo ? -1 : 1;
    }
    return 0;
}

void
pul__registry_init(pul__registry_t *r)
{
    memset(r, 0, sizeof *r);
}

void
pul__registry_free(pul__registry_t *r)
{
    if (r != NULL) {
        pul__free(r->v);
        memset(r, 0, sizeof *r);
    }
}

int
pul__registry_apply(pul__registry_t *r, const pul__reg_entry_t *e)
{
    for (size_t i = 0; i < r->n; i++) {
        pul__reg_entry_t *x = &r->v[i];
        if (pul_id_eq(x->node, e->node) && strcmp(x->name, e->name) == 0) {
            if (e->ver <= x->ver) {
                return 0;
            }
            *x = *e;
            return 1;
        }
    }
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 16;
        pul__reg_entry_t *nv = pul__realloc(r->v, nc * sizeof *nv);
        if (nv == NULL) {
            return PUL_ENOMEM;
        }
        r->v = nv;
        r->cap = nc;
    }
    r->v[r->n++] = *e;
    return 1;
}

void
pul__registry_drop_node(pul__registry_t *r, pul_id_t node)
{
    size_t j = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!pul_id_eq(r->v[i].node, node)) {
            r->v[j++] = r->v[i];
        }
    }
    r->n = j;
}

int
pul__registry_lookup(const pul__registry_t *r, const char *name,
                     int (*ok)(void *arg, pul_id_t node), void *arg, pul_instance_t *out,
                     size_t max)
{
    size_t total = 0;
    for (size_t i = 0; i < r->n; i++) {
        const pul__reg_entry_t *x = &r->v[i];
        if (!x->live || strcmp(x->name, name) != 0 || (ok != NULL && !ok(arg, x->node))) {
            continue;
        }
        /* Insertion into the sorted prefix that fits in out. */
        if (total < max) {
            size_t k = total;
            while (k > 0 && pul__id_cmp(out[k - 1].node_id, x->node) > 0) {
                out[k] = out[k - 1];
                k--;
            }
            out[k].node_id = x->node;
            out[k].actor_id = x->actor;
        } else if (max > 0 && pul__id_cmp(out[max - 1].node_id, x->node) > 0) {
            size_t k = max - 1;
            while (k > 0 && pul__id_cmp(out[k - 1].node_id, x->node) > 0) {
                out[k] = out[k - 1];
                k--;
            }
            out[k].node_id = x->node;
            out[k].actor_id = x->actor;
        }
        total++;
    }
    return (int)total;
}
