/* bench_c_actors.c — C actor throughput (core thread, pipelined tells), asks from an external
 * thread with many in flight, ask round-trip latency p50/p99, streamed items/s (a C actor answers
 * an ask with a stream, backpressured by the window), spawn/stop rate and RSS per idle actor.
 * Prints a table and one JSON line per figure: {"bench": ..., ...}.
 * Usage: bench_c_actors [messages] [actors] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* ---- a counter an external thread can wait on (set by the core thread) ---- */

typedef struct {
    atomic_long n;
    long target;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} waiter_t;

static void
waiter_init(waiter_t *w)
{
    atomic_init(&w->n, 0);
    w->target = 0;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void
waiter_add(waiter_t *w)
{
    long n = atomic_fetch_add(&w->n, 1) + 1;
    if (n == w->target) {
        pthread_mutex_lock(&w->mu);
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

/* Set the target before the events that count towards it can happen. */
static void
waiter_wait(waiter_t *w)
{
    pthread_mutex_lock(&w->mu);
    while (atomic_load(&w->n) < w->target) {
        pthread_cond_wait(&w->cv, &w->mu);
    }
    pthread_mutex_unlock(&w->mu);
}

/* ---- streams: a C actor answers an ask with N items; the consumer is a C stream callback ---- */

typedef struct {
    pul_stream_t *s;
    long total;
    long pushed;
    long full; /* pushes refused with PUL_EFULL: the window held the producer */
} producer_t;

typedef struct {
    long items;
    int status;
    double t1;
    waiter_t fin;
} consumer_t;

/* Push until the window is full (resumed by the writable callback) or all items are out. Runs on
 * the core thread: first from receive, then from the writable callback. */
static void
producer_fill(void *arg)
{
    producer_t *p = arg;
    if (p->s == NULL) {
        return;
    }
    while (p->pushed < p->total) {
        int rc = pul_stream_push(p->s, pul_msg_ref(tick_msg));
        if (rc == 0) {
            p->pushed++;
            continue;
        }
        pul_msg_unref(tick_msg); /* refused: the item is still ours */
        if (rc == PUL_EFULL) {
            p->full++;
            return;
        }
        break; /* the consumer went away: stop producing */
    }
    if (pul_stream_end(p->s) != 0) {
        fprintf(stderr, "pul_stream_end failed\n");
    }
    p->s = NULL;
}

static int
streamer_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    producer_t *p = state;
    p->s = pul_ctx_stream(ctx);
    if (p->s == NULL) {
        return PUL_ENOMEM;
    }
    pul_stream_on_writable(p->s, producer_fill, p);
    producer_fill(p);
    return 0;
}

static void
consumer_cb(int status, pul_msg_t *item, const pul_error_t *err, void *arg)
{
    consumer_t *c = arg;
    if (status == 0) {
        c->items++;
        return;
    }
    c->status = status;
    c->t1 = now_s();
    waiter_add(&c->fin);
}

/* ---- spawn/stop rate and memory per idle actor ---- */

static waiter_t idle_started;
static waiter_t idle_stopped;

static int
idle_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    return 0;
}

static int
idle_on_start(pul_id_t self, void *state)
{
    waiter_add(&idle_started);
    return 0;
}

static void
idle_on_stop(void *state)
{
    waiter_add(&idle_stopped);
}

/* Resident set size in bytes (/proc/self/statm), or -1 when it cannot be read. */
static long
rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = -1;
    if (f == NULL) {
        return -1;
    }
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) {
        resident = -1;
    }
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
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

    /* 0. Spawn/stop rate and RSS per idle actor, first so that the heap is still fresh (memory
     * freed by the other phases would be reused and hide the growth). Actors get the library's
     * default mailbox (256 slots, preallocated), not this bench's 4096. A spawn counts when the
     * actor's on_start has run; a stop when its on_stop has run. */
    enum { SPAWN_ROUNDS = 5 };
    long nactors = argc > 2 ? atol(argv[2]) : 10000;
    pul_id_t *ids = calloc((size_t)nactors, sizeof *ids);
    if (ids == NULL) {
        return 1;
    }
    pul_actor_vtable_t idle_vt = {
        .receive = idle_receive, .on_start = idle_on_start, .on_stop = idle_on_stop};
    pul_spawn_opts_t idle_opts;
    pul_spawn_opts_init(&idle_opts);
    idle_opts.mailbox_capacity = 256;
    waiter_init(&idle_started);
    waiter_init(&idle_stopped);
    double spawn_s = 0, stop_s = 0;
    long rss_delta = -1;
    for (int r = 0; r < SPAWN_ROUNDS; r++) {
        long rss0 = rss_bytes();
        idle_started.target += nactors;
        double s0 = now_s();
        for (long i = 0; i < nactors; i++) {
            if (pul_spawn(sys, &idle_vt, NULL, &idle_opts, &ids[i]) != 0) {
                fprintf(stderr, "pul_spawn failed\n");
                return 1;
            }
        }
        waiter_wait(&idle_started);
        double s1 = now_s();
        if (r == 0 && rss0 >= 0) {
            rss_delta = rss_bytes() - rss0;
        }
        idle_stopped.target += nactors;
        for (long i = 0; i < nactors; i++) {
            if (pul_stop(sys, ids[i]) != 0) {
                fprintf(stderr, "pul_stop failed\n");
                return 1;
            }
        }
        waiter_wait(&idle_stopped);
        spawn_s += s1 - s0;
        stop_s += now_s() - s1;
    }
    free(ids);
    double spawn_rate = (double)(nactors * SPAWN_ROUNDS) / spawn_s;
    double stop_rate = (double)(nactors * SPAWN_ROUNDS) / stop_s;

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

    /* 4. Streamed items: one ask answered by a stream of `total` items (the same shared message
     * each time), pushed on the core thread until the window (default 32) is full and resumed by
     * the writable callback; consumed by a pul_ask_stream callback on the core thread. */
    producer_t prod = {.total = total};
    pul_actor_vtable_t streamer_vt = {.receive = streamer_receive};
    pul_id_t streamer;
    pul_spawn(sys, &streamer_vt, &prod, NULL, &streamer);
    consumer_t cons = {0};
    waiter_init(&cons.fin);
    cons.fin.target = 1;
    t0 = now_s();
    if (pul_ask_stream(sys, streamer, pul_msg_ref(tick_msg), 0, consumer_cb, &cons, NULL) != 0) {
        return 1;
    }
    waiter_wait(&cons.fin);
    double stream_rate = (double)cons.items / (cons.t1 - t0);
    if (cons.status != PUL_EOF || cons.items != total) {
        fprintf(stderr, "stream ended with %s after %ld items\n", pul_strerror(cons.status),
                cons.items);
        return 1;
    }

    pul_system_shutdown(sys);
    pul_msg_unref(tick_msg);

    printf("%-44s %14s\n", "figure", "value");
    printf("%-44s %11.2f M/s\n", "C->C tells on the core thread (window 1024)", c2c / 1e6);
    printf("%-44s %11.2f M/s\n", "asks from an external thread (1000 in flight)", ext / 1e6);
    printf("%-44s %11.1f us\n", "ask round trip p50 (external thread)", p50);
    printf("%-44s %11.1f us\n", "ask round trip p99 (external thread)", p99);
    printf("%-44s %11.2f M/s\n", "streamed items, C actor -> C (window 32)", stream_rate / 1e6);
    printf("%-44s %11.1f k/s\n", "spawn C actors (until on_start ran)", spawn_rate / 1e3);
    printf("%-44s %11.1f k/s\n", "stop C actors (until on_stop ran)", stop_rate / 1e3);
    if (rss_delta >= 0) {
        printf("%-44s %11.0f B\n", "RSS per idle C actor (256-slot mailbox)",
               (double)rss_delta / (double)nactors);
    }
    printf("{\"bench\": \"c_to_c_tell\", \"messages\": %ld, \"msgs_per_s\": %.0f}\n", total, c2c);
    printf("{\"bench\": \"external_ask_pipelined\", \"asks\": %ld, \"in_flight\": 1000, "
           "\"asks_per_s\": %.0f}\n",
           nasks, ext);
    printf("{\"bench\": \"external_ask_latency\", \"samples\": %d, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f}\n",
           NLAT, p50, p99);
    printf("{\"bench\": \"c_stream\", \"items\": %ld, \"window\": %zu, \"items_per_s\": %.0f, "
           "\"full_waits\": %ld}\n",
           total, cfg.stream_window, stream_rate, prod.full);
    printf("{\"bench\": \"c_spawn\", \"actors\": %ld, \"rounds\": %d, \"spawns_per_s\": %.0f, "
           "\"stops_per_s\": %.0f}\n",
           nactors, SPAWN_ROUNDS, spawn_rate, stop_rate);
    if (rss_delta >= 0) {
        printf("{\"bench\": \"c_idle_memory\", \"actors\": %ld, \"bytes_per_actor\": %.0f}\n",
               nactors, (double)rss_delta / (double)nactors);
    }
    return 0;
}
