/* pul_test.h — helpers shared by the C tests: leak-checking setup/teardown, a waitable counter
 * and a blocking ask. */
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

#endif
