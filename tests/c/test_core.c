/* test_core.c — errors, allocator hooks, ids, the clock, the loop's door and timers. */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "pul_test.h"
#include "actor/actor.h"
#include "core/alloc.h"
#include "core/clock.h"

static void
test_errors(void **state)
{
    (void)state;
    assert_string_equal(pul_strerror(0), "success");
    assert_string_equal(pul_strerror(PUL_ENOMEM), "out of memory");
    assert_string_equal(pul_strerror(PUL_EINTERNAL), "internal error");
    assert_string_equal(pul_strerror(-999), "unknown error");
    for (int e = PUL_EINTERNAL; e <= 0; e++) {
        assert_non_null(pul_strerror(e));
        assert_string_not_equal(pul_strerror(e), "unknown error");
    }
}

static void
test_alloc(void **state)
{
    (void)state;
    long base = pul_mem_live();
    void *p = pul__malloc(10);
    assert_int_equal(pul_mem_live(), base + 1);
    p = pul__realloc(p, 100);
    assert_non_null(p);
    assert_int_equal(pul_mem_live(), base + 1);
    pul__free(p);
    pul__free(NULL);
    assert_int_equal(pul_mem_live(), base);
    pul_mem_fail_after(2);
    void *a = pul__malloc(1);
    void *b = pul__calloc(1, 1);
    void *c = pul__malloc(1);
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c);
    pul__free(a);
    pul__free(c);
    pul_mem_fail_after(0);
    assert_int_equal(pul_mem_live(), base);
}

static void
test_ids(void **state)
{
    (void)state;
    pul_id_t a = pul_id_random(), b = pul_id_random();
    assert_false(pul_id_is_zero(a));
    assert_false(pul_id_eq(a, b));
    char buf[33];
    pul_id_format(a, buf);
    assert_int_equal(strlen(buf), 32);
    pul_id_t c;
    assert_int_equal(pul_id_parse(buf, 32, &c), 0);
    assert_true(pul_id_eq(a, c));
    assert_int_equal(pul_id_parse("ff", 2, &c), 0);
    assert_true(c.hi == 0 && c.lo == 0xff);
    assert_int_equal(pul_id_parse("xyz", 3, &c), PUL_EINVAL);
    assert_int_equal(pul_id_parse("", 0, &c), PUL_EINVAL);
    assert_int_equal(pul_id_parse("000000000000000000000000000000000", 33, &c), PUL_EINVAL);
    pul_id_t z = {0, 0};
    assert_true(pul_id_is_zero(z));
}

static void
test_fake_clock(void **state)
{
    (void)state;
    pul__clock_fake(1, 500);
    assert_int_equal(pul__now_ms(), 500);
    pul__clock_advance(25);
    assert_int_equal(pul__now_ms(), 525);
    pul__clock_fake(0, 0);
    assert_true(pul__now_ms() > 0);
}

typedef struct {
    pul_system_t *sys;
    tcount_t ran;
    pul_timer_t *t;
    int on_core;
} post_t;

static void
post_fn(void *arg)
{
    post_t *p = arg;
    p->on_core = pul_system_on_core_thread(p->sys);
    tcount_add(&p->ran, 1);
}

static void
tick(void *arg)
{
    post_t *p = arg;
    tcount_add(&p->ran, 1);
    if (tcount_get(&p->ran) == 3) {
        pul_timer_stop(p->t); /* stopping from inside the callback is allowed */
    }
}

static void
start_timer(void *arg)
{
    post_t *p = arg;
    assert_int_equal(pul_timer_start(p->sys, 5, 5, tick, p, &p->t), 0);
}

static void
leak_timer(void *arg)
{
    post_t *p = arg;
    pul_timer_t *t;
    assert_int_equal(pul_timer_start(p->sys, 100000, 0, tick, p, &t), 0);
    tcount_add(&p->ran, 1);
}

static void
test_post_and_timers(void **state)
{
    (void)state;
    long base = pul_mem_live();
    pul_system_t *sys = NULL;
    assert_int_equal(pul_system_new(NULL, &sys), 0);
    assert_false(pul_system_on_core_thread(sys));
    post_t p = {.sys = sys};
    tcount_init(&p.ran);
    assert_int_equal(pul_system_post(sys, post_fn, &p), 0);
    assert_int_equal(tcount_wait(&p.ran, 1), 1);
    assert_true(p.on_core);
    assert_int_equal(pul_system_post(sys, start_timer, &p), 0);
    assert_int_equal(tcount_wait(&p.ran, 3), 3);
    usleep(30000);
    assert_int_equal(tcount_get(&p.ran), 3);
    /* A timer still armed at shutdown is released by the shutdown. */
    assert_int_equal(pul_system_post(sys, leak_timer, &p), 0);
    assert_int_equal(tcount_wait(&p.ran, 4), 4);
    pul_system_shutdown(sys);
    pul_system_shutdown(NULL);
    tcount_destroy(&p.ran);
    assert_int_equal(pul_mem_live(), base);
}

static void *
post_from_thread(void *arg)
{
    post_t *p = arg;
    assert_int_equal(pul_system_post(p->sys, post_fn, p), 0);
    return NULL;
}

/* pul_system_hold/release: what a holding thread posts runs once it releases (no wake-up is
 * lost), or after a bound if it does not release; another thread's post wakes the loop even when
 * it finds the holder's work queued; a system shut down while held leaves no hold behind for a
 * later system. */
static void
test_hold_release(void **state)
{
    (void)state;
    long base = pul_mem_live();
    pul_system_t *sys = NULL;
    assert_int_equal(pul_system_new(NULL, &sys), 0);
    post_t p = {.sys = sys};
    tcount_init(&p.ran);

    pul_system_hold(sys);
    pul_system_hold(sys); /* nests */
    assert_int_equal(pul_system_post(sys, post_fn, &p), 0);
    assert_int_equal(pul_system_post(sys, post_fn, &p), 0);
    pul_system_release(sys);
    pul_system_release(sys);
    assert_int_equal(tcount_wait(&p.ran, 2), 2);

    pul_system_hold(sys);
    assert_int_equal(pul_system_post(sys, post_fn, &p), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, post_from_thread, &p), 0);
    pthread_join(th, NULL);
    assert_int_equal(tcount_wait(&p.ran, 4), 4); /* still held here */
    pul_system_release(sys);
    pul_system_release(sys); /* unmatched: nothing */

    /* A holder that waits, still holding, for what it posted (a method blocking the home loop
     * until what it sent has been acted on): the door timer wakes the loop after
     * PUL__LOOP_HOLD_MAX_US. Before, this waited until the release, i.e. forever. Again after
     * the loop drained: the timer is armed anew. */
    pul_system_hold(sys);
    long held_base = tcount_get(&p.ran);
    for (long k = 1; k <= 3; k++) {
        assert_int_equal(pul_system_post(sys, post_fn, &p), 0);
        assert_int_equal(tcount_wait(&p.ran, held_base + k), held_base + k);
    }
    pul_system_release(sys);

    /* shut down while held, then a fresh system (maybe at the same address): not held */
    pul_system_hold(sys);
    assert_int_equal(pul_system_post(sys, post_fn, &p), 0);
    pul_system_shutdown(sys);
    assert_int_equal(pul_system_new(NULL, &sys), 0);
    p.sys = sys;
    long before = tcount_get(&p.ran);
    assert_int_equal(pul_system_post(sys, post_fn, &p), 0);
    assert_int_equal(tcount_wait(&p.ran, before + 1), before + 1);
    pul_system_shutdown(sys);
    pul_system_hold(NULL);
    pul_system_release(NULL);
    tcount_destroy(&p.ran);
    assert_int_equal(pul_mem_live(), base);
}


/* ---- borrowing the loop (pul__loop_borrow) ------------------------------------------------- */

static tcount_t borrow_ran;

static void
borrow_task(pul__task_t *t)
{
    (void)t;
    tcount_add(&borrow_ran, 1);
}

static void
borrow_timer(pul__tmr_t *t)
{
    (void)t;
    tcount_add(&borrow_ran, 10);
}

static tcount_t borrow_gate;

static void
borrow_block(void *arg)
{
    (void)arg;
    tcount_add(&borrow_ran, 100);
    tcount_wait(&borrow_gate, 1);
}

/* Borrow the idle loop, retrying while its thread finishes a turn (a borrower never waits). */
static int
borrow_idle(pul_system_t *sys)
{
    for (int i = 0; i < 500; i++) {
        if (pul__loop_borrow(&sys->loop)) {
            return 1;
        }
        usleep(2000);
    }
    return 0;
}

/* A thread that borrows the sleeping loop stands in for the core thread; what it leaves for the
 * loop (a deferred task, a timer due before the armed one) runs once it lets go, without
 * anyone else waking the loop. A busy loop, one with queued work, or a second borrow is refused
 * at once. */
static void
test_loop_borrow(void **state)
{
    (void)state;
    long base = pul_mem_live();
    tcount_init(&borrow_ran);
    tcount_init(&borrow_gate);
    pul_system_t *sys = NULL;
    assert_int_equal(pul_system_new(NULL, &sys), 0);
    assert_true(borrow_idle(sys));
    assert_true(pul_system_on_core_thread(sys));
    assert_false(pul__loop_borrow(&sys->loop)); /* not twice */
    pul__task_t task = {.run = borrow_task};
    pul__loop_defer(&sys->loop, &task);
    pul__tmr_t tmr = {.cb = borrow_timer};
    assert_int_equal(pul__timer_arm(&sys->loop, &tmr, pul__now_ms() + 20), 0);
    pul__loop_unborrow(&sys->loop);
    assert_false(pul_system_on_core_thread(sys));
    assert_int_equal(tcount_wait(&borrow_ran, 11), 11); /* the task, then the timer */

    /* A busy loop is not borrowed. */
    assert_int_equal(pul_system_post(sys, borrow_block, NULL), 0);
    assert_int_equal(tcount_wait(&borrow_ran, 111), 111);
    assert_false(pul__loop_borrow(&sys->loop));
    tcount_add(&borrow_gate, 1);

    /* Nor one with work queued for it (here: held by this thread's door). */
    assert_true(borrow_idle(sys));
    pul__loop_unborrow(&sys->loop);
    post_t p = {.sys = sys};
    tcount_init(&p.ran);
    pul_system_hold(sys);
    assert_int_equal(pul_system_post(sys, post_fn, &p), 0);
    assert_false(pul__loop_borrow(&sys->loop));
    pul_system_release(sys);
    assert_int_equal(tcount_wait(&p.ran, 1), 1);
    assert_true(p.on_core);

    pul_system_shutdown(sys);
    tcount_destroy(&p.ran);
    tcount_destroy(&borrow_gate);
    tcount_destroy(&borrow_ran);
    assert_int_equal(pul_mem_live(), base);
}

static void
test_system_new_nomem(void **state)
{
    (void)state;
    long base = pul_mem_live();
    for (long n = 1; n < 10; n++) {
        pul_system_t *sys = NULL;
        pul_mem_fail_after(n);
        int rc = pul_system_new(NULL, &sys);
        pul_mem_fail_after(0);
        if (rc == 0) {
            pul_system_shutdown(sys);
            break;
        }
        assert_int_equal(rc, PUL_ENOMEM);
        assert_null(sys);
        assert_int_equal(pul_mem_live(), base);
    }
    assert_int_equal(pul_mem_live(), base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_alloc),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_fake_clock),
        cmocka_unit_test(test_post_and_timers),
        cmocka_unit_test(test_hold_release),
        cmocka_unit_test(test_loop_borrow),
        cmocka_unit_test(test_system_new_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
