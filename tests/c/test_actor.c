/* test_actor.c — actors end to end: ask/tell/reply, names, mailbox order and capacity,
 * deadlines, cancel, stop, deferred replies from other threads, shutdown with calls in flight. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "pul_test.h"

/* ---- a test actor: echo / count / fail / defer / block ---- */

typedef struct {
    long seen;
    long order_errors;
    long last;
    tcount_t *gate; /* "block" waits for gate >= 1 */
    tcount_t *stopped;
    pul_reply_t *deferred;
    tcount_t *ended; /* "defer_end": pul_ctx_on_end ran, with end_status */
    int end_status;
} tact_t;

static void
tact_on_end(int status, void *arg)
{
    tact_t *t = arg;
    t->end_status = status;
    tcount_add(t->ended, 1);
}

static int
tact_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    tact_t *t = state;
    const char *type = pul_msg_type(msg);
    size_t len;
    const char *d = pul_msg_data(msg, &len);
    t->seen++;
    if (strcmp(type, "echo") == 0) {
        pul_msg_t *r = pul_msg_new("echo", d, len);
        if (r == NULL || pul_ctx_reply(ctx, r) != 0) {
            pul_msg_unref(r);
        }
    } else if (strcmp(type, "seq") == 0) {
        long v = strtol(d, NULL, 10);
        if (v != t->last + 1) {
            t->order_errors++;
        }
        t->last = v;
    } else if (strcmp(type, "fail") == 0) {
        return -1;
    } else if (strcmp(type, "biz") == 0) {
        pul_error_t e = {.kind = PUL_ERRKIND_BUSINESS, .code = 400, .message = "bad input"};
        assert_int_equal(pul_ctx_reply_error(ctx, &e), 0);
    } else if (strcmp(type, "defer") == 0) {
        t->deferred = pul_ctx_defer(ctx);
    } else if (strcmp(type, "defer_end") == 0) {
        assert_int_equal(pul_ctx_on_end(ctx, tact_on_end, t), 0);
        assert_int_equal(pul_ctx_on_end(ctx, tact_on_end, t), PUL_ESTATE); /* at most once */
        t->deferred = pul_ctx_defer(ctx);
    } else if (strcmp(type, "block") == 0) {
        tcount_wait(t->gate, 1);
    } else if (strcmp(type, "count") == 0) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%ld", t->seen);
        pul_msg_t *r = pul_msg_new("count", buf, (size_t)n);
        if (r == NULL || pul_ctx_reply(ctx, r) != 0) {
            pul_msg_unref(r);
        }
    }
    return 0;
}

static void
tact_on_stop(void *state)
{
    tact_t *t = state;
    if (t->stopped != NULL) {
        tcount_add(t->stopped, 1);
    }
}

static const pul_actor_vtable_t tact_vt = {.receive = tact_receive, .on_stop = tact_on_stop};

static pul_system_t *
new_system(size_t mailbox)
{
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    if (mailbox) {
        cfg.mailbox_capacity = mailbox;
    }
    pul_system_t *sys = NULL;
    assert_int_equal(pul_system_new(&cfg, &sys), 0);
    return sys;
}

static void
test_ask_tell_reply(void **state)
{
    (void)state;
    pul_system_t *sys = new_system(0);
    tact_t t = {0};
    pul_spawn_opts_t o;
    pul_spawn_opts_init(&o);
    o.name = "echo";
    pul_id_t id;
    assert_int_equal(pul_spawn(sys, &tact_vt, &t, &o, &id), 0);
    pul_id_t found;
    assert_int_equal(pul_lookup(sys, "actors/echo", &found), 0);
    assert_true(pul_id_eq(found, id));
    assert_int_equal(pul_lookup(sys, "echo", &found), 0);
    assert_int_equal(pul_lookup(sys, "nope", &found), PUL_ENOTFOUND);
    assert_int_equal(pul_lookup(sys, "bad name", &found), PUL_ENAME);
    assert_int_equal(pul_spawn(sys, &tact_vt, &t, &o, NULL), PUL_EEXIST);
    o.name = "system/x";
    assert_int_equal(pul_spawn(sys, &tact_vt, &t, &o, NULL), PUL_ENAME);

    tans_t a;
    assert_int_equal(task_ask(sys, id, "echo", "hello", 0, &a), 0);
    assert_string_equal(a.data, "hello");
    /* Unreplied ask: empty message. */
    assert_int_equal(task_ask(sys, id, "seq", "1", 0, &a), 0);
    assert_int_equal(a.len, 0);
    /* Business error, structured. */
    assert_int_equal(task_ask(sys, id, "biz", "", 0, &a), PUL_EACTOR);
    assert_int_equal(a.kind, PUL_ERRKIND_BUSINESS);
    assert_int_equal(a.code, 400);
    assert_string_equal(a.message, "bad input");
    /* Failure of the actor without supervision: a system error, the actor keeps going. */
    assert_int_equal(task_ask(sys, id, "fail", "", 0, &a), PUL_EACTOR);
    assert_int_equal(a.kind, PUL_ERRKIND_SYSTEM);
    assert_int_equal(task_ask(sys, id, "echo", "again", 0, &a), 0);
    /* Unknown actor: prompt error. */
    assert_int_equal(task_ask(sys, pul_id_random(), "echo", "x", 0, &a), PUL_ENOTFOUND);
    pul_msg_t *m = pul_msg_new("seq", "2", 1);
    assert_int_equal(pul_tell(sys, pul_id_random(), m), PUL_ENOTFOUND);
    assert_int_equal(pul_tell(sys, id, m), 0);

    pul_system_shutdown(sys);
}

static void
foreach_cb(pul_id_t id, const char *name, void *arg)
{
    (void)id;
    (void)name;
    (*(int *)arg)++;
}

static void
test_mailbox_order_and_capacity(void **state)
{
    (void)state;
    pul_system_t *sys = new_system(8);
    tcount_t gate;
    tcount_init(&gate);
    tact_t t = {.gate = &gate};
    pul_id_t id;
    assert_int_equal(pul_spawn(sys, &tact_vt, &t, NULL, &id), 0);
    int n = 0;
    pul_actors_foreach(sys, foreach_cb, &n);
    assert_int_equal(n, 1);
    /* Block the actor, then fill its mailbox: the 9th tell is refused, none is dropped. */
    pul_msg_t *b = pul_msg_new("block", NULL, 0);
    assert_int_equal(pul_tell(sys, id, b), 0);
    while (t.seen == 0) {
        usleep(1000);
    }
    int accepted = 0;
    int full = 0;
    for (int i = 1; i <= 9; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", i);
        pul_msg_t *m = pul_msg_new("seq", buf, strlen(buf));
        int rc = pul_tell(sys, id, m);
        if (rc == 0) {
            accepted++;
        } else {
            assert_int_equal(rc, PUL_EFULL);
            full++;
            pul_msg_unref(m);
        }
    }
    assert_int_equal(accepted, 8);
    assert_int_equal(full, 1);
    /* An ask to the full mailbox is held, not dropped, and answered after the tells. */
    tans_t a;
    memset(&a, 0, sizeof a);
    tcount_init(&a.done);
    pul_msg_t *m = pul_msg_new("count", NULL, 0);
    assert_int_equal(pul_ask(sys, id, m, 0, tans_cb, &a, NULL), 0);
    usleep(20000);
    assert_int_equal(tcount_get(&a.done), 0);
    tcount_add(&gate, 1);
    assert_int_equal(tcount_wait(&a.done, 1), 1);
    assert_int_equal(a.status, 0);
    assert_string_equal(a.data, "10");
    assert_int_equal(t.order_errors, 0);
    tcount_destroy(&a.done);
    pul_system_shutdown(sys);
    tcount_destroy(&gate);
}

static void
test_deadline_and_cancel(void **state)
{
    (void)state;
    pul_system_t *sys = new_system(0);
    tact_t t = {0};
    pul_id_t id;
    assert_int_equal(pul_spawn(sys, &tact_vt, &t, NULL, &id), 0);
    tans_t a;
    assert_int_equal(task_ask(sys, id, "defer", "", 30, &a), PUL_ETIMEDOUT);
    /* A late reply to a timed-out ask is accepted and dropped. */
    pul_msg_t *r = pul_msg_new("late", NULL, 0);
    assert_int_equal(pul_reply_send(t.deferred, r), 0);

    memset(&a, 0, sizeof a);
    tcount_init(&a.done);
    pul_call_t *call = NULL;
    pul_msg_t *m = pul_msg_new("defer", NULL, 0);
    assert_int_equal(pul_ask(sys, id, m, 0, tans_cb, &a, &call), 0);
    while (t.seen < 2) {
        usleep(1000);
    }
    pul_call_cancel(sys, call);
    assert_int_equal(tcount_wait(&a.done, 1), 1);
    assert_int_equal(a.status, PUL_ECANCELED);
    pul_reply_abandon(t.deferred);
    usleep(10000);
    assert_int_equal(tcount_get(&a.done), 1);
    tcount_destroy(&a.done);
    pul_system_shutdown(sys);
}

/* pul_ctx_on_end: a deferred ask cancelled by its caller says so (the actor can stop the work);
 * an answered one reports the answer; a tell cannot register. */
static void
test_on_end(void **state)
{
    (void)state;
    pul_system_t *sys = new_system(0);
    tcount_t ended;
    tcount_init(&ended);
    tact_t t = {.ended = &ended};
    pul_id_t id;
    assert_int_equal(pul_spawn(sys, &tact_vt, &t, NULL, &id), 0);

    tans_t a;
    memset(&a, 0, sizeof a);
    tcount_init(&a.done);
    pul_call_t *call = NULL;
    pul_msg_t *m = pul_msg_new("defer_end", NULL, 0);
    assert_int_equal(pul_ask(sys, id, m, 0, tans_cb, &a, &call), 0);
    while (t.seen < 1) {
        usleep(1000);
    }
    pul_call_cancel(sys, call);
    assert_int_equal(tcount_wait(&ended, 1), 1);
    assert_int_equal(t.end_status, PUL_ECANCELED);
    assert_int_equal(tcount_wait(&a.done, 1), 1);
    pul_reply_abandon(t.deferred); /* the late answer changes nothing */
    tcount_destroy(&a.done);

    assert_int_equal(task_ask(sys, id, "defer_end", "", 30, &a), PUL_ETIMEDOUT);
    assert_int_equal(tcount_wait(&ended, 2), 2);
    assert_int_equal(t.end_status, PUL_ETIMEDOUT);
    pul_reply_abandon(t.deferred);

    memset(&a, 0, sizeof a);
    tcount_init(&a.done);
    m = pul_msg_new("defer_end", NULL, 0);
    assert_int_equal(pul_ask(sys, id, m, 0, tans_cb, &a, NULL), 0);
    while (t.seen < 3) {
        usleep(1000);
    }
    pul_msg_t *r = pul_msg_new("ok", NULL, 0);
    assert_int_equal(pul_reply_send(t.deferred, r), 0);
    assert_int_equal(tcount_wait(&a.done, 1), 1);
    assert_int_equal(tcount_wait(&ended, 3), 3);
    assert_int_equal(t.end_status, 0);
    tcount_destroy(&a.done);
    pul_system_shutdown(sys);
    tcount_destroy(&ended);
}

static void *
replier_main(void *arg)
{
    pul_reply_t *r = arg;
    pul_msg_t *m = pul_msg_new("from-thread", "ok", 2);
    if (pul_reply_send(r, m) != 0) {
        pul_msg_unref(m);
    }
    return NULL;
}

static void
test_deferred_from_thread(void **state)
{
    (void)state;
    pul_system_t *sys = new_system(0);
    tact_t t = {0};
    pul_id_t id;
    assert_int_equal(pul_spawn(sys, &tact_vt, &t, NULL, &id), 0);
    tans_t a;
    memset(&a, 0, sizeof a);
    tcount_init(&a.done);
    pul_msg_t *m = pul_msg_new("defer", NULL, 0);
    assert_int_equal(pul_ask(sys, id, m, 0, tans_cb, &a, NULL), 0);
    while (t.deferred == NULL) {
        usleep(1000);
    }
    pthread_t th;
    pthread_create(&th, NULL, replier_main, t.deferred);
    pthread_join(th, NULL);
    assert_int_equal(tcount_wait(&a.done, 1), 1);
    assert_int_equal(a.status, 0);
    assert_string_equal(a.data, "ok");
    tcount_destroy(&a.done);
    pul_system_shutdown(sys);
}

typedef struct {
    pul_system_t *sys;
    pul_id_t id;
    tans_t *a;
    int n;
    tcount_t posted;
} stop_job_t;

/* On the core thread: queue asks, then stop, in the same turn. */
static void
stop_job(void *arg)
{
    stop_job_t *j = arg;
    for (int i = 0; i < j->n; i++) {
        pul_msg_t *m = pul_msg_new("echo", "x", 1);
        assert_int_equal(pul_ask(j->sys, j->id, m, 0, tans_cb, &j->a[i], NULL), 0);
    }
    assert_int_equal(pul_stop(j->sys, j->id), 0);
    /* Nothing completes inside the call that started it. */
    for (int i = 0; i < j->n; i++) {
        assert_int_equal(tcount_get(&j->a[i].done), 0);
    }
    tcount_add(&j->posted, 1);
}

static void
test_stop_fails_queued(void **state)
{
    (void)state;
    pul_system_t *sys = new_system(2);
    tcount_t stopped;
    tcount_init(&stopped);
    tact_t t = {.stopped = &stopped};
    pul_spawn_opts_t o;
    pul_spawn_opts_init(&o);
    o.name = "services/stopme";
    pul_id_t id;
    assert_int_equal(pul_spawn(sys, &tact_vt, &t, &o, &id), 0);
    tans_t z;
    assert_int_equal(task_ask(sys, id, "echo", "x", 0, &z), 0);
    tans_t a[4];
    stop_job_t j = {.sys = sys, .id = id, .a = a, .n = 4};
    tcount_init(&j.posted);
    for (int i = 0; i < 4; i++) {
        memset(&a[i], 0, sizeof a[i]);
        tcount_init(&a[i].done);
    }
    assert_int_equal(pul_system_post(sys, stop_job, &j), 0);
    tcount_wait(&j.posted, 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(tcount_wait(&a[i].done, 1), 1);
        assert_int_equal(a[i].status, PUL_ESTOPPED);
        tcount_destroy(&a[i].done);
    }
    tcount_destroy(&j.posted);
    assert_int_equal(tcount_wait(&stopped, 1), 1);
    assert_int_equal(pul_stop(sys, id), PUL_ENOTFOUND);
    pul_id_t found;
    assert_int_equal(pul_lookup(sys, "services/stopme", &found), PUL_ENOTFOUND);
    assert_int_equal(task_ask(sys, id, "echo", "x", 0, &z), PUL_ENOTFOUND);
    /* The name is free again. */
    tact_t t2 = {0};
    assert_int_equal(pul_spawn(sys, &tact_vt, &t2, &o, NULL), 0);
    pul_system_shutdown(sys);
    tcount_destroy(&stopped);
}

static void
test_shutdown_in_flight(void **state)
{
    (void)state;
    pul_system_t *sys = new_system(4);
    tcount_t gate, stopped;
    tcount_init(&gate);
    tcount_init(&stopped);
    tact_t t = {.gate = &gate, .stopped = &stopped};
    pul_id_t id;
    assert_int_equal(pul_spawn(sys, &tact_vt, &t, NULL, &id), 0);
    enum { N = 20 };
    tans_t a[N];
    pul_msg_t *m = pul_msg_new("defer", NULL, 0);
    memset(&a[0], 0, sizeof a[0]);
    tcount_init(&a[0].done);
    assert_int_equal(pul_ask(sys, id, m, 0, tans_cb, &a[0], NULL), 0);
    for (int i = 1; i < N; i++) {
        memset(&a[i], 0, sizeof a[i]);
        tcount_init(&a[i].done);
        m = pul_msg_new("echo", "x", 1);
        assert_int_equal(pul_ask(sys, id, m, 0, tans_cb, &a[i], NULL), 0);
    }
    while (t.deferred == NULL) {
        usleep(1000);
    }
    pul_reply_t *held = t.deferred;
    /* Block the actor so asks pile up (some held behind the full mailbox). */
    tcount_add(&gate, 1);
    pul_system_shutdown(sys);
    int closed = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(tcount_get(&a[i].done), 1);
        if (a[i].status == PUL_ECLOSED) {
            closed++;
        } else {
            assert_int_equal(a[i].status, 0);
        }
        tcount_destroy(&a[i].done);
    }
    assert_true(closed >= 1);
    assert_int_equal(tcount_get(&stopped), 1);
    /* A reply after shutdown is refused and frees the handle. */
    pul_msg_t *late = pul_msg_new("late", NULL, 0);
    assert_int_equal(pul_reply_send(held, late), PUL_ECLOSED);
    pul_msg_unref(late);
    tcount_destroy(&gate);
    tcount_destroy(&stopped);
}

static void
test_many_systems(void **state)
{
    (void)state;
    for (int i = 0; i < 50; i++) {
        pul_system_t *sys = new_system(0);
        tact_t t = {0};
        pul_id_t id;
        assert_int_equal(pul_spawn(sys, &tact_vt, &t, NULL, &id), 0);
        tans_t a;
        assert_int_equal(task_ask(sys, id, "echo", "x", 0, &a), 0);
        pul_system_shutdown(sys);
    }
}

/* ---- deferred replies from other threads racing the shutdown ---- */

#define RACE_ASKS 16
#define RACE_THREADS 4

typedef struct {
    pul_reply_t *held[RACE_ASKS];
    int nheld; /* core thread only, read once every ask is held */
    tcount_t got;
} racer_t;

static int
racer_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    (void)msg;
    racer_t *r = state;
    r->held[r->nheld++] = pul_ctx_defer(ctx);
    tcount_add(&r->got, 1);
    return 0;
}

static const pul_actor_vtable_t racer_vt = {.receive = racer_receive};

typedef struct {
    pul_reply_t **replies;
    int n;
    atomic_int *go;
} race_job_t;

static void *
race_replier(void *arg)
{
    race_job_t *j = arg;
    while (!atomic_load(j->go)) {
    }
    for (int i = 0; i < j->n; i++) {
        pul_reply_t *r = j->replies[i];
        if (i % 3 == 0) {
            pul_msg_t *m = pul_msg_new("late", "x", 1);
            if (pul_reply_send(r, m) != 0) {
                pul_msg_unref(m); /* PUL_ECLOSED: the caller keeps its message */
            }
        } else if (i % 3 == 1) {
            pul_error_t e = {.kind = PUL_ERRKIND_BUSINESS, .code = 1, .message = "late"};
            int rc = pul_reply_error(r, &e);
            assert_true(rc == 0 || rc == PUL_ECLOSED);
        } else {
            pul_reply_abandon(r);
        }
    }
    return NULL;
}

typedef struct {
    atomic_int calls;
    atomic_int bad;
} race_ans_t;

static void
race_ans_cb(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    (void)reply;
    (void)err;
    race_ans_t *a = arg;
    if (status != 0 && status != PUL_EACTOR && status != PUL_ESTOPPED && status != PUL_ECLOSED) {
        atomic_fetch_add(&a->bad, 1);
    }
    atomic_fetch_add(&a->calls, 1);
}

/* Threads answer deferred asks while the system shuts down: each reply either lands or gets
 * PUL_ECLOSED, every ask's callback runs exactly once, and nothing the replying threads touch
 * (the call, the system, the loop's mutexes) is gone under them (ASan). */
static void
test_replies_race_shutdown(void **state)
{
    (void)state;
    for (int round = 0; round < 100; round++) {
        pul_system_t *sys = new_system(0);
        racer_t r;
        memset(&r, 0, sizeof r);
        tcount_init(&r.got);
        pul_id_t id;
        assert_int_equal(pul_spawn(sys, &racer_vt, &r, NULL, &id), 0);
        race_ans_t a;
        atomic_init(&a.calls, 0);
        atomic_init(&a.bad, 0);
        for (int i = 0; i < RACE_ASKS; i++) {
            pul_msg_t *m = pul_msg_new("defer", NULL, 0);
            assert_int_equal(pul_ask(sys, id, m, 0, race_ans_cb, &a, NULL), 0);
        }
        assert_int_equal(tcount_wait(&r.got, RACE_ASKS), RACE_ASKS);
        atomic_int go;
        atomic_init(&go, 0);
        pthread_t th[RACE_THREADS];
        race_job_t jobs[RACE_THREADS];
        int per = RACE_ASKS / RACE_THREADS;
        for (int t = 0; t < RACE_THREADS; t++) {
            jobs[t] = (race_job_t){.replies = &r.held[t * per], .n = per, .go = &go};
            pthread_create(&th[t], NULL, race_replier, &jobs[t]);
        }
        atomic_store(&go, 1);
        if (round % 2 == 1) {
            usleep((useconds_t)(round % 7) * 10); /* vary where the shutdown lands */
        }
        pul_system_shutdown(sys);
        for (int t = 0; t < RACE_THREADS; t++) {
            pthread_join(th[t], NULL);
        }
        assert_int_equal(atomic_load(&a.calls), RACE_ASKS);
        assert_int_equal(atomic_load(&a.bad), 0);
        tcount_destroy(&r.got);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ask_tell_reply, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_mailbox_order_and_capacity, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_deadline_and_cancel, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_deferred_from_thread, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_on_end, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_stop_fails_queued, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_in_flight, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_many_systems, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_replies_race_shutdown, pul_test_setup, pul_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
