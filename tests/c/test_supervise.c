/* test_supervise.c — supervision timing on the fake clock: backoff doubles, is capped, gives up
 * after max_restarts, the name is unregistered, queued mail survives a restart. */
#include <unistd.h>

#include "pul_test.h"
#include "core/clock.h"
#include "actor/actor.h"

typedef struct {
    tcount_t built;
    tcount_t freed;
    tcount_t handled;
} world_t;

static void *
factory(void *arg)
{
    world_t *w = arg;
    tcount_add(&w->built, 1);
    return w;
}

static void
free_state(void *state)
{
    world_t *w = state;
    tcount_add(&w->freed, 1);
}

static int
receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    world_t *w = state;
    tcount_add(&w->handled, 1);
    (void)ctx;
    return strcmp(pul_msg_type(msg), "fail") == 0 ? -1 : 0;
}

static const pul_actor_vtable_t vt = {
    .receive = receive, .free_state = free_state, .factory = factory};

typedef struct {
    pul_system_t *sys;
    pul_id_t id;
    uint64_t backoff;
    int found;
    tcount_t done;
} probe_t;

static void
probe_fn(void *arg)
{
    probe_t *p = arg;
    pul__actor_t *a = pul__actor_get(p->sys, p->id);
    p->found = a != NULL;
    if (a != NULL) {
        p->backoff = a->last_backoff_ms;
        pul__actor_unref(a);
    }
    tcount_add(&p->done, 1);
}

static uint64_t
last_backoff(pul_system_t *sys, pul_id_t id, int *found)
{
    probe_t p = {.sys = sys, .id = id};
    tcount_init(&p.done);
    assert_int_equal(pul_system_post(sys, probe_fn, &p), 0);
    tcount_wait(&p.done, 1);
    tcount_destroy(&p.done);
    *found = p.found;
    return p.backoff;
}

static void
fire_and_forget(pul_system_t *sys, pul_id_t id, const char *type)
{
    tans_t a;
    (void)task_ask(sys, id, type, NULL, 0, &a);
}

static void
test_backoff_and_give_up(void **state)
{
    (void)state;
    pul__clock_fake(1, 1000000);
    pul_system_t *sys = NULL;
    assert_int_equal(pul_system_new(NULL, &sys), 0);
    world_t w;
    tcount_init(&w.built);
    tcount_init(&w.freed);
    tcount_init(&w.handled);
    pul_actor_vtable_t v = vt;
    v.factory_arg = &w;
    pul_spawn_opts_t o;
    pul_spawn_opts_init(&o);
    o.name = "sup/worker";
    o.restart_policy = PUL_RESTART_ON_FAILURE;
    o.max_restarts = 4;
    o.min_backoff_s = 0.1;
    o.max_backoff_s = 0.3;
    pul_id_t id;
    assert_int_equal(pul_spawn(sys, &v, NULL, &o, &id), 0);
    assert_int_equal(tcount_wait(&w.built, 1), 1);

    /* Nominal backoffs 100, 200, 300 (capped), 300, each within +-25%. */
    const uint64_t nominal[] = {100, 200, 300, 300};
    for (int i = 0; i < 4; i++) {
        tans_t a;
        assert_int_equal(task_ask(sys, id, "fail", NULL, 0, &a), PUL_EACTOR);
        assert_int_equal(a.kind, PUL_ERRKIND_SYSTEM);
        int found;
        uint64_t b = last_backoff(sys, id, &found);
        assert_true(found);
        assert_in_range(b, nominal[i] * 3 / 4, nominal[i] * 5 / 4);
        /* Mail sent while restarting is kept and handled by the next instance. */
        tans_t q;
        memset(&q, 0, sizeof q);
        tcount_init(&q.done);
        assert_int_equal(pul_ask(sys, id, pul_msg_new("ok", NULL, 0), 0, tans_cb, &q, NULL), 0);
        pul__clock_advance(b - 1);
        assert_int_equal(pul__system_poke(sys), 0);
        usleep(2000);
        assert_int_equal(tcount_get(&w.built), i + 1); /* not yet */
        pul__clock_advance(1);
        assert_int_equal(pul__system_poke(sys), 0);
        assert_int_equal(tcount_wait(&w.built, i + 2), i + 2);
        assert_int_equal(tcount_wait(&q.done, 1), 1);
        assert_int_equal(q.status, 0);
        tcount_destroy(&q.done);
    }
    /* The fifth failure within the window gives up: stopped, name released. */
    fire_and_forget(sys, id, "fail");
    int found = 1;
    (void)last_backoff(sys, id, &found);
    assert_false(found);
    pul_id_t x;
    assert_int_equal(pul_lookup(sys, "sup/worker", &x), PUL_ENOTFOUND);
    tans_t a;
    assert_int_equal(task_ask(sys, id, "ok", NULL, 0, &a), PUL_ENOTFOUND);
    assert_int_equal(tcount_get(&w.freed), 5);
    pul_system_shutdown(sys);
    pul__clock_fake(0, 0);
    tcount_destroy(&w.built);
    tcount_destroy(&w.freed);
    tcount_destroy(&w.handled);
}

static void
test_window_resets(void **state)
{
    (void)state;
    pul__clock_fake(1, 5000000);
    pul_system_t *sys = NULL;
    assert_int_equal(pul_system_new(NULL, &sys), 0);
    world_t w;
    tcount_init(&w.built);
    tcount_init(&w.freed);
    tcount_init(&w.handled);
    pul_actor_vtable_t v = vt;
    v.factory_arg = &w;
    pul_spawn_opts_t o;
    pul_spawn_opts_init(&o);
    o.restart_policy = PUL_RESTART_ALWAYS;
    o.max_restarts = 1;
    o.restart_window_ms = 1000;
    pul_id_t id;
    assert_int_equal(pul_spawn(sys, &v, NULL, &o, &id), 0);
    for (int i = 0; i < 3; i++) {
        fire_and_forget(sys, id, "fail");
        pul__clock_advance(2000); /* past the backoff and past the window */
        assert_int_equal(pul__system_poke(sys), 0);
        assert_int_equal(tcount_wait(&w.built, i + 2), i + 2);
    }
    int found;
    (void)last_backoff(sys, id, &found);
    assert_true(found);
    pul_system_shutdown(sys);
    assert_int_equal(tcount_get(&w.freed), 4);
    pul__clock_fake(0, 0);
    tcount_destroy(&w.built);
    tcount_destroy(&w.freed);
    tcount_destroy(&w.handled);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_backoff_and_give_up, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_window_resets, pul_test_setup, pul_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
