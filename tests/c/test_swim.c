/* test_swim.c — the SWIM state machine and the registry in a simulated network: 3-5 machines in
 * one process, a fake clock, latency, message loss, killed and partitioned nodes. */
#include <stdlib.h>

#include "pul_test.h"
#include "cluster/registry.h"
#include "cluster/swim.h"

/* ---- the simulated network ---------------------------------------------------------------- */

#define MAXN 5
#define STEP_MS 5

enum { EV_GOSSIP, EV_REFUSED, EV_SYNC_REQ, EV_SYNC_RESP };

typedef struct {
    int kind;
    int from;
    int to;
    uint64_t at;
    uint8_t *buf;
    size_t len;
    char addr[PUL_ADDR_MAX + 1]; /* EV_REFUSED: the address that refused */
} sev_t;

typedef struct world_s world_t;

typedef struct {
    world_t *w;
    int idx;
    pul__swim_t *s;
    pul_id_t id;
    char addr[32];
    int killed;      /* the process is gone: its address refuses connections */
    int partitioned; /* unreachable without refusals (packets vanish) */
    int in_loss_pct; /* loss of packets *to* this node */
    int stalled;     /* not scheduled: not ticked, packets to it wait unread */
    int resumed;     /* stall over: ticks before reading, as a libuv loop runs timers first */
    int accused[MAXN]; /* Suspect or Dead events it emitted about node j */
    int declared_dead[MAXN]; /* Dead events about node j */
    pul_member_status_t seen[MAXN]; /* last event about node j */
    int seen_set[MAXN];
    uint64_t seen_at[MAXN];
    uint32_t max_awareness;
} snode_t;

struct world_s {
    snode_t n[MAXN];
    int nn;
    uint64_t now;
    uint64_t t0;
    sev_t *ev;
    size_t nev;
    size_t cap;
    int loss_pct;
    uint64_t rng;
};

static uint64_t
wrand(world_t *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static int
find_addr(world_t *w, const char *addr)
{
    for (int i = 0; i < w->nn; i++) {
        if (strcmp(w->n[i].addr, addr) == 0) {
            return i;
        }
    }
    return -1;
}

static void
push_ev(world_t *w, int kind, int from, int to, uint64_t at, const uint8_t *buf, size_t len,
        const char *addr)
{
    if (w->nev == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->ev = realloc(w->ev, w->cap * sizeof *w->ev);
    }
    sev_t *e = &w->ev[w->nev++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->from = from;
    e->to = to;
    e->at = at;
    if (len > 0) {
        e->buf = malloc(len);
        memcpy(e->buf, buf, len);
        e->len = len;
    }
    if (addr != NULL) {
        snprintf(e->addr, sizeof e->addr, "%s", addr);
    }
}

static uint64_t
latency(world_t *w)
{
    return 1 + wrand(w) % 4;
}

static void
sim_send(void *arg, const char *addr, const uint8_t *buf, size_t len, int flags)
{
    snode_t *me = arg;
    world_t *w = me->w;
    (void)flags;
    int to = find_addr(w, addr);
    if (to < 0 || w->n[to].killed) {
        /* Connection refused: reported on a later turn, never inside the send. */
        push_ev(w, EV_REFUSED, me->idx, me->idx, w->now + 1, NULL, 0, addr);
        return;
    }
    if (w->n[to].partitioned || me->partitioned) {
        return;
    }
    int loss = w->loss_pct + w->n[to].in_loss_pct;
    if (loss > 0 && (int)(wrand(w) % 100) < loss) {
        return;
    }
    push_ev(w, EV_GOSSIP, me->idx, to, w->now + latency(w), buf, len, NULL);
}

static void
sim_sync(void *arg, const char *addr, int join)
{
    snode_t *me = arg;
    world_t *w = me->w;
    int to = find_addr(w, addr);
    if (to < 0 || w->n[to].killed || w->n[to].partitioned || me->partitioned) {
        return;
    }
    pul__gbuf_t b;
    pul__gbuf_init(&b, 0);
    assert_int_equal(pul__swim_sync_encode(me->s, join, 1 << 20, &b), 0);
    push_ev(w, EV_SYNC_REQ, me->idx, to, w->now + latency(w), b.p, b.len, NULL);
    pul__gbuf_free(&b);
}

static void
sim_event(void *arg, pul_id_t node, const char *addr, pul_member_status_t st)
{
    snode_t *me = arg;
    world_t *w = me->w;
    (void)addr;
    for (int j = 0; j < w->nn; j++) {
        if (pul_id_eq(w->n[j].id, node)) {
            me->seen[j] = st;
            if (st == PUL_MEMBER_SUSPECT || st == PUL_MEMBER_DEAD) {
                me->accused[j]++;
            }
            if (st == PUL_MEMBER_DEAD) {
                me->declared_dead[j]++;
            }
            me->seen_set[j] = 1;
            me->seen_at[j] = w->now;
        }
    }
}

static void
world_init(world_t *w, int nn, uint64_t seed, const pul_cluster_timing_t *tm)
{
    memset(w, 0, sizeof *w);
    w->nn = nn;
    w->now = 1000000;
    w->t0 = w->now;
    w->rng = seed * 2654435761u + 1;
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    if (tm != NULL) {
        cfg.timing = *tm;
    }
    for (int i = 0; i < nn; i++) {
        snode_t *x = &w->n[i];
        x->w = w;
        x->idx = i;
        x->id.hi = 0x1000 + (uint64_t)i;
        x->id.lo = seed + (uint64_t)i + 1;
        snprintf(x->addr, sizeof x->addr, "10.0.0.%d:7000", i + 1);
    }
    for (int i = 0; i < nn; i++) {
        snode_t *x = &w->n[i];
        const char *seeds[1] = {w->n[0].addr};
        pul__swim_cfg_t sc = {.self = x->id, .addr = x->addr, .timing = cfg.timing,
                              .seeds = seeds, .nseeds = i == 0 ? 0 : 1,
                              .rng_seed = seed * 7919 + (uint64_t)i + 1};
        pul__swim_io_t io = {.send = sim_send, .sync = sim_sync, .event = sim_event, .arg = x};
        assert_int_equal(pul__swim_new(&sc, &io, w->now, &x->s), 0);
    }
}

static void
world_free(world_t *w)
{
    for (int i = 0; i < w->nn; i++) {
        pul__swim_free(w->n[i].s);
    }
    for (size_t i = 0; i < w->nev; i++) {
        free(w->ev[i].buf);
    }
    free(w->ev);
}

/* Deliver what is due, then tick every live node; one STEP_MS of simulated time. */
static void
world_step(world_t *w)
{
    w->now += STEP_MS;
    for (int k = 0; k < w->nn; k++) {
        if (w->n[k].resumed) {
            w->n[k].resumed = 0;
            pul__swim_tick(w->n[k].s, w->now);
        }
    }
    /* Events may queue new events: take the due ones out first. */
    size_t i = 0;
    while (i < w->nev) {
        if (w->ev[i].at > w->now || w->n[w->ev[i].to].stalled) {
            i++;
            continue;
        }
        sev_t e = w->ev[i];
        w->ev[i] = w->ev[--w->nev];
        snode_t *to = &w->n[e.to];
        if (!to->killed && !(to->partitioned && e.kind != EV_REFUSED)) {
            switch (e.kind) {
            case EV_GOSSIP:
                assert_int_equal(pul__swim_recv(to->s, e.buf, e.len, w->now), 0);
                break;
            case EV_REFUSED:
                pul__swim_refused(to->s, e.addr, w->now);
                break;
            case EV_SYNC_REQ: {
                assert_int_equal(pul__swim_sync_recv(to->s, e.buf, e.len, 1 << 20, w->now), 0);
                pul__gbuf_t b;
                pul__gbuf_init(&b, 0);
                assert_int_equal(pul__swim_sync_encode(to->s, 0, 1 << 20, &b), 0);
                push_ev(w, EV_SYNC_RESP, e.to, e.from, w->now + latency(w), b.p, b.len, NULL);
                pul__gbuf_free(&b);
                break;
            }
            case EV_SYNC_RESP:
                assert_int_equal(pul__swim_sync_recv(to->s, e.buf, e.len, 1 << 20, w->now), 0);
                break;
            }
        }
        free(e.buf);
    }
    for (int k = 0; k < w->nn; k++) {
        snode_t *x = &w->n[k];
        if (!x->killed && !x->stalled) {
            pul__swim_tick(x->s, w->now);
            uint32_t a = pul__swim_awareness(x->s);
            if (a > x->max_awareness) {
                x->max_awareness = a;
            }
        }
    }
}

/* Status of node j in node i's view (-1 when unknown). */
static int
status_of(world_t *w, int i, int j)
{
    pul_member_t ms[16];
    int n = pul__swim_members(w->n[i].s, ms, 16);
    for (int k = 0; k < n && k < 16; k++) {
        if (pul_id_eq(ms[k].node_id, w->n[j].id)) {
            return (int)ms[k].status;
        }
    }
    return -1;
}

static uint64_t
member_inc(world_t *w, int i, int j)
{
    pul_member_t ms[16];
    int n = pul__swim_members(w->n[i].s, ms, 16);
    for (int k = 0; k < n && k < 16; k++) {
        if (pul_id_eq(ms[k].node_id, w->n[j].id)) {
            return ms[k].incarnation;
        }
    }
    return 0;
}

/* Every live node sees node j in status st. */
static int
all_see(world_t *w, int j, int st)
{
    for (int i = 0; i < w->nn; i++) {
        if (i != j && !w->n[i].killed && status_of(w, i, j) != st) {
            return 0;
        }
    }
    return 1;
}

static int
converged(world_t *w)
{
    for (int i = 0; i < w->nn; i++) {
        for (int j = 0; j < w->nn; j++) {
            if (!w->n[i].killed && !w->n[j].killed && status_of(w, i, j) != PUL_MEMBER_ALIVE) {
                return 0;
            }
        }
    }
    return 1;
}

/* Run until pred holds (checked each step) or limit_ms passes; returns elapsed ms or -1. */
#define RUN_UNTIL(w, limit_ms, pred)                                                         \
    ({                                                                                       \
        uint64_t _start = (w)->now;                                                          \
        long _r = -1;                                                                        \
        while ((w)->now - _start <= (limit_ms)) {                                            \
            if (pred) {                                                                      \
                _r = (long)((w)->now - _start);                                              \
                break;                                                                       \
            }                                                                                \
            world_step(w);                                                                   \
        }                                                                                    \
        _r;                                                                                  \
    })

static void
run_for(world_t *w, uint64_t ms)
{
    uint64_t end = w->now + ms;
    while (w->now < end) {
        world_step(w);
    }
}

static void dump(world_t *w);
static int resolve(world_t *w, int i, const char *name, pul_instance_t *out, size_t max);
static int all_resolve(world_t *w, const char *name, int want);

/* ---- tests -------------------------------------------------------------------------------- */

static void
test_converge(void **state)
{
    (void)state;
    for (int nn = 3; nn <= MAXN; nn++) {
        world_t w;
        world_init(&w, nn, 11 + (uint64_t)nn, NULL);
        long t = RUN_UNTIL(&w, 10000, converged(&w));
        print_message("converge n=%d: %ld ms simulated\n", nn, t);
        assert_true(t >= 0);
        for (int i = 0; i < nn; i++) {
            assert_true(pul__swim_joined(w.n[i].s));
        }
        /* Stable: a quiet healthy cluster raises no suspicion over a minute. */
        run_for(&w, 60000);
        assert_true(converged(&w));
        for (int i = 0; i < nn; i++) {
            for (int j = 0; j < nn; j++) {
                assert_int_equal(member_inc(&w, i, j), 0);
            }
        }
        world_free(&w);
    }
}

/* A newcomer is gossiped as soon as a node learns of it, not at the next gossip tick: with
 * gossip, probes and push-pull all minutes apart, five nodes that join one seed at once still
 * converge within a few packet times (latency here is 1-4 ms a hop). */
static void
test_join_gossiped_at_once(void **state)
{
    (void)state;
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    pul_cluster_timing_t tm = cfg.timing;
    tm.gossip_interval_ms = 60000;
    tm.probe_interval_ms = 60000;
    tm.probe_timeout_ms = 30000;
    tm.push_pull_interval_ms = 600000;
    for (uint64_t seed = 1; seed <= 10; seed++) {
        world_t w;
        world_init(&w, MAXN, seed, &tm);
        long t = RUN_UNTIL(&w, 1000, converged(&w));
        if (t < 0) {
            dump(&w);
        }
        assert_true(t >= 0);
        world_free(&w);
    }
}

/* Kill one node of five; every survivor declares it Dead. Default timings. */
static long
kill_once(uint64_t seed, int loss_pct, int nn, int blackhole)
{
    world_t w;
    world_init(&w, nn, seed, NULL);
    assert_true(RUN_UNTIL(&w, 10000, converged(&w)) >= 0);
    run_for(&w, 3000 + seed % 1000);
    w.loss_pct = loss_pct;
    int victim = nn - 1;
    if (blackhole) {
        w.n[victim].partitioned = 1; /* packets vanish: no refusal to shorten the probe */
    } else {
        w.n[victim].killed = 1;
    }
    long t = RUN_UNTIL(&w, 60000, all_see(&w, victim, PUL_MEMBER_DEAD));
    /* Nobody else was harmed on the way. */
    for (int i = 0; i < nn - 1; i++) {
        for (int j = 0; j < nn - 1; j++) {
            assert_true(status_of(&w, i, j) == PUL_MEMBER_ALIVE ||
                        status_of(&w, i, j) == PUL_MEMBER_SUSPECT);
        }
    }
    world_free(&w);
    return t;
}

static void
test_killed_declared_dead(void **state)
{
    (void)state;
    for (int nn = 3; nn <= MAXN; nn++) {
        long max = 0, sum = 0;
        const int runs = 20;
        for (int r = 0; r < runs; r++) {
            long t = kill_once(100 + (uint64_t)r, 0, nn, 0);
            assert_true(t >= 0);
            sum += t;
            max = t > max ? t : max;
        }
        print_message("killed node declared dead by all, n=%d: mean %ld ms, max %ld ms\n", nn,
                      sum / runs, max);
        assert_true(max <= 5000);
    }
    /* Under 10% message loss. */
    long max = 0;
    for (int r = 0; r < 10; r++) {
        long t = kill_once(500 + (uint64_t)r, 10, MAXN, 0);
        assert_true(t >= 0);
        max = t > max ? t : max;
    }
    print_message("killed node with 10%% loss: max %ld ms\n", max);
    /* A node that vanishes without refusing (power loss): full probe timeouts, slower. */
    max = 0;
    for (int r = 0; r < 10; r++) {
        long t = kill_once(700 + (uint64_t)r, 0, MAXN, 1);
        assert_true(t >= 0);
        max = t > max ? t : max;
    }
    print_message("vanished node (no refusal): max %ld ms\n", max);
    assert_true(max <= 10000);
}

static void
test_false_suspicion_refuted(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, MAXN, 7, NULL);
    assert_true(RUN_UNTIL(&w, 10000, converged(&w)) >= 0);
    /* Node 2 goes silent (packets vanish, no refusals) long enough to be suspected, not long
     * enough to be declared dead. */
    w.n[2].partitioned = 1;
    long t = RUN_UNTIL(&w, 10000, status_of(&w, 0, 2) == PUL_MEMBER_SUSPECT ||
                                      status_of(&w, 1, 2) == PUL_MEMBER_SUSPECT);
    assert_true(t >= 0);
    run_for(&w, 500);
    w.n[2].partitioned = 0;
    t = RUN_UNTIL(&w, 30000, converged(&w) && member_inc(&w, 0, 2) > 0 &&
                                 member_inc(&w, 1, 2) > 0 && member_inc(&w, 3, 2) > 0 &&
                                 member_inc(&w, 4, 2) > 0);
    print_message("suspicion refuted %ld ms after the partition healed\n", t);
    if (t < 0) dump(&w);
    assert_true(t >= 0);
    for (int i = 0; i < MAXN; i++) {
        assert_true(!w.n[i].seen_set[2] || w.n[i].seen[2] == PUL_MEMBER_ALIVE ||
                    w.n[i].seen[2] == PUL_MEMBER_SUSPECT || i == 2);
    }
    world_free(&w);

    /* Longer: declared Dead, then it hears of it (gossip to the dead) and comes back Alive,
     * its names with it, without waiting for a push-pull round (30 s): whoever sees it come
     * back exchanges state with it at once. */
    world_init(&w, MAXN, 8, NULL);
    assert_true(RUN_UNTIL(&w, 10000, converged(&w)) >= 0);
    pul_id_t a2 = {w.n[2].id.hi, 9};
    assert_int_equal(pul__swim_name_changed(w.n[2].s, "services/back", a2, 1, w.now), 0);
    assert_true(RUN_UNTIL(&w, 5000, all_resolve(&w, "services/back", 1)) >= 0);
    w.n[2].partitioned = 1;
    assert_true(RUN_UNTIL(&w, 60000, all_see(&w, 2, PUL_MEMBER_DEAD)) >= 0);
    pul_instance_t in[8];
    assert_int_equal(resolve(&w, 0, "services/back", in, 8), 0);
    w.n[2].partitioned = 0;
    t = RUN_UNTIL(&w, 20000, converged(&w));
    print_message("wrongly declared dead node back alive after %ld ms\n", t);
    assert_true(t >= 0);
    t = RUN_UNTIL(&w, 2000, all_resolve(&w, "services/back", 1));
    print_message("and its names back %ld ms later\n", t);
    assert_true(t >= 0);
    world_free(&w);
}

static void
test_leave(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 4, 21, NULL);
    assert_true(RUN_UNTIL(&w, 10000, converged(&w)) >= 0);
    int sent = pul__swim_leave(w.n[3].s, w.now);
    assert_true(sent >= 1);
    long t = RUN_UNTIL(&w, 5000, all_see(&w, 3, PUL_MEMBER_LEFT));
    print_message("leave seen as Left by all in %ld ms\n", t);
    assert_true(t >= 0);
    w.n[3].killed = 1; /* the process exits */
    run_for(&w, 10000);
    assert_true(all_see(&w, 3, PUL_MEMBER_LEFT));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w.n[i].seen[3], PUL_MEMBER_LEFT);
    }
    /* Forgotten after dead_reclaim. */
    run_for(&w, 30000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(status_of(&w, i, 3), -1);
    }
    world_free(&w);
}

static int
count_ok(void *arg, pul_id_t node)
{
    return pul__swim_node_ok(arg, node);
}

static int
resolve(world_t *w, int i, const char *name, pul_instance_t *out, size_t max)
{
    return pul__registry_lookup(pul__swim_registry(w->n[i].s), name, count_ok, w->n[i].s, out,
                                max);
}

static int
all_resolve(world_t *w, const char *name, int want)
{
    for (int i = 0; i < w->nn; i++) {
        pul_instance_t in[8];
        if (!w->n[i].killed && resolve(w, i, name, in, 8) != want) {
            return 0;
        }
    }
    return 1;
}

static void
test_registry_propagation(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, MAXN, 31, NULL);
    assert_true(RUN_UNTIL(&w, 10000, converged(&w)) >= 0);
    pul_id_t a1 = {w.n[1].id.hi, 77}, a4 = {w.n[4].id.hi, 78};
    assert_int_equal(pul__swim_name_changed(w.n[4].s, "services/counter", a4, 1, w.now), 0);
    assert_int_equal(pul__swim_name_changed(w.n[1].s, "services/counter", a1, 1, w.now), 0);
    long t = RUN_UNTIL(&w, 5000, all_resolve(&w, "services/counter", 2));
    print_message("name seen by all in %ld ms\n", t);
    assert_true(t >= 0);
    pul_instance_t in[8];
    assert_int_equal(resolve(&w, 0, "services/counter", in, 8), 2);
    assert_true(pul_id_eq(in[0].node_id, w.n[1].id)); /* ordered by node id */
    assert_true(pul_id_eq(in[0].actor_id, a1));
    assert_true(pul_id_eq(in[1].node_id, w.n[4].id));
    /* max smaller than the total still reports the total and the first ones. */
    assert_int_equal(resolve(&w, 2, "services/counter", in, 1), 2);
    assert_true(pul_id_eq(in[0].node_id, w.n[1].id));
    /* A release is a tombstone that wins by version. */
    assert_int_equal(pul__swim_name_changed(w.n[1].s, "services/counter", a1, 0, w.now), 0);
    assert_true(RUN_UNTIL(&w, 5000, all_resolve(&w, "services/counter", 1)) >= 0);
    /* Registering again on node 1 brings it back. */
    assert_int_equal(pul__swim_name_changed(w.n[1].s, "services/counter", a1, 1, w.now), 0);
    assert_true(RUN_UNTIL(&w, 5000, all_resolve(&w, "services/counter", 2)) >= 0);
    /* A killed node's names vanish when it is declared dead. */
    w.n[4].killed = 1;
    t = RUN_UNTIL(&w, 30000, all_resolve(&w, "services/counter", 1));
    assert_true(t >= 0);
    assert_true(all_see(&w, 4, PUL_MEMBER_DEAD));
    /* A new node joining late learns the names by push-pull (join sync). */
    world_free(&w);
}

static void
test_registry_late_join(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 3, 41, NULL);
    w.n[2].killed = 1; /* not started yet: seed-joins come later */
    assert_true(RUN_UNTIL(&w, 10000, status_of(&w, 0, 1) == PUL_MEMBER_ALIVE &&
                                         status_of(&w, 1, 0) == PUL_MEMBER_ALIVE) >= 0);
    pul_id_t a = {w.n[0].id.hi, 5};
    assert_int_equal(pul__swim_name_changed(w.n[0].s, "actors/x", a, 1, w.now), 0);
    run_for(&w, 20000); /* the broadcast is long gone */
    w.n[2].killed = 0;
    long t = RUN_UNTIL(&w, 10000, converged(&w) && all_resolve(&w, "actors/x", 1));
    print_message("late joiner converged with names in %ld ms\n", t);
    assert_true(t >= 0);
    world_free(&w);
}

/* Node k is not scheduled for ms: it runs no timer and reads nothing meanwhile; then it runs
 * its timers first, before reading what waited (as the core thread's libuv loop does). */
static void
stall(world_t *w, int k, uint64_t ms)
{
    w->n[k].stalled = 1;
    run_for(w, ms);
    w->n[k].stalled = 0;
    w->n[k].resumed = 1;
}

/* A ping from node k is on its way (its probe is in flight). */
static int
ping_in_flight(world_t *w, int k)
{
    int found = 0;
    for (size_t i = 0; i < w->nev && !found; i++) {
        if (w->ev[i].kind != EV_GOSSIP || w->ev[i].from != k) {
            continue;
        }
        pul__gpacket_t p;
        assert_int_equal(pul__gpacket_decode(w->ev[i].buf, w->ev[i].len, &p), 0);
        for (size_t j = 0; j < p.nmsgs; j++) {
            found |= p.msgs[j].t == PUL__G_PING;
        }
        pul__gpacket_clear(&p);
    }
    return found;
}

/* A node whose thread did not run for a while (CPU starvation) judges nobody on the time it
 * did not run: the answers its peers sent meanwhile are read before its timeouts come due.
 * (Before, a stalled node ran its expired timers first: a probe in flight at the stall failed
 * and a suspicion whose refutation was waiting unread ended in Dead.) */
static void
test_stalled_node_judges_nobody(void **state)
{
    (void)state;
    /* A probe in flight when the stall begins: the ack waits unread, and counts. */
    for (uint64_t seed = 81; seed < 86; seed++) {
        world_t w;
        world_init(&w, 3, seed, NULL);
        assert_true(RUN_UNTIL(&w, 10000, converged(&w)) >= 0);
        run_for(&w, 2000);
        assert_true(RUN_UNTIL(&w, 5000, ping_in_flight(&w, 0)) >= 0);
        stall(&w, 0, 1500); /* longer than a probe interval, shorter than a suspicion */
        assert_true(RUN_UNTIL(&w, 30000, converged(&w)) >= 0);
        assert_int_equal(w.n[0].accused[1], 0);
        assert_int_equal(w.n[0].accused[2], 0);
        assert_true(w.n[0].max_awareness >= 1); /* the stall counted against itself */
        world_free(&w);
    }
    /* A suspicion whose deadline passes during the stall, refuted meanwhile: the refutation
     * waiting unread wins; the suspect is never declared Dead. */
    for (uint64_t seed = 91; seed < 96; seed++) {
        world_t w;
        world_init(&w, 3, seed, NULL);
        assert_true(RUN_UNTIL(&w, 10000, converged(&w)) >= 0);
        run_for(&w, 2000);
        w.n[2].partitioned = 1;
        assert_true(RUN_UNTIL(&w, 10000, status_of(&w, 0, 2) == PUL_MEMBER_SUSPECT &&
                                             status_of(&w, 1, 2) == PUL_MEMBER_SUSPECT) >= 0);
        w.n[2].partitioned = 0;
        stall(&w, 0, 2500); /* past node 0's suspicion deadline (2 s with these timings) */
        assert_true(member_inc(&w, 1, 2) > 0); /* node 2 refuted while node 0 was stalled */
        assert_true(RUN_UNTIL(&w, 30000, converged(&w)) >= 0);
        assert_int_equal(w.n[0].declared_dead[2], 0);
        assert_int_equal(w.n[0].seen[2], PUL_MEMBER_ALIVE);
        world_free(&w);
    }
}

static void
test_awareness_under_loss(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, MAXN, 51, NULL);
    if (RUN_UNTIL(&w, 10000, converged(&w)) < 0) dump(&w);
    for (int i = 0; i < MAXN; i++) {
        assert_int_equal(pul__swim_awareness(w.n[i].s), 0);
    }
    /* Node 0 is starved: most packets to it are lost, so its probes fail and nacks go
     * missing; its awareness rises and its probes slow down. */
    w.n[0].in_loss_pct = 70;
    run_for(&w, 20000);
    print_message("awareness of the starved node: max %u\n", w.n[0].max_awareness);
    assert_true(w.n[0].max_awareness >= 1);
    /* Healed, it comes back down. */
    w.n[0].in_loss_pct = 0;
    long t = RUN_UNTIL(&w, 60000, pul__swim_awareness(w.n[0].s) == 0 && converged(&w));
    assert_true(t >= 0);
    world_free(&w);
}

static void
test_bad_input(void **state)
{
    (void)state;
    world_t w;
    world_init(&w, 3, 61, NULL);
    uint8_t junk[] = {0x85, 0xa1, 'v', 0x01, 0xff};
    assert_int_equal(pul__swim_recv(w.n[0].s, junk, sizeof junk, w.now), PUL_EPROTO);
    assert_int_not_equal(pul__swim_sync_recv(w.n[0].s, junk, sizeof junk, 1 << 20, w.now), 0);
    assert_int_equal(pul__swim_bad_packets(w.n[0].s), 2);
    /* Still works afterwards. */
    assert_true(RUN_UNTIL(&w, 10000, converged(&w)) >= 0);
    world_free(&w);
}

static void
test_registry_unit(void **state)
{
    (void)state;
    pul__registry_t r;
    pul__registry_init(&r);
    pul__reg_entry_t e = {.node = {2, 0}, .actor = {2, 1}, .ver = 3, .live = 1, .name = "a/b"};
    assert_int_equal(pul__registry_apply(&r, &e), 1);
    assert_int_equal(pul__registry_apply(&r, &e), 0); /* same version */
    e.ver = 2;
    e.live = 0;
    assert_int_equal(pul__registry_apply(&r, &e), 0); /* older */
    pul__reg_entry_t f = {.node = {1, 0}, .actor = {1, 1}, .ver = 1, .live = 1, .name = "a/b"};
    assert_int_equal(pul__registry_apply(&r, &f), 1);
    pul_instance_t in[4];
    assert_int_equal(pul__registry_lookup(&r, "a/b", NULL, NULL, in, 4), 2);
    assert_int_equal(in[0].node_id.hi, 1);
    assert_int_equal(in[1].node_id.hi, 2);
    e.ver = 4;
    assert_int_equal(pul__registry_apply(&r, &e), 1); /* tombstone */
    assert_int_equal(pul__registry_lookup(&r, "a/b", NULL, NULL, in, 4), 1);
    pul__registry_drop_node(&r, f.node);
    assert_int_equal(pul__registry_lookup(&r, "a/b", NULL, NULL, in, 4), 0);
    assert_int_equal(pul__registry_lookup(&r, "x/y", NULL, NULL, in, 4), 0);
    pul__registry_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_registry_unit, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_converge, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_killed_declared_dead, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_false_suspicion_refuted, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_leave, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_registry_propagation, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_registry_late_join, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_stalled_node_judges_nobody, pul_test_setup,
                                        pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_awareness_under_loss, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_join_gossiped_at_once, pul_test_setup, pul_test_teardown),
    };
    if (getenv("TEST_FILTER") != NULL) {
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
static void __attribute__((unused))
dump(world_t *w)
{
    for (int i = 0; i < w->nn; i++) {
        fprintf(stderr, "node %d (aw %u, joined %d):", i, pul__swim_awareness(w->n[i].s),
                pul__swim_joined(w->n[i].s));
        for (int j = 0; j < w->nn; j++) {
            fprintf(stderr, " %d:%d/%lu", j, status_of(w, i, j),
                    (unsigned long)member_inc(w, i, j));
        }
        fprintf(stderr, "\n");
    }
}
