/* builtins.c — C actors built into the extension (echo, counter, streamer, failer, forwarder)
 * for tests, benches and examples. They run on the core thread and never touch Python. */
#include "pulpy.h"

#include <stdlib.h>
#include <string.h>

static uint64_t
load_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

static void
store_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/* ---- echo: replies with the message itself ------------------------------------------------ */

static int
echo_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    if (!pul_ctx_is_ask(ctx)) {
        return 0;
    }
    pul_msg_t *r = pul_msg_ref(msg);
    if (pul_ctx_reply(ctx, r) != 0) {
        pul_msg_unref(r);
    }
    return 0;
}

/* ---- counter: payload = 8-byte LE increment (default 1); replies with the running total ---- */

static int
counter_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    int64_t *total = state;
    size_t len = 0;
    const unsigned char *p = pul_msg_data(msg, &len);
    *total += len >= 8 ? (int64_t)load_le(p, 8) : 1;
    if (!pul_ctx_is_ask(ctx)) {
        return 0;
    }
    unsigned char out[8];
    store_le(out, (uint64_t)*total, 8);
    pul_msg_t *r = pul_msg_new("i64", out, sizeof(out));
    if (r == NULL) {
        return PUL_ENOMEM;
    }
    if (pul_ctx_reply(ctx, r) != 0) {
        pul_msg_unref(r);
    }
    return 0;
}

/* ---- streamer: payload = 4-byte LE count n [+ 4-byte LE delay_ms between items];
 * streams n items of type "item" whose payload is the 4-byte LE index, then ends. ----------- */

typedef struct stream_job_s {
    struct stream_job_s *prev, *next_job; /* in the streamer's list of live jobs */
    struct stream_job_s **head;
    pul_system_t *sys;
    pul_stream_t *stream;
    pul_timer_t *timer;
    uint32_t next, n, delay_ms;
} stream_job_t;

static void
job_free(stream_job_t *job)
{
    if (job->prev != NULL) {
        job->prev->next_job = job->next_job;
    } else {
        *job->head = job->next_job;
    }
    if (job->next_job != NULL) {
        job->next_job->prev = job->prev;
    }
    free(job);
}

static void streamer_pump(stream_job_t *job);

static void
streamer_finish(stream_job_t *job, int cancelled)
{
    /* end also releases the handle of a cancelled stream */
    (void)pul_stream_end(job->stream);
    (void)cancelled;
    job_free(job);
}

static void
streamer_timer(void *arg)
{
    stream_job_t *job = arg;
    pul_timer_stop(job->timer);
    job->timer = NULL;
    streamer_pump(job);
}

static void
streamer_writable(void *arg)
{
    streamer_pump(arg);
}

static void
streamer_pump(stream_job_t *job)
{
    while (job->next < job->n) {
        unsigned char idx[4];
        store_le(idx, job->next, 4);
        pul_msg_t *item = pul_msg_new("item", idx, sizeof(idx));
        if (item == NULL) {
            pul_error_t err = {.kind = PUL_ERRKIND_SYSTEM, .message = "out of memory"};
            (void)pul_stream_error(job->stream, &err);
            job_free(job);
            return;
        }
        int rc = pul_stream_push(job->stream, item);
        if (rc == PUL_EFULL) {
            pul_msg_unref(item);
            pul_stream_on_writable(job->stream, streamer_writable, job);
            return;
        }
        if (rc != 0) {
            pul_msg_unref(item);
            streamer_finish(job, 1);
            return;
        }
        job->next++;
        if (job->delay_ms > 0 && job->next < job->n) {
            if (pul_timer_start(job->sys, job->delay_ms, 0, streamer_timer, job, &job->timer) !=
                0) {
                pul_error_t err = {.kind = PUL_ERRKIND_SYSTEM, .message = "timer failed"};
                (void)pul_stream_error(job->stream, &err);
                job_free(job);
            }
            return;
        }
    }
    streamer_finish(job, 0);
}

static int
streamer_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    if (!pul_ctx_is_ask(ctx)) {
        return 0;
    }
    size_t len = 0;
    const unsigned char *p = pul_msg_data(msg, &len);
    stream_job_t **head = state;
    stream_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        return PUL_ENOMEM;
    }
    job->head = head;
    job->next_job = *head;
    if (*head != NULL) {
        (*head)->prev = job;
    }
    *head = job;
    job->sys = pul_ctx_system(ctx);
    job->n = len >= 4 ? (uint32_t)load_le(p, 4) : 0;
    job->delay_ms = len >= 8 ? (uint32_t)load_le(p + 4, 4) : 0;
    job->stream = pul_ctx_stream(ctx);
    if (job->stream == NULL) {
        job_free(job);
        return PUL_ENOMEM;
    }
    streamer_pump(job);
    return 0;
}

/* The streamer is gone (stop or shutdown, core thread): fail the streams still producing. */
static void
streamer_free_state(void *state)
{
    stream_job_t **head = state;
    while (*head != NULL) {
        stream_job_t *job = *head;
        pul_timer_stop(job->timer);
        pul_error_t err = {.kind = PUL_ERRKIND_RUNTIME, .message = "streamer stopped"};
        (void)pul_stream_error(job->stream, &err);
        job_free(job);
    }
    free(head);
}

/* ---- failer: replies with a structured error; payload[0] (optional) picks the kind ---------- */

static int
failer_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    if (!pul_ctx_is_ask(ctx)) {
        return 0;
    }
    size_t len = 0;
    const unsigned char *p = pul_msg_data(msg, &len);
    pul_error_t err = {
        .kind = len >= 1 && p[0] >= PUL_ERRKIND_RUNTIME && p[0] <= PUL_ERRKIND_UNSUPPORTED
                    ? (pul_errkind_t)p[0]
                    : PUL_ERRKIND_SYSTEM,
        .code = 418,
        .recoverable = 1,
        .duration_ms = 1500,
        .message = "induced failure",
        .details = "failer details",
        .type_name = "RuntimeError",
    };
    (void)pul_ctx_reply_error(ctx, &err); /* the caller is gone if this fails */
    return 0;
}

/* ---- forwarder: payload = 16-byte big-endian target id + body; forwards (type, body) to the
 * target and relays its reply (or error). Proves core -> Python delivery from a C actor. ---- */

static void
forward_done(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    pul_reply_t *r = arg;
    if (status == 0) {
        pul_msg_t *m = pul_msg_ref(reply);
        if (pul_reply_send(r, m) != 0) {
            pul_msg_unref(m);
        }
        return;
    }
    if (status == PUL_EACTOR && err != NULL) {
        (void)pul_reply_error(r, err);
        return;
    }
    pul_error_t e = {.kind = PUL_ERRKIND_RUNTIME, .message = pul_strerror(status)};
    (void)pul_reply_error(r, &e);
}

static int
forwarder_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    size_t len = 0;
    const unsigned char *p = pul_msg_data(msg, &len);
    pul_reply_t *r = NULL;
    if (len < 16) {
        if (pul_ctx_is_ask(ctx)) {
            pul_error_t e = {.kind = PUL_ERRKIND_BUSINESS,
                             .code = 400,
                             .message = "forwarder: payload must start with a 16-byte target id"};
            (void)pul_ctx_reply_error(ctx, &e);
        }
        return 0;
    }
    pul_id_t target = {0, 0};
    for (int i = 0; i < 8; i++) {
        target.hi = (target.hi << 8) | p[i];
        target.lo = (target.lo << 8) | p[8 + i];
    }
    pul_msg_t *fwd = pul_msg_new(pul_msg_type(msg), p + 16, len - 16);
    if (fwd == NULL) {
        return PUL_ENOMEM;
    }
    pul_system_t *sys = pul_ctx_system(ctx);
    if (!pul_ctx_is_ask(ctx)) {
        if (pul_tell(sys, target, fwd) != 0) {
            pul_msg_unref(fwd);
        }
        return 0;
    }
    r = pul_ctx_defer(ctx);
    if (r == NULL) {
        pul_msg_unref(fwd);
        return PUL_ENOMEM;
    }
    int rc = pul_ask(sys, target, fwd, 0, forward_done, r, NULL);
    if (rc != 0) {
        pul_msg_unref(fwd);
        pul_error_t e = {.kind = PUL_ERRKIND_RUNTIME, .message = pul_strerror(rc)};
        (void)pul_reply_error(r, &e);
    }
    return 0;
}

/* ---- spawn ----------------------------------------------------------------------------------*/

int
pulpy_builtin_spawn(pul_system_t *sys, const char *kind, const char *name, pul_id_t *out)
{
    pul_actor_vtable_t vt = {0};
    void *state = NULL;
    if (strcmp(kind, "echo") == 0) {
        vt.receive = echo_receive;
    } else if (strcmp(kind, "counter") == 0) {
        vt.receive = counter_receive;
        vt.free_state = free;
        state = calloc(1, sizeof(int64_t));
        if (state == NULL) {
            return PUL_ENOMEM;
        }
    } else if (strcmp(kind, "streamer") == 0) {
        vt.receive = streamer_receive;
        vt.free_state = streamer_free_state;
        state = calloc(1, sizeof(stream_job_t *));
        if (state == NULL) {
            return PUL_ENOMEM;
        }
    } else if (strcmp(kind, "failer") == 0) {
        vt.receive = failer_receive;
    } else if (strcmp(kind, "forwarder") == 0) {
        vt.receive = forwarder_receive;
    } else {
        return PUL_EINVAL;
    }
    pul_spawn_opts_t opts;
    pul_spawn_opts_init(&opts);
    opts.name = name;
    int rc = pul_spawn(sys, &vt, state, &opts, out);
    if (rc != 0) {
        free(state);
    }
    return rc;
}
