/* hello_actors.c — a C program hosting two named C actors (a counter and a streaming echo),
 * asking them from the main thread, consuming a stream, and shutting down. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pulsing/pulsing.h"

/* A tiny "wait for the callback" helper: callbacks run on the core thread. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
    char text[128];
} waiter_t;

static void
waiter_init(waiter_t *w)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
}

static void
waiter_wait(waiter_t *w)
{
    pthread_mutex_lock(&w->mu);
    while (!w->done) {
        pthread_cond_wait(&w->cv, &w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static void
on_reply(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    waiter_t *w = arg;
    pthread_mutex_lock(&w->mu);
    w->status = status;
    if (reply != NULL) {
        size_t len;
        const char *d = pul_msg_data(reply, &len);
        snprintf(w->text, sizeof w->text, "%.*s", (int)len, d);
    } else if (err != NULL) {
        snprintf(w->text, sizeof w->text, "%s", err->message);
    }
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void
on_item(int status, pul_msg_t *item, const pul_error_t *err, void *arg)
{
    (void)err;
    if (status == 0) {
        size_t len;
        const char *d = pul_msg_data(item, &len);
        printf("  stream item: %.*s\n", (int)len, d);
        return;
    }
    printf("  stream end: %s\n", status == PUL_EOF ? "EOF" : pul_strerror(status));
    on_reply(status, NULL, NULL, arg);
}

/* ---- the counter: "incr" adds the payload's number and replies with the total ---- */

static int
counter_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    long *value = state;
    size_t len;
    const char *d = pul_msg_data(msg, &len);
    char buf[32];
    snprintf(buf, sizeof buf, "%.*s", (int)(len < 31 ? len : 31), d);
    *value += strtol(buf, NULL, 10);
    int n = snprintf(buf, sizeof buf, "%ld", *value);
    pul_msg_t *r = pul_msg_new("total", buf, (size_t)n);
    if (r != NULL && pul_ctx_reply(ctx, r) != 0) {
        pul_msg_unref(r);
    }
    return 0;
}

/* ---- the echo: "echo" replies with the payload; "tokens" streams it word by word ---- */

static int
echo_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    (void)state;
    size_t len;
    const char *d = pul_msg_data(msg, &len);
    if (strcmp(pul_msg_type(msg), "tokens") != 0) {
        pul_msg_t *r = pul_msg_new("echo", d, len);
        if (r != NULL && pul_ctx_reply(ctx, r) != 0) {
            pul_msg_unref(r);
        }
        return 0;
    }
    pul_stream_t *s = pul_ctx_stream(ctx);
    if (s == NULL) {
        return -1;
    }
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && d[j] != ' ') {
            j++;
        }
        pul_msg_t *it = pul_msg_new("token", d + i, j - i);
        if (it != NULL && pul_stream_push(s, it) != 0) {
            pul_msg_unref(it);
        }
        i = j + 1;
    }
    return pul_stream_end(s);
}

int
main(void)
{
    pul_system_t *sys = NULL;
    int rc = pul_system_new(NULL, &sys);
    if (rc != 0) {
        fprintf(stderr, "pul_system_new: %s\n", pul_strerror(rc));
        return 1;
    }
    long *count = malloc(sizeof *count);
    *count = 0;
    pul_actor_vtable_t counter_vt = {.receive = counter_receive, .free_state = free};
    pul_actor_vtable_t echo_vt = {.receive = echo_receive};
    pul_spawn_opts_t o;
    pul_spawn_opts_init(&o);
    o.name = "counter";
    pul_id_t counter, echo;
    if ((rc = pul_spawn(sys, &counter_vt, count, &o, &counter)) != 0) {
        free(count);
        fprintf(stderr, "spawn counter: %s\n", pul_strerror(rc));
        pul_system_shutdown(sys);
        return 1;
    }
    o.name = "services/echo";
    if ((rc = pul_spawn(sys, &echo_vt, NULL, &o, &echo)) != 0) {
        fprintf(stderr, "spawn echo: %s\n", pul_strerror(rc));
        pul_system_shutdown(sys);
        return 1;
    }
    char idbuf[33];
    pul_id_format(counter, idbuf);
    printf("spawned actors/counter as %s\n", idbuf);

    int failures = 0;
    for (int i = 1; i <= 3; i++) {
        waiter_t w;
        waiter_init(&w);
        char n[8];
        snprintf(n, sizeof n, "%d", i * 5);
        pul_msg_t *m = pul_msg_new("incr", n, strlen(n));
        if (pul_ask(sys, counter, m, 1000, on_reply, &w, NULL) != 0) {
            return 1;
        }
        waiter_wait(&w);
        printf("counter.incr(%s) -> %s\n", n, w.text);
        failures += w.status != 0;
    }

    pul_id_t found;
    if (pul_lookup(sys, "services/echo", &found) == 0) {
        waiter_t w;
        waiter_init(&w);
        pul_ask(sys, found, pul_msg_new("echo", "hello, actors", 13), 1000, on_reply, &w, NULL);
        waiter_wait(&w);
        printf("echo(\"hello, actors\") -> %s\n", w.text);
        failures += strcmp(w.text, "hello, actors") != 0;
    }

    printf("echo.tokens(\"one two three\"):\n");
    waiter_t w;
    waiter_init(&w);
    pul_ask_stream(sys, echo, pul_msg_new("tokens", "one two three", 13), 0, on_item, &w, NULL);
    waiter_wait(&w);
    failures += w.status != PUL_EOF;

    pul_system_shutdown(sys);
    printf("shut down cleanly; %s\n", failures ? "FAILED" : "all good");
    return failures ? 1 : 0;
}
