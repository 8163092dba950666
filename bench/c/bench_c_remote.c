/* bench_c_remote.c — C actors across two processes through the public C API: one process hosts a
 * named echo/sink actor, the other joins it through `seeds`, finds the actor with
 * pul_resolve_name and measures ask round trips one at a time (p50/p99), asks with many in flight
 * and tells with many in flight. Calls are driven from the caller's core thread (each completion
 * issues the next call), so the figures are the transport's, without an extra thread hop.
 * Prints a readable table and one JSON line per figure: {"bench": "c_remote_...", ...}.
 * Then 64 MiB segments one call at a time, in the request and in the reply (transport bandwidth
 * without Python). Usage: bench_c_remote [messages]   (default 200000; latency uses
 * messages/20 round trips) */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pulsing/pulsing.h"

#define SINK_NAME "bench/sink"
#define IN_FLIGHT 1024
#define TELL_WINDOW 1024
#define BULK_BYTES (64u << 20) /* bandwidth: one 64 MiB segment per call */
#define BULK_CALLS 8 /* BENCH_C_REMOTE_BULK=0 leaves the bandwidth phase out (e.g. under callgrind) */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds used so far by this process (all threads) and by the hosting process (read from
 * /proc, clock ticks): CPU per message is a steadier figure than wall time on a shared machine. */
static double
cpu_self_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static pid_t host_pid;

static double
cpu_host_s(void)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)host_pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* fields after the command name */
    unsigned long ut = 0, st = 0;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                            &st) != 2) {
        return 0;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

typedef struct {
    double self, host;
} cpu_t;

static cpu_t
cpu_now(void)
{
    return (cpu_t){cpu_self_s(), cpu_host_s()};
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the hosting process: one actor, echo for asks, a counter for tells ---- */

static int
sink_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    long *count = state;
    if (!pul_ctx_is_ask(ctx)) {
        (*count)++;
        return 0;
    }
    if (strcmp(pul_msg_type(msg), "blob") == 0) {
        /* a reply carrying BULK_BYTES as one segment, the same memory every time */
        static pul_msg_t *blob;
        if (blob == NULL) {
            void *mem = calloc(1, BULK_BYTES);
            blob = pul_msg_new("blob", NULL, 0);
            if (mem == NULL || blob == NULL ||
                pul_msg_add_segment(blob, mem, BULK_BYTES, free, mem) != 0) {
                return PUL_ENOMEM;
            }
        }
        pul_msg_t *r = pul_msg_ref(blob);
        int rc = pul_ctx_reply(ctx, r);
        if (rc != 0) {
            pul_msg_unref(r);
        }
        return rc;
    }
    if (strcmp(pul_msg_type(msg), "nbytes") == 0) {
        size_t len = 0;
        if (pul_msg_nsegments(msg) == 1) {
            (void)pul_msg_segment(msg, 0, &len);
        }
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%zu", len);
        pul_msg_t *r = pul_msg_new("n", buf, (size_t)n);
        int rc = r == NULL ? PUL_ENOMEM : pul_ctx_reply(ctx, r);
        if (rc != 0) {
            pul_msg_unref(r);
        }
        return rc;
    }
    if (strcmp(pul_msg_type(msg), "count") == 0) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%ld", *count);
        pul_msg_t *r = pul_msg_new("count", buf, (size_t)n);
        if (r == NULL) {
            return PUL_ENOMEM;
        }
        int rc = pul_ctx_reply(ctx, r);
        if (rc != 0) {
            pul_msg_unref(r);
        }
        return rc;
    }
    pul_msg_t *r = pul_msg_ref(msg);
    int rc = pul_ctx_reply(ctx, r);
    if (rc != 0) {
        pul_msg_unref(r);
    }
    return rc;
}

/* Host the sink, write our address to `out_fd`, serve until `in_fd` reaches EOF. */
static int
run_host(int out_fd, int in_fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    cfg.listen_addr = "127.0.0.1:0";
    cfg.mailbox_capacity = 4096;
    pul_system_t *sys = NULL;
    int rc = pul_system_new(&cfg, &sys);
    if (rc != 0) {
        fprintf(stderr, "host: pul_system_new: %s\n", pul_strerror(rc));
        return 1;
    }
    static long count;
    pul_actor_vtable_t vt = {.receive = sink_receive};
    pul_spawn_opts_t opts;
    pul_spawn_opts_init(&opts);
    opts.name = SINK_NAME;
    opts.mailbox_capacity = 4096;
    pul_id_t id;
    rc = pul_spawn(sys, &vt, &count, &opts, &id);
    if (rc != 0) {
        fprintf(stderr, "host: pul_spawn: %s\n", pul_strerror(rc));
        pul_system_shutdown(sys);
        return 1;
    }
    char line[PUL_ADDR_MAX + 2];
    int n = snprintf(line, sizeof line, "%s\n", pul_system_addr(sys));
    if (write(out_fd, line, (size_t)n) != n) {
        pul_system_shutdown(sys);
        return 1;
    }
    close(out_fd);
    char c;
    for (;;) { /* EOF: the caller is done (or gone) */
        ssize_t n = read(in_fd, &c, 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
    }
    pul_system_shutdown(sys);
    return 0;
}

/* ---- the calling process ---- */

typedef struct {
    pul_system_t *sys;
    pul_id_t target;
    pul_msg_t *tick;
    long total;      /* calls to make */
    long issued;
    long completed;
    long failed;
    int first_err;
    double t_last;   /* latency mode: when the call in flight was issued */
    double *lat;     /* latency mode: one sample per call after the warm-up */
    long warm;       /* latency mode: calls not sampled (connection set-up, caches) */
    long tells_sent;
    double t0, t1;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} run_t;

static void
run_finish(run_t *r)
{
    r->t1 = now_s();
    pthread_mutex_lock(&r->mu);
    r->done = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void
run_wait(run_t *r)
{
    pthread_mutex_lock(&r->mu);
    while (!r->done) {
        pthread_cond_wait(&r->cv, &r->mu);
    }
    pthread_mutex_unlock(&r->mu);
}

static void ask_done(int status, pul_msg_t *reply, const pul_error_t *err, void *arg);

/* Issue one ask (core thread). */
static void
issue_ask(run_t *r)
{
    r->issued++;
    r->t_last = now_s();
    int rc = pul_ask(r->sys, r->target, pul_msg_ref(r->tick), 10000, ask_done, r, NULL);
    if (rc != 0) {
        pul_msg_unref(r->tick);
        /* counted as a failed call; finish when nothing is left in flight */
        ask_done(rc, NULL, NULL, r);
    }
}

static void
ask_done(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    run_t *r = arg;
    if (r->lat != NULL && r->completed >= r->warm) {
        r->lat[r->completed - r->warm] = (now_s() - r->t_last) * 1e6;
    }
    r->completed++;
    if (status != 0) {
        if (r->failed++ == 0) {
            r->first_err = status;
        }
    }
    if (r->issued < r->total && r->failed == 0) {
        issue_ask(r);
    } else if (r->completed == r->issued) {
        run_finish(r);
    }
}

static void
start_latency(void *arg)
{
    run_t *r = arg;
    r->t0 = now_s();
    issue_ask(r);
}

static void
start_pipelined(void *arg)
{
    run_t *r = arg;
    r->t0 = now_s();
    for (int i = 0; i < IN_FLIGHT && r->issued < r->total; i++) {
        issue_ask(r);
    }
}

/* Tells: send a window, then ask the sink how many it has seen; keep at most 4 windows
 * unacknowledged; done when the sink has counted every tell of this run. */
static void count_done(int status, pul_msg_t *reply, const pul_error_t *err, void *arg);

static long tell_base; /* the sink's count before this run */

static void
ask_count(run_t *r)
{
    pul_msg_t *m = pul_msg_new("count", NULL, 0);
    int rc = m == NULL ? PUL_ENOMEM
                       : pul_ask(r->sys, r->target, m, 10000, count_done, r, NULL);
    if (rc != 0) {
        pul_msg_unref(m);
        r->first_err = rc;
        r->failed++;
        run_finish(r);
    }
}

static void
send_tells(run_t *r)
{
    for (int i = 0; i < TELL_WINDOW && r->tells_sent < r->total; i++) {
        int rc = pul_tell(r->sys, r->target, pul_msg_ref(r->tick));
        if (rc != 0) {
            pul_msg_unref(r->tick);
            if (rc != PUL_EFULL && rc != PUL_EAGAIN && rc != PUL_ENOMEM) {
                r->first_err = rc;
                r->failed++;
            }
            break; /* try again after the next count */
        }
        r->tells_sent++;
    }
}

static void
count_done(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    run_t *r = arg;
    if (status != 0 || r->failed != 0) {
        if (r->failed++ == 0) {
            r->first_err = status;
        }
        run_finish(r);
        return;
    }
    size_t len = 0;
    const char *p = pul_msg_data(reply, &len);
    char buf[32];
    if (len >= sizeof buf) {
        len = sizeof buf - 1;
    }
    memcpy(buf, p, len);
    buf[len] = '\0';
    long seen = atol(buf);
    if (r->tells_sent == 0 && r->t0 == 0) {
        tell_base = seen; /* first answer: the baseline */
        r->t0 = now_s();
    }
    seen -= tell_base;
    if (seen >= r->total) {
        run_finish(r);
        return;
    }
    if (r->tells_sent < r->total && r->tells_sent - seen <= 4 * TELL_WINDOW) {
        send_tells(r);
    }
    ask_count(r);
}

static void
start_tells(void *arg)
{
    ask_count(arg);
}

static run_t *
run_new(pul_system_t *sys, pul_id_t target, long total)
{
    run_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return NULL;
    }
    r->sys = sys;
    r->target = target;
    r->total = total;
    r->tick = pul_msg_new("tick", "0123456789abcdef", 16);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    return r;
}

static void
run_free(run_t *r)
{
    if (r != NULL) {
        pul_msg_unref(r->tick);
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        free(r->lat);
        free(r);
    }
}

static int
run_caller(const char *host_addr, long total)
{
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    cfg.listen_addr = "127.0.0.1:0";
    const char *seeds[1] = {host_addr};
    cfg.seeds = seeds;
    cfg.nseeds = 1;
    cfg.timing.join_retry_ms = 200;
    pul_system_t *sys = NULL;
    int rc = pul_system_new(&cfg, &sys);
    if (rc != 0) {
        fprintf(stderr, "caller: pul_system_new: %s\n", pul_strerror(rc));
        printf("{\"bench\": \"c_remote\", \"error\": \"pul_system_new: %s\"}\n", pul_strerror(rc));
        return 1;
    }

    /* Join and find the actor: poll the cluster view for up to 20 s. */
    pul_instance_t inst;
    double deadline = now_s() + 20.0, t_join = now_s();
    int found = 0;
    while (now_s() < deadline) {
        found = pul_resolve_name(sys, SINK_NAME, &inst, 1);
        if (found > 0) {
            break;
        }
        usleep(20000);
    }
    if (found <= 0) {
        fprintf(stderr, "caller: %s not found through seed %s (%s)\n", SINK_NAME, host_addr,
                found < 0 ? pul_strerror(found) : "not in the cluster view");
        printf("{\"bench\": \"c_remote\", \"error\": \"name not resolved\"}\n");
        pul_system_shutdown(sys);
        return 1;
    }
    double join_s = now_s() - t_join;

    int status = 0;
    /* 1. one ask at a time */
    long nlat = total / 20 > 1000 ? total / 20 : 1000;
    run_t *lat = run_new(sys, inst.actor_id, nlat + 200);
    lat->warm = 200;
    lat->lat = malloc(sizeof(double) * (size_t)nlat);
    pul_system_post(sys, start_latency, lat);
    run_wait(lat);
    double p50 = 0, p99 = 0;
    if (lat->failed == 0) {
        qsort(lat->lat, (size_t)nlat, sizeof(double), cmp_double);
        p50 = lat->lat[nlat / 2];
        p99 = lat->lat[nlat * 99 / 100];
    } else {
        fprintf(stderr, "caller: asks failed: %s\n", pul_strerror(lat->first_err));
        status = 1;
    }

    /* 2. asks with IN_FLIGHT in flight */
    run_t *pipe_run = run_new(sys, inst.actor_id, total);
    cpu_t c0 = cpu_now();
    pul_system_post(sys, start_pipelined, pipe_run);
    run_wait(pipe_run);
    cpu_t c1 = cpu_now();
    double asks_per_s = pipe_run->failed ? 0 : (double)total / (pipe_run->t1 - pipe_run->t0);
    if (pipe_run->failed) {
        fprintf(stderr, "caller: pipelined asks failed: %s\n", pul_strerror(pipe_run->first_err));
        status = 1;
    }

    /* 3. tells with up to 4 windows unacknowledged */
    run_t *tells = run_new(sys, inst.actor_id, total);
    pul_system_post(sys, start_tells, tells);
    run_wait(tells);
    cpu_t c2 = cpu_now();
    double tells_per_s = tells->failed ? 0 : (double)total / (tells->t1 - tells->t0);
    if (tells->failed) {
        fprintf(stderr, "caller: tells failed: %s\n", pul_strerror(tells->first_err));
        status = 1;
    }

    /* 4. bandwidth: 64 MiB requests (answered with their size), then 64 MiB replies; one call
     * at a time, after one warm-up call each */
    double bw[2] = {0, 0};
    void *bulk = calloc(1, BULK_BYTES);
    const char *nb = getenv("BENCH_C_REMOTE_BULK");
    int do_bulk = nb == NULL || atoi(nb) != 0;
    for (int dir = 0; dir < 2 && do_bulk && bulk != NULL && status == 0; dir++) {
        run_t *b = run_new(sys, inst.actor_id, BULK_CALLS + 1);
        pul_msg_unref(b->tick);
        b->tick = pul_msg_new(dir == 0 ? "nbytes" : "blob", NULL, 0);
        if (dir == 0) {
            pul_msg_add_segment(b->tick, bulk, BULK_BYTES, NULL, NULL);
        }
        b->warm = 1;
        b->lat = malloc(sizeof(double) * BULK_CALLS);
        pul_system_post(sys, start_latency, b);
        run_wait(b);
        if (b->failed == 0) {
            double sum = 0;
            for (int i = 0; i < BULK_CALLS; i++) {
                sum += b->lat[i];
            }
            bw[dir] = (double)BULK_BYTES * BULK_CALLS / (sum * 1e-6);
        } else {
            fprintf(stderr, "caller: bulk calls failed: %s\n", pul_strerror(b->first_err));
            status = 1;
        }
        run_free(b);
    }

    pul_system_shutdown(sys);
    free(bulk);

    printf("%-52s %14s\n", "C actor across processes (127.0.0.1)", "value");
    printf("%-52s %11.2f s\n", "join + name visible", join_s);
    printf("%-52s %11.1f us\n", "ask round trip p50 (one at a time)", p50);
    printf("%-52s %11.1f us\n", "ask round trip p99 (one at a time)", p99);
    printf("%-52s %11.0f k/s\n", "asks, 1024 in flight", asks_per_s / 1e3);
    printf("%-52s %11.0f k/s\n", "tells, windows of 1024", tells_per_s / 1e3);
    printf("%-52s %5.2f / %5.2f us\n", "asks: CPU per message, caller / host",
           (c1.self - c0.self) * 1e6 / (double)total, (c1.host - c0.host) * 1e6 / (double)total);
    printf("%-52s %5.2f / %5.2f us\n", "tells: CPU per message, caller / host",
           (c2.self - c1.self) * 1e6 / (double)total, (c2.host - c1.host) * 1e6 / (double)total);
    printf("{\"bench\": \"c_remote_ask_latency\", \"samples\": %ld, \"p50_us\": %.1f, "
           "\"p99_us\": %.1f}\n",
           nlat, p50, p99);
    printf("{\"bench\": \"c_remote_ask_pipelined\", \"asks\": %ld, \"in_flight\": %d, "
           "\"asks_per_s\": %.0f, \"cpu_us_caller\": %.2f, \"cpu_us_host\": %.2f}\n",
           total, IN_FLIGHT, asks_per_s, (c1.self - c0.self) * 1e6 / (double)total,
           (c1.host - c0.host) * 1e6 / (double)total);
    printf("{\"bench\": \"c_remote_tell\", \"messages\": %ld, \"msgs_per_s\": %.0f, "
           "\"cpu_us_caller\": %.2f, \"cpu_us_host\": %.2f}\n",
           total, tells_per_s, (c2.self - c1.self) * 1e6 / (double)total,
           (c2.host - c1.host) * 1e6 / (double)total);
    printf("%-52s %9.2f GB/s\n", "64 MiB segment, request", bw[0] / 1e9);
    printf("%-52s %9.2f GB/s\n", "64 MiB segment, reply", bw[1] / 1e9);
    printf("{\"bench\": \"c_remote_join\", \"seconds\": %.3f}\n", join_s);
    printf("{\"bench\": \"c_remote_bulk_request\", \"bytes\": %u, \"calls\": %d, "
           "\"bytes_per_s\": %.0f}\n", BULK_BYTES, BULK_CALLS, bw[0]);
    printf("{\"bench\": \"c_remote_bulk_reply\", \"bytes\": %u, \"calls\": %d, "
           "\"bytes_per_s\": %.0f}\n", BULK_BYTES, BULK_CALLS, bw[1]);
    run_free(lat);
    run_free(pipe_run);
    run_free(tells);
    return status;
}

int
main(int argc, char **argv)
{
    long total = argc > 1 ? atol(argv[1]) : 200000;
    if (total <= 0) {
        fprintf(stderr, "usage: bench_c_remote [messages > 0]\n");
        return 2;
    }
    /* libuv writes with write(2): a peer that went away must not kill either process. */
    signal(SIGPIPE, SIG_IGN);
    int addr_pipe[2], hold_pipe[2];
    if (pipe(addr_pipe) != 0 || pipe(hold_pipe) != 0) {
        perror("pipe");
        return 1;
    }
    /* Fork before either side creates a system: threads do not survive fork. */
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(addr_pipe[0]);
        close(hold_pipe[1]);
        _exit(run_host(addr_pipe[1], hold_pipe[0]));
    }
    close(addr_pipe[1]);
    close(hold_pipe[0]);
    host_pid = pid;
    alarm(300); /* never hang a benchmark run */

    char addr[PUL_ADDR_MAX + 2];
    size_t got = 0;
    while (got < sizeof addr - 1) {
        ssize_t n = read(addr_pipe[0], addr + got, 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0 || addr[got] == '\n') {
            break;
        }
        got++;
    }
    addr[got] = '\0';
    close(addr_pipe[0]);

    int rc = 1;
    if (got == 0) {
        fprintf(stderr, "bench_c_remote: the hosting process did not start\n");
        printf("{\"bench\": \"c_remote\", \"error\": \"host did not start\"}\n");
    } else {
        rc = run_caller(addr, total);
    }
    close(hold_pipe[1]); /* the host shuts down */
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return rc;
}
