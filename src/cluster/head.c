/* head.c — head-node mode (see head.h): a central view kept by heartbeats instead of gossip. */
#include "cluster/head.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

typedef struct {
    pul_member_t m;
    uint64_t last;    /* head: last heartbeat */
    uint64_t changed; /* when the status last changed */
    uint64_t unlisted; /* worker: since when the head's views omit it (0: listed) */
} hmember_t;

struct pul__head_s {
    int is_head;
    pul_cluster_timing_t t;
    pul__head_event_fn ev;
    void *arg;
    hmember_t *v; /* v[0] is self */
    size_t n;
    size_t cap;
    pul__registry_t reg;
    uint64_t name_ver;
    pul_id_t head_id;   /* worker: the head, as named by its last view (zero before one) */
    uint64_t last_view; /* worker: when that view arrived */
};

static hmember_t *
head_find(pul__head_t *h, pul_id_t id)
{
    for (size_t i = 0; i < h->n; i++) {
        if (pul_id_eq(h->v[i].m.node_id, id)) {
            return &h->v[i];
        }
    }
    return NULL;
}

static hmember_t *
head_add(pul__head_t *h, pul_id_t id)
{
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 8;
        hmember_t *nv = pul__realloc(h->v, nc * sizeof *nv);
        if (nv == NULL) {
            return NULL;
        }
        h->v = nv;
        h->cap = nc;
    }
    hmember_t *x = &h->v[h->n++];
    memset(x, 0, sizeof *x);
    x->m.node_id = id;
    x->m.status = PUL_MEMBER_DEAD; /* so that the first update is a change */
    return x;
}

static void
head_set(pul__head_t *h, hmember_t *x, const char *addr, pul_member_status_t st, uint64_t inc,
         uint64_t now)
{
    int changed = x->m.status != st ||
                  (st == PUL_MEMBER_ALIVE && strcmp(x->m.addr, addr) != 0);
    snprintf(x->m.addr, sizeof x->m.addr, "%s", addr);
    x->m.incarnation = inc;
    if (x->m.status != st) {
        x->changed = now;
    }
    x->m.status = st;
    if (st == PUL_MEMBER_DEAD || st == PUL_MEMBER_LEFT) {
        pul__registry_drop_node(&h->reg, x->m.node_id);
    }
    if (changed && h->ev != NULL) {
        h->ev(h->arg, x->m.node_id, x->m.addr, st);
    }
}

int
pul__head_new(int is_head, pul_id_t self, const char *self_addr, const pul_cluster_timing_t *t,
              pul__head_event_fn ev, void *arg, pul__head_t **out)
{
    if (self_addr == NULL || t == NULL || out == NULL) {
        return PUL_EINVAL;
    }
    pul__head_t *h = pul__calloc(1, sizeof *h);
    if (h == NULL) {
        return PUL_ENOMEM;
    }
    h->is_head = is_head;
    h->t = *t;
    h->ev = ev;
    h->arg = arg;
    pul__registry_init(&h->reg);
    hmember_t *x = head_add(h, self);
    if (x == NULL) {
        pul__free(h);
        return PUL_ENOMEM;
    }
    x->m.status = PUL_MEMBER_ALIVE;
    snprintf(x->m.addr, sizeof x->m.addr, "%s", self_addr);
    *out = h;
    return 0;
}

void
pul__head_free(pul__head_t *h)
{
    if (h != NULL) {
        pul__free(h->v);
        pul__registry_free(&h->reg);
        pul__free(h);
    }
}

/* Our view as a sync body: every member; names of every node (only_self: ours alone). */
static int
head_encode(pul__head_t *h, int only_self, pul__gbuf_t *out)
{
    pul__gsync_t y;
    memset(&y, 0, sizeof y);
    y.from = h->v[0].m.node_id;
    memcpy(y.addr, h->v[0].m.addr, sizeof y.addr);
    size_t nm = only_self ? 1 : h->n;
    y.members = pul__calloc(nm, sizeof *y.members);
    y.names = h->reg.n > 0 ? pul__calloc(h->reg.n, sizeof *y.names) : NULL;
    int rc = PUL_ENOMEM;
    if (y.members == NULL || (h->reg.n > 0 && y.names == NULL)) {
        goto out;
    }
    for (size_t i = 0; i < nm; i++) {
        y.members[i].node = h->v[i].m.node_id;
        memcpy(y.members[i].addr, h->v[i].m.addr, sizeof y.members[i].addr);
        y.members[i].inc = h->v[i].m.incarnation;
        y.members[i].status = h->v[i].m.status;
    }
    y.nmembers = nm;
    for (size_t i = 0; i < h->reg.n; i++) {
        const pul__reg_entry_t *e = &h->reg.v[i];
        if (only_self && !pul_id_eq(e->node, y.from)) {
            continue;
        }
        pul__gmsg_t *g = &y.names[y.nnames++];
        g->t = PUL__G_NAME;
        g->node = e->node;
        g->by = e->actor;
        g->inc = e->ver;
        g->live = e->live;
        memcpy(g->name, e->name, sizeof g->name);
    }
    rc = pul__gsync_encode(out, &y);
out:
    pul__free(y.members);
    pul__free(y.names);
    return rc;
}

static void
head_apply_names(pul__head_t *h, const pul__gsync_t *y, int only_from)
{
    for (size_t i = 0; i < y->nnames; i++) {
        const pul__gmsg_t *g = &y->names[i];
        if ((only_from && !pul_id_eq(g->node, y->from)) ||
            pul_id_eq(g->node, h->v[0].m.node_id)) {
            continue;
        }
        pul__reg_entry_t e = {.node = g->node, .actor = g->by, .ver = g->inc, .live = g->live};
        memcpy(e.name, g->name, sizeof e.name);
        (void)pul__registry_apply(&h->reg, &e); /* ENOMEM: the next heartbeat retries */
    }
}

int
pul__head_register(pul__head_t *h, const uint8_t *body, size_t len, size_t max, uint64_t now,
                   pul__gbuf_t *resp)
{
    pul__gsync_t y;
    int rc = pul__gsync_decode(body, len, max, &y);
    if (rc != 0) {
        return rc;
    }
    if (!pul_id_eq(y.from, h->v[0].m.node_id) && !pul_id_is_zero(y.from)) {
        pul_member_status_t st = PUL_MEMBER_ALIVE;
        uint64_t inc = 0;
        for (size_t i = 0; i < y.nmembers; i++) {
            if (pul_id_eq(y.members[i].node, y.from)) {
                st = y.members[i].status == PUL_MEMBER_LEFT ? PUL_MEMBER_LEFT : PUL_MEMBER_ALIVE;
                inc = y.members[i].inc;
            }
        }
        hmember_t *x = head_find(h, y.from);
        if (x == NULL) {
            x = head_add(h, y.from);
        }
        if (x != NULL) {
            x->last = now;
            head_set(h, x, y.addr, st, inc, now);
            /* The worker is the authority for its names: its list replaces what we had. */
            pul__registry_drop_node(&h->reg, y.from);
            if (st == PUL_MEMBER_ALIVE) {
                head_apply_names(h, &y, 1);
            }
        }
    }
    pul__gsync_clear(&y);
    return head_encode(h, 0, resp);
}

uint64_t
pul__head_tick(pul__head_t *h, uint64_t now)
{
    uint64_t next = now + (h->t.heartbeat_interval_ms ? h->t.heartbeat_interval_ms : 1000);
    if (!h->is_head) {
        return next;
    }
    for (size_t i = h->n; i-- > 1;) {
        hmember_t *x = &h->v[i];
        if (x->m.status == PUL_MEMBER_ALIVE && now - x->last >= h->t.heartbeat_timeout_ms) {
            head_set(h, x, x->m.addr, PUL_MEMBER_DEAD, x->m.incarnation, now);
        } else if (x->m.status != PUL_MEMBER_ALIVE && now - x->changed >= h->t.dead_reclaim_ms) {
            h->v[i] = h->v[--h->n];
        }
    }
    return next;
}

int
pul__head_heartbeat_body(pul__head_t *h, int leaving, pul__gbuf_t *out)
{
    if (leaving) {
        h->v[0].m.status = PUL_MEMBER_LEFT;
    }
    return head_encode(h, 1, out);
}

static int
head_live(const hmember_t *x)
{
    return x->m.status == PUL_MEMBER_ALIVE || x->m.status == PUL_MEMBER_SUSPECT;
}

int
pul__head_view_recv(pul__head_t *h, const uint8_t *body, size_t len, size_t max, uint64_t now)
{
    pul__gsync_t y;
    int rc = pul__gsync_decode(body, len, max, &y);
    if (rc != 0) {
        return rc;
    }
    pul_id_t old_head = h->head_id;
    h->head_id = y.from;
    h->last_view = now;
    /* Members the head does not list: a member it forgot (reclaimed after Dead or Left) goes.
     * A live one gets heartbeat_timeout to show up again: a head that just restarted has heard
     * from some workers only, and the others are still there (they re-register within their
     * backoff, which is shorter). A previous head that was replaced is gone at once. */
    for (size_t i = h->n; i-- > 1;) {
        hmember_t *x = &h->v[i];
        int listed = 0;
        for (size_t j = 0; j < y.nmembers && !listed; j++) {
            listed = pul_id_eq(y.members[j].node, x->m.node_id);
        }
        if (listed) {
            x->unlisted = 0;
            continue;
        }
        int replaced_head = pul_id_eq(x->m.node_id, old_head) && !pul_id_eq(old_head, y.from);
        if (head_live(x) && !replaced_head) {
            if (x->unlisted == 0) {
                x->unlisted = now;
            }
            if (now - x->unlisted < h->t.heartbeat_timeout_ms) {
                continue;
            }
        }
        if (head_live(x)) {
            head_set(h, x, x->m.addr, PUL_MEMBER_DEAD, x->m.incarnation, now);
        }
        pul__registry_drop_node(&h->reg, x->m.node_id);
        h->v[i] = h->v[--h->n];
    }
    for (size_t j = 0; j < y.nmembers; j++) {
        const pul__gmember_t *m = &y.members[j];
        if (pul_id_eq(m->node, h->v[0].m.node_id)) {
            continue;
        }
        hmember_t *x = head_find(h, m->node);
        if (x == NULL) {
            x = head_add(h, m->node);
        }
        if (x != NULL) {
            head_set(h, x, m->addr, m->status == PUL_MEMBER_SUSPECT ? PUL_MEMBER_ALIVE : m->status,
                     m->inc, now);
        }
    }
    /* Names: the head's list replaces those of every node but ours and the members waiting to
     * be listed again (they keep what they had). */
    size_t k = 0;
    for (size_t i = 0; i < h->reg.n; i++) {
        const pul__reg_entry_t *e = &h->reg.v[i];
        const hmember_t *x = head_find(h, e->node);
        if (x == &h->v[0] || (x != NULL && x->unlisted != 0)) {
            h->reg.v[k++] = *e;
        }
    }
    h->reg.n = k;
    head_apply_names(h, &y, 0);
    pul__gsync_clear(&y);
    return 0;
}

int
pul__head_unreachable(pul__head_t *h, uint64_t now)
{
    if (h->is_head || pul_id_is_zero(h->head_id)) {
        return 0;
    }
    hmember_t *x = head_find(h, h->head_id);
    if (x == NULL || !head_live(x)) {
        return 0;
    }
    if (now - h->last_view >= h->t.heartbeat_timeout_ms) {
        head_set(h, x, x->m.addr, PUL_MEMBER_DEAD, x->m.incarnation, now);
        return 1;
    }
    if (x->m.status == PUL_MEMBER_ALIVE) {
        head_set(h, x, x->m.addr, PUL_MEMBER_SUSPECT, x->m.incarnation, now);
        return 1;
    }
    return 0;
}

int
pul__head_name_changed(pul__head_t *h, const char *name, pul_id_t actor, int live)
{
    size_t nl = strlen(name);
    if (nl > PUL_NAME_MAX) {
        return PUL_ENAME;
    }
    pul__reg_entry_t e = {.node = h->v[0].m.node_id, .actor = actor, .ver = ++h->name_ver,
                          .live = live};
    memcpy(e.name, name, nl + 1);
    int rc = pul__registry_apply(&h->reg, &e);
    return rc < 0 ? rc : 0;
}

int
pul__head_members(const pul__head_t *h, pul_member_t *out, size_t max)
{
    for (size_t i = 0; i < h->n && i < max; i++) {
        out[i] = h->v[i].m;
    }
    return (int)h->n;
}

int
pul__head_node_ok(const pul__head_t *h, pul_id_t node)
{
    for (size_t i = 0; i < h->n; i++) {
        if (pul_id_eq(h->v[i].m.node_id, node)) {
            return head_live(&h->v[i]);
        }
    }
    return 0;
}

int
pul__head_node_of(const pul__head_t *h, uint64_t prefix, pul_id_t *out)
{
    for (size_t i = 0; i < h->n; i++) {
        if (h->v[i].m.node_id.hi == prefix && head_live(&h->v[i])) {
            *out = h->v[i].m.node_id;
            return 0;
        }
    }
    return PUL_ENOTFOUND;
}

const pul__registry_t *
pul__head_registry(const pul__head_t *h)
{
    return &h->reg;
}
