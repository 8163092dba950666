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
#include "core/alloc.h"
#include "net/net.h"
#include "pul_test.h"

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
    const char *addr; /* NULL: drop the route */
    int rc;
} route_op_t;

static void
route_task(void *arg)
{
    route_op_t *op = arg;
    op->rc = op->addr != NULL ? pul__net_route_set(op->sys->net, op->node, op->addr) : 0;
    if (op->addr == NULL) {
        pul__net_route_drop(op->sys->net, op->node);
    }
}

/* Teach `from` where `to` listens (on from's core thread). */
static void
route(pul_system_t *from, pul_system_t *to)
{
    route_op_t op = {.sys = from, .node = pul_system_node_id(to), .addr = pul_system_addr(to)};
    pul_test_on_core(from, route_task, &op);
    assert_int_equal(op.rc, 0);
}

static void
route_drop(pul_system_t *from, pul_id_t node)
{
    route_op_t op = {.sys = from, .node = node, .addr = NULL};
    pul_test_on_core(from, route_task, &op);
}

/* ---- a test actor ------------------------------------------------------------------------ */

typedef struct {
    tcount_t told;
    tcount_t stopped_streams; /* producers that saw their stream closed */
    tcount_t held_n;
    long seen;
    long seen_seq, seq_errors;
    tcount_t produced;
    pul_reply_t *held[8];
    int nheld;
    struct producer_s *producers[8]; /* live ones, ended when the actor goes */
} tact_t;

typedef struct producer_s {
    pul_stream_t *s;
    tact_t *t;
    long n, i;
    int fail;
    int big;
    int slot;
    pul_timer_t *timer;
} producer_t;

static void
producer_free(producer_t *p)
{
    p->t->producers[p->slot] = NULL;
    pul_timer_stop(p->timer);
    free(p);
}

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
        if (p->big) {
            static uint8_t chunk[64 * 1024];
            pul_msg_add_segment(m, chunk, sizeof chunk, NULL, NULL);
        }
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
        tcount_add(&p->t->produced, 1);
    }
    producer_free(p);
}

static tcount_t gate;

static void unref_msg(void *m);

/* ---- a thread that answers deferred asks ("techo"): replies from outside the core thread ---- */

#define REPLIER_MAX 64
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int running;
    int stop;
    pul_reply_t *r[REPLIER_MAX];
    pul_msg_t *m[REPLIER_MAX];
    int n;
    unsigned delay_us; /* before each reply */
    tcount_t sent;    /* replies handed to pul_reply_send */
    tcount_t refused; /* of which pul_reply_send failed (the system went) */
} replier;

static void *
replier_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&replier.mu);
    for (;;) {
        while (replier.n == 0 && !replier.stop) {
            pthread_cond_wait(&replier.cv, &replier.mu);
        }
        if (replier.n == 0) {
            break;
        }
        pul_reply_t *r = replier.r[0];
        pul_msg_t *req = replier.m[0];
        replier.n--;
        memmove(replier.r, replier.r + 1, (size_t)replier.n * sizeof replier.r[0]);
        memmove(replier.m, replier.m + 1, (size_t)replier.n * sizeof replier.m[0]);
        pthread_mutex_unlock(&replier.mu);
        size_t len;
        const void *d = pul_msg_data(req, &len);
        pul_msg_t *out = pul_msg_new("echo", d, len);
        for (size_t i = 0; i < pul_msg_nsegments(req); i++) {
            size_t sl;
            const void *sp = pul_msg_segment(req, i, &sl);
            pul_msg_add_segment(out, sp, sl, unref_msg, pul_msg_ref(req));
        }
        pul_msg_unref(req);
        if (replier.delay_us != 0) {
            usleep(replier.delay_us);
        }
        if (pul_reply_send(r, out) != 0) {
            pul_msg_unref(out);
            tcount_add(&replier.refused, 1);
        }
        tcount_add(&replier.sent, 1);
        pthread_mutex_lock(&replier.mu);
    }
    pthread_mutex_unlock(&replier.mu);
    return NULL;
}

static void
replier_start(void)
{
    memset(&replier, 0, sizeof replier);
    pthread_mutex_init(&replier.mu, NULL);
    pthread_cond_init(&replier.cv, NULL);
    tcount_init(&replier.sent);
    tcount_init(&replier.refused);
    replier.running = 1;
    assert_int_equal(pthread_create(&replier.th, NULL, replier_main, NULL), 0);
}

/* Answers what is queued, then joins the thread. */
static void
replier_stop(void)
{
    pthread_mutex_lock(&replier.mu);
    replier.stop = 1;
    pthread_cond_signal(&replier.cv);
    pthread_mutex_unlock(&replier.mu);
    pthread_join(replier.th, NULL);
    replier.running = 0;
    tcount_destroy(&replier.sent);
    tcount_destroy(&replier.refused);
    pthread_cond_destroy(&replier.cv);
    pthread_mutex_destroy(&replier.mu);
}

static void
replier_push(pul_reply_t *r, pul_msg_t *msg)
{
    pthread_mutex_lock(&replier.mu);
    assert_true(replier.n < REPLIER_MAX);
    replier.r[replier.n] = r;
    replier.m[replier.n] = pul_msg_ref(msg);
    replier.n++;
    pthread_cond_signal(&replier.cv);
    pthread_mutex_unlock(&replier.mu);
}

static void
unref_msg(void *m)
{
    pul_msg_unref(m);
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
            pul_msg_add_segment(r, sp, sl, unref_msg, pul_msg_ref(msg));
        }
        pul_ctx_reply(ctx, r);
    } else if (strcmp(type, "techo") == 0) {
        replier_push(pul_ctx_defer(ctx), msg); /* answered by the replier thread */
    } else if (strcmp(type, "tell") == 0) {
        tcount_add(&t->told, 1);
    } else if (strcmp(type, "seq") == 0) {
        long v = strtol(d, NULL, 10);
        if (v != t->seen_seq + 1) {
            t->seq_errors++;
        }
        t->seen_seq = v;
        tcount_add(&t->told, 1);
    } else if (strcmp(type, "lastseq") == 0) {
        /* the last "seq" seen, asked after tells to check nothing overtook them */
        char buf[32];
        int k = snprintf(buf, sizeof buf, "%ld", t->seen_seq);
        pul_ctx_reply(ctx, pul_msg_new("lastseq", buf, (size_t)k));
    } else if (strcmp(type, "block") == 0) {
        tcount_wait(&gate, 1); /* holds b's core thread: everything queues */
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
               strcmp(type, "stream_big") == 0 || strcmp(type, "forever") == 0 ||
               strcmp(type, "forever_big") == 0) {
        producer_t *p = calloc(1, sizeof *p);
        p->t = t;
        p->big = strcmp(type, "forever_big") == 0 || strcmp(type, "stream_big") == 0;
        p->n = strncmp(type, "forever", 7) == 0 ? -1 : strtol(d, NULL, 10);
        p->fail = strcmp(type, "stream_fail") == 0;
        p->s = pul_ctx_stream(ctx);
        for (p->slot = 0; t->producers[p->slot] != NULL; p->slot++) {
        }
        assert_true(p->slot < 8);
        t->producers[p->slot] = p;
        assert_int_equal(pul_timer_start(pul_ctx_system(ctx), 0, 1, producer_tick, p, &p->timer),
                         0);
    } else if (strcmp(type, "where") == 0) {
        /* answers whether the caller is on another node (pul_reply_is_remote) */
        pul_reply_t *r = pul_ctx_defer(ctx);
        const char *w = pul_reply_is_remote(r) ? "remote" : "local";
        pul_reply_send(r, pul_msg_new("where", w, strlen(w)));
    } else if (strcmp(type, "hold") == 0) {
        if (t->nheld < 8) {
            t->held[t->nheld++] = pul_ctx_defer(ctx); /* answered when the actor goes */
        }
        tcount_add(&t->held_n, 1);
    }
    return 0;
}

static void
tact_free(void *state)
{
    tact_t *t = state;
    for (int i = 0; i < t->nheld; i++) {
        pul_reply_abandon(t->held[i]);
    }
    for (int i = 0; i < 8; i++) {
        if (t->producers[i] != NULL) {
            pul_stream_end(t->producers[i]->s);
            producer_free(t->producers[i]);
        }
    }
    tcount_destroy(&t->held_n);
    tcount_destroy(&t->produced);
    tcount_destroy(&t->told);
    tcount_destroy(&t->stopped_streams);
    free(t);
}

static pul_id_t
spawn_tact_cap(pul_system_t *sys, const char *name, size_t cap, tact_t **out);

static pul_id_t
spawn_tact(pul_system_t *sys, const char *name, tact_t **out)
{
    return spawn_tact_cap(sys, name, 0, out);
}

static pul_id_t
spawn_tact_cap(pul_system_t *sys, const char *name, size_t cap, tact_t **out)
{
    tact_t *t = calloc(1, sizeof *t);
    tcount_init(&t->told);
    tcount_init(&t->stopped_streams);
    tcount_init(&t->held_n);
    tcount_init(&t->produced);
    pul_actor_vtable_t vt = {.receive = tact_receive, .free_state = tact_free};
    pul_spawn_opts_t o;
    pul_spawn_opts_init(&o);
    o.name = name;
    o.mailbox_capacity = cap;
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
    /* The actor can tell a caller on another node from a local one. */
    assert_int_equal(task_ask(a, id, "where", NULL, 0, &r), 0);
    assert_string_equal(r.data, "remote");
    assert_int_equal(task_ask(b, id, "where", NULL, 0, &r), 0);
    assert_string_equal(r.data, "local");
    for (int i = 0; i < 50; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "n%d", i);
        assert_int_equal(task_ask(a, id, "echo", buf, 0, &r), 0);
        assert_string_equal(r.data, buf);
    }
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

/* ---- collectors ------------------------------------------------------------------------ */

typedef struct {
    tcount_t items;
    tcount_t done;
    int status;
    long nitems;
    int order_ok;
    pul_error_t e;
    char message[128], details[128], type_name[64];
} tcoll_t;

static void
tcoll_init(tcoll_t *c)
{
    memset(c, 0, sizeof *c);
    tcount_init(&c->items);
    tcount_init(&c->done);
    c->order_ok = 1;
}

static void
tcoll_destroy(tcoll_t *c)
{
    tcount_destroy(&c->items);
    tcount_destroy(&c->done);
}

static void
tcoll_cb(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    tcoll_t *c = arg;
    if (status == 0) {
        size_t len;
        const char *d = pul_msg_data(reply, &len);
        char want[32];
        int k = snprintf(want, sizeof want, "item%ld", c->nitems);
        if ((size_t)k != len || memcmp(d, want, len) != 0) {
            c->order_ok = 0;
        }
        c->nitems++;
        tcount_add(&c->items, 1);
        return;
    }
    c->status = status;
    if (err != NULL) {
        c->e = *err;
        snprintf(c->message, sizeof c->message, "%s", err->message ? err->message : "");
        snprintf(c->details, sizeof c->details, "%s", err->details ? err->details : "(null)");
        snprintf(c->type_name, sizeof c->type_name, "%s",
                 err->type_name ? err->type_name : "(null)");
    }
    tcount_add(&c->done, 1);
}

/* Start a stream call (type, payload) from a to id, collected into c, which this initialises;
 * call as for pul_ask_stream (NULL: no handle kept). */
static void
tcoll_stream(tcoll_t *c, pul_system_t *a, pul_id_t id, const char *type, const char *payload,
             pul_call_t **call)
{
    tcoll_init(c);
    if (call != NULL) {
        *call = NULL;
    }
    pul_msg_t *m = pul_msg_new(type, payload, strlen(payload));
    assert_int_equal(pul_ask_stream(a, id, m, 0, tcoll_cb, c, call), 0);
}

/* Wait for the end of c's call; its final status. */
static int
tcoll_end(tcoll_t *c)
{
    assert_int_equal(tcount_wait(&c->done, 1), 1);
    return c->status;
}

/* An ask that records every field of an error. */
static int
ask_err(pul_system_t *sys, pul_id_t id, const char *type, tcoll_t *c)
{
    tcoll_init(c);
    pul_msg_t *m = pul_msg_new(type, "", 0);
    assert_int_equal(pul_ask(sys, id, m, 0, tcoll_cb, c, NULL), 0);
    assert_int_equal(tcount_wait(&c->done, 1), 1);
    return c->status;
}

/* ---- more tests ---------------------------------------------------------------------------- */

static void
test_remote_tell_and_named(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    tact_t *t;
    pul_id_t id = spawn_tact(b, "svc/echo", &t);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(pul_tell(a, id, pul_msg_new("tell", "x", 1)), 0);
    }
    assert_int_equal(tcount_wait(&t->told, 10), 10);
    /* A named ask to the other node. */
    tans_t r;
    memset(&r, 0, sizeof r);
    tcount_init(&r.done);
    pul_msg_t *m = pul_msg_new("echo", "named", 5);
    assert_int_equal(pul_ask_named(a, pul_system_node_id(b), "svc/echo", m, 0, tans_cb, &r, NULL),
                     0);
    tcount_wait(&r.done, 1);
    tcount_destroy(&r.done);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.data, "named");
    /* An unknown name there: ENOTFOUND (404). */
    memset(&r, 0, sizeof r);
    tcount_init(&r.done);
    m = pul_msg_new("echo", "x", 1);
    assert_int_equal(pul_ask_named(a, pul_system_node_id(b), "svc/nobody", m, 0, tans_cb, &r, NULL),
                     0);
    tcount_wait(&r.done, 1);
    tcount_destroy(&r.done);
    assert_int_equal(r.status, PUL_ENOTFOUND);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

/* An out-of-cluster client routes every node's actors to a gateway, which relays the calls to
 * the actor's node (pul_gateway_route; docs/design/connect.md). */
static void
test_gateway_relay(void **state)
{
    (void)state;
    pul_system_t *gw = node_new(), *owner = node_new(), *stranger = node_new();
    route(gw, owner); /* the gateway knows owner, not stranger */
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    pul_system_t *client = NULL;
    assert_int_equal(pul_system_new(&cfg, &client), 0);
    assert_null(pul_system_addr(client));
    pul_id_t zero = {0, 0};
    assert_int_equal(pul_gateway_route(client, zero, pul_system_addr(gw)), 0);
    tact_t *t;
    pul_id_t id = spawn_tact(owner, "echo", &t);
    tans_t r;
    assert_int_equal(task_ask(client, id, "echo", "through", 0, &r), 0);
    assert_string_equal(r.data, "through");
    assert_int_equal(pul_tell(client, id, pul_msg_new("tell", "x", 1)), 0);
    assert_int_equal(tcount_wait(&t->told, 1), 1);
    /* An actor of a node the gateway has no route to: 404, ENOTFOUND; nothing loops. */
    pul_id_t far = spawn_tact(stranger, "echo", NULL);
    assert_int_equal(task_ask(client, far, "echo", "x", 0, &r), PUL_ENOTFOUND);
    /* Bad input, then the default route dropped: nothing to send to. */
    char longaddr[PUL_ADDR_MAX + 8];
    memset(longaddr, 'a', sizeof longaddr - 1);
    longaddr[sizeof longaddr - 1] = '\0';
    assert_int_equal(pul_gateway_route(client, zero, longaddr), PUL_EINVAL);
    assert_int_equal(pul_gateway_route(client, zero, ""), PUL_EINVAL);
    assert_int_equal(pul_gateway_route(client, zero, NULL), 0);
    for (int i = 0; i < 200 && pul__net_has_route(client->net, id); i++) {
        usleep(5000); /* the drop runs on the client's core thread */
    }
    assert_false(pul__net_has_route(client->net, id));
    pul_system_shutdown(client);
    pul_system_shutdown(stranger);
    pul_system_shutdown(owner);
    pul_system_shutdown(gw);
}

static void
test_remote_errors(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, NULL, NULL);
    tcoll_t c;
    assert_int_equal(ask_err(a, id, "biz", &c), PUL_EACTOR);
    assert_int_equal(c.e.kind, PUL_ERRKIND_BUSINESS);
    assert_int_equal(c.e.code, 422);
    assert_string_equal(c.message, "bad input");
    assert_string_equal(c.details, "field x");
    assert_string_equal(c.type_name, "ValueError");
    tcoll_destroy(&c);
    assert_int_equal(ask_err(a, id, "sys", &c), PUL_EACTOR);
    assert_int_equal(c.e.kind, PUL_ERRKIND_SYSTEM);
    assert_int_equal(c.e.recoverable, 1);
    assert_string_equal(c.message, "boom");
    assert_string_equal(c.details, "(null)");
    assert_string_equal(c.type_name, "RuntimeError");
    tcoll_destroy(&c);
    assert_int_equal(ask_err(a, id, "timeout", &c), PUL_EACTOR);
    assert_int_equal(c.e.kind, PUL_ERRKIND_TIMEOUT);
    assert_int_equal(c.e.duration_ms, 1234);
    tcoll_destroy(&c);
    /* Unknown actor on a known node: 404 -> ENOTFOUND. */
    pul_id_t ghost = id;
    ghost.lo ^= 0x5a5a;
    assert_int_equal(ask_err(a, ghost, "echo", &c), PUL_ENOTFOUND);
    tcoll_destroy(&c);
    /* A node nobody knows: ENOTFOUND at once. */
    ghost.hi ^= 0x77;
    assert_int_equal(ask_err(a, ghost, "echo", &c), PUL_ENOTFOUND);
    tcoll_destroy(&c);
    pul_msg_t *m = pul_msg_new("x", "", 0);
    assert_int_equal(pul_tell(a, ghost, m), PUL_ENOTFOUND);
    pul_msg_unref(m); /* still ours on error */
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

static void
test_remote_stream(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, NULL, NULL);
    /* 500 items then end: more than the stream window, so backpressure is exercised. */
    tcoll_t c;
    tcoll_stream(&c, a, id, "stream", "500", NULL);
    assert_int_equal(tcoll_end(&c), PUL_EOF);
    assert_int_equal(c.nitems, 500);
    assert_true(c.order_ok);
    tcoll_destroy(&c);
    /* Items, then a typed error: the items come first, then every field of the error. */
    tcoll_stream(&c, a, id, "stream_fail", "7", NULL);
    assert_int_equal(tcount_wait(&c.done, 1), 1);
    assert_int_equal(c.nitems, 7);
    assert_true(c.order_ok);
    assert_int_equal(c.status, PUL_EACTOR);
    assert_int_equal(c.e.kind, PUL_ERRKIND_BUSINESS);
    assert_int_equal(c.e.code, 418);
    assert_string_equal(c.message, "teapot");
    assert_string_equal(c.details, "after items");
    assert_string_equal(c.type_name, "ValueError");
    tcoll_destroy(&c);
    /* A plain ask of a streaming actor gets the first item. */
    tans_t r;
    assert_int_equal(task_ask(a, id, "stream", "3", 0, &r), 0);
    assert_string_equal(r.data, "item0");
    /* A stream ask of a plain actor gets one item then the end. */
    tcoll_stream(&c, a, id, "echo", "item0", NULL);
    assert_int_equal(tcount_wait(&c.done, 1), 1);
    assert_int_equal(c.nitems, 1);
    assert_int_equal(c.status, PUL_EOF);
    tcoll_destroy(&c);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

static void
test_remote_cancel_and_deadline(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    tact_t *t;
    pul_id_t id = spawn_tact(b, NULL, &t);
    /* Cancel mid-stream: the producer on b sees its stream closed and stops. */
    tcoll_t c;
    pul_call_t *call = NULL;
    tcoll_stream(&c, a, id, "forever", "", &call);
    assert_true(tcount_wait(&c.items, 20) >= 20);
    pul_call_cancel(a, call);
    assert_int_equal(tcoll_end(&c), PUL_ECANCELED);
    assert_int_equal(tcount_wait(&t->stopped_streams, 1), 1);
    tcoll_destroy(&c);
    /* Deadline: an ask that is never answered times out on the caller. */
    tans_t r;
    assert_int_equal(task_ask(a, id, "hold", "", 100, &r), PUL_ETIMEDOUT);
    /* The node still serves. */
    assert_int_equal(task_ask(a, id, "echo", "still", 0, &r), 0);
    assert_string_equal(r.data, "still");
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

static void
test_peer_goes_away(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    tact_t *t;
    pul_id_t id = spawn_tact(b, NULL, &t);
    tans_t r;
    assert_int_equal(task_ask(a, id, "echo", "x", 0, &r), 0);
    /* Calls in flight when the peer shuts down fail with PUL_EIO, no deadline needed. */
    tcoll_t c1, c2;
    tcoll_init(&c1);
    tcoll_init(&c2);
    assert_int_equal(pul_ask(a, id, pul_msg_new("hold", "", 0), 0, tcoll_cb, &c1, NULL), 0);
    assert_int_equal(
        pul_ask_stream(a, id, pul_msg_new("forever", "", 0), 0, tcoll_cb, &c2, NULL), 0);
    assert_int_equal(tcount_wait(&t->held_n, 1), 1);
    assert_true(tcount_wait(&c2.items, 1) >= 1);
    pul_system_shutdown(b);
    assert_int_equal(tcoll_end(&c1), PUL_EIO);
    assert_int_equal(tcoll_end(&c2), PUL_EIO);
    tcoll_destroy(&c1);
    tcoll_destroy(&c2);
    /* New calls fail promptly too (refused, or fast-failed during the backoff). */
    assert_int_equal(task_ask(a, id, "echo", "x", 0, &r), PUL_EIO);
    assert_int_equal(task_ask(a, id, "echo", "x", 0, &r), PUL_EIO);
    pul_system_shutdown(a);
}

static void
test_caller_shuts_down(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    tact_t *t;
    pul_id_t id = spawn_tact(b, NULL, &t);
    tcoll_t c1, c2;
    tcoll_init(&c1);
    tcoll_init(&c2);
    assert_int_equal(pul_ask(a, id, pul_msg_new("hold", "", 0), 0, tcoll_cb, &c1, NULL), 0);
    assert_int_equal(
        pul_ask_stream(a, id, pul_msg_new("forever", "", 0), 0, tcoll_cb, &c2, NULL), 0);
    assert_int_equal(tcount_wait(&t->held_n, 1), 1);
    assert_true(tcount_wait(&c2.items, 1) >= 1);
    /* The caller's system goes: its calls end with PUL_ECLOSED, b's producer is cancelled. */
    pul_system_shutdown(a);
    assert_int_equal(c1.status, PUL_ECLOSED);
    assert_int_equal(c2.status, PUL_ECLOSED);
    assert_int_equal(tcount_wait(&t->stopped_streams, 1), 1);
    tcoll_destroy(&c1);
    tcoll_destroy(&c2);
    pul_system_shutdown(b);
}

static void
test_remote_tell_full_mailbox(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    tact_t *t;
    pul_id_t id = spawn_tact_cap(b, NULL, 1, &t);
    tcount_init(&gate);
    /* The actor blocks b's core thread; then 50 tells arrive for a mailbox of one: they are
     * held (not dropped, not answered) and delivered in order once there is room. */
    assert_int_equal(pul_tell(a, id, pul_msg_new("block", "", 0)), 0);
    for (int i = 1; i <= 50; i++) {
        char buf[16];
        int k = snprintf(buf, sizeof buf, "%d", i);
        assert_int_equal(pul_tell(a, id, pul_msg_new("seq", buf, (size_t)k)), 0);
    }
    tcount_add(&gate, 1);
    assert_int_equal(tcount_wait(&t->told, 50), 50);
    assert_int_equal(t->seq_errors, 0);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
    tcount_destroy(&gate);
}

static void
test_route_drop(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    tact_t *t;
    pul_id_t id = spawn_tact(b, NULL, &t);
    tcoll_t c;
    tcoll_init(&c);
    assert_int_equal(pul_ask(a, id, pul_msg_new("hold", "", 0), 0, tcoll_cb, &c, NULL), 0);
    assert_int_equal(tcount_wait(&t->held_n, 1), 1);
    route_drop(a, pul_system_node_id(b));
    assert_int_equal(tcoll_end(&c), PUL_EIO);
    tcoll_destroy(&c);
    tans_t r;
    assert_int_equal(task_ask(a, id, "echo", "x", 0, &r), PUL_ENOTFOUND);
    route(a, b);
    assert_int_equal(task_ask(a, id, "echo", "back", 0, &r), 0);
    assert_string_equal(r.data, "back");
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

/* ---- raw sockets and a tiny HTTP/2 client (blocking, 10 s cap) ------------------------------- */

#include <poll.h>

static int
tcp_connect_to(const char *addr)
{
    char host[64];
    snprintf(host, sizeof host, "%s", addr);
    char *colon = strrchr(host, ':');
    *colon = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* Read until EOF or error; returns 1 when the peer closed within 10 s. */
static int
wait_closed(int fd)
{
    char buf[4096];
    for (int i = 0; i < 100; i++) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            return 1;
        }
    }
    return 0;
}

typedef struct {
    int fd;
    int status;
    char body[16384];
    size_t len;
    int closed;
} h2get_t;

static ssize_t
h2_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    h2get_t *g = ud;
    ssize_t n = send(g->fd, data, len, MSG_NOSIGNAL);
    return n < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : n;
}

static int
h2_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
          const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    h2get_t *g = ud;
    if (nl == 7 && memcmp(name, ":status", 7) == 0) {
        g->status = atoi((const char *)value);
    }
    return 0;
}

static int
h2_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *d, size_t len, void *ud)
{
    h2get_t *g = ud;
    size_t k = len < sizeof g->body - 1 - g->len ? len : sizeof g->body - 1 - g->len;
    memcpy(g->body + g->len, d, k);
    g->len += k;
    g->body[g->len] = '\0';
    return 0;
}

static int
h2_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    ((h2get_t *)ud)->closed = 1;
    return 0;
}

typedef struct {
    const uint8_t *p;
    size_t len;
} h2body_t;

static ssize_t
h2_body_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
             nghttp2_data_source *src, void *ud)
{
    h2body_t *b = src->ptr;
    size_t k = b->len < len ? b->len : len;
    memcpy(buf, b->p, k);
    b->p += k;
    b->len -= k;
    if (b->len == 0) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)k;
}

/* One request with prior-knowledge h2c (POST when body != NULL, with pul-mode/pul-type).
 * Returns the HTTP status (0 on failure). */
static int
h2_req_mode(const char *addr, const char *path, const char *mode, const void *body, size_t blen,
            h2get_t *g)
{
    memset(g, 0, sizeof *g);
    g->fd = tcp_connect_to(addr);
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, h2_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_close);
    nghttp2_session *ses;
    nghttp2_session_client_new(&ses, cbs, g);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(ses, NGHTTP2_FLAG_NONE, NULL, 0);
    const char *method = body != NULL ? "POST" : "GET";
    nghttp2_nv nva[] = {
        {(uint8_t *)":method", (uint8_t *)method, 7, strlen(method), 0},
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":authority", (uint8_t *)addr, 10, strlen(addr), 0},
        {(uint8_t *)"pul-mode", (uint8_t *)mode, 8, strlen(mode), 0},
        {(uint8_t *)"pul-type", (uint8_t *)"echo", 8, 4, 0},
    };
    h2body_t hb = {body, blen};
    nghttp2_data_provider prov = {.source.ptr = &hb, .read_callback = h2_body_read};
    nghttp2_submit_request(ses, NULL, nva, body != NULL ? 6 : 4, body != NULL ? &prov : NULL,
                           NULL);
    for (int i = 0; i < 100 && !g->closed; i++) {
        if (nghttp2_session_send(ses) != 0) {
            break;
        }
        struct pollfd p = {g->fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        uint8_t buf[16384];
        ssize_t n = recv(g->fd, buf, sizeof buf, 0);
        if (n <= 0 || nghttp2_session_mem_recv(ses, buf, (size_t)n) < 0) {
            break;
        }
    }
    nghttp2_session_del(ses);
    close(g->fd);
    return g->closed ? g->status : 0;
}

static int
h2_req(const char *addr, const char *path, const void *body, size_t blen, h2get_t *g)
{
    return h2_req_mode(addr, path, "ask", body, blen, g);
}

static int
h2_get(const char *addr, const char *path, h2get_t *g)
{
    return h2_req(addr, path, NULL, 0, g);
}

/* ---- tells in batches ("tells" requests) --------------------------------------------------- */

typedef struct {
    pul_system_t *sys;
    pul_id_t one, two;
    long n;      /* "seq" tells to one, 1..n; every third also one to two */
    long big;    /* then this many to one with a 64 KiB segment each (several batches) */
    tans_t last; /* "lastseq" asked of one right after, in the same turn */
} tells_op_t;

static uint8_t tells_chunk[64 * 1024];

static void
tells_task(void *arg)
{
    tells_op_t *op = arg;
    char buf[32];
    for (long i = 1; i <= op->n + op->big; i++) {
        int k = snprintf(buf, sizeof buf, "%ld", i);
        pul_msg_t *m = pul_msg_new("seq", buf, (size_t)k);
        if (i > op->n) {
            pul_msg_add_segment(m, tells_chunk, sizeof tells_chunk, NULL, NULL);
        }
        assert_int_equal(pul_tell(op->sys, op->one, m), 0);
        if (i % 3 == 0 && i <= op->n) {
            k = snprintf(buf, sizeof buf, "%ld", i / 3);
            assert_int_equal(pul_tell(op->sys, op->two, pul_msg_new("seq", buf, (size_t)k)), 0);
        }
    }
    /* Made after the tells on the same turn: it must not overtake them. */
    assert_int_equal(pul_ask(op->sys, op->one, pul_msg_new("lastseq", "", 0), 0, tans_cb,
                             &op->last, NULL),
                     0);
}

/* Tells made in a row on the core thread travel in batches: every one arrives, in order per
 * actor, tells to two actors interleaved, large ones split over several requests, and an ask made
 * after them does not overtake them. */
static void
test_remote_tells_batched(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    tact_t *t1, *t2;
    tells_op_t op = {.sys = a, .n = 5000, .big = 40};
    op.one = spawn_tact(b, NULL, &t1);
    op.two = spawn_tact(b, NULL, &t2);
    memset(&op.last, 0, sizeof op.last);
    tcount_init(&op.last.done);
    pul_test_on_core(a, tells_task, &op);
    tcount_wait(&op.last.done, 1);
    assert_int_equal(op.last.status, 0);
    assert_int_equal(atol(op.last.data), op.n + op.big);
    assert_int_equal(tcount_wait(&t1->told, op.n + op.big), op.n + op.big);
    assert_int_equal(tcount_wait(&t2->told, op.n / 3), op.n / 3);
    assert_int_equal(t1->seq_errors, 0);
    assert_int_equal(t2->seq_errors, 0);
    /* A second round on the same connection. */
    tcount_destroy(&op.last.done);
    memset(&op.last, 0, sizeof op.last);
    tcount_init(&op.last.done);
    t1->seen_seq = 0;
    t2->seen_seq = 0;
    op.big = 0;
    pul_test_on_core(a, tells_task, &op);
    tcount_wait(&op.last.done, 1);
    assert_int_equal(atol(op.last.data), op.n);
    assert_int_equal(tcount_wait(&t2->told, 2 * (op.n / 3)), 2 * (op.n / 3));
    assert_int_equal(t1->seq_errors, 0);
    assert_int_equal(t2->seq_errors, 0);
    tcount_destroy(&op.last.done);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

typedef struct {
    pul_system_t *sys;
    pul_id_t ghost, real;
} ghost_op_t;

static void
ghost_task(void *arg)
{
    ghost_op_t *op = arg;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(pul_tell(op->sys, op->ghost, pul_msg_new("tell", "x", 1)), 0);
    }
    assert_int_equal(pul_tell(op->sys, op->real, pul_msg_new("tell", "x", 1)), 0);
}

static unsigned long long
metric(pul_system_t *sys, const char *name)
{
    h2get_t g;
    assert_int_equal(h2_get(pul_system_addr(sys), "/metrics", &g), 200);
    char line[128];
    snprintf(line, sizeof line, "\n%s ", name); /* the sample, not its # HELP line */
    const char *p = strstr(g.body, line);
    assert_non_null(p);
    return strtoull(p + strlen(line), NULL, 10);
}

/* A batch of tells to an actor that does not exist on the other node: refused there (404),
 * counted as errors by the sender; the next batch, to a live actor, is delivered. */
static void
test_remote_tells_refused(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    tact_t *t;
    ghost_op_t op = {.sys = a};
    op.real = spawn_tact(b, NULL, &t);
    op.ghost = op.real;
    op.ghost.lo ^= 0x5a5a5a5a; /* b's prefix, no such actor */
    unsigned long long before = metric(a, "pulsing_errors_total");
    pul_test_on_core(a, ghost_task, &op);
    assert_int_equal(tcount_wait(&t->told, 1), 1);
    /* The refusal of the first batch comes back before the 202 of the second (one connection,
     * answered in order on b's core thread); read it once the answer is in. */
    for (int i = 0; i < 100 && metric(a, "pulsing_errors_total") < before + 1; i++) {
        usleep(10000);
    }
    assert_true(metric(a, "pulsing_errors_total") >= before + 1);
    tans_t r;
    assert_int_equal(task_ask(a, op.real, "echo", "still", 0, &r), 0);
    assert_string_equal(r.data, "still");
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

/* One "tells" frame: kind, length, type, message encoding of payload (no segments). */
static size_t
tells_frame(uint8_t *out, unsigned kind, const char *type, const char *payload)
{
    size_t tl = strlen(type), pl = strlen(payload);
    uint32_t len = (uint32_t)(1 + tl + 12 + pl);
    size_t n = 0;
    out[n++] = (uint8_t)kind;
    out[n++] = (uint8_t)(len >> 24);
    out[n++] = (uint8_t)(len >> 16);
    out[n++] = (uint8_t)(len >> 8);
    out[n++] = (uint8_t)len;
    out[n++] = (uint8_t)tl;
    memcpy(out + n, type, tl);
    n += tl;
    memset(out + n, 0, 12); /* nseg 0, then the payload's u64 length */
    out[n + 11] = (uint8_t)pl;
    n += 12;
    memcpy(out + n, payload, pl);
    return n + pl;
}

/* "tells" requests from a raw HTTP/2 client: a good batch is answered 202 once delivered; a body
 * that ends inside a frame, a frame that is not an item, a type with a control character: 400;
 * a frame longer than the maximum: 413; an unknown actor: 404; an empty batch: 202. The node
 * keeps serving. */
static void
test_tells_raw(void **state)
{
    (void)state;
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    cfg.listen_addr = "127.0.0.1:0";
    cfg.max_message_size = 1u << 20;
    pul_system_t *b = NULL;
    assert_int_equal(pul_system_new(&cfg, &b), 0);
    tact_t *t;
    pul_id_t id = spawn_tact(b, "svc/tells", &t);
    char path[48] = "/actors/";
    pul_id_format(id, path + 8);
    const char *addr = pul_system_addr(b);
    uint8_t body[512];
    size_t n = 0;
    n += tells_frame(body + n, 1, "seq", "1");
    n += tells_frame(body + n, 1, "seq", "2");
    n += tells_frame(body + n, 1, "seq", "3");
    h2get_t g;
    assert_int_equal(h2_req_mode(addr, path, "tells", body, n, &g), 202);
    assert_int_equal(tcount_wait(&t->told, 3), 3);
    assert_int_equal(t->seq_errors, 0);
    /* By name as well. */
    n = tells_frame(body, 1, "seq", "4");
    assert_int_equal(h2_req_mode(addr, "/named/svc/tells", "tells", body, n, &g), 202);
    assert_int_equal(tcount_wait(&t->told, 4), 4);
    /* Ends inside the second frame: the first, whole, was delivered as it arrived. */
    n = tells_frame(body, 1, "seq", "5");
    size_t k = tells_frame(body + n, 1, "seq", "6");
    assert_int_equal(h2_req_mode(addr, path, "tells", body, n + k - 3, &g), 400);
    assert_int_equal(tcount_wait(&t->told, 5), 5);
    /* Not an item; a control character in the type. */
    n = tells_frame(body, 2, "seq", "7");
    assert_int_equal(h2_req_mode(addr, path, "tells", body, n, &g), 400);
    n = tells_frame(body, 1, "s\x01q", "7");
    assert_int_equal(h2_req_mode(addr, path, "tells", body, n, &g), 400);
    /* A frame claiming more than b's maximum. */
    n = tells_frame(body, 1, "seq", "8");
    body[1] = 0x10;
    assert_int_equal(h2_req_mode(addr, path, "tells", body, n, &g), 413);
    /* An unknown actor, an unknown name, an empty batch. */
    char ghost[48] = "/actors/";
    pul_id_t gid = id;
    gid.lo ^= 1;
    pul_id_format(gid, ghost + 8);
    n = tells_frame(body, 1, "seq", "9");
    assert_int_equal(h2_req_mode(addr, ghost, "tells", body, n, &g), 404);
    assert_int_equal(h2_req_mode(addr, "/named/svc/nobody", "tells", body, n, &g), 404);
    assert_int_equal(h2_req_mode(addr, path, "tells", "", 0, &g), 202);
    /* Good tells after all that, still in order (5 was the last delivered). */
    n = tells_frame(body, 1, "seq", "6");
    assert_int_equal(h2_req_mode(addr, path, "tells", body, n, &g), 202);
    assert_int_equal(tcount_wait(&t->told, 6), 6);
    assert_int_equal(t->seq_errors, 0);
    assert_int_equal(tcount_get(&t->told), 6);
    pul_system_shutdown(b);
}

static void
test_bad_requests(void **state)
{
    (void)state;
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    cfg.listen_addr = "127.0.0.1:0";
    cfg.max_message_size = 1u << 20;
    pul_system_t *b = NULL;
    assert_int_equal(pul_system_new(&cfg, &b), 0);
    pul_system_t *a = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, NULL, NULL);
    char path[48] = "/actors/";
    pul_id_format(id, path + 8);
    h2get_t g;
    /* A body that is not a message encoding: 400. */
    assert_int_equal(h2_req(pul_system_addr(b), path, "abc", 3, &g), 400);
    uint8_t ok[12] = {0};
    assert_int_equal(h2_req(pul_system_addr(b), path, ok, 12, &g), 200);
    /* More bytes than the encoding announces: 400. */
    uint8_t extra[14] = {0};
    assert_int_equal(h2_req(pul_system_addr(b), path, extra, 14, &g), 400);
    assert_int_equal(h2_req(pul_system_addr(b), "/actors/zz", ok, 12, &g), 400);
    /* A length over b's max, claimed in the header: 413 before anything is allocated. */
    uint8_t big[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0};
    assert_int_equal(h2_req(pul_system_addr(b), path, big, 12, &g), 413);
    /* From a node with a larger maximum: the caller gets ETOOBIG. */
    size_t n = 2u << 20;
    char *payload = calloc(1, n);
    pul_msg_t *m = pul_msg_new("echo", payload, n);
    free(payload);
    tans_t r;
    memset(&r, 0, sizeof r);
    tcount_init(&r.done);
    assert_int_equal(pul_ask(a, id, m, 0, tans_cb, &r, NULL), 0);
    tcount_wait(&r.done, 1);
    tcount_destroy(&r.done);
    assert_int_equal(r.status, PUL_ETOOBIG);
    /* The connection still serves. */
    assert_int_equal(task_ask(a, id, "echo", "fine", 0, &r), 0);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

static void
test_rest(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, "svc/rest", NULL);
    tans_t r;
    assert_int_equal(task_ask(a, id, "echo", "x", 0, &r), 0);
    h2get_t g;
    assert_int_equal(h2_get(pul_system_addr(b), "/health", &g), 200);
    assert_non_null(strstr(g.body, "\"status\":\"ok\""));
    char hex[33];
    pul_id_format(pul_system_node_id(b), hex);
    assert_non_null(strstr(g.body, hex));
    assert_int_equal(h2_get(pul_system_addr(b), "/metrics", &g), 200);
    assert_non_null(strstr(g.body, "pulsing_messages_total{direction=\"in\"}"));
    assert_non_null(strstr(g.body, "pulsing_call_duration_seconds_count 1"));
    assert_non_null(strstr(g.body, "pulsing_actors 1"));
    assert_non_null(strstr(g.body, "pulsing_members{status=\"Alive\"} 1"));
    assert_int_equal(h2_get(pul_system_addr(b), "/actors", &g), 200);
    assert_non_null(strstr(g.body, "svc/rest"));
    assert_int_equal(h2_get(pul_system_addr(b), "/cluster/members", &g), 200);
    assert_non_null(strstr(g.body, hex));
    assert_int_equal(h2_get(pul_system_addr(b), "/nope", &g), 404);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

static void
test_garbage_peer(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, NULL, NULL);
    tans_t r;
    assert_int_equal(task_ask(a, id, "echo", "before", 0, &r), 0);
    /* Garbage instead of the preface: that connection is closed, a's keeps working. */
    int fd = tcp_connect_to(pul_system_addr(b));
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xfe garbage garbage garbage";
    assert_true(send(fd, junk, sizeof junk, MSG_NOSIGNAL) > 0);
    assert_int_equal(wait_closed(fd), 1);
    close(fd);
    /* A valid preface followed by a bad frame: GOAWAY, closed. */
    fd = tcp_connect_to(pul_system_addr(b));
    const char pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                       "\x00\x00\x04\x09\x00\x00\x00\x00\x01zzzz"; /* CONTINUATION out of place */
    assert_true(send(fd, pre, sizeof pre - 1, MSG_NOSIGNAL) > 0);
    assert_int_equal(wait_closed(fd), 1);
    close(fd);
    assert_int_equal(task_ask(a, id, "echo", "after", 0, &r), 0);
    assert_string_equal(r.data, "after");
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

static void
test_random_frames(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, NULL, NULL);
    uint32_t x = 12345;
    for (int c = 0; c < 30; c++) {
        int fd = tcp_connect_to(pul_system_addr(b));
        uint8_t buf[4096];
        size_t n = 0;
        static const char pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        memcpy(buf, pre, sizeof pre - 1);
        n = sizeof pre - 1;
        /* an empty SETTINGS, then frames with random headers and payloads */
        static const uint8_t settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
        memcpy(buf + n, settings, 9);
        n += 9;
        while (n + 9 + 64 < sizeof buf) {
            x = x * 1103515245u + 12345u;
            uint32_t len = (x >> 8) % 64;
            uint8_t type = (uint8_t)((x >> 20) % 10);
            x = x * 1103515245u + 12345u;
            uint8_t hdr[9] = {0, 0, (uint8_t)len, type, (uint8_t)(x >> 24),
                              0, 0, 0, (uint8_t)(1 + 2 * ((x >> 16) % 8))};
            memcpy(buf + n, hdr, 9);
            n += 9;
            for (uint32_t k = 0; k < len; k++) {
                x = x * 1103515245u + 12345u;
                buf[n++] = (uint8_t)(x >> 16);
            }
        }
        (void)send(fd, buf, n, MSG_NOSIGNAL);
        assert_int_equal(wait_closed(fd), 1);
        close(fd);
    }
    tans_t r;
    assert_int_equal(task_ask(a, id, "echo", "alive", 0, &r), 0);
    assert_string_equal(r.data, "alive");
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

static void
test_rapid_reset(void **state)
{
    (void)state;
    pul_system_t *b = node_new();
    h2get_t g;
    memset(&g, 0, sizeof g);
    g.fd = tcp_connect_to(pul_system_addr(b));
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, h2_send);
    nghttp2_session *ses;
    nghttp2_session_client_new(&ses, cbs, &g);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(ses, NGHTTP2_FLAG_NONE, NULL, 0);
    nghttp2_nv nva[] = {
        {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
        {(uint8_t *)":path", (uint8_t *)"/health", 5, 7, 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0},
    };
    /* Open and reset streams in a loop: past the limit the node says GOAWAY and closes. */
    for (int i = 0; i < 3000; i++) {
        int32_t sid = nghttp2_submit_request(ses, NULL, nva, 4, NULL, NULL);
        if (sid < 0 || nghttp2_session_send(ses) != 0) {
            break;
        }
        nghttp2_submit_rst_stream(ses, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
        if (nghttp2_session_send(ses) != 0) {
            break; /* the node already closed */
        }
    }
    assert_int_equal(wait_closed(g.fd), 1);
    nghttp2_session_del(ses);
    close(g.fd);
    h2get_t g2;
    assert_int_equal(h2_get(pul_system_addr(b), "/health", &g2), 200);
    pul_system_shutdown(b);
}

static void
test_max_connections(void **state)
{
    (void)state;
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    cfg.listen_addr = "127.0.0.1:0";
    cfg.max_connections = 2;
    pul_system_t *b = NULL;
    assert_int_equal(pul_system_new(&cfg, &b), 0);
    h2get_t g;
    int fds[3];
    for (int i = 0; i < 2; i++) {
        fds[i] = tcp_connect_to(pul_system_addr(b));
    }
    /* The third is accepted and closed at once. */
    fds[2] = tcp_connect_to(pul_system_addr(b));
    assert_int_equal(wait_closed(fds[2]), 1);
    close(fds[2]);
    close(fds[0]);
    close(fds[1]);
    /* Once they are gone, new connections are served again. */
    int st = 0;
    for (int i = 0; i < 50 && st != 200; i++) {
        st = h2_get(pul_system_addr(b), "/health", &g);
        if (st != 200) {
            usleep(20000);
        }
    }
    assert_int_equal(st, 200);
    pul_system_shutdown(b);
}

static void
test_silent_peer(void **state)
{
    (void)state;
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    cfg.listen_addr = "127.0.0.1:0";
    cfg.max_connections = 1;
    cfg.connect_timeout_ms = 200;
    pul_system_t *b = NULL;
    assert_int_equal(pul_system_new(&cfg, &b), 0);
    /* Connects, says nothing: closed after the handshake timeout, its slot freed. */
    int fd = tcp_connect_to(pul_system_addr(b));
    assert_int_equal(wait_closed(fd), 1);
    close(fd);
    h2get_t g;
    int st = 0;
    for (int i = 0; i < 50 && st != 200; i++) {
        st = h2_get(pul_system_addr(b), "/health", &g);
        if (st != 200) {
            usleep(20000);
        }
    }
    assert_int_equal(st, 200);
    pul_system_shutdown(b);
}

static void
test_bind_errors(void **state)
{
    (void)state;
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    pul_system_t *s = NULL;
    cfg.listen_addr = "not-an-address";
    assert_int_equal(pul_system_new(&cfg, &s), PUL_EADDR);
    cfg.listen_addr = "127.0.0.1:99999";
    assert_int_equal(pul_system_new(&cfg, &s), PUL_EADDR);
    pul_system_t *a = node_new();
    cfg.listen_addr = pul_system_addr(a); /* taken */
    assert_int_equal(pul_system_new(&cfg, &s), PUL_EADDR);
    /* Wildcard: a routable address is advertised; advertise_addr wins when given. */
    cfg.listen_addr = "0.0.0.0:0";
    assert_int_equal(pul_system_new(&cfg, &s), 0);
    assert_true(strncmp(pul_system_addr(s), "0.0.0.0", 7) != 0);
    pul_system_shutdown(s);
    cfg.advertise_addr = "node7.example:4000";
    const char *seeds[] = {"127.0.0.1:1"};
    cfg.seeds = seeds;
    cfg.nseeds = 1;
    assert_int_equal(pul_system_new(&cfg, &s), 0);
    assert_string_equal(pul_system_addr(s), "node7.example:4000");
    pul_system_shutdown(s);
    /* No listener: no address, but it can still call other nodes. */
    pul_system_config_init(&cfg);
    assert_int_equal(pul_system_new(&cfg, &s), 0);
    assert_null(pul_system_addr(s));
    route(s, a);
    pul_id_t id = spawn_tact(a, NULL, NULL);
    tans_t r;
    assert_int_equal(task_ask(s, id, "echo", "from-client", 0, &r), 0);
    assert_string_equal(r.data, "from-client");
    pul_system_shutdown(s);
    pul_system_shutdown(a);
}

/* ---- backpressure: a caller that does not read holds the producer ---------------------- */

static ssize_t
body_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
          nghttp2_data_source *src, void *ud)
{
    /* The message encoding of an empty payload: nseg 0, len 0. */
    memset(buf, 0, 12);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 12;
}

/* Count after waiting up to ms (a bound, never a pass condition by itself). */
static long
tcount_wait_ms(tcount_t *c, long n, long ms)
{
    for (long waited = 0; waited < ms && tcount_get(c) < n; waited += 10) {
        usleep(10000);
    }
    return tcount_get(c);
}

static void
test_stream_backpressure(void **state)
{
    (void)state;
    pul_system_t *b = node_new();
    tact_t *t;
    pul_id_t id = spawn_tact(b, NULL, &t);
    h2get_t g;
    memset(&g, 0, sizeof g);
    g.fd = tcp_connect_to(pul_system_addr(b));
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, h2_send);
    nghttp2_session *ses;
    nghttp2_session_client_new(&ses, cbs, &g);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(ses, NGHTTP2_FLAG_NONE, NULL, 0);
    char path[48] = "/actors/";
    pul_id_format(id, path + 8);
    nghttp2_nv nva[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0},
        {(uint8_t *)"pul-mode", (uint8_t *)"stream", 8, 6, 0},
        {(uint8_t *)"pul-type", (uint8_t *)"forever_big", 8, 11, 0},
    };
    nghttp2_data_provider prov = {.read_callback = body_read};
    assert_true(nghttp2_submit_request(ses, NULL, nva, 6, &prov, NULL) > 0);
    assert_int_equal(nghttp2_session_send(ses), 0);
    /* We never read: our 64 KiB window fills, then the node's output bound (1 MiB), then the
     * stream window (32 items); 64 KiB items, so a few dozen at most are ever produced. */
    assert_true(tcount_wait(&t->produced, 1) >= 1);
    long n = tcount_wait_ms(&t->produced, 400, 1500);
    assert_true(n < 200);
    /* Going away cancels the producer. */
    nghttp2_session_del(ses);
    close(g.fd);
    assert_int_equal(tcount_wait(&t->stopped_streams, 1), 1);
    pul_system_shutdown(b);
}

/* ---- backpressure: a caller that pauses its stream call holds the remote producer -------- */

static void
test_client_pause(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    tact_t *t;
    pul_id_t id = spawn_tact(b, NULL, &t);
    /* 1000 items of 64 KiB: far more than one 16 MiB HTTP/2 stream window. */
    tcoll_t c;
    pul_call_t *call = NULL;
    tcoll_stream(&c, a, id, "stream_big", "1000", &call);
    assert_true(tcount_wait(&c.items, 3) >= 3);
    assert_int_equal(pul_call_pause(a, call, 1), 0);
    /* Paused: a stops returning window, so b's window (256 items), output bound and stream
     * window fill and the producer is held well before the end. */
    long n = tcount_wait_ms(&t->produced, 1000, 2000);
    assert_true(n < 600);
    long got = tcount_wait_ms(&c.items, 1000, 300);
    assert_true(got <= n);
    assert_int_equal(tcount_get(&c.done), 0);
    /* Pausing twice, then resuming: everything arrives, in order. */
    assert_int_equal(pul_call_pause(a, call, 1), 0);
    assert_int_equal(pul_call_pause(a, call, 0), 0);
    assert_int_equal(tcoll_end(&c), PUL_EOF);
    assert_int_equal(c.nitems, 1000);
    assert_true(c.order_ok);
    assert_int_equal(tcount_get(&t->produced), 1000);
    pul_call_release(a, call);
    tcoll_destroy(&c);
    /* Cancel while paused: the producer sees its stream closed, nothing is left behind. */
    tcoll_stream(&c, a, id, "forever_big", "", &call);
    assert_true(tcount_wait(&c.items, 3) >= 3);
    assert_int_equal(pul_call_pause(a, call, 1), 0);
    (void)tcount_wait_ms(&t->produced, 100000, 300);
    pul_call_cancel(a, call);
    assert_int_equal(tcoll_end(&c), PUL_ECANCELED);
    assert_int_equal(tcount_wait(&t->stopped_streams, 1), 1);
    tcoll_destroy(&c);
    /* A local stream call paused the same way: the producer is held by the stream window. */
    tact_t *lt;
    pul_id_t lid = spawn_tact(a, NULL, &lt);
    tcoll_stream(&c, a, lid, "stream", "1000", &call);
    assert_int_equal(pul_call_pause(a, call, 1), 0);
    n = tcount_wait_ms(&lt->produced, 1000, 1000);
    assert_true(n < 200);
    assert_int_equal(pul_call_pause(a, call, 0), 0);
    assert_int_equal(tcount_wait(&c.done, 1), 1);
    assert_int_equal(c.nitems, 1000);
    assert_true(c.order_ok);
    pul_call_release(a, call);
    tcoll_destroy(&c);
    /* The caller's system shuts down while a remote and a local stream are paused (with pause
     * requests still in flight): both end with PUL_ECLOSED, nothing is left behind. */
    tcoll_t c2;
    tcoll_init(&c);
    tcoll_init(&c2);
    pul_call_t *call2 = NULL;
    call = NULL;
    assert_int_equal(
        pul_ask_stream(a, id, pul_msg_new("forever_big", "", 0), 0, tcoll_cb, &c, &call), 0);
    assert_int_equal(
        pul_ask_stream(a, lid, pul_msg_new("forever", "", 0), 0, tcoll_cb, &c2, &call2), 0);
    assert_true(tcount_wait(&c.items, 3) >= 3);
    assert_int_equal(pul_call_pause(a, call, 1), 0);
    assert_int_equal(pul_call_pause(a, call2, 1), 0);
    (void)tcount_wait_ms(&t->produced, 100000, 200);
    (void)pul_call_pause(a, call, 0);
    (void)pul_call_pause(a, call2, 1);
    pul_system_shutdown(a);
    assert_int_equal(c.status, PUL_ECLOSED);
    assert_int_equal(c2.status, PUL_ECLOSED);
    pul_call_release(a, call);
    pul_call_release(a, call2);
    tcoll_destroy(&c);
    tcoll_destroy(&c2);
    pul_system_shutdown(b);
}

/* ---- control plane ------------------------------------------------------------------------ */

static int
echo_handler(void *arg, const char *path, const uint8_t *body, size_t len, uint8_t **resp,
             size_t *resp_len)
{
    (*(long *)arg)++;
    if (strcmp(path, "/cluster/gossip") == 0) {
        return 204;
    }
    *resp = pul__malloc(len + 5);
    memcpy(*resp, "pong:", 5);
    memcpy(*resp + 5, body, len);
    *resp_len = len + 5;
    return 200;
}

typedef struct {
    pul_system_t *sys;
    const char *addr;
    const char *path;
    uint64_t timeout_ms;
    long *hits;
    int rc;
    int status;
    int calls;
    char body[64];
    tcount_t done;
} post_op_t;

static void
post_cb(int status, const uint8_t *body, size_t len, void *arg)
{
    post_op_t *op = arg;
    op->status = status;
    op->calls++;
    snprintf(op->body, sizeof op->body, "%.*s", (int)len, body ? (const char *)body : "");
    tcount_add(&op->done, 1);
}

static void
post_task(void *arg)
{
    post_op_t *op = arg;
    if (op->hits != NULL) {
        op->rc = pul__net_handle(op->sys->net, "/cluster/", echo_handler, op->hits);
        tcount_add(&op->done, 1);
        return;
    }
    op->rc = pul__net_post(op->sys->net, op->addr, op->path, (const uint8_t *)"ping", 4,
                           op->timeout_ms, post_cb, op);
    if (op->rc != 0) {
        tcount_add(&op->done, 1);
    }
}

/* Serves /cluster/ on `sys` with the echo handler (counting into *hits), from its core thread. */
static void
serve_echo(pul_system_t *sys, post_op_t *op, long *hits)
{
    memset(op, 0, sizeof *op);
    op->sys = sys;
    op->hits = hits;
    tcount_init(&op->done);
    assert_int_equal(pul_system_post(sys, post_task, op), 0);
    tcount_wait(&op->done, 1);
    tcount_destroy(&op->done);
    assert_int_equal(op->rc, 0);
}

static int
do_post(pul_system_t *from, const char *addr, const char *path, uint64_t timeout_ms,
        post_op_t *op)
{
    memset(op, 0, sizeof *op);
    op->sys = from;
    op->addr = addr;
    op->path = path;
    op->timeout_ms = timeout_ms;
    tcount_init(&op->done);
    assert_int_equal(pul_system_post(from, post_task, op), 0);
    tcount_wait(&op->done, 1);
    usleep(1000); /* a second callback would show up here */
    tcount_destroy(&op->done);
    assert_int_equal(op->rc, 0);
    assert_int_equal(op->calls, 1);
    return op->status;
}

/* ---- pul_http_get: REST over the client side of the transport ---------------------------- */

typedef struct {
    int status;
    int calls;
    char type[16];
    char body[4096];
    tcount_t done;
} hget_op_t;

static void
hget_cb(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    (void)err;
    hget_op_t *op = arg;
    op->status = status;
    op->calls++;
    if (reply != NULL) {
        size_t len = 0;
        const void *p = pul_msg_data(reply, &len);
        snprintf(op->type, sizeof op->type, "%s", pul_msg_type(reply));
        snprintf(op->body, sizeof op->body, "%.*s", (int)len, (const char *)p);
    }
    tcount_add(&op->done, 1);
}

static int
do_get(pul_system_t *from, const char *addr, const char *path, uint64_t timeout_ms,
       hget_op_t *op)
{
    memset(op, 0, sizeof *op);
    tcount_init(&op->done);
    assert_int_equal(pul_http_get(from, addr, path, timeout_ms, hget_cb, op), 0);
    tcount_wait(&op->done, 1);
    usleep(1000); /* a second callback would show up here */
    tcount_destroy(&op->done);
    assert_int_equal(op->calls, 1);
    return op->status;
}

static void
test_http_get(void **state)
{
    (void)state;
    pul_system_t *b = node_new();
    /* The caller has no listener: GET needs only the client side. */
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    pul_system_t *a = NULL;
    assert_int_equal(pul_system_new(&cfg, &a), 0);
    hget_op_t op;
    assert_int_equal(do_get(a, pul_system_addr(b), "/health", 2000, &op), 0);
    assert_string_equal(op.type, "200");
    assert_non_null(strstr(op.body, "{"));
    assert_int_equal(do_get(a, pul_system_addr(b), "/cluster/members", 2000, &op), 0);
    assert_string_equal(op.type, "200");
    assert_non_null(strstr(op.body, pul_system_addr(b)));
    assert_int_equal(do_get(a, pul_system_addr(b), "/metrics", 2000, &op), 0);
    assert_string_equal(op.type, "200");
    assert_int_equal(do_get(a, pul_system_addr(b), "/nope", 2000, &op), 0);
    assert_string_equal(op.type, "404");
    /* Bad arguments are refused at once; no callback. */
    assert_int_equal(pul_http_get(a, pul_system_addr(b), "health", 0, hget_cb, &op), PUL_EINVAL);
    assert_int_equal(pul_http_get(a, pul_system_addr(b), "/x", 0, NULL, &op), PUL_EINVAL);
    /* Nobody listening: a transport failure. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char dead[32];
    snprintf(dead, sizeof dead, "127.0.0.1:%d", ntohs(sa.sin_port));
    assert_int_equal(do_get(a, dead, "/health", 2000, &op), PUL_EIO);
    close(fd);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

static void
test_control_plane(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    long hits = 0;
    post_op_t op;
    serve_echo(b, &op, &hits);
    assert_int_equal(do_post(a, pul_system_addr(b), "/cluster/sync", 2000, &op), 200);
    assert_string_equal(op.body, "pong:ping");
    assert_int_equal(do_post(a, pul_system_addr(b), "/cluster/gossip", 2000, &op), 204);
    assert_int_equal(hits, 2);
    assert_int_equal(do_post(a, pul_system_addr(b), "/head/register", 2000, &op), 404);
    /* Nobody listening: a transport failure. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char dead[32];
    snprintf(dead, sizeof dead, "127.0.0.1:%d", ntohs(sa.sin_port));
    assert_int_equal(do_post(a, dead, "/cluster/gossip", 2000, &op), PUL_EIO);
    /* Listening but never answering: the timeout. */
    assert_int_equal(listen(fd, 4), 0);
    char mute[32];
    snprintf(mute, sizeof mute, "127.0.0.1:%d", ntohs(sa.sin_port));
    post_op_t op2;
    int st = 0;
    /* (a dial that failed a moment ago fails fast with EIO until its backoff has passed) */
    for (int i = 0; i < 100 && st != PUL_ETIMEDOUT; i++) {
        st = do_post(a, mute, "/cluster/gossip", 100, &op2);
        assert_true(st == PUL_ETIMEDOUT || st == PUL_EIO);
        if (st != PUL_ETIMEDOUT) {
            usleep(30000);
        }
    }
    assert_int_equal(st, PUL_ETIMEDOUT);
    close(fd);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

/* Host names are looked up off the core thread (uv_getaddrinfo): a post to localhost:<port>
 * arrives; one to a name that cannot resolve (RFC 2606 .invalid) fails with PUL_EIO, however
 * slow the resolver (a connect timeout far longer than any test run keeps a slow lookup from
 * passing for a timeout); a system shut down while a lookup is pending frees everything. */
static void
test_host_names(void **state)
{
    (void)state;
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    cfg.listen_addr = "127.0.0.1:0";
    cfg.connect_timeout_ms = 600000;
    pul_system_t *a = NULL;
    assert_int_equal(pul_system_new(&cfg, &a), 0);
    pul_system_t *b = node_new();
    long hits = 0;
    post_op_t op;
    serve_echo(b, &op, &hits);
    char named[64];
    snprintf(named, sizeof named, "localhost:%s", strrchr(pul_system_addr(b), ':') + 1);
    assert_int_equal(do_post(a, named, "/cluster/gossip", 600000, &op), 204);
    assert_int_equal(do_post(a, named, "/cluster/sync", 600000, &op), 200); /* resolved once */
    assert_int_equal(hits, 2);
    assert_int_equal(do_post(a, "no-such-host.invalid:1", "/cluster/gossip", 600000, &op),
                     PUL_EIO);
    /* The other peer is not disturbed. */
    assert_int_equal(do_post(a, pul_system_addr(b), "/cluster/gossip", 600000, &op), 204);

    /* Shut down with a lookup pending: the post calls back (closed), nothing leaks. */
    pul_system_t *c = node_new();
    post_op_t op3;
    memset(&op3, 0, sizeof op3);
    op3.sys = c;
    op3.addr = named;
    op3.path = "/cluster/gossip";
    op3.timeout_ms = 600000;
    tcount_init(&op3.done);
    assert_int_equal(pul_system_post(c, post_task, &op3), 0);
    pul_system_shutdown(c);
    assert_int_equal(tcount_wait(&op3.done, 1), 1);
    tcount_destroy(&op3.done);
    assert_int_equal(op3.rc, 0);
    assert_int_equal(op3.calls, 1);
    assert_true(op3.status < 0);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

/* ---- three nodes, concurrency, allocation failures, fd hygiene --------------------------------- */

typedef struct {
    pul_system_t *sys;
    pul_id_t next; /* forward asks here */
} fwd_t;

static void
fwd_done(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    pul_reply_t *r = arg;
    if (status == 0) {
        size_t len;
        const char *d = pul_msg_data(reply, &len);
        char buf[256];
        int k = snprintf(buf, sizeof buf, "via:%.*s", (int)len, d);
        pul_reply_send(r, pul_msg_new("fwd", buf, (size_t)k));
    } else if (status == PUL_EACTOR) {
        pul_reply_error(r, err);
    } else {
        pul_error_t e = {.kind = PUL_ERRKIND_RUNTIME, .code = status, .message = "fwd"};
        pul_reply_error(r, &e);
    }
}

static int
fwd_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    fwd_t *f = state;
    pul_reply_t *r = pul_ctx_defer(ctx);
    size_t len;
    const void *d = pul_msg_data(msg, &len);
    pul_msg_t *m = pul_msg_new(pul_msg_type(msg), d, len);
    if (pul_ask(f->sys, f->next, m, 0, fwd_done, r, NULL) != 0) {
        pul_msg_unref(m);
        pul_reply_abandon(r);
    }
    return 0;
}

static void
test_three_nodes(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new(), *c = node_new();
    route(a, b);
    route(b, c);
    route(a, c);
    pul_id_t echo = spawn_tact(c, NULL, NULL);
    static fwd_t f;
    f.sys = b;
    f.next = echo;
    pul_actor_vtable_t vt = {.receive = fwd_receive};
    pul_id_t fwd;
    assert_int_equal(pul_spawn(b, &vt, &f, NULL, &fwd), 0);
    tans_t r;
    /* a -> b (a C actor that asks c from inside its receive) -> c and back. */
    assert_int_equal(task_ask(a, fwd, "echo", "x", 0, &r), 0);
    assert_string_equal(r.data, "via:x");
    /* Errors cross two hops with their fields. */
    tcoll_t col;
    assert_int_equal(ask_err(a, fwd, "biz", &col), PUL_EACTOR);
    assert_int_equal(col.e.code, 422);
    assert_string_equal(col.type_name, "ValueError");
    tcoll_destroy(&col);
    /* Many calls in flight at once, from a to b and from a to c. */
    enum { N = 2000 };
    static tcoll_t many;
    tcoll_init(&many);
    for (int i = 0; i < N; i++) {
        pul_id_t t = (i & 1) ? fwd : echo;
        pul_msg_t *m = pul_msg_new("echo", "item0", 5);
        assert_int_equal(pul_ask_stream(a, t, m, 0, tcoll_cb, &many, NULL), 0);
    }
    assert_int_equal(tcount_wait(&many.done, N), N);
    assert_int_equal(tcount_get(&many.items), N);
    tcoll_destroy(&many);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
    pul_system_shutdown(c);
}

static void
test_alloc_failures(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, NULL, NULL);
    tans_t r;
    assert_int_equal(task_ask(a, id, "echo", "warm", 0, &r), 0);
    /* Fail the n-th allocation anywhere (caller, either core thread) during a remote ask: the
     * ask completes (a value, or an error; a lost response ends at its deadline), nothing
     * leaks, and the nodes keep serving. */
    int ok = 0, failed = 0;
    for (long n = 1; n <= 80; n++) {
        memset(&r, 0, sizeof r);
        tcount_init(&r.done);
        pul_msg_t *m = pul_msg_new("echo", "payload", 7);
        pul_mem_fail_after(n);
        int rc = pul_ask(a, id, m, 300, tans_cb, &r, NULL);
        if (rc != 0) {
            pul_mem_fail_after(0);
            pul_msg_unref(m);
            tcount_destroy(&r.done);
            continue;
        }
        assert_int_equal(tcount_wait(&r.done, 1), 1);
        pul_mem_fail_after(0);
        tcount_destroy(&r.done);
        if (r.status == 0) {
            ok++;
            continue;
        }
        failed++;
        /* A connection lost to the failure is re-dialled once its backoff has passed. */
        tans_t r2;
        for (int i = 0; i < 250 && task_ask(a, id, "echo", "again", 0, &r2) != 0; i++) {
            usleep(20000);
        }
    }
    assert_true(ok > 0);
    assert_true(failed > 0);
    for (int i = 0; i < 100; i++) { /* connections lost on the way are re-dialled */
        if (task_ask(a, id, "echo", "after", 0, &r) == 0) {
            break;
        }
        usleep(20000);
    }
    assert_string_equal(r.data, "after");
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

static void
test_start_alloc_failures(void **state)
{
    (void)state;
    long base = pul_mem_live();
    int failed = 0, ok = 0;
    for (long n = 1; n <= 40; n++) {
        pul_system_config_t cfg;
        pul_system_config_init(&cfg);
        cfg.listen_addr = "127.0.0.1:0";
        const char *seeds[] = {"127.0.0.1:1", "127.0.0.1:2"};
        cfg.seeds = seeds;
        cfg.nseeds = 2;
        pul_system_t *s = NULL;
        pul_mem_fail_after(n);
        int rc = pul_system_new(&cfg, &s);
        pul_mem_fail_after(0);
        if (rc == 0) {
            ok++;
            pul_system_shutdown(s);
        } else {
            assert_true(rc == PUL_ENOMEM || rc == PUL_EIO);
            failed++;
        }
        assert_int_equal(pul_mem_live(), base);
    }
    assert_true(failed > 0 && ok > 0);
}

#include <dirent.h>

static int
count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return -1;
    }
    while (readdir(d) != NULL) {
        n++;
    }
    closedir(d);
    return n;
}

static void
test_fds_return(void **state)
{
    (void)state;
    /* libuv's process-wide signal pipe etc. exist after the first system. */
    pul_system_t *w = node_new();
    pul_system_shutdown(w);
    int base = count_fds();
    for (int i = 0; i < 10; i++) {
        pul_system_t *a = node_new(), *b = node_new();
        route(a, b);
        route(b, a);
        pul_id_t ib = spawn_tact(b, NULL, NULL), ia = spawn_tact(a, NULL, NULL);
        tans_t r;
        assert_int_equal(task_ask(a, ib, "echo", "x", 0, &r), 0);
        assert_int_equal(task_ask(b, ia, "echo", "y", 0, &r), 0);
        pul_system_shutdown(i & 1 ? a : b);
        pul_system_shutdown(i & 1 ? b : a);
    }
    assert_int_equal(count_fds(), base);
}

/* ---- 64 MiB with segments ------------------------------------------------------------------- */

typedef struct {
    tcount_t done;
    int status;
    int ok;
    size_t nseg;
    size_t total;
} tbig_t;

static uint8_t
pattern(size_t seg, size_t i)
{
    return (uint8_t)((i * 131u + seg * 7u + (i >> 13)) & 0xff);
}

static void
big_cb(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    tbig_t *b = arg;
    b->status = status;
    if (status == 0) {
        b->ok = 1;
        b->nseg = pul_msg_nsegments(reply);
        b->total = pul_msg_size(reply);
        for (size_t s = 0; s < b->nseg; s++) {
            size_t len;
            const uint8_t *p = pul_msg_segment(reply, s, &len);
            for (size_t i = 0; i < len; i++) {
                if (p[i] != pattern(s, i)) {
                    b->ok = 0;
                    break;
                }
            }
        }
    }
    tcount_add(&b->done, 1);
}

static void
test_big_message(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, NULL, NULL);
    size_t lens[3] = {40u << 20, 24u << 20, 0};
    pul_msg_t *m = pul_msg_new("echo", "head", 4);
    for (size_t s = 0; s < 3; s++) {
        uint8_t *p = malloc(lens[s] ? lens[s] : 1);
        for (size_t i = 0; i < lens[s]; i++) {
            p[i] = pattern(s, i);
        }
        assert_int_equal(pul_msg_add_segment(m, p, lens[s], free, p), 0);
    }
    tbig_t r = {0};
    tcount_init(&r.done);
    assert_int_equal(pul_ask(a, id, m, 0, big_cb, &r, NULL), 0);
    assert_int_equal(tcount_wait(&r.done, 1), 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.nseg, 3);
    assert_int_equal(r.total, 4 + (64u << 20));
    assert_true(r.ok);
    tcount_destroy(&r.done);
    /* Over max_message_size: refused on the sending side. */
    m = pul_msg_new("echo", "", 0);
    static uint8_t dummy[1];
    assert_int_equal(pul_msg_add_segment(m, dummy, (66u << 20), NULL, NULL), 0);
    tans_t t;
    memset(&t, 0, sizeof t);
    tcount_init(&t.done);
    assert_int_equal(pul_ask(a, id, m, 0, tans_cb, &t, NULL), 0);
    tcount_wait(&t.done, 1);
    tcount_destroy(&t.done);
    assert_int_equal(t.status, PUL_ETOOBIG);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}


/* ---- direct writes (a thread borrowing the core's loop) ----------------------------------- */

static pul__net_stats_t
stats_of(pul_system_t *sys)
{
    pul__net_stats_t st;
    pul__net_stats(sys->net, &st);
    return st;
}

/* An ask whose request carries one segment of len pattern bytes; waits for the echo. */
static int
ask_big(pul_system_t *a, pul_id_t id, const char *type, size_t len, tbig_t *r)
{
    memset(r, 0, sizeof *r);
    tcount_init(&r->done);
    pul_msg_t *m = pul_msg_new(type, "head", 4);
    uint8_t *p = malloc(len);
    for (size_t i = 0; i < len; i++) {
        p[i] = pattern(0, i);
    }
    assert_int_equal(pul_msg_add_segment(m, p, len, free, p), 0);
    assert_int_equal(pul_ask(a, id, m, 0, big_cb, r, NULL), 0);
    assert_int_equal(tcount_wait(&r->done, 1), 1);
    tcount_destroy(&r->done);
    return r->status;
}

/* Asks from a thread that is not the core's, one at a time: once the connection is up and the
 * core thread sleeps, the caller's thread writes the request itself, and a reply sent from
 * another thread of the serving node is written by that thread; requests and replies too large
 * for the socket are finished by the core threads, in order. A borrower never waits for a busy
 * core thread (it posts instead), so each step is retried after a pause until it happened. */
/* ---- pumping: the calling thread reads the replies of its lone asks ------------------------- */

typedef struct {
    tans_t a;
    pthread_t by; /* the thread the completion ran on */
} pans_t;

static void
pans_cb(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    pans_t *p = arg;
    p->by = pthread_self();
    tans_cb(status, reply, err, &p->a);
}

/* One ask from this thread; while it is not answered, wait for fd and pump. Returns the number
 * of pul_pump calls that processed bytes, or -1 when pul_pump said anything but 0/1 (*last). */
static int
pumped_ask(pul_system_t *a, pul_id_t id, int fd, uint64_t tok, const char *payload, pans_t *p,
           int *last)
{
    memset(p, 0, sizeof *p);
    tcount_init(&p->a.done);
    assert_int_equal(pul_ask(a, id, pul_msg_new("echo", payload, strlen(payload)), 0, pans_cb, p,
                             NULL),
                     0);
    int processed = 0;
    *last = 0;
    while (tcount_get(&p->a.done) == 0) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 10) <= 0) {
            continue;
        }
        int r = pul_pump(a, tok);
        if (r < 0) {
            *last = r;
            processed = -1;
            break;
        }
        processed += r;
    }
    tcount_wait(&p->a.done, 1);
    tcount_destroy(&p->a.done);
    return processed;
}

/* The reply of a lone ask written by this thread is read by this thread (pul_pump), its
 * completion runs here; the core thread takes the connection back when the pumper stops
 * (pul_pump_stop) or does not read for a while; a connection that closes ends the pumping
 * (the duplicate descriptor sees it). */
static void
test_pump(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, NULL, NULL);
    tans_t r;
    assert_int_equal(task_ask(a, id, "echo", "dial", 0, &r), 0);
    uint64_t tok = 0;
    int fd = -1;
    for (int i = 0; i < 200 && fd < 0; i++) {
        usleep(2000);
        assert_int_equal(task_ask(a, id, "echo", "lone", 0, &r), 0);
        fd = pul_pump_fd(a, &tok);
    }
    assert_true(fd >= 0);
    assert_int_equal(pul_pump_fd(a, &tok), -1); /* one at a time */
    /* Lone asks: their replies come through this thread. */
    int here = 0;
    for (int i = 0; i < 100; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "p%d", i);
        pans_t p;
        int last;
        int n = pumped_ask(a, id, fd, tok, buf, &p, &last);
        assert_true(n >= 0);
        assert_int_equal(p.a.status, 0);
        assert_string_equal(p.a.data, buf);
        here += pthread_equal(p.by, pthread_self()) != 0;
    }
    assert_true(here > 50); /* the first may still be the core thread's (the claim runs later) */
    /* Many at once: all answered, through this thread or the core thread. */
    pans_t many[32];
    int gave_back = 0;
    for (int i = 0; i < 32; i++) {
        memset(&many[i], 0, sizeof many[i]);
        tcount_init(&many[i].a.done);
        assert_int_equal(pul_ask(a, id, pul_msg_new("echo", "m", 1), 0, pans_cb, &many[i], NULL),
                         0);
    }
    for (int i = 0; i < 32;) {
        if (tcount_get(&many[i].a.done) == 1) {
            assert_int_equal(many[i].a.status, 0);
            tcount_destroy(&many[i].a.done);
            i++;
            continue;
        }
        struct pollfd pf = {fd, POLLIN, 0};
        if (!gave_back && poll(&pf, 1, 10) > 0) {
            int rr = pul_pump(a, tok);
            assert_true(rr == 0 || rr == 1 || rr == PUL_EAGAIN || rr == PUL_ECLOSED);
            if (rr < 0) {
                pul_pump_stop(a, tok); /* as above: a pumper stops on EAGAIN */
                gave_back = 1;
            }
        } else if (gave_back) {
            usleep(1000);
        }
    }
    /* A pumper that stops reading: the core thread takes the connection back (watchdog). */
    assert_int_equal(task_ask(a, id, "echo", "unpumped", 0, &r), 0);
    assert_string_equal(r.data, "unpumped");
    usleep(100000);
    int rr = pul_pump(a, tok);
    assert_int_equal(rr, PUL_ECLOSED);
    close(fd);
    /* Claimed again after a lone ask, then given back with pul_pump_stop. */
    fd = -1;
    for (int i = 0; i < 200 && fd < 0; i++) {
        usleep(2000);
        assert_int_equal(task_ask(a, id, "echo", "lone", 0, &r), 0);
        fd = pul_pump_fd(a, &tok);
    }
    assert_true(fd >= 0);
    pul_pump_stop(a, tok);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(task_ask(a, id, "echo", "core", 0, &r), 0);
        assert_string_equal(r.data, "core");
    }
    assert_int_equal(pul_pump(a, tok), PUL_ECLOSED);
    close(fd);
    /* Claimed once more, then the other node goes: the duplicate descriptor sees the end. */
    fd = -1;
    for (int i = 0; i < 200 && fd < 0; i++) {
        usleep(2000);
        assert_int_equal(task_ask(a, id, "echo", "lone", 0, &r), 0);
        fd = pul_pump_fd(a, &tok);
    }
    assert_true(fd >= 0);
    pul_system_shutdown(b);
    int ended = 0;
    for (int i = 0; i < 500 && !ended; i++) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 10) > 0) {
            int x = pul_pump(a, tok);
            assert_true(x == 0 || x == 1 || x == PUL_ECLOSED || x == PUL_EAGAIN);
            if (x == PUL_EAGAIN) {
                /* The core thread is running: stop, as a pumper must (calling again at once
                 * would take run_mu from under the waking core thread); it reads the end. */
                pul_pump_stop(a, tok);
            }
            ended = x == PUL_ECLOSED || x == PUL_EAGAIN;
        }
    }
    assert_true(ended);
    for (int i = 0; i < 100 && pul_pump(a, tok) != PUL_ECLOSED; i++) {
        usleep(10000);
    }
    assert_int_equal(pul_pump(a, tok), PUL_ECLOSED);
    close(fd);
    pul_system_shutdown(a);
}

/* The serving side: b's connection from a, offered once a reply was written by another thread
 * (the replier), is read by this thread (pul_pump on b), which runs b's dispatcher itself: the
 * actor takes the request from here and b's core thread is not woken for it. A pumping that ends
 * (EAGAIN: b's core thread was running) is taken up again at the next offer. */
static void
test_pump_server(void **state)
{
    (void)state;
    replier_start();
    replier.delay_us = 1000;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    tact_t *t;
    pul_id_t id = spawn_tact(b, NULL, &t);
    tans_t r;
    assert_int_equal(task_ask(a, id, "echo", "dial", 0, &r), 0);
    uint64_t tok = 0;
    int fd = -1, pumped = 0, i = 0;
    for (; i < 400 && pumped < 5; i++) {
        usleep(1000);
        if (fd < 0) {
            fd = pul_pump_fd(b, &tok);
        }
        char buf[16];
        snprintf(buf, sizeof buf, "s%d", i);
        tans_t x;
        memset(&x, 0, sizeof x);
        tcount_init(&x.done);
        assert_int_equal(
            pul_ask(a, id, pul_msg_new("techo", buf, strlen(buf)), 0, tans_cb, &x, NULL), 0);
        while (tcount_get(&x.done) == 0) {
            struct pollfd pf = {fd, POLLIN, 0};
            if (fd < 0 || poll(&pf, 1, 10) <= 0) {
                usleep(fd < 0 ? 1000 : 0);
                continue;
            }
            int rr = pul_pump(b, tok);
            assert_true(rr == 0 || rr == 1 || rr == PUL_EAGAIN || rr == PUL_ECLOSED);
            if (rr < 0) {
                pul_pump_stop(b, tok); /* b's core thread reads again; claimed again later */
                close(fd);
                fd = -1;
            }
            pumped += rr == 1;
        }
        tcount_wait(&x.done, 1);
        tcount_destroy(&x.done);
        assert_int_equal(x.status, 0);
        assert_string_equal(x.data, buf);
    }
    assert_true(pumped >= 5);
    if (fd >= 0) {
        /* a goes away: b's connection ends for the pumper too. */
        pul_system_shutdown(a);
        a = NULL;
        int ended = 0;
        for (int k = 0; k < 500 && !ended; k++) {
            struct pollfd pf = {fd, POLLIN, 0};
            if (poll(&pf, 1, 10) > 0) {
                int x = pul_pump(b, tok);
                if (x == PUL_EAGAIN) {
                    pul_pump_stop(b, tok);
                }
                ended = x == PUL_ECLOSED || x == PUL_EAGAIN;
            }
        }
        assert_true(ended);
        close(fd);
    }
    if (a != NULL) {
        pul_system_shutdown(a);
    }
    pul_system_shutdown(b);
    replier_stop();
}

static void
test_direct_writes(void **state)
{
    (void)state;
    replier_start();
    replier.delay_us = 2000; /* lets b's core thread go to sleep before the reply */
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, NULL, NULL);
    tans_t r;
    assert_int_equal(task_ask(a, id, "echo", "dial", 0, &r), 0); /* dials: through the core */
    pul__net_stats_t a0 = stats_of(a), b0 = stats_of(b);
    int i = 0;
    for (; i < 200; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "n%d", i);
        usleep(2000);
        assert_int_equal(task_ask(a, id, "techo", buf, 0, &r), 0);
        assert_string_equal(r.data, buf);
        if (stats_of(a).direct_writes > a0.direct_writes &&
            stats_of(b).direct_writes > b0.direct_writes) {
            break; /* a request written by this thread, a reply by the replier thread */
        }
    }
    assert_true(i < 200);
    /* 24 MiB each way: more than a socket takes at once, so the borrower hands the rest over. */
    pul__net_stats_t a1 = stats_of(a), b1 = stats_of(b);
    for (i = 0; i < 20; i++) {
        usleep(5000);
        tbig_t big;
        assert_int_equal(ask_big(a, id, "techo", 24u << 20, &big), 0);
        assert_true(big.ok);
        assert_int_equal(big.total, 4 + (24u << 20));
        if (stats_of(a).direct_held > a1.direct_held && stats_of(b).direct_held > b1.direct_held) {
            break;
        }
    }
    assert_true(i < 20);
    /* The connection is still in order afterwards. */
    for (i = 0; i < 10; i++) {
        assert_int_equal(task_ask(a, id, i & 1 ? "techo" : "echo", "after", 0, &r), 0);
        assert_string_equal(r.data, "after");
    }
    /* After a burst (8 asks in flight at once: each reply waits 5 ms), the first ask of the next
     * period goes through the core thread, which would batch it with the rest of a new burst;
     * lone asks after it are written directly again. */
    replier.delay_us = 5000;
    tans_t burst[8];
    for (i = 0; i < 8; i++) {
        memset(&burst[i], 0, sizeof burst[i]);
        tcount_init(&burst[i].done);
        assert_int_equal(pul_ask(a, id, pul_msg_new("techo", "b", 1), 0, tans_cb, &burst[i], NULL),
                         0);
    }
    for (i = 0; i < 8; i++) {
        assert_int_equal(tcount_wait(&burst[i].done, 1), 1);
        assert_int_equal(burst[i].status, 0);
        tcount_destroy(&burst[i].done);
    }
    replier.delay_us = 2000;
    usleep(5000);
    uint64_t d0 = stats_of(a).direct_writes;
    assert_int_equal(task_ask(a, id, "echo", "first", 0, &r), 0);
    assert_int_equal(stats_of(a).direct_writes, d0);
    for (i = 0; i < 200; i++) {
        usleep(2000);
        assert_int_equal(task_ask(a, id, "echo", "lone", 0, &r), 0);
        if (stats_of(a).direct_writes > d0) {
            break;
        }
    }
    assert_true(i < 200);
    assert_int_equal(stats_of(a).errors, a0.errors);
    assert_int_equal(stats_of(b).errors, b0.errors);
    pul_system_shutdown(a);
    pul_system_shutdown(b);
    replier_stop();
}

/* A cancel right behind a request the caller's thread wrote itself (small, or large and still
 * being finished by the core thread): the call ends once, the connection stays usable. */
static void
test_direct_cancel_race(void **state)
{
    (void)state;
    pul_system_t *a = node_new(), *b = node_new();
    route(a, b);
    pul_id_t id = spawn_tact(b, NULL, NULL);
    tans_t r;
    assert_int_equal(task_ask(a, id, "echo", "dial", 0, &r), 0);
    uint64_t errs = stats_of(b).errors;
    pul__net_stats_t a0 = stats_of(a);
    int canceled = 0;
    for (int i = 0; i < 200; i++) {
        usleep(1000); /* a's core thread sleeps: the ask is written by this thread */
        size_t len = i % 40 == 39 ? (6u << 20) : 0;
        tans_t t;
        memset(&t, 0, sizeof t);
        tcount_init(&t.done);
        pul_msg_t *m = pul_msg_new("echo", "x", 1);
        uint8_t *p = NULL;
        if (len > 0) {
            p = calloc(1, len);
            assert_int_equal(pul_msg_add_segment(m, p, len, free, p), 0);
        }
        pul_call_t *call = NULL;
        assert_int_equal(pul_ask(a, id, m, 0, tans_cb, &t, &call), 0);
        pul_call_cancel(a, call); /* releases the handle too */
        assert_int_equal(tcount_wait(&t.done, 1), 1);
        assert_true(t.status == 0 || t.status == PUL_ECANCELED);
        canceled += t.status == PUL_ECANCELED;
        tcount_destroy(&t.done);
    }
    print_message("      (%d of 200 cancelled before their reply)\n", canceled);
    assert_true(stats_of(a).direct_writes > a0.direct_writes);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(task_ask(a, id, "echo", "still", 0, &r), 0);
        assert_string_equal(r.data, "still");
    }
    assert_int_equal(stats_of(b).errors, errs); /* no protocol error on the way */
    pul_system_shutdown(a);
    pul_system_shutdown(b);
}

typedef struct {
    pul_system_t *sys;
    pul_id_t id;
    const char *type;
    tcount_t ok;
    int last;
} asker_t;

/* Ask until a call fails; record how. */
static void *
asker_main(void *arg)
{
    asker_t *k = arg;
    for (;;) {
        tans_t r;
        usleep(500); /* mostly written by this thread, not the core's */
        int rc = task_ask(k->sys, k->id, k->type, "x", 2000, &r);
        if (rc != 0) {
            k->last = rc;
            return NULL;
        }
        tcount_add(&k->ok, 1);
    }
}

/* Systems shut down while another thread writes on their connections directly: the peer of the
 * caller, the caller itself, and the peer while its replier thread answers. Every call ends
 * (no hang), with the transport's errors, and nothing leaks. */
static void
test_direct_shutdown_race(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        if (round == 2) {
            replier_start();
        }
        pul_system_t *a = node_new(), *b = node_new();
        route(a, b);
        asker_t k = {.sys = a, .id = spawn_tact(b, NULL, NULL),
                     .type = round == 2 ? "techo" : "echo"};
        tcount_init(&k.ok);
        pthread_t th;
        pul__system_ref(a); /* the asker may still call pul_ask on a once it is shut down */
        assert_int_equal(pthread_create(&th, NULL, asker_main, &k), 0);
        assert_true(tcount_wait(&k.ok, 20) >= 20);
        if (round == 1) {
            pul_system_shutdown(a);
            pthread_join(th, NULL);
            assert_true(k.last == PUL_ECLOSED || k.last == PUL_EIO);
            pul_system_shutdown(b);
        } else {
            pul_system_shutdown(b);
            pthread_join(th, NULL);
            assert_int_equal(k.last, PUL_EIO);
            pul_system_shutdown(a);
        }
        pul__system_unref(a);
        tcount_destroy(&k.ok);
        if (round == 2) {
            replier_stop();
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_remote_ask, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_remote_tell_and_named, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_gateway_relay, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_remote_errors, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_remote_stream, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_remote_cancel_and_deadline, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_peer_goes_away, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_caller_shuts_down, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_remote_tell_full_mailbox, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_remote_tells_batched, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_remote_tells_refused, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_tells_raw, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_pump, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_pump_server, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_route_drop, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_rest, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_garbage_peer, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_random_frames, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_rapid_reset, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_max_connections, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_bind_errors, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_silent_peer, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_big_message, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_client_pause, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_stream_backpressure, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_control_plane, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_host_names, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_http_get, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_three_nodes, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_start_alloc_failures, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_fds_return, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_direct_writes, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_direct_cancel_race, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_direct_shutdown_race, pul_test_setup, pul_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
