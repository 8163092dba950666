/* call.c — the message path: tell, ask, mailboxes, dispatch, replies (deferred from any
 * thread), streams and cancellation. */
#include <assert.h>
#include <string.h>

#include "actor/actor.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/net.h"

#define CALL_FREELIST_MAX 4096
#define DISPATCH_BATCH 256

struct pul_ctx_s {
    pul__actor_t *a;
    pul_call_t *call;
    int answered;
};

static void stream_unref(struct pul_stream_s *s);
static int stream_need_post(struct pul_stream_s *s);

/* ---- errors ------------------------------------------------------------------------------- */

pul__err_t *
pul__err_copy(const pul_error_t *e)
{
    const char *m = e && e->message ? e->message : "";
    const char *d = e ? e->details : NULL;
    const char *t = e ? e->type_name : NULL;
    size_t ml = strlen(m) + 1, dl = d ? strlen(d) + 1 : 0, tl = t ? strlen(t) + 1 : 0;
    pul__err_t *c = pul__malloc(sizeof *c + ml + dl + tl);
    if (c == NULL) {
        return NULL;
    }
    if (e != NULL) {
        c->e = *e;
    } else {
        memset(&c->e, 0, sizeof c->e);
        c->e.kind = PUL_ERRKIND_SYSTEM;
    }
    char *p = (char *)(c + 1);
    memcpy(p, m, ml);
    c->e.message = p;
    p += ml;
    c->e.details = NULL;
    c->e.type_name = NULL;
    if (d != NULL) {
        memcpy(p, d, dl);
        c->e.details = p;
        p += dl;
    }
    if (t != NULL) {
        memcpy(p, t, tl);
        c->e.type_name = p;
    }
    return c;
}

/* ---- call records ------------------------------------------------------------------------- */

static pul_call_t *
call_new(pul_system_t *sys)
{
    pul_call_t *c = NULL;
    if (pul__loop_on_thread(&sys->loop) && sys->freelist != NULL) {
        c = sys->freelist;
        sys->freelist = c->next;
        sys->nfree--;
        memset(c, 0, sizeof *c);
    } else {
        c = pul__calloc(1, sizeof *c);
        if (c == NULL) {
            return NULL;
        }
    }
    c->sys = sys;
    atomic_init(&c->refs, 1);
    pul__system_ref(sys);
    return c;
}

void
pul__call_unref(pul_call_t *c)
{
    if (c == NULL || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    pul_system_t *sys = c->sys;
    pul_msg_unref(c->msg);
    pul_msg_unref(c->reply_msg);
    pul__free(c->reply_err);
    pul__free(c->name);
    c->name = NULL;
    if (pul__loop_on_thread(&sys->loop) && !atomic_load(&sys->closing) &&
        sys->nfree < CALL_FREELIST_MAX) {
        c->next = sys->freelist;
        sys->freelist = c;
        sys->nfree++;
    } else {
        pul__free(c);
    }
    pul__system_unref(sys);
}

static void
pending_add(pul_system_t *sys, pul_call_t *c)
{
    c->prev = NULL;
    c->next = sys->pending;
    if (sys->pending != NULL) {
        sys->pending->prev = c;
    }
    sys->pending = c;
    c->pending = 1;
}

static void
pending_remove(pul_system_t *sys, pul_call_t *c)
{
    if (!c->pending) {
        return;
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        sys->pending = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    c->pending = 0;
}

void
pul__call_complete(pul_call_t *c, int status, pul_msg_t *reply, const pul__err_t *err)
{
    pul_system_t *sys = c->sys;
    if (c->done) {
        pul_msg_unref(reply);
        return;
    }
    c->done = 1;
    if (c->net_op != NULL) {
        /* A remote call given up here (cancel, deadline, shutdown): reset its stream. */
        pul__net_cancel(sys->net, c);
    }
    pul__timer_disarm(&sys->loop, &c->deadline);
    pending_remove(sys, c);
    void (*on_end)(int, void *) = c->on_end;
    c->on_end = NULL;
    if (on_end != NULL) {
        on_end(status, c->on_end_arg); /* the actor may stop the work of a deferred reply */
    }
    struct pul_stream_s *s = c->stream;
    c->stream = NULL;
    if (s != NULL) {
        /* The consumer is done: the producer sees the stream closed from now on. */
        void (*wcb)(void *) = NULL;
        void *warg = NULL;
        pthread_mutex_lock(&s->mu);
        if (s->state == STREAM_OPEN) {
            s->state = status == PUL_ECLOSED ? STREAM_CLOSED : STREAM_CANCELED;
            if (!s->producer_done) {
                wcb = s->wcb; /* one call per registration */
                warg = s->warg;
                s->wcb = NULL;
            }
        }
        pthread_mutex_unlock(&s->mu);
        if (wcb != NULL) {
            wcb(warg);
        }
        stream_unref(s);
    }
    if (c->cb != NULL) {
        const pul_error_t *e = err != NULL ? &err->e : NULL;
        if (status == 0 && c->stream_mode) {
            c->cb(0, reply, NULL, c->arg);
            c->cb(PUL_EOF, NULL, NULL, c->arg);
        } else {
            c->cb(status, reply, status == PUL_EACTOR ? e : NULL, c->arg);
        }
    }
    pul_msg_unref(reply);
    pul__call_unref(c); /* the core's reference */
}

static void
call_complete_later_task(pul__task_t *t)
{
    pul_call_t *c = (pul_call_t *)t;
    pul__call_complete(c, c->status_later, NULL, NULL);
}

/* An error known at once is delivered on the next loop turn, never inside the call. */
static void
call_fail_later(pul_call_t *c, int status)
{
    c->status_later = status;
    c->task.run = call_complete_later_task;
    pul__loop_defer(&c->sys->loop, &c->task);
}

static void
call_deadline_fire(pul__tmr_t *t)
{
    pul_call_t *c = (pul_call_t *)((char *)t - offsetof(pul_call_t, deadline));
    pul__call_complete(c, PUL_ETIMEDOUT, NULL, NULL);
}

/* ---- mailboxes ---------------------------------------------------------------------------- */

static int
mailbox_reserve(pul__actor_t *a)
{
    size_t n = atomic_load_explicit(&a->occ, memory_order_relaxed);
    while (n < a->cap) {
        if (atomic_compare_exchange_weak(&a->occ, &n, n + 1)) {
            return 1;
        }
    }
    return 0;
}

/* Push into a reserved slot. Core thread. */
static void
mailbox_push(pul__actor_t *a, pul_msg_t *msg, pul_call_t *call)
{
    size_t i = a->head + a->count;
    if (i >= a->cap) {
        i -= a->cap;
    }
    a->ring[i].msg = msg;
    a->ring[i].call = call;
    a->count++;
    pul__actor_schedule(a);
}

void
pul__mailbox_drain(pul__actor_t *a, int status)
{
    while (a->count > 0) {
        pul__slot_t s = a->ring[a->head];
        a->head = a->head + 1 == a->cap ? 0 : a->head + 1;
        a->count--;
        atomic_fetch_sub(&a->occ, 1);
        if (s.call != NULL) {
            pul__call_complete(s.call, status, NULL, NULL);
            pul__call_unref(s.call);
        } else {
            pul_msg_unref(s.msg);
        }
    }
    while (a->held_head != NULL) {
        pul_call_t *c = a->held_head;
        a->held_head = c->held_next;
        pul__call_complete(c, status, NULL, NULL);
        pul__call_unref(c);
    }
    a->held_tail = NULL;
}

/* Accept an ask on the core thread: queue it, or hold it when the mailbox is full. */
static void
call_accept(pul_call_t *c)
{
    pul_system_t *sys = c->sys;
    pending_add(sys, c);
    if (c->due != 0) {
        c->deadline.cb = call_deadline_fire;
        if (pul__timer_arm(&sys->loop, &c->deadline, c->due) != 0) {
            call_fail_later(c, PUL_ENOMEM);
            return;
        }
    }
    if (atomic_load(&sys->closing)) {
        call_fail_later(c, PUL_ECLOSED);
        return;
    }
    if (c->name != NULL || pul__net_is_remote(sys, c->target)) {
        /* Another node's actor: the transport takes the call over. */
        int rc = c->name != NULL ? pul__net_call_named(sys->net, c, c->target, c->name)
                                 : pul__net_call(sys->net, c);
        if (rc != 0) {
            call_fail_later(c, rc);
        }
        return;
    }
    pul__actor_t *a = pul__actor_get(sys, c->target);
    if (a == NULL) {
        call_fail_later(c, PUL_ENOTFOUND);
        return;
    }
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed); /* the mailbox's */
    if (a->held_head == NULL && mailbox_reserve(a)) {
        mailbox_push(a, NULL, c);
    } else {
        c->held_next = NULL;
        if (a->held_tail != NULL) {
            a->held_tail->held_next = c;
        } else {
            a->held_head = c;
        }
        a->held_tail = c;
    }
    pul__actor_unref(a);
}

static void
call_accept_task(pul__task_t *t)
{
    call_accept((pul_call_t *)t);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

void
pul__actor_schedule(pul__actor_t *a)
{
    pul_system_t *sys = a->sys;
    if (a->in_ready || !a->started || a->stopped || a->restarting) {
        return;
    }
    a->in_ready = 1;
    a->ready_next = NULL;
    if (sys->ready_tail != NULL) {
        sys->ready_tail->ready_next = a;
    } else {
        sys->ready_head = a;
    }
    sys->ready_tail = a;
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    pul__loop_kick(&sys->loop);
}

static void
mailbox_refill(pul__actor_t *a)
{
    while (a->held_head != NULL) {
        pul_call_t *c = a->held_head;
        if (c->done) {
            a->held_head = c->held_next;
            pul__call_unref(c);
            continue;
        }
        if (!mailbox_reserve(a)) {
            break;
        }
        a->held_head = c->held_next;
        mailbox_push(a, NULL, c);
    }
    if (a->held_head == NULL) {
        a->held_tail = NULL;
    }
}

static void
actor_run(pul__actor_t *a)
{
    for (int n = 0; n < DISPATCH_BATCH && a->count > 0; n++) {
        if (!a->started || a->stopped || a->restarting) {
            return;
        }
        pul__slot_t s = a->ring[a->head];
        a->head = a->head + 1 == a->cap ? 0 : a->head + 1;
        a->count--;
        atomic_fetch_sub_explicit(&a->occ, 1, memory_order_release);
        if (a->held_head != NULL) {
            mailbox_refill(a);
        }
        if (a->room_wanted) {
            a->room_wanted = 0;
            pul__net_room(a->sys->net);
        }
        pul_call_t *c = s.call;
        if (c != NULL && c->done) {
            pul__call_unref(c);
            continue;
        }
        struct pul_ctx_s ctx = {a, c, 0};
        pul_msg_t *msg = c != NULL ? c->msg : s.msg;
        int rc = a->vt.receive(&ctx, msg, a->state);
        if (rc != 0) {
            /* Supervision decides before the caller hears of the failure, so a caller that
             * reacts to the error already sees the actor restarting (or gone). */
            pul__actor_failed(a);
        }
        if (c != NULL) {
            if (!ctx.answered) {
                if (rc != 0) {
                    pul_error_t e = {.kind = PUL_ERRKIND_SYSTEM,
                                     .recoverable = 1,
                                     .message = "actor failed"};
                    pul__err_t *ce = pul__err_copy(&e);
                    pul__call_complete(c, ce != NULL ? PUL_EACTOR : PUL_ENOMEM, NULL, ce);
                    pul__free(ce);
                } else {
                    pul_msg_t *empty = pul_msg_new("", NULL, 0);
                    pul__call_complete(c, empty != NULL ? 0 : PUL_ENOMEM, empty, NULL);
                }
            }
            pul_msg_unref(c->msg);
            c->msg = NULL;
            pul__call_unref(c);
        } else {
            pul_msg_unref(msg);
        }
    }
}

int
pul__dispatch(void *arg)
{
    pul_system_t *sys = arg;
    pul__actor_t *a = sys->ready_head;
    sys->ready_head = sys->ready_tail = NULL;
    while (a != NULL) {
        pul__actor_t *next = a->ready_next;
        a->in_ready = 0;
        actor_run(a);
        if (a->count > 0) {
            pul__actor_schedule(a);
        }
        pul__actor_unref(a);
        a = next;
    }
    return sys->ready_head != NULL;
}

void
pul__calls_shutdown(pul_system_t *sys)
{
    while (sys->pending != NULL) {
        pul__call_complete(sys->pending, PUL_ECLOSED, NULL, NULL);
    }
    while (sys->ready_head != NULL) {
        pul__actor_t *a = sys->ready_head;
        sys->ready_head = a->ready_next;
        a->in_ready = 0;
        pul__actor_unref(a);
    }
    sys->ready_tail = NULL;
    while (sys->freelist != NULL) {
        pul_call_t *c = sys->freelist;
        sys->freelist = c->next;
        pul__free(c);
    }
    sys->nfree = 0;
}

/* ---- tell --------------------------------------------------------------------------------- */

typedef struct {
    pul__task_t task;
    pul__actor_t *a;
    pul_msg_t *msg;
} tell_op_t;

static void
tell_task(pul__task_t *t)
{
    tell_op_t *op = (tell_op_t *)t;
    pul__actor_t *a = op->a;
    if (a->stopped) {
        atomic_fetch_sub(&a->occ, 1);
        pul_msg_unref(op->msg);
    } else {
        mailbox_push(a, op->msg, NULL);
    }
    pul__actor_unref(a);
    pul__free(op);
}

typedef struct {
    pul__task_t task;
    pul_system_t *sys;
    pul_id_t target;
    pul_msg_t *msg;
} remote_tell_t;

static void
remote_tell_task(pul__task_t *t)
{
    remote_tell_t *op = (remote_tell_t *)t;
    pul_system_t *sys = op->sys;
    int rc = atomic_load(&sys->closing) ? PUL_ECLOSED : pul__net_tell(sys->net, op->target, op->msg);
    if (rc != 0) {
        PUL__LOG(PUL__LOG_DEBUG, "call", "remote tell dropped: %s", pul_strerror(rc));
        pul_msg_unref(op->msg);
    }
    pul__system_unref(sys);
    pul__free(op);
}

/* A tell to another node's actor: to the transport, on the core thread. */
static int
tell_remote(pul_system_t *sys, pul_id_t target, pul_msg_t *msg)
{
    if (pul__loop_on_thread(&sys->loop)) {
        return pul__net_tell(sys->net, target, msg);
    }
    if (!pul__net_has_route(sys->net, target)) {
        return PUL_ENOTFOUND;
    }
    remote_tell_t *op = pul__malloc(sizeof *op);
    if (op == NULL) {
        return PUL_ENOMEM;
    }
    op->task.run = remote_tell_task;
    op->sys = sys;
    op->target = target;
    op->msg = msg;
    pul__system_ref(sys);
    int rc = pul__loop_post(&sys->loop, &op->task);
    if (rc != 0) {
        pul__system_unref(sys);
        pul__free(op);
    }
    return rc;
}

int
pul_tell(pul_system_t *sys, pul_id_t target, pul_msg_t *msg)
{
    if (sys == NULL || msg == NULL) {
        return PUL_EINVAL;
    }
    if (atomic_load_explicit(&sys->closing, memory_order_relaxed)) {
        return PUL_ECLOSED;
    }
    if (pul__net_is_remote(sys, target)) {
        return tell_remote(sys, target, msg);
    }
    pul__actor_t *a = pul__actor_get(sys, target);
    if (a == NULL) {
        return PUL_ENOTFOUND;
    }
    int rc = 0;
    int here = pul__loop_on_thread(&sys->loop);
    if ((here && a->held_head != NULL) || !mailbox_reserve(a)) {
        /* Full, or asks wait for room (held_head, core-thread state): not before them. */
        rc = PUL_EFULL;
        if (here) {
            a->room_wanted = 1; /* the transport retries its held tells when a slot frees */
        }
    } else if (here) {
        if (a->stopped) {
            atomic_fetch_sub(&a->occ, 1);
            rc = PUL_ENOTFOUND;
        } else {
            mailbox_push(a, msg, NULL);
        }
    } else {
        tell_op_t *op = pul__malloc(sizeof *op);
        if (op == NULL) {
            atomic_fetch_sub(&a->occ, 1);
            rc = PUL_ENOMEM;
        } else {
            op->task.run = tell_task;
            op->a = a;
            op->msg = msg;
            rc = pul__loop_post(&sys->loop, &op->task);
            if (rc == 0) {
                return 0; /* the op owns the actor reference */
            }
            atomic_fetch_sub(&a->occ, 1);
            pul__free(op);
        }
    }
    pul__actor_unref(a);
    return rc;
}

/* ---- ask ---------------------------------------------------------------------------------- */

/* A remote ask from a thread other than the core: when the core thread sleeps and the call would
 * be alone on an idle connection, accept it here in the core's place (pul__loop_borrow) and write
 * the request from this thread, instead of waking the core to do it (one thread wake-up less per
 * ask; see docs/design/threads.md). Returns 1 when done so, 0 to post as usual. */
static int
ask_direct(pul_system_t *sys, pul_call_t *c)
{
    if (c->name == NULL && !pul__net_is_remote(sys, c->target)) {
        return 0;
    }
    if (atomic_load_explicit(&sys->net_calls, memory_order_relaxed) != 0 ||
        atomic_load_explicit(&sys->net_calls_last_peak, memory_order_relaxed) > 1 ||
        !pul__loop_borrow(&sys->loop)) {
        return 0;
    }
    int ok = !atomic_load(&sys->closing) && pul__net_direct_call_ok(sys->net, c);
    if (ok) {
        call_accept(c);
        pul__net_direct_flush(sys->net);
    }
    pul__loop_unborrow(&sys->loop);
    return ok;
}

static int
ask_start(pul_system_t *sys, pul_id_t target, pul_msg_t *msg, uint64_t deadline_ms,
          pul_ask_cb cb, void *arg, pul_call_t **out_call, int stream_mode, const char *name)
{
    if (out_call != NULL) {
        *out_call = NULL;
    }
    if (sys == NULL || msg == NULL || cb == NULL) {
        return PUL_EINVAL;
    }
    if (atomic_load_explicit(&sys->closing, memory_order_relaxed)) {
        return PUL_ECLOSED;
    }
    if (deadline_ms == 0) {
        deadline_ms = sys->cfg.default_deadline_ms;
    }
    if (deadline_ms == 0 && (name != NULL || pul__net_is_remote(sys, target))) {
        deadline_ms = sys->cfg.remote_deadline_ms;
    }
    pul_call_t *c = call_new(sys);
    if (c == NULL) {
        return PUL_ENOMEM;
    }
    if (name != NULL) {
        c->name = pul__strndup(name, strlen(name));
        if (c->name == NULL) {
            pul__call_unref(c);
            return PUL_ENOMEM;
        }
    }
    c->target = target;
    c->cb = cb;
    c->arg = arg;
    c->stream_mode = stream_mode;
    c->due = deadline_ms != 0 ? pul__now_ms() + deadline_ms : 0;
    if (out_call != NULL) {
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed); /* the handle's */
        *out_call = c; /* before the post: the callback may read it (pul_ask_stream) */
    }
    c->msg = msg;
    if (pul__loop_on_thread(&sys->loop)) {
        call_accept(c);
    } else if (!ask_direct(sys, c)) {
        c->task.run = call_accept_task;
        int rc = pul__loop_post(&sys->loop, &c->task);
        if (rc != 0) {
            c->msg = NULL; /* the caller keeps msg on error */
            if (out_call != NULL) {
                *out_call = NULL;
            }
            atomic_store(&c->refs, 1);
            pul__call_unref(c);
            return rc;
        }
    }
    return 0;
}

int
pul_ask(pul_system_t *sys, pul_id_t target, pul_msg_t *msg, uint64_t deadline_ms, pul_ask_cb cb,
        void *arg, pul_call_t **out_call)
{
    return ask_start(sys, target, msg, deadline_ms, cb, arg, out_call, 0, NULL);
}

int
pul_ask_stream(pul_system_t *sys, pul_id_t target, pul_msg_t *msg, uint64_t deadline_ms,
               pul_stream_cb cb, void *arg, pul_call_t **out_call)
{
    return ask_start(sys, target, msg, deadline_ms, cb, arg, out_call, 1, NULL);
}

int
pul_ask_named(pul_system_t *sys, pul_id_t node_id, const char *name, pul_msg_t *msg,
              uint64_t deadline_ms, pul_ask_cb cb, void *arg, pul_call_t **out_call)
{
    if (out_call != NULL) {
        *out_call = NULL;
    }
    if (sys == NULL || name == NULL || msg == NULL || cb == NULL) {
        return PUL_EINVAL;
    }
    if (!pul_id_is_zero(node_id) && !pul_id_eq(node_id, sys->node_id)) {
        /* Another node's instance: POST /named/<name> there. */
        char norm[PUL_NAME_MAX + 1];
        if (pul_name_normalize(name, strlen(name), 1, norm, sizeof norm) != 0) {
            return PUL_ENAME;
        }
        return ask_start(sys, node_id, msg, deadline_ms, cb, arg, out_call, 0, norm);
    }
    pul_id_t target;
    int rc = pul_lookup(sys, name, &target);
    if (rc != 0) {
        return rc;
    }
    return ask_start(sys, target, msg, deadline_ms, cb, arg, out_call, 0, NULL);
}

static void
call_cancel_task(pul__task_t *t)
{
    pul_call_t *c = (pul_call_t *)((char *)t - offsetof(pul_call_t, cancel_task));
    pul__call_complete(c, PUL_ECANCELED, NULL, NULL);
    pul__call_unref(c); /* the handle's */
}

void
pul_call_cancel(pul_system_t *sys, pul_call_t *call)
{
    if (call == NULL) {
        return;
    }
    if (sys == NULL) {
        sys = call->sys;
    }
    call->cancel_task.run = call_cancel_task;
    if (pul__loop_on_thread(&sys->loop)) {
        pul__loop_defer(&sys->loop, &call->cancel_task);
    } else if (pul__loop_post(&sys->loop, &call->cancel_task) != 0) {
        pul__call_unref(call);
    }
}

static void
call_flow_task(pul__task_t *t)
{
    pul_call_t *c = (pul_call_t *)((char *)t - offsetof(pul_call_t, flow_task));
    /* Cleared before reading flow_want: a request made after this point posts again. */
    atomic_store_explicit(&c->flow_queued, 0, memory_order_seq_cst);
    int want = atomic_load_explicit(&c->flow_want, memory_order_seq_cst);
    if (!c->done) {
        if (want) {
            pul__call_pause(c);
        } else {
            pul__call_resume(c);
        }
    }
    pul__call_unref(c); /* the task's */
}

int
pul_call_pause(pul_system_t *sys, pul_call_t *call, int paused)
{
    if (call == NULL) {
        return PUL_EINVAL;
    }
    if (sys == NULL) {
        sys = call->sys;
    }
    atomic_store_explicit(&call->flow_want, paused != 0, memory_order_seq_cst);
    if (atomic_exchange_explicit(&call->flow_queued, 1, memory_order_seq_cst) != 0) {
        return 0; /* the queued task reads flow_want when it runs */
    }
    atomic_fetch_add_explicit(&call->refs, 1, memory_order_relaxed);
    call->flow_task.run = call_flow_task;
    if (pul__loop_on_thread(&sys->loop)) {
        pul__loop_defer(&sys->loop, &call->flow_task);
        return 0;
    }
    if (pul__loop_post(&sys->loop, &call->flow_task) != 0) {
        atomic_store_explicit(&call->flow_queued, 0, memory_order_seq_cst);
        pul__call_unref(call);
        return PUL_ECLOSED;
    }
    return 0;
}

void
pul_call_release(pul_system_t *sys, pul_call_t *call)
{
    (void)sys;
    pul__call_unref(call);
}

/* ---- inside receive ----------------------------------------------------------------------- */

pul_id_t
pul_ctx_self(const pul_ctx_t *ctx)
{
    return ctx->a->id;
}

pul_system_t *
pul_ctx_system(const pul_ctx_t *ctx)
{
    return ctx->a->sys;
}

int
pul_ctx_is_ask(const pul_ctx_t *ctx)
{
    return ctx->call != NULL;
}

int
pul_ctx_reply(pul_ctx_t *ctx, pul_msg_t *msg)
{
    if (ctx == NULL || msg == NULL) {
        return PUL_EINVAL;
    }
    if (ctx->call == NULL || ctx->answered) {
        return PUL_ESTATE;
    }
    ctx->answered = 1;
    pul__call_complete(ctx->call, 0, msg, NULL);
    return 0;
}

int
pul_ctx_reply_error(pul_ctx_t *ctx, const pul_error_t *err)
{
    if (ctx == NULL || err == NULL) {
        return PUL_EINVAL;
    }
    if (ctx->call == NULL || ctx->answered) {
        return PUL_ESTATE;
    }
    pul__err_t *ce = pul__err_copy(err);
    if (ce == NULL) {
        return PUL_ENOMEM;
    }
    ctx->answered = 1;
    pul__call_complete(ctx->call, PUL_EACTOR, NULL, ce);
    pul__free(ce);
    return 0;
}

pul_reply_t *
pul_ctx_defer(pul_ctx_t *ctx)
{
    if (ctx == NULL || ctx->call == NULL || ctx->answered) {
        return NULL;
    }
    ctx->answered = 1;
    atomic_fetch_add_explicit(&ctx->call->refs, 1, memory_order_relaxed);
    return (pul_reply_t *)ctx->call;
}

int
pul_ctx_on_end(pul_ctx_t *ctx, void (*cb)(int status, void *arg), void *arg)
{
    if (ctx == NULL || cb == NULL) {
        return PUL_EINVAL;
    }
    if (ctx->call == NULL || ctx->call->done || ctx->call->on_end != NULL) {
        return PUL_ESTATE;
    }
    ctx->call->on_end = cb;
    ctx->call->on_end_arg = arg;
    return 0;
}

/* ---- deferred replies --------------------------------------------------------------------- */

static void
reply_task(pul__task_t *t)
{
    pul_call_t *c = (pul_call_t *)t;
    pul_msg_t *m = c->reply_msg;
    c->reply_msg = NULL;
    pul__call_complete(c, c->reply_status, m, c->reply_err);
    pul__call_unref(c); /* the reply handle's */
}

/* The reply to a remote caller from a thread other than the core: when the core thread sleeps
 * and the request is alone on its connection, complete the call in the core's place and write the
 * response from this thread (as ask_direct). Returns 1 when done so (msg and err consumed). */
static int
reply_direct(pul_call_t *c, int status, pul_msg_t *msg, pul__err_t *err)
{
    pul_system_t *sys = c->sys;
    if (atomic_load_explicit(&sys->net_streams, memory_order_relaxed) > 1 ||
        atomic_load(&sys->closing) || !pul__loop_borrow(&sys->loop)) {
        return 0;
    }
    int ok = pul__net_direct_reply_ok(sys->net, c);
    if (ok) {
        pul__call_complete(c, status, msg, err);
        pul__free(err);
        pul__call_unref(c); /* the reply handle's */
        pul__net_direct_flush(sys->net);
    }
    pul__loop_unborrow(&sys->loop);
    return ok;
}

static int
reply_finish(pul_call_t *c, int status, pul_msg_t *msg, pul__err_t *err)
{
    pul_system_t *sys = c->sys;
    if (pul__loop_on_thread(&sys->loop)) {
        pul__call_complete(c, status, msg, err);
        pul__free(err);
        pul__call_unref(c);
        return 0;
    }
    if (c->remote_caller && reply_direct(c, status, msg, err)) {
        return 0;
    }
    c->reply_msg = msg;
    c->reply_err = err;
    c->reply_status = status;
    c->task.run = reply_task;
    if (pul__loop_post(&sys->loop, &c->task) != 0) {
        c->reply_msg = NULL; /* the caller keeps msg */
        pul__call_unref(c);
        return PUL_ECLOSED;
    }
    return 0;
}

int
pul_reply_is_remote(const pul_reply_t *r)
{
    return r != NULL && ((const pul_call_t *)r)->remote_caller;
}

int
pul_reply_send(pul_reply_t *r, pul_msg_t *msg)
{
    if (r == NULL || msg == NULL) {
        return PUL_EINVAL;
    }
    return reply_finish((pul_call_t *)r, 0, msg, NULL);
}

int
pul_reply_error(pul_reply_t *r, const pul_error_t *err)
{
    if (r == NULL || err == NULL) {
        return PUL_EINVAL;
    }
    pul__err_t *ce = pul__err_copy(err);
    if (ce == NULL) {
        /* Still consume the handle: the caller learns of the failure as ENOMEM. */
        reply_finish((pul_call_t *)r, PUL_ENOMEM, NULL, NULL);
        return PUL_ENOMEM;
    }
    return reply_finish((pul_call_t *)r, PUL_EACTOR, NULL, ce);
}

void
pul_reply_abandon(pul_reply_t *r)
{
    if (r != NULL) {
        (void)reply_finish((pul_call_t *)r, PUL_ESTOPPED, NULL, NULL);
    }
}

/* ---- streams ------------------------------------------------------------------------------ */

static void
stream_unref(struct pul_stream_s *s)
{
    if (s == NULL || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    while (s->count > 0) {
        pul_msg_unref(s->items[s->head]);
        s->head = (s->head + 1) % s->window;
        s->count--;
    }
    pul__free(s->items);
    pul__free(s->err);
    pthread_mutex_destroy(&s->mu);
    pul__call_unref(s->call);
    pul__free(s);
}

static void
stream_task(pul__task_t *t)
{
    struct pul_stream_s *s = (struct pul_stream_s *)t;
    pul_call_t *c = s->call;
    pthread_mutex_lock(&s->mu);
    s->scheduled = 0;
    pthread_mutex_unlock(&s->mu);
    if (!s->attached) {
        s->attached = 1;
        if (c->done) {
            pthread_mutex_lock(&s->mu);
            if (s->state == STREAM_OPEN) {
                s->state = STREAM_CANCELED;
            }
            pthread_mutex_unlock(&s->mu);
        } else {
            c->stream = s;
            atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
            /* Once items flow, the deadline no longer applies (a stream may be long). */
            pul__timer_disarm(&c->sys->loop, &c->deadline);
        }
    }
    int delivered_full = 0;
    for (;;) {
        if (c->paused && !c->done) {
            break; /* resumed by pul__call_resume */
        }
        pthread_mutex_lock(&s->mu);
        if (s->count == 0) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        pul_msg_t *item = s->items[s->head];
        s->head = (s->head + 1) % s->window;
        s->count--;
        if (s->was_full) {
            delivered_full = 1;
        }
        pthread_mutex_unlock(&s->mu);
        if (c->done) {
            pul_msg_unref(item);
        } else if (c->stream_mode) {
            c->cb(0, item, NULL, c->arg);
            pul_msg_unref(item);
        } else {
            pul__call_complete(c, 0, item, NULL); /* a plain ask takes the first item */
        }
    }
    void (*wcb)(void *) = NULL;
    void *warg = NULL;
    int final = 0;
    pthread_mutex_lock(&s->mu);
    if (s->wcb != NULL && !s->producer_done &&
        ((delivered_full && s->was_full && s->state == STREAM_OPEN) || s->wake_owed)) {
        /* Room again (or an owed wake-up, possibly for a consumer that went away). Without a
         * callback yet, was_full stays set for pul_stream_on_writable to find. */
        s->was_full = 0;
        s->wake_owed = 0;
        wcb = s->wcb; /* one call per registration */
        warg = s->warg;
        s->wcb = NULL;
    }
    if ((s->state == STREAM_ENDED || s->state == STREAM_ERRORED) && s->count == 0 &&
        !s->final_done) {
        s->final_done = 1;
        final = s->state;
    }
    pthread_mutex_unlock(&s->mu);
    if (wcb != NULL) {
        wcb(warg);
    }
    if (final == STREAM_ENDED) {
        if (c->stream_mode) {
            pul__call_complete(c, PUL_EOF, NULL, NULL);
        } else {
            pul_msg_t *empty = pul_msg_new("", NULL, 0);
            pul__call_complete(c, empty != NULL ? 0 : PUL_ENOMEM, empty, NULL);
        }
    } else if (final == STREAM_ERRORED) {
        pul__call_complete(c, s->err != NULL ? PUL_EACTOR : PUL_ENOMEM, NULL, s->err);
    }
    stream_unref(s); /* the schedule's */
}

/* Schedule the delivery task; s->mu must NOT be held. Returns 0 or PUL_ECLOSED. */
static int
stream_post(struct pul_stream_s *s)
{
    pul_system_t *sys = s->sys;
    if (pul__loop_on_thread(&sys->loop)) {
        pul__loop_defer(&sys->loop, &s->task);
        return 0;
    }
    return pul__loop_post(&sys->loop, &s->task);
}

static struct pul_stream_s *
stream_new(pul_call_t *c)
{
    pul_system_t *sys = c->sys;
    struct pul_stream_s *s = pul__calloc(1, sizeof *s);
    if (s == NULL) {
        return NULL;
    }
    s->window = sys->cfg.stream_window;
    s->items = pul__malloc(s->window * sizeof *s->items);
    if (s->items == NULL || pthread_mutex_init(&s->mu, NULL) != 0) {
        pul__free(s->items);
        pul__free(s);
        return NULL;
    }
    s->task.run = stream_task;
    s->sys = sys;
    s->call = c;
    s->state = STREAM_OPEN;
    atomic_init(&s->refs, 2); /* the producer handle + the first schedule */
    s->scheduled = 1;
    return s;
}

void
pul__call_pause(pul_call_t *c)
{
    c->paused = 1;
}

void
pul__call_resume(pul_call_t *c)
{
    if (!c->paused) {
        return;
    }
    c->paused = 0;
    if (c->net_op != NULL && !c->done) {
        pul__net_resume(c->sys->net, c);
    }
    struct pul_stream_s *s = c->stream;
    if (s == NULL || c->done) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    int post = stream_need_post(s);
    pthread_mutex_unlock(&s->mu);
    if (post) {
        pul__loop_defer(&c->sys->loop, &s->task);
    }
}

pul_stream_t *
pul_ctx_stream(pul_ctx_t *ctx)
{
    if (ctx == NULL || ctx->call == NULL || ctx->answered) {
        return NULL;
    }
    atomic_fetch_add_explicit(&ctx->call->refs, 1, memory_order_relaxed);
    struct pul_stream_s *s = stream_new(ctx->call);
    if (s == NULL) {
        atomic_fetch_sub(&ctx->call->refs, 1);
        return NULL;
    }
    ctx->answered = 1;
    pul__loop_defer(&s->sys->loop, &s->task);
    return s;
}

pul_stream_t *
pul_reply_stream(pul_reply_t *r)
{
    if (r == NULL) {
        return NULL;
    }
    pul_call_t *c = (pul_call_t *)r;
    struct pul_stream_s *s = stream_new(c); /* takes over the reply handle's call reference */
    if (s == NULL) {
        return NULL;
    }
    if (stream_post(s) != 0) {
        pthread_mutex_lock(&s->mu);
        s->state = STREAM_CLOSED;
        s->scheduled = 0;
        pthread_mutex_unlock(&s->mu);
        stream_unref(s); /* the schedule's; the producer still holds its handle */
    }
    return s;
}

static int
stream_state_err(int state)
{
    switch (state) {
    case STREAM_CANCELED:
        return PUL_ECANCELED;
    case STREAM_CLOSED:
        return PUL_ECLOSED;
    default:
        return PUL_ESTATE;
    }
}

/* Take the schedule under mu; returns 1 when the caller must post. */
static int
stream_need_post(struct pul_stream_s *s)
{
    if (s->scheduled) {
        return 0;
    }
    s->scheduled = 1;
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return 1;
}

static void
stream_post_failed(struct pul_stream_s *s)
{
    pthread_mutex_lock(&s->mu);
    s->scheduled = 0;
    s->state = STREAM_CLOSED;
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}

int
pul_stream_push(pul_stream_t *s, pul_msg_t *item)
{
    if (s == NULL || item == NULL) {
        return PUL_EINVAL;
    }
    pthread_mutex_lock(&s->mu);
    if (s->state != STREAM_OPEN || s->producer_done) {
        int rc = stream_state_err(s->state);
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    if (s->count >= s->window) {
        s->was_full = 1;
        pthread_mutex_unlock(&s->mu);
        return PUL_EFULL;
    }
    size_t i = (s->head + s->count) % s->window;
    s->items[i] = item;
    s->count++;
    int post = stream_need_post(s);
    pthread_mutex_unlock(&s->mu);
    if (post && stream_post(s) != 0) {
        /* The item stays the caller's. */
        pthread_mutex_lock(&s->mu);
        s->count--;
        pthread_mutex_unlock(&s->mu);
        stream_post_failed(s);
        return PUL_ECLOSED;
    }
    return 0;
}

void
pul_stream_on_writable(pul_stream_t *s, void (*cb)(void *arg), void *arg)
{
    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->wcb = cb;
    s->warg = arg;
    /* A producer on another thread registers after its push found the window full; the core
     * thread may have made room (or seen the consumer go away) in between, when there was no
     * callback to run. That wake-up is owed now: the core thread runs the callback next. */
    int post = 0;
    if (cb != NULL && !s->producer_done &&
        ((s->was_full && s->count < s->window) || s->state != STREAM_OPEN)) {
        s->wake_owed = 1;
        post = stream_need_post(s);
    }
    pthread_mutex_unlock(&s->mu);
    if (post && stream_post(s) != 0) {
        stream_post_failed(s);
    }
}

static int
stream_finish(struct pul_stream_s *s, int state, pul__err_t *err)
{
    pthread_mutex_lock(&s->mu);
    if (s->producer_done) {
        pthread_mutex_unlock(&s->mu);
        pul__free(err);
        return PUL_ESTATE;
    }
    s->producer_done = 1;
    int post = 0;
    if (s->state == STREAM_OPEN) {
        s->state = state;
        s->err = err;
        err = NULL;
        post = stream_need_post(s);
    }
    pthread_mutex_unlock(&s->mu);
    pul__free(err);
    if (post && stream_post(s) != 0) {
        stream_post_failed(s);
    }
    stream_unref(s); /* the producer handle */
    return 0;
}

int
pul_stream_end(pul_stream_t *s)
{
    if (s == NULL) {
        return PUL_EINVAL;
    }
    return stream_finish(s, STREAM_ENDED, NULL);
}

int
pul_stream_error(pul_stream_t *s, const pul_error_t *err)
{
    if (s == NULL || err == NULL) {
        return PUL_EINVAL;
    }
    pul__err_t *ce = pul__err_copy(err);
    /* Without memory for the detail the consumer still gets a failure (PUL_ENOMEM). */
    return stream_finish(s, STREAM_ERRORED, ce);
}
