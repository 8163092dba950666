/* api.c — the public cluster queries: members, named instances, actor placement by prefix.
 * A system without a cluster (no listener) answers for itself alone; once sys->cluster is set
 * (src/cluster/cluster.c) each query is answered from the cluster view instead. */
#include <string.h>

#include "actor/actor.h"
#include "cluster/cluster.h"

const char *
pul_member_status_str(pul_member_status_t st)
{
    switch (st) {
    case PUL_MEMBER_ALIVE:
        return "Alive";
    case PUL_MEMBER_SUSPECT:
        return "Suspect";
    case PUL_MEMBER_DEAD:
        return "Dead";
    case PUL_MEMBER_LEFT:
        return "Left";
    }
    return "Unknown";
}

int
pul_members(pul_system_t *sys, pul_member_t *out, size_t max)
{
    if (sys == NULL || (out == NULL && max != 0)) {
        return PUL_EINVAL;
    }
    if (sys->cluster != NULL) {
        return pul__cluster_members(sys->cluster, out, max);
    }
    if (max >= 1) {
        memset(&out[0], 0, sizeof out[0]);
        out[0].node_id = sys->node_id;
        memcpy(out[0].addr, sys->addr, sizeof out[0].addr);
        out[0].status = PUL_MEMBER_ALIVE;
    }
    return 1;
}

int
pul_resolve_name(pul_system_t *sys, const char *name, pul_instance_t *out, size_t max)
{
    if (sys == NULL || name == NULL || (out == NULL && max != 0)) {
        return PUL_EINVAL;
    }
    char norm[PUL_NAME_MAX + 1];
    if (pul_name_normalize(name, strlen(name), 1, norm, sizeof norm) != 0) {
        return PUL_ENAME;
    }
    if (sys->cluster != NULL) {
        return pul__cluster_resolve(sys->cluster, norm, out, max);
    }
    pul_id_t id;
    if (pul_lookup(sys, norm, &id) != 0) {
        return 0;
    }
    if (max >= 1) {
        out[0].node_id = sys->node_id;
        out[0].actor_id = id;
    }
    return 1;
}

typedef struct {
    pul_system_t *sys;
    void (*cb)(const char *, pul_id_t, pul_id_t, void *);
    void *arg;
} named_walk_t;

static void
named_walk(pul_id_t id, const char *name, void *arg)
{
    named_walk_t *w = arg;
    if (name != NULL) {
        w->cb(name, w->sys->node_id, id, w->arg);
    }
}

void
pul_named_foreach(pul_system_t *sys,
                  void (*cb)(const char *name, pul_id_t node_id, pul_id_t actor_id, void *arg),
                  void *arg)
{
    if (sys == NULL || cb == NULL) {
        return;
    }
    if (sys->cluster != NULL) {
        /* Other nodes' entries from the cluster view; ours from the actor table below. */
        pul__cluster_named_foreach(sys->cluster, cb, arg);
    }
    named_walk_t w = {sys, cb, arg};
    pul_actors_foreach(sys, named_walk, &w);
}

int
pul_actor_node(pul_system_t *sys, pul_id_t actor_id, pul_id_t *out_node)
{
    if (sys == NULL) {
        return PUL_EINVAL;
    }
    if (actor_id.hi == sys->node_id.hi) {
        if (out_node != NULL) {
            *out_node = sys->node_id;
        }
        return 0;
    }
    if (sys->cluster != NULL) {
        pul_id_t node;
        int rc = pul__cluster_node_of(sys->cluster, actor_id.hi, &node);
        if (rc == 0 && out_node != NULL) {
            *out_node = node;
        }
        return rc;
    }
    return PUL_ENOTFOUND;
}
