/* pul_test.h — helpers shared by the C tests: leak-checking setup/teardown, a waitable counter,
 * a blocking ask, running code on a system's core thread, polling for a condition, and the
 * set-up of the cluster tests (short timings, member statuses, a named echo actor). */
#ifndef PUL_TEST_H
#define PUL_TEST_H

#include <pthread.h>
#include <stdio.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pulsing/pulsing.h"

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long n;
} tcount_t;

static inline void
tcount_init(tcount_t *c)
{
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->n = 0;
}

static inline void
tcount_destroy(tcount_t *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static inline void
tcount_add(tcount_t *c, long k)
{
    pthread_mutex_lock(&c->mu);
    c->n += k;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static inline long
tcount_get(tcount_t *c)
{
    pthread_mutex_lock(&c->mu);
    long n = c->n;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* Wait until the count reaches at least n (10 s cap). Returns the count. */
static inline long
tcount_wait(tcount_t *c, long n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&c->mu);
    while (c->n < n) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0) {
            break;
        }
    }
    long r = c->n;
    pthread_mutex_unlock(&c->mu);
    return r;
}

/* cmocka setup/teardown: a test must give back every allocation it made through the library. */
static long pul_test_mem_base;

static inline int
pul_test_setup(void **state)
{
    (void)state;
    pul_test_mem_base = pul_mem_live();
    return 0;
}

static inline int
pul_test_teardown(void **state)
{
    (void)state;
    assert_int_equal(pul_mem_live(), pul_test_mem_base);
    return 0;
}

/* A blocking ask for tests. */
typedef struct {
    tcount_t done;
    int status;
    char data[256];
    size_t len;
    pul_errkind_t kind;
    int64_t code;
    char message[128];
} tans_t;

static inline void
tans_cb(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    tans_t *a = arg;
    a->status = status;
    if (reply != NULL) {
        size_t len;
        const void *d = pul_msg_data(reply, &len);
        a->len = len < sizeof a->data ? len : sizeof a->data - 1;
        memcpy(a->data, d, a->len);
        a->data[a->len] = '\0';
    }
    if (err != NULL) {
        a->kind = err->kind;
        a->code = err->code;
        snprintf(a->message, sizeof a->message, "%s", err->message ? err->message : "");
    }
    tcount_add(&a->done, 1);
}

/* Ask and wait; returns the completion status (or the pul_ask error). */
static inline int
task_ask(pul_system_t *sys, pul_id_t id, const char *type, const char *payload,
         uint64_t deadline_ms, tans_t *a)
{
    memset(a, 0, sizeof *a);
    tcount_init(&a->done);
    pul_msg_t *m = pul_msg_new(type, payload, payload ? strlen(payload) : 0);
    if (m == NULL) {
        tcount_destroy(&a->done);
        return PUL_ENOMEM;
    }
    int rc = pul_ask(sys, id, m, deadline_ms, tans_cb, a, NULL);
    if (rc != 0) {
        pul_msg_unref(m);
        tcount_destroy(&a->done);
        return rc;
    }
    tcount_wait(&a->done, 1);
    tcount_destroy(&a->done);
    return a->status;
}

/* ---- the core thread, polling ------------------------------------------------------------- */

typedef struct {
    void (*fn)(void *arg);
    void *arg;
    tcount_t done;
} pul_test_core_t;

static inline void
pul_test__core_run(void *arg)
{
    pul_test_core_t *t = arg;
    t->fn(t->arg);
    tcount_add(&t->done, 1);
}

/* Run fn(arg) on sys's core thread and wait until it returned. */
static inline void
pul_test_on_core(pul_system_t *sys, void (*fn)(void *arg), void *arg)
{
    pul_test_core_t t = {.fn = fn, .arg = arg};
    tcount_init(&t.done);
    assert_int_equal(pul_system_post(sys, pul_test__core_run, &t), 0);
    assert_int_equal(tcount_wait(&t.done, 1), 1);
    tcount_destroy(&t.done);
}

/* Poll pred every 10 ms for at most ms; evaluates to the elapsed ms, or -1 if pred never held.
 * Tests assert that it held, and print the time for information only. */
#define WAIT_FOR(ms, pred)                                                                   \
    ({                                                                                       \
        long _r = -1;                                                                        \
        for (long _t = 0; _t <= (ms); _t += 10) {                                            \
            if (pred) {                                                                      \
                _r = _t;                                                                     \
                break;                                                                       \
            }                                                                                \
            usleep(10000);                                                                   \
        }                                                                                    \
        _r;                                                                                  \
    })

/* ---- clusters ----------------------------------------------------------------------------- */

/* Membership timings for tests: a dead node is noticed in well under a second. */
static inline void
pul_test_fast_timing(pul_cluster_timing_t *t)
{
    t->probe_interval_ms = 100;
    t->probe_timeout_ms = 50;
    t->gossip_interval_ms = 50;
    t->push_pull_interval_ms = 1000;
    t->join_retry_ms = 100;
    t->heartbeat_interval_ms = 100;
    t->heartbeat_timeout_ms = 500;
}

/* The status of node in sys's members() (a pul_member_status_t), or -1 when not listed. */
static inline int
pul_test_status_of(pul_system_t *sys, pul_id_t node)
{
    pul_member_t ms[16];
    int n = pul_members(sys, ms, 16);
    for (int k = 0; k < n && k < 16; k++) {
        if (pul_id_eq(ms[k].node_id, node)) {
            return (int)ms[k].status;
        }
    }
    return -1;
}

/* How many members sys sees Alive, itself included. */
static inline int
pul_test_count_alive(pul_system_t *sys)
{
    pul_member_t ms[16];
    int n = pul_members(sys, ms, 16);
    int a = 0;
    for (int k = 0; k < n && k < 16; k++) {
        a += ms[k].status == PUL_MEMBER_ALIVE;
    }
    return a;
}

/* An actor that answers every message with its payload (type "echo"). Allocation failures
 * (test_alloc) leave the caller without an answer and leak nothing. */
static inline int
pul_test_echo_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    (void)state;
    size_t len;
    const void *d = pul_msg_data(msg, &len);
    pul_msg_t *r = pul_msg_new("echo", d, len);
    if (r != NULL && pul_ctx_reply(ctx, r) != 0) {
        pul_msg_unref(r);
    }
    return 0;
}

static const pul_actor_vtable_t pul_test_echo_vt = {.receive = pul_test_echo_receive};

/* Spawn an echo actor named name on sys; its id. */
static inline pul_id_t
pul_test_spawn_echo(pul_system_t *sys, const char *name)
{
    pul_spawn_opts_t o;
    pul_spawn_opts_init(&o);
    o.name = name;
    pul_id_t id;
    assert_int_equal(pul_spawn(sys, &pul_test_echo_vt, NULL, &o, &id), 0);
    return id;
}

#endif
