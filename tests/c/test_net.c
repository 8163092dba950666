/* test_net.c — the transport between systems of one process on 127.0.0.1 (port 0, routes set by
 * hand): remote ask/tell/stream, typed errors, unknown actors, cancel, deadlines, a peer that
 * goes away, hostile bytes, a 64 MiB message with segments, REST, and leak-free shutdown. */
#include <arpa/inet.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "actor/actor.h"
#include "net/net.h"
#include "pul_test.h"

static long mem_base;

static int
setup(void **state)
{
    (void)state;
    mem_base = pul_mem_live();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    assert_int_equal(pul_mem_live(), mem_base);
    return 0;
}

/* ---- systems --------------------------------------------------------------------------- */

static pul_system_t *
node_new(void)
{
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:0");
    cfg.listen_addr = listen; /* dies with this frame: the system keeps a copy */
    pul_system_t *sys = NULL;
    assert_int_equal(pul_system_new(&cfg, &sys), 0);
    assert_non_null(pul_system_addr(sys));
    assert_true(strncmp(pul_system_addr(sys), "127.0.0.1:", 10) == 0);
    assert_true(strcmp(pul_system_addr(sys), "127.0.0.1:0") != 0);
    return sys;
}

typedef struct {
    pul_system_t *sys;
    pul_id_t node;
    const char *addr;
    int rc;
    tcount_t done;
} route_op_t;

static void
route_task(void *arg)
{
    route_op_t *op = arg;
    op->rc = op->addr != NULL ? pul__net_route_set(op->sys->net, op->node, op->addr) : 0;
    if (op->addr == NULL) {
        pul__net_route_drop(op->sys->net, op->node);
    }
    tcount_add(&op->done, 1);
}

/* Teach `from` where `to` listens (on from's core thread). */
static void
route(pul_system_t *from, pul_system_t *to)
{
    route_op_t op = {.sys = from, .node = pul_system_node_id(to), .addr = pul_system_addr(to), .rc = -1};
    tcount_init(&op.done);
    assert_int_equal(pul_system_post(from, route_task, &op), 0);
    assert_int_equal(tcount_wait(&op.done, 1), 1);
    tcount_destroy(&op.done);
    assert_int_equal(op.rc, 0);
}

static __attribute__((unused)) void
route_drop(pul_system_t *from, pul_id_t node)
{
    route_op_t op = {.sys = from, .node = node, .addr = NULL, .rc = -1};
    tcount_init(&op.done);
    assert_int_equal(pul_system_post(from, route_task, &op), 0);
    assert_int_equal(tcount_wait(&op.done, 1), 1);
    tcount_destroy(&op.done);
}

/* ---- a test actor ------------------------------------------------------------------------ */

typedef struct {
    tcount_t told;
    tcount_t stopped_streams; /* producers that saw their stream closed */
    long seen;
} tact_t;

typedef struct {
    pul_stream_t *s;
    tact_t *t;
    long n, i;
    int fail;
    pul_timer_t *timer;
} producer_t;

/* Push items until n (n < 0: forever), then end or fail; stop when the consumer goes away.
 * Runs from a repeating timer on the core thread; a full window waits for the next tick. */
static void
producer_tick(void *arg)
{
    producer_t *p = arg;
    for (;;) {
        if (p->n >= 0 && p->i >= p->n) {
            if (p->fail) {
                pul_error_t e = {.kind = PUL_ERRKIND_BUSINESS,
                                 .code = 418,
                                 .message = "teapot",
                                 .details = "after items",
                                 .type_name = "ValueError"};
                pul_stream_error(p->s, &e);
            } else {
                pul_stream_end(p->s);
            }
            break;
        }
        char buf[32];
        int k = snprintf(buf, sizeof buf, "item%ld", p->i);
        pul_msg_t *m = pul_msg_new("item", buf, (size_t)k);
        int rc = pul_stream_push(p->s, m);
        if (rc == PUL_EFULL) {
            pul_msg_unref(m);
            return;
        }
        if (rc != 0) {
            pul_msg_unref(m);
            tcount_add(&p->t->stopped_streams, 1);
            pul_stream_end(p->s);
            break;
        }
        p->i++;
    }
    pul_timer_stop(p->timer);
    free(p);
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
        for (size_t i = 0; i < pul_msg_nsegments(msg); i++) {
            size_t sl;
            const void *sp = pul_msg_segment(msg, i, &sl);
            /* the reply references the request's segment memory: keep the request alive */
            pul_msg_add_segment(r, sp, sl, (pul_free_fn)pul_msg_unref, pul_msg_ref(msg));
        }
        pul_ctx_reply(ctx, r);
    } else if (strcmp(type, "tell") == 0) {
        tcount_add(&t->told, 1);
    } else if (strcmp(type, "biz") == 0) {
        pul_error_t e = {.kind = PUL_ERRKIND_BUSINESS,
                         .code = 422,
                         .message = "bad input",
                         .details = "field x",
                         .type_name = "ValueError"};
        pul_ctx_reply_error(ctx, &e);
    } else if (strcmp(type, "sys") == 0) {
        pul_error_t e = {.kind = PUL_ERRKIND_SYSTEM,
                         .recoverable = 1,
                         .message = "boom",
                         .type_name = "RuntimeError"};
        pul_ctx_reply_error(ctx, &e);
    } else if (strcmp(type, "timeout") == 0) {
        pul_error_t e = {.kind = PUL_ERRKIND_TIMEOUT, .duration_ms = 1234, .message = "op"};
        pul_ctx_reply_error(ctx, &e);
    } else if (strcmp(type, "stream") == 0 || strcmp(type, "stream_fail") == 0 ||
               strcmp(type, "forever") == 0) {
        producer_t *p = calloc(1, sizeof *p);
        p->t = t;
        p->n = strcmp(type, "forever") == 0 ? -1 : strtol(d, NULL, 10);
        p->fail = strcmp(type, "stream_fail") == 0;
        p->s = pul_ctx_stream(ctx);
        assert_int_equal(pul_timer_start(pul_ctx_system(ctx), 0, 1, producer_tick, p, &p->timer),
                         0);
    } else if (strcmp(type, "silent") == 0) {
        pul_reply_t *r = pul_ctx_defer(ctx); /* never answered until stop */
        pul_reply_abandon(r);
    }
    return 0;
}

static void
tact_free(void *state)
{
    tact_t *t = state;
    tcount_destroy(&t->told);
    tcount_destroy(&t->stopped_streams);
    free(t);
}

static pul_id_t
spawn_tact(pul_system_t *sys, const char *name, tact_t **out)
{
    tact_t *t = calloc(1, sizeof *t);
    tcount_init(&t->told);
    tcount_init(&t->stopped_streams);
    pul_actor_vtable_t vt = {.receive = tact_receive, .free_state = tact_free};
    pul_spawn_opts_t o;
    pul_spawn_opts_init(&o);
    o.name = name;
    pul_id_t id;
    assert_int_equal(pul_spawn(sys, &vt, t, &o, &id), 0);
    if (out != NULL) {
        *out = t;
    }
    return id;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void
test_remote_ask(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, "echo", NULL);
    assert_true(pul__net_is_remote(a, id));
    tans_t r;
    assert_int_equal(task_ask(a, id, "echo", "hello", 0, &r), 0);
    assert_string_equal(r.data, "hello");
    for (int i = 0; i < 50; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "n%d", i);
        assert_int_equal(task_ask(a, id, "echo", buf, 0, &r), 0);
        assert_string_equal(r.data, buf);
    }
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_remote_ask, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
