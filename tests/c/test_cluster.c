/* test_cluster.c — membership over the real transport: systems in one process on 127.0.0.1:0
 * joining by seeds; names resolvable everywhere and callable; a graceful shutdown seen as Left; a
 * frozen node seen Dead with its names gone; head-node mode with two workers. Skipped while the
 * library is built without a transport (pul_system_new refuses listen_addr). */
#include <stdlib.h>
#include <unistd.h>

#include "pul_test.h"
#include "actor/actor.h"
#include "cluster/cluster.h"

#define MAXN 4

static pul_system_t *sys[MAXN];
static pul_id_t ids[MAXN];
static char addrs[MAXN][PUL_ADDR_MAX + 1];
static const char *seed_list[1];

/* Start system i; head < 0: gossip with system 0 as seed; head == i: the head; else a worker
 * of system head. Returns 0, or PUL_EINVAL when the library has no transport. */
static int default_timings;

static int
start(int i, int head)
{
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    if (!default_timings) {
        pul_test_fast_timing(&cfg.timing);
    }
    cfg.listen_addr = "127.0.0.1:0";
    if (head < 0 && i > 0) {
        seed_list[0] = addrs[0];
        cfg.seeds = seed_list;
        cfg.nseeds = 1;
    } else if (head == i) {
        cfg.is_head_node = 1;
    } else if (head >= 0) {
        cfg.head_addr = addrs[head];
    }
    int rc = pul_system_new(&cfg, &sys[i]);
    if (rc != 0) {
        return rc;
    }
    ids[i] = pul_system_node_id(sys[i]);
    snprintf(addrs[i], sizeof addrs[i], "%s", pul_system_addr(sys[i]));
    return 0;
}

static int
status_in(int i, int j)
{
    return pul_test_status_of(sys[i], ids[j]);
}

static int
all_alive(int n)
{
    for (int i = 0; i < n; i++) {
        if (sys[i] != NULL && pul_test_count_alive(sys[i]) != n) {
            return 0;
        }
    }
    return 1;
}

/* Every running system other than j (and other than skip) sees j in st. */
static int
all_see(int n, int j, int skip, int st)
{
    for (int i = 0; i < n; i++) {
        if (i != j && i != skip && sys[i] != NULL && status_in(i, j) != st) {
            return 0;
        }
    }
    return 1;
}

static int
resolves(int n, int skip, const char *name, int want)
{
    for (int i = 0; i < n; i++) {
        if (i != skip && sys[i] != NULL && pul_resolve_name(sys[i], name, NULL, 0) != want) {
            return 0;
        }
    }
    return 1;
}

static pul_id_t
spawn_named(int i, const char *name)
{
    return pul_test_spawn_echo(sys[i], name);
}

static void
silence_on_core(void *arg)
{
    pul__cluster_silence(((pul_system_t *)arg)->cluster);
}

/* Freeze system i's membership: it stops answering and gossiping, as a hung process would. */
static void
silence(int i)
{
    pul_test_on_core(sys[i], silence_on_core, sys[i]);
}

static void
test_gossip_cluster(void **state)
{
    (void)state;
    int rc = start(0, -1);
    if (rc == PUL_EINVAL) {
        skip(); /* built without the transport */
    }
    assert_int_equal(rc, 0);
    for (int i = 1; i < MAXN; i++) {
        assert_int_equal(start(i, -1), 0);
    }
    long t = WAIT_FOR(10000, all_alive(MAXN));
    print_message("%d systems converged in %ld ms\n", MAXN, t);
    assert_true(t >= 0);

    pul_id_t a1 = spawn_named(1, "services/echo");
    t = WAIT_FOR(5000, resolves(MAXN, -1, "services/echo", 1));
    print_message("name resolvable on all in %ld ms\n", t);
    assert_true(t >= 0);
    pul_instance_t in[4];
    assert_int_equal(pul_resolve_name(sys[3], "services/echo", in, 4), 1);
    assert_true(pul_id_eq(in[0].actor_id, a1));
    assert_true(pul_id_eq(in[0].node_id, ids[1]));
    pul_id_t node;
    assert_int_equal(pul_actor_node(sys[0], a1, &node), 0);
    assert_true(pul_id_eq(node, ids[1]));
    /* The resolved instance answers a call from another system. */
    tans_t ans;
    assert_int_equal(task_ask(sys[0], in[0].actor_id, "ping", "hello", 5000, &ans), 0);
    assert_string_equal(ans.data, "hello");

    /* A graceful shutdown is seen as Left. */
    pul_system_shutdown(sys[3]);
    sys[3] = NULL;
    t = WAIT_FOR(5000, all_see(MAXN, 3, -1, PUL_MEMBER_LEFT));
    print_message("gracefully shut down system seen Left in %ld ms\n", t);
    assert_true(t >= 0);

    /* A frozen system is declared Dead and its names vanish. */
    spawn_named(2, "services/echo");
    assert_true(WAIT_FOR(5000, resolves(3, -1, "services/echo", 2)) >= 0);
    silence(2);
    t = WAIT_FOR(10000, all_see(3, 2, 2, PUL_MEMBER_DEAD) &&
                            resolves(3, 2, "services/echo", 1));
    print_message("frozen system seen Dead, names gone, in %ld ms\n", t);
    assert_true(t >= 0);

    for (int i = 0; i < MAXN; i++) {
        pul_system_shutdown(sys[i]);
        sys[i] = NULL;
    }
}

/* A process killed outright refuses connections: Dead fast, through the refusal path. */
static void
test_killed_system(void **state)
{
    (void)state;
    int rc = start(0, -1);
    if (rc == PUL_EINVAL) {
        skip();
    }
    assert_int_equal(rc, 0);
    assert_int_equal(start(1, -1), 0);
    assert_int_equal(start(2, -1), 0);
    assert_true(WAIT_FOR(10000, all_alive(3)) >= 0);
    /* Freeze its membership first (no leave), then close everything: its port refuses. */
    silence(2);
    pul_system_shutdown(sys[2]);
    sys[2] = NULL;
    long t = WAIT_FOR(10000, all_see(3, 2, 2, PUL_MEMBER_DEAD));
    print_message("killed system seen Dead in %ld ms (probe 100 ms)\n", t);
    assert_true(t >= 0);
    pul_system_shutdown(sys[0]);
    pul_system_shutdown(sys[1]);
    sys[0] = sys[1] = NULL;
}

/* The same with the default timings: the real detection time of the shipped profile. */
static void
test_killed_system_default_timings(void **state)
{
    (void)state;
    default_timings = 1;
    int rc = start(0, -1);
    if (rc == PUL_EINVAL) {
        default_timings = 0;
        skip();
    }
    assert_int_equal(rc, 0);
    assert_int_equal(start(1, -1), 0);
    assert_int_equal(start(2, -1), 0);
    assert_int_equal(start(3, -1), 0);
    default_timings = 0;
    assert_true(WAIT_FOR(10000, all_alive(4)) >= 0);
    silence(3);
    pul_system_shutdown(sys[3]);
    sys[3] = NULL;
    long t = WAIT_FOR(20000, all_see(4, 3, 3, PUL_MEMBER_DEAD));
    print_message("killed system seen Dead by all in %ld ms (default timings)\n", t);
    assert_true(t >= 0);
    for (int i = 0; i < 3; i++) {
        pul_system_shutdown(sys[i]);
        sys[i] = NULL;
    }
}

static void
test_head_mode(void **state)
{
    (void)state;
    int rc = start(0, 0);
    if (rc == PUL_EINVAL) {
        skip();
    }
    assert_int_equal(rc, 0);
    assert_int_equal(start(1, 0), 0);
    assert_int_equal(start(2, 0), 0);
    long t = WAIT_FOR(10000, all_alive(3));
    print_message("head + 2 workers converged in %ld ms\n", t);
    assert_true(t >= 0);
    pul_id_t a = spawn_named(1, "services/echo");
    assert_true(WAIT_FOR(5000, resolves(3, -1, "services/echo", 1)) >= 0);
    pul_instance_t in[2];
    assert_int_equal(pul_resolve_name(sys[2], "services/echo", in, 2), 1);
    assert_true(pul_id_eq(in[0].actor_id, a));
    /* Worker 2 calls worker 1 directly. */
    tans_t ans;
    assert_int_equal(task_ask(sys[2], a, "ping", "hi", 5000, &ans), 0);
    assert_string_equal(ans.data, "hi");
    /* A worker that stops heartbeating is declared Dead by the head; the other follows. */
    silence(1);
    t = WAIT_FOR(10000, all_see(3, 1, 1, PUL_MEMBER_DEAD) && resolves(3, 1, "services/echo", 0));
    print_message("silent worker declared Dead in %ld ms\n", t);
    assert_true(t >= 0);
    for (int i = 0; i < 3; i++) {
        pul_system_shutdown(sys[i]);
        sys[i] = NULL;
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gossip_cluster, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_killed_system, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_killed_system_default_timings, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_head_mode, pul_test_setup, pul_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
