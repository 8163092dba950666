/* bench_c_actors.c — C actor throughput (core thread, pipelined tells), asks from an external
 * thread with many in flight, and ask round-trip latency p50/p99. Prints a table and one JSON
 * line per figure: {"bench": ..., ...}. Usage: bench_c_actors [messages] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pulsing/pulsing.h"

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- C -> C: a producer actor tells a sink in windows; the sink acks each window ---- */

typedef struct {
    pul_id_t sink;
    long total;
    long sent;
    long window;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    double t0;
    double t1;
} flow_t;

static flow_t flow;
static pul_msg_t *tick_msg;

static void
flow_send_window(pul_system_t *sys)
{
    long n = flow.window;
    if (flow.total - flow.sent < n) {
        n = flow.total - flow.sent;
    }
    for (long i = 0; i < n; i++) {
        /* The same immutable message, shared by reference: no allocation per tell. */
        if (pul_tell(sys, flow.sink, pul_msg_ref(tick_msg)) != 0) {
            pul_msg_unref(tick_msg);
            break;
        }
        flow.sent++;
    }
}

static int
sink_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    long *seen = state;
    (*seen)++;
    if (*seen % flow.window == 0 || *seen == flow.total) {
        if (*seen == flow.total) {
            flow.t1 = now_s();
            pthread_mutex_lock(&flow.mu);
            flow.done = 1;
            pthread_cond_signal(&flow.cv);
            pthread_mutex_unlock(&flow.mu);
        } else {
            flow_send_window(pul_ctx_system(ctx));
        }
    }
    return 0;
}

static void
flow_start(void *arg)
{
    flow.t0 = now_s();
    flow_send_window(arg);
}

/* ---- asks from an external thread ---- */

typedef struct {
    atomic_long done;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long target;
} asks_t;

static int
echo_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    (void)state;
    return pul_ctx_reply(ctx, pul_msg_ref(msg));
}

static void
ask_cb(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    asks_t *a = arg;
    long d = atomic_fetch_add(&a->done, 1) + 1;
    if (d == a->target) {
        pthread_mutex_lock(&a->mu);
        pthread_cond_signal(&a->cv);
        pthread_mutex_unlock(&a->mu);
    }
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    long total = argc > 1 ? atol(argv[1]) : 10000000;
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    cfg.mailbox_capacity = 4096;
    pul_system_t *sys = NULL;
    if (pul_system_new(&cfg, &sys) != 0) {
        return 1;
    }
    tick_msg = pul_msg_new("tick", "x", 1);

    /* 1. C -> C tells on the core thread, pipelined window of 1024. */
    long seen = 0;
    pul_actor_vtable_t sink_vt = {.receive = sink_receive};
    pul_spawn(sys, &sink_vt, &seen, NULL, &flow.sink);
    flow.total = total;
    flow.window = 1024;
    pthread_mutex_init(&flow.mu, NULL);
    pthread_cond_init(&flow.cv, NULL);
    pul_system_post(sys, flow_start, sys);
    pthread_mutex_lock(&flow.mu);
    while (!flow.done) {
        pthread_cond_wait(&flow.cv, &flow.mu);
    }
    pthread_mutex_unlock(&flow.mu);
    double c2c = (double)total / (flow.t1 - flow.t0);

    /* 2. Asks from this (external) thread, up to 1000 in flight. */
    pul_actor_vtable_t echo_vt = {.receive = echo_receive};
    pul_id_t echo;
    pul_spawn(sys, &echo_vt, NULL, NULL, &echo);
    long nasks = total / 10;
    asks_t a = {.target = nasks};
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    double t0 = now_s();
    for (long i = 0; i < nasks; i++) {
        while (i - atomic_load(&a.done) >= 1000) {
            /* spin: keep at most 1000 in flight */
        }
        pul_ask(sys, echo, pul_msg_ref(tick_msg), 0, ask_cb, &a, NULL);
    }
    pthread_mutex_lock(&a.mu);
    while (atomic_load(&a.done) < nasks) {
        pthread_cond_wait(&a.cv, &a.mu);
    }
    pthread_mutex_unlock(&a.mu);
    double ext = (double)nasks / (now_s() - t0);

    /* 3. Round-trip latency, one ask at a time. */
    enum { NLAT = 20000 };
    static double lat[NLAT];
    for (int i = 0; i < NLAT; i++) {
        asks_t one = {.target = 1};
        pthread_mutex_init(&one.mu, NULL);
        pthread_cond_init(&one.cv, NULL);
        double s = now_s();
        pul_ask(sys, echo, pul_msg_ref(tick_msg), 0, ask_cb, &one, NULL);
        pthread_mutex_lock(&one.mu);
        while (atomic_load(&one.done) < 1) {
            pthread_cond_wait(&one.cv, &one.mu);
        }
        pthread_mutex_unlock(&one.mu);
        lat[i] = (now_s() - s) * 1e6;
        pthread_mutex_destroy(&one.mu);
        pthread_cond_destroy(&one.cv);
    }
    qsort(lat, NLAT, sizeof lat[0], cmp_double);
    double p50 = lat[NLAT / 2], p99 = lat[NLAT * 99 / 100];

    pul_system_shutdown(sys);
    pul_msg_unref(tick_msg);

    printf("%-44s %14s\n", "figure", "value");
    printf("%-44s %11.2f M/s\n", "C->C tells on the core thread (window 1024)", c2c / 1e6);
    printf("%-44s %11.2f M/s\n", "asks from an external thread (1000 in flight)", ext / 1e6);
    printf("%-44s %11.1f us\n", "ask round trip p50 (external thread)", p50);
    printf("%-44s %11.1f us\n", "ask round trip p99 (external thread)", p99);
    printf("{\"bench\": \"c_to_c_tell\", \"messages\": %ld, \"msgs_per_s\": %.0f}\n", total, c2c);
    printf("{\"bench\": \"external_ask_pipelined\", \"asks\": %ld, \"in_flight\": 1000, "
           "\"asks_per_s\": %.0f}\n",
           nasks, ext);
    printf("{\"bench\": \"external_ask_latency\", \"samples\": %d, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f}\n",
           NLAT, p50, p99);
    return 0;
}
