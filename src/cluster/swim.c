/* swim.c — SWIM with Lifeguard's local health and suspicion (see swim.h, membership.md). */
#include "cluster/swim.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

#define MAX_ACCUSERS 16
#define PACKET_HEADER_ROOM 128
/* After learning of a new member: this many extra gossip rounds, this far apart (capped by
 * gossip_interval), before the regular interval resumes. */
#define SWIM_EAGER_ROUNDS 4
#define SWIM_EAGER_MS 20
/* A tick this much later than it asked for means the thread was starved (or busy): see
 * swim_stalled. Above the jitter of a loop timer, below any probe timeout worth configuring. */
#define STALL_MS 10

typedef struct {
    pul_id_t id;
    char addr[PUL_ADDR_MAX + 1];
    uint64_t inc;
    pul_member_status_t st;
    uint64_t changed; /* when st last changed */
    /* Suspicion (st == SUSPECT). */
    uint64_t susp_start;
    uint64_t susp_deadline;
    uint32_t susp_k;
    pul_id_t accusers[MAX_ACCUSERS];
    uint32_t naccusers; /* the first accuser is not a confirmation */
    int eager;          /* probe it at the next probe tick */
} member_t;

typedef struct {
    int kind; /* 0: about a member; 1: a name entry */
    pul_id_t node;
    char name[PUL_NAME_MAX + 1];
    uint8_t *bytes;
    size_t len;
    uint32_t transmits;
    uint64_t order;
} bcast_t;

typedef struct {
    uint32_t seq;     /* our ping to the target */
    uint32_t req_seq; /* the requester's probe */
    char req_addr[PUL_ADDR_MAX + 1];
    char taddr[PUL_ADDR_MAX + 1];
    uint64_t nack_at;
} helper_t;

/* A node whose names we dropped while it was not a member (aged out, declared dead, reclaimed):
 * its names are not taken again from gossip until `until`, or until it becomes a member, so
 * that copies still held by peers do not bring them back and pass them around forever. */
typedef struct {
    pul_id_t node;
    uint64_t until;
} forgot_t;

struct pul__swim_s {
    pul__swim_io_t io;
    pul_cluster_timing_t t;
    char **seeds;
    size_t nseeds;
    uint64_t rng;
    member_t **m; /* m[0] is self */
    size_t n;
    size_t cap;
    size_t probe_idx;
    uint32_t seq;
    uint32_t awareness;
    int joined;
    int leaving;
    uint64_t name_ver;
    uint64_t bad_packets;
    struct {
        int active;
        pul_id_t target;
        char taddr[PUL_ADDR_MAX + 1];
        uint32_t seq;
        uint64_t timeout_at;
        uint64_t end_at;
        int indirect_sent;
        int refused;
        uint32_t nacks_expected;
        uint32_t nacks;
    } probe;
    helper_t *helpers;
    size_t nhelpers;
    size_t helpers_cap;
    bcast_t *bc;
    size_t nbc;
    size_t bc_cap;
    uint64_t bc_order;
    uint64_t next_probe;
    uint64_t next_gossip;
    unsigned eager_left; /* quick gossip rounds left after learning of a new member */
    uint64_t next_push_pull;
    uint64_t next_join;
    uint64_t next_orphan_sweep;
    uint64_t due; /* what the last tick asked for: a later tick means we were stalled */
    pul__registry_t reg;
    forgot_t *forgot; /* nodes whose names we dropped while they were not members */
    size_t nforgot;
    size_t forgot_cap;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t
swim_rand(pul__swim_t *s)
{
    /* xorshift64*: deterministic under a fixed seed, which the simulated tests rely on. */
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

static size_t
swim_randn(pul__swim_t *s, size_t n)
{
    return n == 0 ? 0 : (size_t)(swim_rand(s) % n);
}

static member_t *
swim_find(const pul__swim_t *s, pul_id_t id)
{
    for (size_t i = 0; i < s->n; i++) {
        if (pul_id_eq(s->m[i]->id, id)) {
            return s->m[i];
        }
    }
    return NULL;
}

static int
member_up(const member_t *m)
{
    return m->st == PUL_MEMBER_ALIVE || m->st == PUL_MEMBER_SUSPECT;
}

static size_t
swim_nup(const pul__swim_t *s)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        k += member_up(s->m[i]) ? 1 : 0;
    }
    return k;
}

static uint64_t
scaled(const pul__swim_t *s, uint32_t ms)
{
    return (uint64_t)ms * (s->awareness + 1);
}

static void
awareness_add(pul__swim_t *s, int delta)
{
    long a = (long)s->awareness + delta;
    long max = s->t.awareness_max > 0 ? (long)s->t.awareness_max - 1 : 0;
    s->awareness = (uint32_t)(a < 0 ? 0 : a > max ? max : a);
}

/* ---- broadcasts --------------------------------------------------------------------------- */

static void
bc_remove(pul__swim_t *s, size_t i)
{
    pul__free(s->bc[i].bytes);
    s->bc[i] = s->bc[--s->nbc];
}

/* Queue m for piggybacking; a newer broadcast about the same node (or node+name) replaces the
 * older one. Allocation failure loses the broadcast (push-pull repairs it). */
static void
bc_queue(pul__swim_t *s, const pul__gmsg_t *m)
{
    int kind = m->t == PUL__G_NAME;
    for (size_t i = 0; i < s->nbc; i++) {
        if (s->bc[i].kind == kind && pul_id_eq(s->bc[i].node, m->node) &&
            (!kind || strcmp(s->bc[i].name, m->name) == 0)) {
            bc_remove(s, i);
            break;
        }
    }
    pul__gbuf_t b;
    pul__gbuf_init(&b, PUL__GOSSIP_MAX_PACKET / 2);
    if (pul__gmsg_encode(&b, m) != 0) {
        pul__gbuf_free(&b);
        return;
    }
    if (s->nbc == s->bc_cap) {
        size_t nc = s->bc_cap ? s->bc_cap * 2 : 16;
        bcast_t *nb = pul__realloc(s->bc, nc * sizeof *nb);
        if (nb == NULL) {
            pul__gbuf_free(&b);
            return;
        }
        s->bc = nb;
        s->bc_cap = nc;
    }
    bcast_t *x = &s->bc[s->nbc++];
    memset(x, 0, sizeof *x);
    x->kind = kind;
    x->node = m->node;
    if (kind) {
        memcpy(x->name, m->name, sizeof x->name);
    }
    x->bytes = b.p;
    x->len = b.len;
    x->order = ++s->bc_order;
}

static uint32_t
bc_limit(const pul__swim_t *s)
{
    double n = (double)swim_nup(s);
    uint32_t l = (uint32_t)ceil(log10(n + 1.0));
    return s->t.retransmit_mult * (l < 1 ? 1 : l);
}

/* Append pending broadcasts (fewest transmissions first, then newest) into b within budget.
 * Returns how many were appended. */
static size_t
bc_collect(pul__swim_t *s, pul__gbuf_t *b, size_t budget, size_t max_msgs)
{
    size_t added = 0;
    size_t start = b->len;
    uint32_t limit = bc_limit(s);
    /* Selection by repeated scan: the queue holds tens of entries. */
    uint8_t *taken = NULL;
    if (s->nbc > 0) {
        taken = pul__calloc(s->nbc, 1);
        if (taken == NULL) {
            return 0;
        }
    }
    for (;;) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < s->nbc; i++) {
            if (taken[i] || s->bc[i].len > budget - (b->len - start)) {
                continue;
            }
            if (best == SIZE_MAX || s->bc[i].transmits < s->bc[best].transmits ||
                (s->bc[i].transmits == s->bc[best].transmits &&
                 s->bc[i].order > s->bc[best].order)) {
                best = i;
            }
        }
        if (best == SIZE_MAX || added >= max_msgs) {
            break;
        }
        taken[best] = 1;
        if (pul__gbuf_put(b, s->bc[best].bytes, s->bc[best].len) != 0) {
            break;
        }
        s->bc[best].transmits++;
        added++;
    }
    pul__free(taken);
    for (size_t i = s->nbc; i-- > 0;) {
        if (s->bc[i].transmits >= limit) {
            bc_remove(s, i);
        }
    }
    return added;
}

/* ---- sending ------------------------------------------------------------------------------ */

/* Send the given messages plus piggybacked broadcasts to addr. With piggyback set and nothing
 * to say at all, nothing is sent. */
static void
swim_send(pul__swim_t *s, const char *addr, const pul__gmsg_t *direct, size_t ndirect,
          int piggyback, int flags)
{
    pul__gbuf_t body, pkt;
    pul__gbuf_init(&body, PUL__GOSSIP_MAX_PACKET - PACKET_HEADER_ROOM);
    pul__gbuf_init(&pkt, PUL__GOSSIP_MAX_PACKET);
    for (size_t i = 0; i < ndirect; i++) {
        if (pul__gmsg_encode(&body, &direct[i]) != 0) {
            goto out;
        }
    }
    size_t n = ndirect;
    if (piggyback) {
        n += bc_collect(s, &body, body.max - body.len, PUL__GOSSIP_MAX_MSGS - ndirect);
    }
    if (n == 0 || body.err != 0) {
        goto out;
    }
    if (pul__gpacket_begin(&pkt, s->m[0]->id, s->m[0]->addr, n) != 0 ||
        pul__gbuf_put(&pkt, body.p, body.len) != 0) {
        goto out;
    }
    s->io.send(s->io.arg, addr, pkt.p, pkt.len, flags);
out:
    pul__gbuf_free(&body);
    pul__gbuf_free(&pkt);
}

static void
send_one(pul__swim_t *s, const char *addr, const pul__gmsg_t *m)
{
    swim_send(s, addr, m, 1, 1, 0);
}

/* ---- membership changes ------------------------------------------------------------------- */

static void
emit(pul__swim_t *s, const member_t *m)
{
    if (s->io.event != NULL) {
        s->io.event(s->io.arg, m->id, m->addr, m->st);
    }
}

static void
bc_member(pul__swim_t *s, const member_t *m, pul__gtype_t t, pul_id_t by)
{
    pul__gmsg_t g;
    memset(&g, 0, sizeof g);
    g.t = t;
    g.node = m->id;
    g.inc = m->inc;
    g.by = by;
    if (t == PUL__G_ALIVE) {
        memcpy(g.addr, m->addr, sizeof g.addr);
    }
    bc_queue(s, &g);
}

/* News (a member joined, is suspected, died, or we refute) goes out with the tick that follows
 * the packet or probe that brought it rather than at the next gossip interval: each node that
 * learns it sends one round at once, so it spreads in packet times, not intervals per hop. */
static void
gossip_soon(pul__swim_t *s, uint64_t now)
{
    if (s->next_gossip > now) {
        s->next_gossip = now;
    }
}

static void
refute(pul__swim_t *s, uint64_t inc, uint64_t now)
{
    member_t *self = s->m[0];
    self->inc = (inc > self->inc ? inc : self->inc) + 1;
    bc_member(s, self, PUL__G_ALIVE, self->id);
    awareness_add(s, 1);
    gossip_soon(s, now);
}

static uint64_t
suspicion_timeout(const pul__swim_t *s, const member_t *m)
{
    double n = (double)swim_nup(s);
    double scale = n > 10.0 ? log10(n) : 1.0;
    double min = (double)s->t.suspicion_mult * scale * (double)s->t.probe_interval_ms;
    double max = (double)s->t.suspicion_max_mult * min;
    if (m->susp_k < 1) {
        return (uint64_t)min;
    }
    uint32_t c = m->naccusers > 0 ? m->naccusers - 1 : 0;
    double frac = log((double)c + 1.0) / log((double)m->susp_k + 1.0);
    double raw = floor(max - frac * (max - min));
    return (uint64_t)(raw < min ? min : raw);
}

static uint64_t swim_orphan_age(const pul__swim_t *s);

static int
swim_forgotten(const pul__swim_t *s, pul_id_t node, uint64_t now)
{
    for (size_t i = 0; i < s->nforgot; i++) {
        if (pul_id_eq(s->forgot[i].node, node)) {
            return now < s->forgot[i].until;
        }
    }
    return 0;
}

/* Drop node's names and remember for a while that we did (see forgot_t). */
static void
swim_forget(pul__swim_t *s, pul_id_t node, uint64_t now)
{
    pul__registry_drop_node(&s->reg, node);
    uint64_t until = now + 2 * swim_orphan_age(s);
    for (size_t i = 0; i < s->nforgot; i++) {
        if (pul_id_eq(s->forgot[i].node, node)) {
            s->forgot[i].until = until;
            return;
        }
    }
    if (s->nforgot == s->forgot_cap) {
        size_t nc = s->forgot_cap ? s->forgot_cap * 2 : 8;
        forgot_t *nf = pul__realloc(s->forgot, nc * sizeof *nf);
        if (nf == NULL) {
            return; /* its names are dropped; they may only come back sooner */
        }
        s->forgot = nf;
        s->forgot_cap = nc;
    }
    s->forgot[s->nforgot++] = (forgot_t){.node = node, .until = until};
}

static void
swim_unforget(pul__swim_t *s, pul_id_t node, uint64_t now)
{
    for (size_t i = s->nforgot; i-- > 0;) {
        if (pul_id_eq(s->forgot[i].node, node) || now >= s->forgot[i].until) {
            s->forgot[i] = s->forgot[--s->nforgot];
        }
    }
}

static void
suspect_node(pul__swim_t *s, pul_id_t node, uint64_t inc, pul_id_t by, uint64_t now)
{
    member_t *m = swim_find(s, node);
    if (m == NULL || inc < m->inc || !member_up(m)) {
        return;
    }
    if (m == s->m[0]) {
        if (!s->leaving) {
            refute(s, inc, now);
        }
        return;
    }
    if (m->st == PUL_MEMBER_SUSPECT) {
        /* A confirmation from an accuser we have not heard yet shortens the timeout. */
        for (uint32_t i = 0; i < m->naccusers; i++) {
            if (pul_id_eq(m->accusers[i], by)) {
                return;
            }
        }
        if (m->naccusers < MAX_ACCUSERS) {
            m->accusers[m->naccusers++] = by;
        }
        m->susp_deadline = m->susp_start + suspicion_timeout(s, m);
        /* Pass the confirmation on, unless we accuse the node ourselves: one broadcast per
         * node is queued, and ours (perhaps not sent yet) is the one nobody else can send. When
         * every survivor probed the dead node in the same round, re-broadcasting the first
         * accuser's message in place of our own left each of them with one confirmation short,
         * and the suspicion ran to near its longest timeout. */
        int self_accuses = 0;
        for (uint32_t i = 0; i < m->naccusers; i++) {
            self_accuses |= pul_id_eq(m->accusers[i], s->m[0]->id);
        }
        bc_member(s, m, PUL__G_SUSPECT, self_accuses ? s->m[0]->id : by);
        return;
    }
    m->inc = inc;
    m->st = PUL_MEMBER_SUSPECT;
    m->changed = now;
    m->susp_start = now;
    m->accusers[0] = by;
    m->naccusers = 1;
    /* K confirmations expected; none when too few members could give them (memberlist). */
    size_t nup = swim_nup(s);
    uint32_t k = s->t.suspicion_mult > 2 ? s->t.suspicion_mult - 2 : 0;
    m->susp_k = nup < 2 || nup - 2 < k ? 0 : k;
    m->susp_deadline = now + suspicion_timeout(s, m);
    m->eager = !pul_id_eq(by, s->m[0]->id);
    bc_member(s, m, PUL__G_SUSPECT, by);
    gossip_soon(s, now);
    emit(s, m);
}

static void
dead_node(pul__swim_t *s, pul_id_t node, uint64_t inc, pul_id_t by, uint64_t now)
{
    member_t *m = swim_find(s, node);
    if (m == NULL) {
        /* A node we never knew (or forgot): nothing to declare, but names we heard of it by
         * gossip go now rather than when they age out. */
        swim_forget(s, node, now);
        return;
    }
    if (inc < m->inc || !member_up(m)) {
        return;
    }
    if (m == s->m[0]) {
        if (!pul_id_eq(by, node) && !s->leaving) {
            refute(s, inc, now);
        }
        return;
    }
    m->inc = inc;
    m->st = pul_id_eq(by, node) ? PUL_MEMBER_LEFT : PUL_MEMBER_DEAD;
    m->changed = now;
    m->eager = 0;
    pul__registry_drop_node(&s->reg, node);
    pul__gmsg_t g = {.t = PUL__G_DEAD, .node = node, .inc = inc, .by = by};
    bc_queue(s, &g);
    gossip_soon(s, now);
    if (s->probe.active && pul_id_eq(s->probe.target, node)) {
        s->probe.active = 0;
    }
    emit(s, m);
}

static void
alive_node(pul__swim_t *s, pul_id_t node, const char *addr, uint64_t inc, uint64_t now)
{
    if (pul_id_is_zero(node) || addr[0] == '\0' || pul_id_eq(node, s->m[0]->id)) {
        return;
    }
    member_t *m = swim_find(s, node);
    if (m == NULL) {
        if (s->leaving) {
            return;
        }
        if (s->n == s->cap) {
            size_t nc = s->cap * 2;
            member_t **nm = pul__realloc(s->m, nc * sizeof *nm);
            if (nm == NULL) {
                return;
            }
            s->m = nm;
            s->cap = nc;
        }
        m = pul__calloc(1, sizeof *m);
        if (m == NULL) {
            return;
        }
        m->id = node;
        snprintf(m->addr, sizeof m->addr, "%s", addr);
        m->inc = inc;
        m->st = PUL_MEMBER_ALIVE;
        m->changed = now;
        swim_unforget(s, node, now);
        /* A random place in the probe order, as memberlist does. */
        s->m[s->n++] = m;
        size_t j = 1 + swim_randn(s, s->n - 1);
        member_t *tmp = s->m[j];
        s->m[j] = m;
        s->m[s->n - 1] = tmp;
        bc_member(s, m, PUL__G_ALIVE, node);
        /* A newcomer: a round at once, then SWIM_EAGER_ROUNDS more SWIM_EAGER_MS apart, since
         * a node that joins through one seed is news for every other member. */
        gossip_soon(s, now);
        s->eager_left = SWIM_EAGER_ROUNDS;
        emit(s, m);
        return;
    }
    if (inc <= m->inc) {
        return;
    }
    int changed = m->st != PUL_MEMBER_ALIVE || strcmp(m->addr, addr) != 0;
    /* A node we had declared Dead refuted it: its names were dropped with it and would come back
     * only at the next push-pull; exchange state with it now instead. */
    int revived = m->st == PUL_MEMBER_DEAD && !s->leaving;
    m->inc = inc;
    snprintf(m->addr, sizeof m->addr, "%s", addr);
    if (m->st != PUL_MEMBER_ALIVE) {
        m->changed = now;
    }
    m->st = PUL_MEMBER_ALIVE;
    m->naccusers = 0;
    m->eager = 0;
    bc_member(s, m, PUL__G_ALIVE, node);
    if (changed) {
        emit(s, m);
    }
    if (revived && s->io.sync != NULL) {
        s->io.sync(s->io.arg, m->addr, 0);
    }
}

static void
name_entry(pul__swim_t *s, const pul__gmsg_t *g, uint64_t now)
{
    if (pul_id_eq(g->node, s->m[0]->id) || pul_id_is_zero(g->node)) {
        return; /* we are the authority for our own names */
    }
    const member_t *m = swim_find(s, g->node);
    if ((m != NULL && !member_up(m)) || (m == NULL && swim_forgotten(s, g->node, now))) {
        return;
    }
    char norm[PUL_NAME_MAX + 1];
    if (pul_name_normalize(g->name, strlen(g->name), 1, norm, sizeof norm) != 0 ||
        strcmp(norm, g->name) != 0) {
        return;
    }
    pul__reg_entry_t e = {.node = g->node, .actor = g->by, .ver = g->inc, .live = g->live,
                          .learned = now};
    memcpy(e.name, g->name, sizeof e.name);
    if (pul__registry_apply(&s->reg, &e) == 1) {
        bc_queue(s, g);
    }
}

/* ---- probing ------------------------------------------------------------------------------ */

/* Pick up to k distinct members passing ok, other than self and `not`, at random. */
static size_t
pick_random(pul__swim_t *s, int (*ok)(const pul__swim_t *, const member_t *, uint64_t),
            uint64_t now, pul_id_t not, member_t **out, size_t k)
{
    size_t cnt = 0;
    for (size_t i = 1; i < s->n; i++) {
        member_t *m = s->m[i];
        if (pul_id_eq(m->id, not) || !ok(s, m, now)) {
            continue;
        }
        /* Reservoir sampling. */
        if (cnt < k) {
            out[cnt] = m;
        } else {
            size_t j = swim_randn(s, cnt + 1);
            if (j < k) {
                out[j] = m;
            }
        }
        cnt++;
    }
    return cnt < k ? cnt : k;
}

static int
ok_up(const pul__swim_t *s, const member_t *m, uint64_t now)
{
    (void)s;
    (void)now;
    return member_up(m);
}

static int
ok_alive(const pul__swim_t *s, const member_t *m, uint64_t now)
{
    (void)s;
    (void)now;
    return m->st == PUL_MEMBER_ALIVE;
}

static int
ok_gossip(const pul__swim_t *s, const member_t *m, uint64_t now)
{
    /* Dead members keep hearing gossip for a while, so a wrongly declared one can refute. */
    return member_up(m) ||
           (m->st == PUL_MEMBER_DEAD && now - m->changed < s->t.dead_reclaim_ms);
}

static void
probe_finish(pul__swim_t *s, int ok, uint64_t now)
{
    s->probe.active = 0;
    if (ok) {
        awareness_add(s, -1);
        return;
    }
    /* Lifeguard: missing nacks mean *we* may be the slow one. */
    if (s->probe.nacks_expected > 0) {
        if (s->probe.nacks < s->probe.nacks_expected) {
            awareness_add(s, (int)(s->probe.nacks_expected - s->probe.nacks));
        }
    } else {
        awareness_add(s, 1);
    }
    member_t *m = swim_find(s, s->probe.target);
    if (m != NULL) {
        suspect_node(s, m->id, m->inc, s->m[0]->id, now);
    }
}

/* A refused direct ping whose helpers all answered nack needs no more waiting. */
static void
probe_check_early(pul__swim_t *s, uint64_t now)
{
    if (s->probe.active && s->probe.refused && s->probe.indirect_sent &&
        s->probe.nacks >= s->probe.nacks_expected) {
        probe_finish(s, 0, now);
    }
}

static void
probe_indirect(pul__swim_t *s, uint64_t now)
{
    s->probe.indirect_sent = 1;
    member_t *h[16];
    uint32_t k = s->t.indirect_checks < 16 ? s->t.indirect_checks : 16;
    size_t nh = pick_random(s, ok_alive, now, s->probe.target, h, k);
    pul__gmsg_t g = {.t = PUL__G_PREQ, .seq = s->probe.seq, .node = s->probe.target};
    memcpy(g.addr, s->probe.taddr, sizeof g.addr);
    for (size_t i = 0; i < nh; i++) {
        send_one(s, h[i]->addr, &g);
    }
    s->probe.nacks_expected = (uint32_t)nh;
    probe_check_early(s, now);
}

static void
probe_start(pul__swim_t *s, uint64_t now)
{
    member_t *target = NULL;
    for (size_t i = 1; i < s->n && target == NULL; i++) {
        if (s->m[i]->eager && member_up(s->m[i])) {
            target = s->m[i];
        }
    }
    for (size_t tries = 0; target == NULL && tries < s->n; tries++) {
        if (s->probe_idx == 0 || s->probe_idx >= s->n) {
            /* A new round: reshuffle everyone but self. */
            for (size_t i = s->n - 1; i > 1; i--) {
                size_t j = 1 + swim_randn(s, i);
                member_t *tmp = s->m[i];
                s->m[i] = s->m[j];
                s->m[j] = tmp;
            }
            s->probe_idx = 1;
        }
        if (s->probe_idx < s->n && member_up(s->m[s->probe_idx])) {
            target = s->m[s->probe_idx];
        }
        s->probe_idx++;
    }
    s->next_probe = now + scaled(s, s->t.probe_interval_ms);
    if (target == NULL) {
        return;
    }
    target->eager = 0;
    memset(&s->probe, 0, sizeof s->probe);
    s->probe.active = 1;
    s->probe.target = target->id;
    memcpy(s->probe.taddr, target->addr, sizeof s->probe.taddr);
    s->probe.seq = ++s->seq;
    s->probe.timeout_at = now + scaled(s, s->t.probe_timeout_ms);
    s->probe.end_at = s->next_probe;
    pul__gmsg_t g[2] = {{.t = PUL__G_SUSPECT, .node = target->id, .inc = target->inc,
                         .by = s->m[0]->id},
                        {.t = PUL__G_PING, .seq = s->probe.seq, .node = target->id}};
    /* A suspect is told so with the ping, so it can refute even when the broadcast was lost
     * (memberlist does the same). The suspicion goes first: the target's refutation is then
     * queued by the time it answers the ping, and travels back on the ack. */
    int susp = target->st == PUL_MEMBER_SUSPECT;
    swim_send(s, target->addr, susp ? g : g + 1, susp ? 2 : 1, 1, 0);
}

static void
helper_remove(pul__swim_t *s, size_t i)
{
    s->helpers[i] = s->helpers[--s->nhelpers];
}

static void
helper_nack(pul__swim_t *s, size_t i)
{
    pul__gmsg_t g = {.t = PUL__G_NACK, .seq = s->helpers[i].req_seq};
    char to[PUL_ADDR_MAX + 1];
    memcpy(to, s->helpers[i].req_addr, sizeof to);
    helper_remove(s, i);
    send_one(s, to, &g);
}

static void
on_preq(pul__swim_t *s, const pul__gpacket_t *p, const pul__gmsg_t *g, uint64_t now)
{
    if (pul_id_eq(g->node, s->m[0]->id)) {
        /* Asked to ping ourselves (the prober's view of addresses is stale): we are alive. */
        pul__gmsg_t a = {.t = PUL__G_ACK, .seq = g->seq};
        send_one(s, p->addr, &a);
        return;
    }
    if (s->nhelpers == s->helpers_cap) {
        size_t nc = s->helpers_cap ? s->helpers_cap * 2 : 8;
        if (nc > 1024) {
            return; /* bounded: a flood of requests does not grow us without limit */
        }
        helper_t *nh = pul__realloc(s->helpers, nc * sizeof *nh);
        if (nh == NULL) {
            return;
        }
        s->helpers = nh;
        s->helpers_cap = nc;
    }
    helper_t *h = &s->helpers[s->nhelpers++];
    h->seq = ++s->seq;
    h->req_seq = g->seq;
    memcpy(h->req_addr, p->addr, sizeof h->req_addr);
    memcpy(h->taddr, g->addr, sizeof h->taddr);
    /* Lifeguard: nack at 80% of the probe timeout, so it reaches the prober in time. */
    h->nack_at = now + scaled(s, s->t.probe_timeout_ms) * 4 / 5;
    pul__gmsg_t ping = {.t = PUL__G_PING, .seq = h->seq, .node = g->node};
    send_one(s, g->addr, &ping);
}

static void
on_ack(pul__swim_t *s, uint32_t seq, uint64_t now)
{
    if (s->probe.active && seq == s->probe.seq) {
        probe_finish(s, 1, now);
        return;
    }
    for (size_t i = 0; i < s->nhelpers; i++) {
        if (s->helpers[i].seq == seq) {
            pul__gmsg_t g = {.t = PUL__G_ACK, .seq = s->helpers[i].req_seq};
            char to[PUL_ADDR_MAX + 1];
            memcpy(to, s->helpers[i].req_addr, sizeof to);
            helper_remove(s, i);
            send_one(s, to, &g);
            return;
        }
    }
}

/* ---- public entry points ------------------------------------------------------------------ */

int
pul__swim_new(const pul__swim_cfg_t *cfg, const pul__swim_io_t *io, uint64_t now,
              pul__swim_t **out)
{
    if (cfg == NULL || io == NULL || io->send == NULL || cfg->addr == NULL ||
        strlen(cfg->addr) > PUL_ADDR_MAX || out == NULL) {
        return PUL_EINVAL;
    }
    pul__swim_t *s = pul__calloc(1, sizeof *s);
    if (s == NULL) {
        return PUL_ENOMEM;
    }
    s->io = *io;
    s->t = cfg->timing;
    s->rng = cfg->rng_seed != 0 ? cfg->rng_seed : (pul_id_random().lo | 1);
    pul__registry_init(&s->reg);
    s->cap = 8;
    s->m = pul__calloc(s->cap, sizeof *s->m);
    if (s->m == NULL) {
        goto fail;
    }
    s->m[0] = pul__calloc(1, sizeof *s->m[0]);
    if (s->m[0] == NULL) {
        goto fail;
    }
    s->n = 1;
    s->m[0]->id = cfg->self;
    snprintf(s->m[0]->addr, sizeof s->m[0]->addr, "%s", cfg->addr);
    s->m[0]->st = PUL_MEMBER_ALIVE;
    s->m[0]->changed = now;
    if (cfg->nseeds > 0) {
        s->seeds = pul__calloc(cfg->nseeds, sizeof *s->seeds);
        if (s->seeds == NULL) {
            goto fail;
        }
        for (size_t i = 0; i < cfg->nseeds; i++) {
            if (cfg->seeds[i] == NULL || strcmp(cfg->seeds[i], cfg->addr) == 0) {
                continue;
            }
            s->seeds[s->nseeds] = pul__strndup(cfg->seeds[i], strlen(cfg->seeds[i]));
            if (s->seeds[s->nseeds] == NULL) {
                goto fail;
            }
            s->nseeds++;
        }
    }
    s->joined = s->nseeds == 0;
    s->next_probe = now + s->t.probe_interval_ms;
    s->next_gossip = now + s->t.gossip_interval_ms;
    s->next_push_pull = now + s->t.push_pull_interval_ms;
    s->next_join = now;
    *out = s;
    return 0;

fail:
    pul__swim_free(s);
    return PUL_ENOMEM;
}

void
pul__swim_free(pul__swim_t *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; i < s->n; i++) {
        pul__free(s->m[i]);
    }
    pul__free(s->m);
    pul__free(s->forgot);
    for (size_t i = 0; i < s->nseeds; i++) {
        pul__free(s->seeds[i]);
    }
    pul__free(s->seeds);
    for (size_t i = 0; i < s->nbc; i++) {
        pul__free(s->bc[i].bytes);
    }
    pul__free(s->bc);
    pul__free(s->helpers);
    pul__registry_free(&s->reg);
    pul__free(s);
}

static uint64_t
min_due(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* Names of a node that is not a member — learned by gossip about a third node whose own alive
 * never reached us, or re-sent by a peer after we forgot the node — go once the node has had
 * time to become one: two push-pull rounds, at least dead_reclaim. */
static uint64_t
swim_orphan_age(const pul__swim_t *s)
{
    uint64_t age = 2 * s->t.push_pull_interval_ms;
    return age > s->t.dead_reclaim_ms ? age : s->t.dead_reclaim_ms;
}

/* The tick came `late` ms after the time it asked for: this thread did not run (CPU starvation,
 * a stopped process, a long task on the loop). Whatever peers sent meanwhile may be waiting,
 * unread, in our sockets — an ack to our probe, a refutation of our suspicion — and a libuv loop
 * runs expired timers before it reads them. So time we did not run is not held against anyone:
 * every pending judgment (probe timeout and end, helpers' nacks, suspicion deadlines) moves by
 * `late`, and the inputs get read before the judgments come due. Lifeguard's local health: it is
 * evidence that we are the slow one, so a stall longer than a probe timeout raises awareness,
 * which stretches our own probes until they succeed again. */
static void
swim_stalled(pul__swim_t *s, uint64_t late)
{
    if (s->probe.active) {
        /* next_probe is its end: the probe in flight is judged before the next one starts */
        s->probe.timeout_at += late;
        s->probe.end_at += late;
        s->next_probe += late;
    }
    for (size_t i = 0; i < s->nhelpers; i++) {
        s->helpers[i].nack_at += late;
    }
    for (size_t i = 1; i < s->n; i++) {
        member_t *m = s->m[i];
        if (m->st == PUL_MEMBER_SUSPECT) {
            m->susp_start += late;
            m->susp_deadline += late;
        }
    }
    if (late > s->t.probe_timeout_ms) {
        awareness_add(s, 1);
    }
}

uint64_t
pul__swim_tick(pul__swim_t *s, uint64_t now)
{
    if (s->leaving) {
        return now + 60000;
    }
    if (s->due != 0 && now > s->due + STALL_MS) {
        swim_stalled(s, now - s->due);
    }
    for (size_t i = s->nhelpers; i-- > 0;) {
        if (now >= s->helpers[i].nack_at) {
            helper_nack(s, i);
        }
    }
    if (s->probe.active && !s->probe.indirect_sent && now >= s->probe.timeout_at) {
        probe_indirect(s, now);
    }
    if (s->probe.active && now >= s->probe.end_at) {
        probe_finish(s, 0, now);
    }
    if (now >= s->next_probe) {
        probe_start(s, now);
    }
    for (size_t i = 1; i < s->n; i++) {
        member_t *m = s->m[i];
        if (m->st == PUL_MEMBER_SUSPECT && now >= m->susp_deadline) {
            dead_node(s, m->id, m->inc, s->m[0]->id, now);
        }
    }
    if (now >= s->next_gossip) {
        uint64_t every = s->t.gossip_interval_ms;
        if (s->eager_left > 0) {
            s->eager_left--;
            every = every < SWIM_EAGER_MS ? every : SWIM_EAGER_MS;
        }
        s->next_gossip = now + every;
        if (s->nbc > 0) {
            member_t *to[16];
            uint32_t k = s->t.gossip_nodes < 16 ? s->t.gossip_nodes : 16;
            pul_id_t none = {0, 0};
            size_t nt = pick_random(s, ok_gossip, now, none, to, k);
            for (size_t i = 0; i < nt; i++) {
                swim_send(s, to[i]->addr, NULL, 0, 1, 0);
            }
        }
    }
    if (now >= s->next_push_pull) {
        s->next_push_pull = now + s->t.push_pull_interval_ms;
        member_t *to[1];
        pul_id_t none = {0, 0};
        if (s->io.sync != NULL && pick_random(s, ok_alive, now, none, to, 1) == 1) {
            s->io.sync(s->io.arg, to[0]->addr, 0);
        }
    }
    if (!s->joined && now >= s->next_join) {
        s->next_join = now + s->t.join_retry_ms;
        for (size_t i = 0; i < s->nseeds && s->io.sync != NULL; i++) {
            s->io.sync(s->io.arg, s->seeds[i], 1);
        }
    }
    for (size_t i = s->n; i-- > 1;) {
        member_t *m = s->m[i];
        if (!member_up(m) && now - m->changed >= s->t.dead_reclaim_ms) {
            swim_forget(s, m->id, now);
            pul__free(m);
            memmove(&s->m[i], &s->m[i + 1], (s->n - i - 1) * sizeof *s->m);
            s->n--;
        }
    }
    if (now >= s->next_orphan_sweep) {
        uint64_t age = swim_orphan_age(s);
        s->next_orphan_sweep = now + (age / 8 > 100 ? age / 8 : 100);
        for (size_t i = 0; now > age && i < s->reg.n; i++) {
            const pul__reg_entry_t *e = &s->reg.v[i];
            if (e->learned < now - age && swim_find(s, e->node) == NULL) {
                swim_forget(s, e->node, now); /* all its entries: i now holds another one */
                i = (size_t)-1;
            }
        }
        swim_unforget(s, (pul_id_t){0, 0}, now); /* expired records */
    }
    /* When to come back. */
    uint64_t due = min_due(s->next_probe, s->next_gossip);
    due = min_due(due, s->next_push_pull);
    if (!s->joined) {
        due = min_due(due, s->next_join);
    }
    if (s->probe.active) {
        due = min_due(due, s->probe.indirect_sent ? s->probe.end_at : s->probe.timeout_at);
    }
    for (size_t i = 0; i < s->nhelpers; i++) {
        due = min_due(due, s->helpers[i].nack_at);
    }
    for (size_t i = 1; i < s->n; i++) {
        if (s->m[i]->st == PUL_MEMBER_SUSPECT) {
            due = min_due(due, s->m[i]->susp_deadline);
        } else if (!member_up(s->m[i])) {
            due = min_due(due, s->m[i]->changed + s->t.dead_reclaim_ms);
        }
    }
    s->due = due > now ? due : now + 1;
    return s->due;
}

int
pul__swim_recv(pul__swim_t *s, const uint8_t *buf, size_t len, uint64_t now)
{
    pul__gpacket_t p;
    int rc = pul__gpacket_decode(buf, len, &p);
    if (rc != 0) {
        s->bad_packets++;
        return rc;
    }
    if (s->leaving || pul_id_eq(p.from, s->m[0]->id)) {
        pul__gpacket_clear(&p);
        return 0;
    }
    /* A packet from a sender we do not know makes it known (incarnation 0 until its own alive
     * message says more): a joiner whose alive broadcast missed us still shows up at its first
     * ping instead of at the next push-pull. */
    if (swim_find(s, p.from) == NULL) {
        alive_node(s, p.from, p.addr, 0, now);
    }
    for (size_t i = 0; i < p.nmsgs; i++) {
        const pul__gmsg_t *g = &p.msgs[i];
        switch (g->t) {
        case PUL__G_PING:
            if (pul_id_eq(g->node, s->m[0]->id)) {
                pul__gmsg_t a = {.t = PUL__G_ACK, .seq = g->seq};
                send_one(s, p.addr, &a);
            }
            break;
        case PUL__G_ACK:
            on_ack(s, g->seq, now);
            break;
        case PUL__G_NACK:
            if (s->probe.active && g->seq == s->probe.seq) {
                s->probe.nacks++;
                probe_check_early(s, now);
            }
            break;
        case PUL__G_PREQ:
            on_preq(s, &p, g, now);
            break;
        case PUL__G_ALIVE:
            alive_node(s, g->node, g->addr, g->inc, now);
            break;
        case PUL__G_SUSPECT:
            suspect_node(s, g->node, g->inc, g->by, now);
            break;
        case PUL__G_DEAD:
            dead_node(s, g->node, g->inc, g->by, now);
            break;
        case PUL__G_NAME:
            name_entry(s, g, now);
            break;
        }
    }
    pul__gpacket_clear(&p);
    return 0;
}

void
pul__swim_refused(pul__swim_t *s, const char *addr, uint64_t now)
{
    if (s->leaving) {
        return;
    }
    for (size_t i = s->nhelpers; i-- > 0;) {
        if (strcmp(s->helpers[i].taddr, addr) == 0) {
            helper_nack(s, i);
        }
    }
    if (s->probe.active && !s->probe.refused && strcmp(s->probe.taddr, addr) == 0) {
        s->probe.refused = 1;
        if (!s->probe.indirect_sent) {
            probe_indirect(s, now);
        } else {
            probe_check_early(s, now);
        }
    }
}

int
pul__swim_sync_encode(pul__swim_t *s, int join, size_t max, pul__gbuf_t *out)
{
    pul__gsync_t y;
    memset(&y, 0, sizeof y);
    y.from = s->m[0]->id;
    memcpy(y.addr, s->m[0]->addr, sizeof y.addr);
    y.join = join;
    y.members = pul__calloc(s->n, sizeof *y.members);
    y.names = s->reg.n > 0 ? pul__calloc(s->reg.n + 0, sizeof *y.names) : NULL;
    int rc = PUL_ENOMEM;
    if (y.members == NULL || (s->reg.n > 0 && y.names == NULL)) {
        goto out;
    }
    for (size_t i = 0; i < s->n; i++) {
        const member_t *m = s->m[i];
        y.members[i].node = m->id;
        memcpy(y.members[i].addr, m->addr, sizeof m->addr);
        y.members[i].inc = m->inc;
        y.members[i].status = m->st;
    }
    y.nmembers = s->n;
    for (size_t i = 0; i < s->reg.n; i++) {
        const pul__reg_entry_t *e = &s->reg.v[i];
        pul__gmsg_t *g = &y.names[i];
        g->t = PUL__G_NAME;
        g->node = e->node;
        g->by = e->actor;
        g->inc = e->ver;
        g->live = e->live;
        memcpy(g->name, e->name, sizeof g->name);
    }
    y.nnames = s->reg.n;
    out->max = max;
    rc = pul__gsync_encode(out, &y);
out:
    pul__free(y.members);
    pul__free(y.names);
    return rc;
}

int
pul__swim_sync_recv(pul__swim_t *s, const uint8_t *buf, size_t len, size_t max, uint64_t now)
{
    pul__gsync_t y;
    int rc = pul__gsync_decode(buf, len, max, &y);
    if (rc != 0) {
        s->bad_packets++;
        return rc;
    }
    if (s->leaving || pul_id_eq(y.from, s->m[0]->id)) {
        pul__gsync_clear(&y);
        return 0;
    }
    s->joined = 1;
    for (size_t i = 0; i < y.nmembers; i++) {
        const pul__gmember_t *m = &y.members[i];
        switch (m->status) {
        case PUL_MEMBER_ALIVE:
            alive_node(s, m->node, m->addr, m->inc, now);
            break;
        case PUL_MEMBER_SUSPECT:
        case PUL_MEMBER_DEAD:
            /* A remote death is only a suspicion here: we check for ourselves (memberlist). */
            if (swim_find(s, m->node) == NULL) {
                break;
            }
            suspect_node(s, m->node, m->inc, y.from, now);
            break;
        case PUL_MEMBER_LEFT:
            dead_node(s, m->node, m->inc, m->node, now);
            break;
        }
    }
    for (size_t i = 0; i < y.nnames; i++) {
        name_entry(s, &y.names[i], now);
    }
    pul__gsync_clear(&y);
    return 0;
}

int
pul__swim_name_changed(pul__swim_t *s, const char *name, pul_id_t actor, int live, uint64_t now)
{
    (void)now;
    size_t nl = strlen(name);
    if (nl > PUL_NAME_MAX) {
        return PUL_ENAME;
    }
    pul__reg_entry_t e = {.node = s->m[0]->id, .actor = actor, .ver = ++s->name_ver,
                          .live = live};
    memcpy(e.name, name, nl + 1);
    int rc = pul__registry_apply(&s->reg, &e);
    if (rc < 0) {
        return rc;
    }
    pul__gmsg_t g = {.t = PUL__G_NAME, .node = e.node, .by = actor, .inc = e.ver, .live = live};
    memcpy(g.name, name, nl + 1);
    bc_queue(s, &g);
    return 0;
}

int
pul__swim_leave(pul__swim_t *s, uint64_t now)
{
    (void)now;
    if (s->leaving) {
        return 0;
    }
    member_t *self = s->m[0];
    member_t *to[16];
    uint32_t k = s->t.gossip_nodes < 16 ? s->t.gossip_nodes : 16;
    pul_id_t none = {0, 0};
    size_t nt = pick_random(s, ok_up, now, none, to, k);
    pul__gmsg_t g = {.t = PUL__G_DEAD, .node = self->id, .inc = self->inc, .by = self->id};
    for (size_t i = 0; i < nt; i++) {
        swim_send(s, to[i]->addr, &g, 1, 0, PUL__SWIM_SEND_LEAVE);
    }
    s->leaving = 1;
    self->st = PUL_MEMBER_LEFT;
    return (int)nt;
}

/* ---- queries ------------------------------------------------------------------------------ */

int
pul__swim_members(const pul__swim_t *s, pul_member_t *out, size_t max)
{
    for (size_t i = 0; i < s->n && i < max; i++) {
        const member_t *m = s->m[i];
        memset(&out[i], 0, sizeof out[i]);
        out[i].node_id = m->id;
        memcpy(out[i].addr, m->addr, sizeof out[i].addr);
        out[i].status = m->st;
        out[i].incarnation = m->inc;
    }
    return (int)s->n;
}

int
pul__swim_node_ok(const pul__swim_t *s, pul_id_t node)
{
    const member_t *m = swim_find(s, node);
    return m != NULL && (m == s->m[0] || member_up(m));
}

int
pul__swim_node_of(const pul__swim_t *s, uint64_t prefix, pul_id_t *out)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->m[i]->id.hi == prefix && (i == 0 || member_up(s->m[i]))) {
            *out = s->m[i]->id;
            return 0;
        }
    }
    return PUL_ENOTFOUND;
}

const pul__registry_t *
pul__swim_registry(const pul__swim_t *s)
{
    return &s->reg;
}

uint32_t
pul__swim_awareness(const pul__swim_t *s)
{
    return s->awareness;
}

int
pul__swim_joined(const pul__swim_t *s)
{
    return s->joined;
}

uint64_t
pul__swim_bad_packets(const pul__swim_t *s)
{
    return s->bad_packets;
}
