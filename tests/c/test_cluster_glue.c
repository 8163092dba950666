/* test_cluster_glue.c — the cluster glue (cluster.c, head.c, the name hooks of system.c and the
 * public queries of api.c) on real systems and their core threads, over an in-process network
 * that stands in for the transport: join by seed, names resolvable everywhere, graceful leave
 * seen as Left, an abrupt kill seen as Dead with its names gone and its route dropped, head-node
 * mode (workers that miss heartbeats, a head that dies and a new one at the same address). */
#include <stdlib.h>
#include <unistd.h>

#include "pul_test.h"
#include "actor/actor.h"
#include "cluster/cluster.h"
#include "core/alloc.h"
#include "wire/gossip.h"

/* ---- an in-process network ---------------------------------------------------------------- */

#define MAXN 5

typedef struct {
    pul_system_t *sys;
    char addr[32];
    pul__net_handler_fn h_cluster, h_head;
    void *a_cluster, *a_head;
    pul_id_t id;
    int down; /* abruptly gone: refuses everything, sends nothing */
    int cut;  /* its posts are refused (a network cut on its side); it still answers */
    long refused; /* posts of its that were refused */
    int routed[MAXN]; /* route to node j: 1 set, 0 never, -1 dropped */
    int drops[MAXN];  /* times the route to node j was dropped */
} fnode_t;

static fnode_t fn[MAXN];
static int nfn;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static long g_inflight;

typedef struct {
    fnode_t *src;
    fnode_t *dst;
    char path[64];
    uint8_t *body;
    size_t len;
    pul__net_resp_cb cb;
    void *arg;
    int status;
    uint8_t *resp;
    size_t resp_len;
} freq_t;

static void
deliver_resp(void *arg)
{
    freq_t *r = arg;
    r->cb(r->status, r->resp, r->resp_len, r->arg);
    free(r->body);
    pul__free(r->resp);
    free(r);
    pthread_mutex_lock(&g_mu);
    g_inflight--;
    pthread_mutex_unlock(&g_mu);
}

static void
send_back(freq_t *r)
{
    /* The source keeps running until its requests have called back (the test waits). */
    assert_int_equal(pul_system_post(r->src->sys, deliver_resp, r), 0);
}

static void
run_handler(void *arg)
{
    freq_t *r = arg;
    pthread_mutex_lock(&g_mu);
    int down = r->dst->down;
    pthread_mutex_unlock(&g_mu);
    pul__net_handler_fn h = NULL;
    void *ha = NULL;
    if (strncmp(r->path, "/cluster/", 9) == 0) {
        h = r->dst->h_cluster;
        ha = r->dst->a_cluster;
    } else if (strncmp(r->path, "/head/", 6) == 0) {
        h = r->dst->h_head;
        ha = r->dst->a_head;
    }
    if (down || h == NULL) {
        r->status = PUL_EIO;
    } else {
        r->status = h(ha, r->path, r->body, r->len, &r->resp, &r->resp_len);
    }
    send_back(r);
}

static int
fake_post(void *net, const char *addr, const char *path, const uint8_t *body, size_t len,
          uint64_t timeout_ms, pul__net_resp_cb cb, void *arg)
{
    fnode_t *src = net;
    (void)timeout_ms;
    pthread_mutex_lock(&g_mu);
    if (src->down) {
        pthread_mutex_unlock(&g_mu);
        return PUL_ECLOSED;
    }
    fnode_t *dst = NULL;
    for (int i = 0; i < nfn; i++) {
        if (strcmp(fn[i].addr, addr) == 0 && fn[i].sys != NULL) {
            dst = &fn[i];
        }
    }
    int dst_down = dst == NULL || dst->down || src->cut;
    if (dst_down) {
        src->refused++;
    }
    g_inflight++;
    pthread_mutex_unlock(&g_mu);
    freq_t *r = calloc(1, sizeof *r);
    r->src = src;
    r->dst = dst;
    snprintf(r->path, sizeof r->path, "%s", path);
    r->body = malloc(len ? len : 1);
    memcpy(r->body, body, len);
    r->len = len;
    r->cb = cb;
    r->arg = arg;
    if (dst_down || pul_system_post(dst->sys, run_handler, r) != 0) {
        r->status = PUL_EIO; /* connection refused, on a later turn */
        send_back(r);
    }
    return 0;
}

static int
fake_handle(void *net, const char *prefix, pul__net_handler_fn f, void *arg)
{
    fnode_t *x = net;
    if (strcmp(prefix, "/cluster/") == 0) {
        x->h_cluster = f;
        x->a_cluster = arg;
    } else {
        x->h_head = f;
        x->a_head = arg;
    }
    return 0;
}

static int
node_index(pul_id_t id)
{
    for (int i = 0; i < nfn; i++) {
        if (pul_id_eq(fn[i].id, id)) {
            return i;
        }
    }
    return -1;
}

static int
fake_route_set(void *net, pul_id_t node, const char *addr)
{
    fnode_t *x = net;
    (void)addr;
    pthread_mutex_lock(&g_mu);
    int j = node_index(node);
    if (j >= 0) {
        x->routed[j] = 1;
    }
    pthread_mutex_unlock(&g_mu);
    return 0;
}

static void
fake_route_drop(void *net, pul_id_t node)
{
    fnode_t *x = net;
    pthread_mutex_lock(&g_mu);
    int j = node_index(node);
    if (j >= 0) {
        x->routed[j] = -1;
        x->drops[j]++;
    }
    pthread_mutex_unlock(&g_mu);
}

static const pul__cluster_net_ops_t fake_ops = {fake_post, fake_handle, fake_route_set,
                                                fake_route_drop};

/* ---- helpers ------------------------------------------------------------------------------ */

typedef struct {
    tcount_t done;
    int i;
    int rc;
} job_t;

static void
job_start(void *arg)
{
    job_t *j = arg;
    fnode_t *x = &fn[j->i];
    j->rc = pul__cluster_start_with(x->sys, x, &fake_ops, x->addr, &x->sys->cluster);
    tcount_add(&j->done, 1);
}

static void
job_left(void *arg)
{
    job_t *j = arg;
    tcount_add(&j->done, 1);
}

static void
job_leave(void *arg)
{
    job_t *j = arg;
    pul__cluster_leave(fn[j->i].sys->cluster, job_left, j);
}

static void
job_free(void *arg)
{
    job_t *j = arg;
    pul_system_t *sys = fn[j->i].sys;
    pul__cluster_t *cl = sys->cluster;
    sys->cluster = NULL;
    pul__cluster_free(cl);
    tcount_add(&j->done, 1);
}

static void
job_silence(void *arg)
{
    job_t *j = arg;
    pul__cluster_silence(fn[j->i].sys->cluster);
    tcount_add(&j->done, 1);
}

static void
run_on(int i, void (*f)(void *), job_t *j)
{
    memset(j, 0, sizeof *j);
    tcount_init(&j->done);
    j->i = i;
    assert_int_equal(pul_system_post(fn[i].sys, f, j), 0);
    assert_int_equal(tcount_wait(&j->done, 1), 1);
    tcount_destroy(&j->done);
}

static uint64_t g_hb_timeout_ms = 500;
static uint64_t g_dead_reclaim_ms = 30000;
static uint32_t g_suspicion_mult; /* 0: the default */

static const char *seed_list[1];

/* Start node i: seeds (gossip) or head mode (head < 0: gossip; head == i: the head). */
static void
node_start(int i, int head)
{
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    pul_test_fast_timing(&cfg.timing);
    cfg.timing.heartbeat_timeout_ms = g_hb_timeout_ms;
    cfg.timing.dead_reclaim_ms = g_dead_reclaim_ms;
    if (g_suspicion_mult > 0) {
        cfg.timing.suspicion_mult = g_suspicion_mult;
    }
    fnode_t *x = &fn[i];
    pul_system_t *sys;
    assert_int_equal(pul_system_new(&cfg, &sys), 0);
    pthread_mutex_lock(&g_mu); /* a restarted node: other nodes' posts look it up meanwhile */
    memset(x, 0, sizeof *x);
    snprintf(x->addr, sizeof x->addr, "sim-%d:1", i);
    x->sys = sys;
    x->id = pul_system_node_id(x->sys);
    pthread_mutex_unlock(&g_mu);
    /* The test plays the transport: it sets what pul_system_new refuses without one. */
    snprintf(x->sys->addr, sizeof x->sys->addr, "%s", x->addr);
    if (head < 0) {
        seed_list[0] = fn[0].addr;
        x->sys->cfg.seeds = seed_list;
        x->sys->cfg.nseeds = i == 0 ? 0 : 1;
    } else if (head == i) {
        x->sys->cfg.is_head_node = 1;
    } else {
        x->sys->cfg.head_addr = fn[head].addr;
    }
    job_t j;
    run_on(i, job_start, &j);
    assert_int_equal(j.rc, 0);
}

static void
wait_quiet(void)
{
    for (int k = 0; k < 1000; k++) {
        pthread_mutex_lock(&g_mu);
        long n = g_inflight;
        pthread_mutex_unlock(&g_mu);
        if (n == 0) {
            return;
        }
        usleep(2000);
    }
    fail_msg("requests still in flight");
}

/* Graceful: leave, then free the cluster, then shut the system down. */
static void
node_stop(int i, int graceful)
{
    job_t j;
    if (graceful) {
        run_on(i, job_leave, &j);
    } else {
        pthread_mutex_lock(&g_mu);
        fn[i].down = 1;
        pthread_mutex_unlock(&g_mu);
    }
    run_on(i, job_free, &j);
    /* Requests to and from it call back before its loop goes away. */
    wait_quiet();
    pthread_mutex_lock(&g_mu);
    fn[i].down = 1;
    pthread_mutex_unlock(&g_mu);
    wait_quiet();
    pul_system_shutdown(fn[i].sys);
    pthread_mutex_lock(&g_mu);
    fn[i].sys = NULL;
    pthread_mutex_unlock(&g_mu);
}

static int
status_in(int i, int j)
{
    return pul_test_status_of(fn[i].sys, fn[j].id);
}

static int
count_alive(int i)
{
    return pul_test_count_alive(fn[i].sys);
}

static int
all_alive(int n)
{
    for (int i = 0; i < n; i++) {
        if (count_alive(i) != n) {
            return 0;
        }
    }
    return 1;
}

/* Start nodes 0..n-1 (head < 0: gossip, seeded by node 0; else head mode, node head the head)
 * and wait until every one sees every other Alive; the time it took. */
static long
start_all(int n, int head)
{
    nfn = n;
    for (int i = 0; i < n; i++) {
        node_start(i, head);
    }
    long t = WAIT_FOR(10000, all_alive(n));
    assert_true(t >= 0);
    return t;
}

static pul_id_t
spawn_named(int i, const char *name)
{
    return pul_test_spawn_echo(fn[i].sys, name);
}

static int
resolves_everywhere(const char *name, int want)
{
    for (int i = 0; i < nfn; i++) {
        pul_instance_t in[4];
        if (fn[i].sys != NULL && !fn[i].down && pul_resolve_name(fn[i].sys, name, in, 4) != want) {
            return 0;
        }
    }
    return 1;
}

static void
count_named(const char *name, pul_id_t node, pul_id_t actor, void *arg)
{
    (void)node;
    (void)actor;
    if (strcmp(name, "services/echo") == 0) {
        (*(int *)arg)++;
    }
}

/* Every running node other than j sees j in status st. */
static int
all_see(int j, int st)
{
    for (int i = 0; i < nfn; i++) {
        if (i != j && fn[i].sys != NULL && !fn[i].down && status_in(i, j) != st) {
            return 0;
        }
    }
    return 1;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void
test_gossip_cluster(void **state)
{
    (void)state;
    long t = start_all(4, -1);
    print_message("4 systems converged in %ld ms\n", t);
    pul_member_t ms[8];
    assert_int_equal(pul_members(fn[2].sys, ms, 8), 4);
    assert_true(pul_id_eq(ms[0].node_id, pul_system_node_id(fn[2].sys))); /* self first */
    for (int j = 1; j < nfn; j++) {
        assert_int_equal(fn[0].routed[j], 1);
    }

    /* Names: one instance on node 1, then another on node 2; resolvable everywhere. */
    pul_id_t a1 = spawn_named(1, "services/echo");
    t = WAIT_FOR(5000, resolves_everywhere("services/echo", 1));
    print_message("name resolvable on all in %ld ms\n", t);
    assert_true(t >= 0);
    pul_instance_t in[4];
    assert_int_equal(pul_resolve_name(fn[3].sys, "services/echo", in, 4), 1);
    assert_true(pul_id_eq(in[0].actor_id, a1));
    assert_true(pul_id_eq(in[0].node_id, pul_system_node_id(fn[1].sys)));
    pul_id_t node;
    assert_int_equal(pul_actor_node(fn[0].sys, a1, &node), 0);
    assert_true(pul_id_eq(node, pul_system_node_id(fn[1].sys)));
    pul_id_t a2 = spawn_named(2, "services/echo");
    assert_true(WAIT_FOR(5000, resolves_everywhere("services/echo", 2)) >= 0);
    assert_int_equal(pul_resolve_name(fn[0].sys, "services/echo", in, 4), 2);
    assert_true(in[0].node_id.hi < in[1].node_id.hi ||
                (in[0].node_id.hi == in[1].node_id.hi && in[0].node_id.lo < in[1].node_id.lo));
    int cnt = 0;
    pul_named_foreach(fn[0].sys, count_named, &cnt);
    assert_int_equal(cnt, 2);
    /* A stopped actor's name goes everywhere (tombstone). */
    assert_int_equal(pul_stop(fn[2].sys, a2), 0);
    assert_true(WAIT_FOR(5000, resolves_everywhere("services/echo", 1)) >= 0);
    a2 = spawn_named(2, "services/echo");
    assert_true(WAIT_FOR(5000, resolves_everywhere("services/echo", 2)) >= 0);

    /* Graceful leave of node 3: Left everywhere, route dropped. */
    node_stop(3, 1);
    t = WAIT_FOR(5000, all_see(3, PUL_MEMBER_LEFT));
    print_message("gracefully shut down system seen Left in %ld ms\n", t);
    assert_true(t >= 0);
    assert_int_equal(fn[0].routed[3], -1);

    /* Abrupt kill of node 2: Dead everywhere, its name gone, its route dropped. */
    node_stop(2, 0);
    t = WAIT_FOR(10000, resolves_everywhere("services/echo", 1) && all_see(2, PUL_MEMBER_DEAD));
    print_message("abruptly killed system seen Dead, names gone, in %ld ms\n", t);
    assert_true(t >= 0);
    assert_int_equal(fn[0].routed[2], -1);
    assert_int_equal(fn[1].routed[2], -1);
    assert_int_equal(pul_resolve_name(fn[0].sys, "services/echo", in, 4), 1);
    assert_true(pul_id_eq(in[0].actor_id, a1));
    assert_int_equal(pul_actor_node(fn[0].sys, a2, &node), PUL_ENOTFOUND);

    node_stop(1, 1);
    node_stop(0, 1);
}

static void
test_head_mode(void **state)
{
    (void)state;
    long t = start_all(3, 0); /* node 0 is the head */
    print_message("head + 2 workers converged in %ld ms\n", t);
    pul_id_t a = spawn_named(1, "services/echo");
    spawn_named(0, "services/echo");
    assert_true(WAIT_FOR(5000, resolves_everywhere("services/echo", 2)) >= 0);
    pul_instance_t in[4];
    assert_int_equal(pul_resolve_name(fn[2].sys, "services/echo", in, 4), 2);
    assert_true(pul_id_eq(in[0].actor_id, a) || pul_id_eq(in[1].actor_id, a));
    /* Worker 1 stops heartbeating: the head declares it Dead; worker 2 follows the head. */
    node_stop(1, 0);
    t = WAIT_FOR(10000, all_see(1, PUL_MEMBER_DEAD) && resolves_everywhere("services/echo", 1));
    print_message("silent worker declared Dead by the head and its view in %ld ms\n", t);
    assert_true(t >= 0);
    assert_int_equal(fn[2].routed[1], -1);
    /* A graceful worker is Left at the head at once. */
    node_stop(2, 1);
    assert_true(WAIT_FOR(5000, status_in(0, 2) == PUL_MEMBER_LEFT) >= 0);
    node_stop(0, 1);
}

static void
set_cut(int i, int cut)
{
    pthread_mutex_lock(&g_mu);
    fn[i].cut = cut;
    fn[i].refused = 0;
    pthread_mutex_unlock(&g_mu);
}

static long
refused(int i)
{
    pthread_mutex_lock(&g_mu);
    long n = fn[i].refused;
    pthread_mutex_unlock(&g_mu);
    return n;
}

/* Heartbeats that do not arrive for a while (less than heartbeat_timeout) change nothing at the
 * head; the worker reports its head Suspect meanwhile and Alive again after. */
static void
test_head_missed_heartbeats(void **state)
{
    (void)state;
    g_hb_timeout_ms = 5000; /* 50 heartbeat intervals: "a while" is far shorter */
    start_all(3, 0);
    spawn_named(1, "services/echo");
    assert_true(WAIT_FOR(5000, resolves_everywhere("services/echo", 1)) >= 0);
    set_cut(1, 1);
    /* Two heartbeats refused in a row. */
    assert_true(WAIT_FOR(10000, refused(1) >= 2 && status_in(1, 0) == PUL_MEMBER_SUSPECT) >= 0);
    assert_int_equal(status_in(0, 1), PUL_MEMBER_ALIVE);
    assert_int_equal(status_in(2, 1), PUL_MEMBER_ALIVE);
    assert_true(resolves_everywhere("services/echo", 1));
    assert_int_equal(status_in(1, 2), PUL_MEMBER_ALIVE); /* the worker keeps its view */
    set_cut(1, 0);
    assert_true(WAIT_FOR(10000, status_in(1, 0) == PUL_MEMBER_ALIVE) >= 0);
    assert_int_equal(status_in(0, 1), PUL_MEMBER_ALIVE);
    assert_int_equal(fn[0].routed[1], 1);
    assert_int_equal(fn[2].routed[1], 1);
    assert_true(resolves_everywhere("services/echo", 1));
    for (int i = 2; i >= 0; i--) {
        node_stop(i, 1);
    }
    g_hb_timeout_ms = 500;
}

static int
member_absent(int i, pul_id_t id)
{
    pul_member_t ms[8];
    int n = pul_members(fn[i].sys, ms, 8);
    for (int k = 0; k < n && k < 8; k++) {
        if (pul_id_eq(ms[k].node_id, id)) {
            return 0;
        }
    }
    return 1;
}

/* The head dies: workers keep their view and their peers (names of live workers resolve, routes
 * stay), report the head Suspect then Dead; a new head at the same address gets every worker
 * back and the registry is rebuilt. No worker drops another during the change of head. */
static void
test_head_dies_and_returns(void **state)
{
    (void)state;
    g_hb_timeout_ms = 2000;
    start_all(3, 0);
    pul_id_t a1 = spawn_named(1, "services/echo");
    pul_id_t a2 = spawn_named(2, "services/echo");
    spawn_named(0, "services/head-only");
    assert_true(WAIT_FOR(5000, resolves_everywhere("services/echo", 2) &&
                                   resolves_everywhere("services/head-only", 1)) >= 0);
    pul_id_t old_head = fn[0].id;

    node_stop(0, 0); /* abruptly */
    long t = WAIT_FOR(20000, status_in(1, 0) == PUL_MEMBER_DEAD &&
                                 status_in(2, 0) == PUL_MEMBER_DEAD);
    print_message("workers declared their head Dead in %ld ms\n", t);
    assert_true(t >= 0);
    for (int i = 1; i <= 2; i++) {
        pul_instance_t in[4];
        assert_int_equal(pul_resolve_name(fn[i].sys, "services/echo", in, 4), 2);
        assert_int_equal(pul_resolve_name(fn[i].sys, "services/head-only", in, 4), 0);
        assert_int_equal(status_in(i, 3 - i), PUL_MEMBER_ALIVE);
        assert_int_equal(fn[i].routed[3 - i], 1);
        assert_int_equal(fn[i].routed[0], -1);
    }
    pul_id_t node;
    assert_int_equal(pul_actor_node(fn[1].sys, a2, &node), 0);

    node_start(0, 0); /* a new head (a new node id) at the same address */
    t = WAIT_FOR(20000, all_alive(3) && member_absent(1, old_head) && member_absent(2, old_head));
    print_message("new head has every worker back in %ld ms\n", t);
    assert_true(t >= 0);
    assert_true(WAIT_FOR(5000, resolves_everywhere("services/echo", 2)) >= 0);
    pul_instance_t in[4];
    assert_int_equal(pul_resolve_name(fn[0].sys, "services/echo", in, 4), 2);
    assert_true(pul_id_eq(in[0].actor_id, a1) || pul_id_eq(in[1].actor_id, a1));
    assert_true(pul_id_eq(in[0].actor_id, a2) || pul_id_eq(in[1].actor_id, a2));
    assert_int_equal(pul_resolve_name(fn[1].sys, "services/head-only", in, 4), 0);
    /* Never dropped: the routes between workers stayed through the change of head. */
    assert_int_equal(fn[1].routed[2], 1);
    assert_int_equal(fn[2].routed[1], 1);
    assert_int_equal(fn[1].drops[2], 0);
    assert_int_equal(fn[2].drops[1], 0);
    for (int i = 2; i >= 0; i--) {
        node_stop(i, 1);
    }
    g_hb_timeout_ms = 500;
}

typedef struct {
    int i;
    int status;
    const uint8_t *body;
    size_t len;
} inject_t;

static void
inject_run(void *arg)
{
    inject_t *in = arg;
    fnode_t *x = &fn[in->i];
    uint8_t *resp = NULL;
    size_t rlen = 0;
    in->status = x->h_cluster(x->a_cluster, "/cluster/gossip", in->body, in->len, &resp, &rlen);
    pul__free(resp);
}

/* Deliver a gossip packet from node `from` carrying msg to node i's handler, on its core
 * thread, as the transport would. */
static void
inject(int i, int from, const pul__gmsg_t *msg)
{
    pul__gbuf_t b;
    pul__gbuf_init(&b, 0);
    assert_int_equal(pul__gpacket_begin(&b, fn[from].id, fn[from].addr, 1), 0);
    assert_int_equal(pul__gmsg_encode(&b, msg), 0);
    inject_t in = {.i = i, .body = b.p, .len = b.len};
    pul_test_on_core(fn[i].sys, inject_run, &in);
    pul__gbuf_free(&b);
    assert_int_equal(in.status, 204);
}

static int
entries_of(int i, pul_id_t node)
{
    return pul__cluster_entries_of(fn[i].sys->cluster, node);
}

static int
nobody_keeps(pul_id_t node)
{
    for (int i = 0; i < nfn; i++) {
        if (entries_of(i, node) != 0) {
            return 0;
        }
    }
    return 1;
}

/* Registry entries of nodes this member never knew (heard through gossip about a third node):
 * dropped when a dead message about their node arrives, and otherwise once their node has not
 * become a member within two push-pull rounds (at least dead_reclaim), and not taken back from
 * a peer for a while after; entries of members stay. */
static void
test_unknown_node_names(void **state)
{
    (void)state;
    g_dead_reclaim_ms = 1500; /* with push_pull 1 s: unknown nodes' names go after 2 s */
    start_all(3, -1);
    spawn_named(2, "services/echo");
    assert_true(WAIT_FOR(5000, resolves_everywhere("services/echo", 1)) >= 0);

    pul_id_t ghost = {0x6768, 1}, gone = {0x6768, 2};
    pul__gmsg_t m = {.t = PUL__G_NAME, .node = ghost, .by = {7, 7}, .inc = 1, .live = 1};
    snprintf(m.name, sizeof m.name, "services/ghost");
    inject(0, 1, &m);
    assert_int_equal(entries_of(0, ghost), 1);
    /* Known but not resolvable: its node is not a member. */
    assert_int_equal(pul_resolve_name(fn[0].sys, "services/ghost", NULL, 0), 0);

    /* A dead message about an unknown node drops its names at once. */
    m.node = gone;
    inject(0, 1, &m);
    assert_int_equal(entries_of(0, gone), 1);
    pul__gmsg_t d = {.t = PUL__G_DEAD, .node = gone, .by = fn[1].id, .inc = 0};
    inject(0, 1, &d);
    assert_int_equal(entries_of(0, gone), 0);

    /* The ghost never becomes a member: its names go everywhere (gossip spread them). */
    long t = WAIT_FOR(20000, nobody_keeps(ghost) && nobody_keeps(gone));
    print_message("names of a node never known dropped everywhere in %ld ms\n", t);
    assert_true(t >= 0);
    /* A peer that still sends them does not bring them back for a while. */
    m.node = ghost;
    inject(1, 0, &m);
    assert_int_equal(entries_of(1, ghost), 0);
    assert_true(resolves_everywhere("services/echo", 1));
    assert_int_equal(entries_of(0, fn[2].id), 1);
    for (int i = 0; i < nfn; i++) {
        node_stop(i, 1);
    }
    g_dead_reclaim_ms = 30000;
}

/* A node that freezes (answers 503, sends nothing, refuses nothing) is declared Dead by probe
 * timeouts alone; its shutdown afterwards skips the leave. */
static void
test_silenced_node(void **state)
{
    (void)state;
    start_all(3, -1);
    spawn_named(2, "services/echo");
    assert_true(WAIT_FOR(5000, resolves_everywhere("services/echo", 1)) >= 0);
    job_t j;
    run_on(2, job_silence, &j);
    long t = WAIT_FOR(10000, all_see(2, PUL_MEMBER_DEAD) &&
                                 pul_resolve_name(fn[0].sys, "services/echo", NULL, 0) == 0 &&
                                 pul_resolve_name(fn[1].sys, "services/echo", NULL, 0) == 0);
    print_message("frozen system seen Dead in %ld ms\n", t);
    assert_true(t >= 0);
    for (int i = 0; i < nfn; i++) {
        node_stop(i, 1);
    }
}

typedef struct {
    tcount_t done;
    unsigned ms;
} stall_t;

static void
job_stall(void *arg)
{
    stall_t *st = arg;
    usleep(st->ms * 1000u); /* the core thread does not run: a starved process */
    tcount_add(&st->done, 1);
}

/* A node whose core thread stalls (CPU starvation) long enough to be suspected, not to be
 * declared Dead: it refutes when it runs again, and no node ever drops a route or a name on the
 * way, the stalled one included (it accuses nobody on the time it did not run). */
static void
test_stalled_node_keeps_routes_and_names(void **state)
{
    (void)state;
    g_suspicion_mult = 20; /* 2 s: far above the stall, whatever the machine's load */
    start_all(3, -1);
    spawn_named(2, "services/echo");
    assert_true(WAIT_FOR(5000, resolves_everywhere("services/echo", 1)) >= 0);
    stall_t st = {.ms = 400};
    tcount_init(&st.done);
    assert_int_equal(pul_system_post(fn[2].sys, job_stall, &st), 0);
    long t = WAIT_FOR(5000, status_in(0, 2) == PUL_MEMBER_SUSPECT ||
                                status_in(1, 2) == PUL_MEMBER_SUSPECT);
    assert_true(t >= 0); /* its peers noticed the silence */
    assert_int_equal(tcount_wait(&st.done, 1), 1);
    t = WAIT_FOR(10000, all_alive(3) && resolves_everywhere("services/echo", 1));
    print_message("stalled node refuted; all Alive %ld ms after the stall\n", t);
    assert_true(t >= 0);
    int drops = 0;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < nfn; i++) {
        for (int j = 0; j < nfn; j++) {
            drops += fn[i].drops[j];
        }
    }
    pthread_mutex_unlock(&g_mu);
    assert_int_equal(drops, 0);
    tcount_destroy(&st.done);
    for (int i = 0; i < nfn; i++) {
        node_stop(i, 1);
    }
    g_suspicion_mult = 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gossip_cluster, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_head_mode, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_head_missed_heartbeats, pul_test_setup,
                                        pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_head_dies_and_returns, pul_test_setup,
                                        pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_silenced_node, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_stalled_node_keeps_routes_and_names,
                                        pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_node_names, pul_test_setup,
                                        pul_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
