/* test_stream.c — the stream state machine: push/end/error/cancel, window full and writable. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "pul_test.h"

typedef struct {
    pul_stream_t *s; /* published for the test thread */
    tcount_t ready;
    tcount_t writable;
    int n;           /* items to push from receive, then end */
    int mode;        /* 0 push+end, 1 push+error, 2 hand the stream out, 3 plain reply,
                      * 4 hand the stream out without a writable callback */
} sact_t;

static void
on_writable(void *arg)
{
    sact_t *a = arg;
    tcount_add(&a->writable, 1);
}

static int
sact_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    (void)msg;
    sact_t *a = state;
    if (a->mode == 3) {
        pul_msg_t *r = pul_msg_new("one", "only", 4);
        if (r == NULL || pul_ctx_reply(ctx, r) != 0) {
            pul_msg_unref(r);
        }
        return 0;
    }
    pul_stream_t *s = pul_ctx_stream(ctx);
    assert_non_null(s);
    if (a->mode == 4) { /* the producer (a test thread) registers on_writable itself, late */
        a->s = s;
        tcount_add(&a->ready, 1);
        return 0;
    }
    if (a->mode == 2) {
        pul_stream_on_writable(s, on_writable, a);
        a->s = s;
        tcount_add(&a->ready, 1);
        return 0;
    }
    for (int i = 0; i < a->n; i++) {
        char buf[16];
        int k = snprintf(buf, sizeof buf, "tok%d", i);
        pul_msg_t *it = pul_msg_new("item", buf, (size_t)k);
        assert_int_equal(pul_stream_push(s, it), 0);
    }
    if (a->mode == 0) {
        assert_int_equal(pul_stream_end(s), 0);
    } else {
        pul_error_t e = {.kind = PUL_ERRKIND_BUSINESS, .code = 7, .message = "midway"};
        assert_int_equal(pul_stream_error(s, &e), 0);
    }
    return 0;
}

static const pul_actor_vtable_t sact_vt = {.receive = sact_receive};

typedef struct {
    tcount_t items;
    tcount_t final;
    int status;
    pul_errkind_t kind;
    char last[32];
    int bad_order;
} consumer_t;

static void
consumer_cb(int status, pul_msg_t *item, const pul_error_t *err, void *arg)
{
    consumer_t *c = arg;
    if (status == 0) {
        size_t len;
        const char *d = pul_msg_data(item, &len);
        char want[16];
        snprintf(want, sizeof want, "tok%ld", tcount_get(&c->items));
        if (len != strlen(want) || memcmp(d, want, len) != 0) {
            c->bad_order++;
        }
        tcount_add(&c->items, 1);
        return;
    }
    c->status = status;
    if (err != NULL) {
        c->kind = err->kind;
    }
    tcount_add(&c->final, 1);
}

static void
consumer_init(consumer_t *c)
{
    memset(c, 0, sizeof *c);
    tcount_init(&c->items);
    tcount_init(&c->final);
}

static void
consumer_destroy(consumer_t *c)
{
    tcount_destroy(&c->items);
    tcount_destroy(&c->final);
}

/* A fresh consumer `c` asks the streamer for its stream ("go"). */
static void
ask_go(pul_system_t *sys, pul_id_t id, consumer_t *c, pul_call_t **call)
{
    consumer_init(c);
    assert_int_equal(pul_ask_stream(sys, id, pul_msg_new("go", NULL, 0), 0, consumer_cb, c, call),
                     0);
}

static pul_system_t *
spawn_streamer(sact_t *a, pul_id_t *id, size_t window)
{
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    cfg.stream_window = window;
    pul_system_t *sys = NULL;
    assert_int_equal(pul_system_new(&cfg, &sys), 0);
    tcount_init(&a->ready);
    tcount_init(&a->writable);
    assert_int_equal(pul_spawn(sys, &sact_vt, a, NULL, id), 0);
    return sys;
}

static void
test_push_end(void **state)
{
    (void)state;
    sact_t a = {.n = 10, .mode = 0};
    pul_id_t id;
    pul_system_t *sys = spawn_streamer(&a, &id, 32);
    consumer_t c;
    ask_go(sys, id, &c, NULL);
    assert_int_equal(tcount_wait(&c.final, 1), 1);
    assert_int_equal(tcount_get(&c.items), 10);
    assert_int_equal(c.status, PUL_EOF);
    assert_int_equal(c.bad_order, 0);
    consumer_destroy(&c);
    pul_system_shutdown(sys);
    tcount_destroy(&a.ready);
    tcount_destroy(&a.writable);
}

static void
test_push_error(void **state)
{
    (void)state;
    sact_t a = {.n = 3, .mode = 1};
    pul_id_t id;
    pul_system_t *sys = spawn_streamer(&a, &id, 32);
    consumer_t c;
    ask_go(sys, id, &c, NULL);
    assert_int_equal(tcount_wait(&c.final, 1), 1);
    assert_int_equal(tcount_get(&c.items), 3); /* items before the error come first */
    assert_int_equal(c.status, PUL_EACTOR);
    assert_int_equal(c.kind, PUL_ERRKIND_BUSINESS);
    consumer_destroy(&c);
    pul_system_shutdown(sys);
    tcount_destroy(&a.ready);
    tcount_destroy(&a.writable);
}

static void
test_plain_reply_as_stream(void **state)
{
    (void)state;
    sact_t a = {.mode = 3};
    pul_id_t id;
    pul_system_t *sys = spawn_streamer(&a, &id, 32);
    consumer_t c;
    ask_go(sys, id, &c, NULL);
    assert_int_equal(tcount_wait(&c.final, 1), 1);
    assert_int_equal(tcount_get(&c.items), 1);
    assert_int_equal(c.status, PUL_EOF);
    consumer_destroy(&c);
    pul_system_shutdown(sys);
    tcount_destroy(&a.ready);
    tcount_destroy(&a.writable);
}

static void
block_core(void *arg)
{
    tcount_wait(arg, 1);
}

/* Fill the window while the core thread is held; returns the item that found it full. */
static pul_msg_t *
fill_window(pul_system_t *sys, pul_stream_t *s, tcount_t *gate, int first)
{
    assert_int_equal(pul_system_post(sys, block_core, gate), 0);
    usleep(5000);
    for (int i = first; i < first + 4; i++) {
        char buf[16];
        int k = snprintf(buf, sizeof buf, "tok%d", i);
        assert_int_equal(pul_stream_push(s, pul_msg_new("item", buf, (size_t)k)), 0);
    }
    char buf[16];
    int k = snprintf(buf, sizeof buf, "tok%d", first + 4);
    pul_msg_t *extra = pul_msg_new("item", buf, (size_t)k);
    assert_int_equal(pul_stream_push(s, extra), PUL_EFULL);
    return extra;
}

static void
test_window_full_and_cancel(void **state)
{
    (void)state;
    sact_t a = {.mode = 2};
    pul_id_t id;
    pul_system_t *sys = spawn_streamer(&a, &id, 4);
    consumer_t c;
    pul_call_t *call = NULL;
    ask_go(sys, id, &c, &call);
    tcount_wait(&a.ready, 1);
    /* Hold the core thread so nothing drains: the 5th push finds the window full. */
    tcount_t gate;
    tcount_init(&gate);
    pul_msg_t *extra = fill_window(sys, a.s, &gate, 0);
    tcount_add(&gate, 1);
    assert_int_equal(tcount_wait(&a.writable, 1), 1);
    assert_int_equal(tcount_wait(&c.items, 4), 4);
    assert_int_equal(pul_stream_push(a.s, extra), 0);
    assert_int_equal(tcount_wait(&c.items, 5), 5);
    /* The consumer cancels: the producer (registered again: one call per registration) is
     * told and its pushes fail. */
    pul_stream_on_writable(a.s, on_writable, &a);
    pul_call_cancel(sys, call);
    assert_int_equal(tcount_wait(&c.final, 1), 1);
    assert_int_equal(c.status, PUL_ECANCELED);
    assert_int_equal(tcount_wait(&a.writable, 2), 2);
    pul_msg_t *late = pul_msg_new("item", "x", 1);
    assert_int_equal(pul_stream_push(a.s, late), PUL_ECANCELED);
    pul_msg_unref(late);
    assert_int_equal(pul_stream_end(a.s), 0);
    assert_int_equal(c.bad_order, 0);
    consumer_destroy(&c);
    tcount_destroy(&gate);
    pul_system_shutdown(sys);
    tcount_destroy(&a.ready);
    tcount_destroy(&a.writable);
}

static void
test_stream_shutdown(void **state)
{
    (void)state;
    sact_t a = {.mode = 2};
    pul_id_t id;
    pul_system_t *sys = spawn_streamer(&a, &id, 4);
    consumer_t c;
    ask_go(sys, id, &c, NULL);
    tcount_wait(&a.ready, 1);
    pul_system_shutdown(sys);
    assert_int_equal(tcount_get(&c.final), 1);
    assert_int_equal(c.status, PUL_ECLOSED);
    pul_msg_t *late = pul_msg_new("item", "x", 1);
    assert_int_equal(pul_stream_push(a.s, late), PUL_ECLOSED);
    pul_msg_unref(late);
    assert_int_equal(pul_stream_end(a.s), 0);
    consumer_destroy(&c);
    tcount_destroy(&a.ready);
    tcount_destroy(&a.writable);
}

/* A producer on another thread registers its writable callback after its push found the window
 * full: the room it waits for (or the consumer going away) may come in between, when there is no
 * callback to run. The callback still runs once (before: never, and the producer waited for
 * ever -- a lost wake-up). */
static void
test_writable_registered_late(void **state)
{
    (void)state;
    sact_t a = {.mode = 4};
    pul_id_t id;
    pul_system_t *sys = spawn_streamer(&a, &id, 4);
    consumer_t c;
    ask_go(sys, id, &c, NULL);
    tcount_wait(&a.ready, 1);
    tcount_t gate;
    tcount_init(&gate);
    pul_msg_t *extra = fill_window(sys, a.s, &gate, 0);
    tcount_add(&gate, 1);
    assert_int_equal(tcount_wait(&c.items, 4), 4); /* drained, with no callback registered */
    pul_stream_on_writable(a.s, on_writable, &a);
    assert_int_equal(tcount_wait(&a.writable, 1), 1);
    assert_int_equal(pul_stream_push(a.s, extra), 0);
    assert_int_equal(tcount_wait(&c.items, 5), 5);
    assert_int_equal(pul_stream_end(a.s), 0);
    assert_int_equal(tcount_wait(&c.final, 1), 1);
    assert_int_equal(c.status, PUL_EOF);
    assert_int_equal(c.bad_order, 0);
    assert_int_equal(tcount_get(&a.writable), 1);
    consumer_destroy(&c);

    /* The consumer cancels between the full push and the registration. */
    pul_call_t *call = NULL;
    ask_go(sys, id, &c, &call);
    tcount_wait(&a.ready, 2);
    tcount_t gate2;
    tcount_init(&gate2);
    extra = fill_window(sys, a.s, &gate2, 0);
    tcount_add(&gate2, 1);
    pul_call_cancel(sys, call);
    assert_int_equal(tcount_wait(&c.final, 1), 1);
    assert_int_equal(c.status, PUL_ECANCELED);
    pul_stream_on_writable(a.s, on_writable, &a);
    assert_int_equal(tcount_wait(&a.writable, 2), 2);
    assert_int_equal(pul_stream_push(a.s, extra), PUL_ECANCELED);
    pul_msg_unref(extra);
    assert_int_equal(pul_stream_end(a.s), 0);
    consumer_destroy(&c);
    tcount_destroy(&gate);
    tcount_destroy(&gate2);
    pul_system_shutdown(sys);
    tcount_destroy(&a.ready);
    tcount_destroy(&a.writable);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_end, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_push_error, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_plain_reply_as_stream, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_window_full_and_cancel, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_stream_shutdown, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_writable_registered_late, pul_test_setup, pul_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
