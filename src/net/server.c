/* server.c — the answering side: requests on accepted connections delivered to local actors
 * (ask, stream, tell, named), their completions written back as responses, control-plane
 * handlers and REST GETs. Core thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/netint.h"

enum { M_OTHER, M_POST, M_GET };
enum { MODE_ASK, MODE_TELL, MODE_STREAM, MODE_TELLS };

/* A tell received and not yet in its mailbox (the mailbox is full). */
typedef struct tq_s {
    struct tq_s *next;
    pul_msg_t *msg;
} tq_t;

struct sst_s {
    sst_t *prev;
    sst_t *next;
    conn_t *cn;
    pul__net_t *net;
    int32_t sid;
    int refs;   /* the nghttp2 stream (until close or connection end) + the local call */
    int closed; /* the stream is gone: nothing more is written */
    int method;
    char path[PUL_NAME_MAX + 16];
    int path_bad;
    int mode;
    char type[256];
    uint64_t deadline_ms;
    size_t hdr_bytes;
    int bad;    /* malformed headers: 400 */
    int reject; /* decided while reading: 400/413 */
    int reject_code;
    int ended;  /* END_STREAM received */
    pul__env_rx_t env;
    uint8_t *buf;
    size_t blen, bcap;
    size_t unconsumed;
    pul_call_t *call;
    int responded;
    int final_sent;
    outq_t out;
    uint64_t t0;
    int paused;
    /* tells: the messages waiting for mailbox room, in order; the stream is then in net->held
     * (held set, one reference) until they are all in */
    tq_t *tq_head;
    tq_t *tq_tail;
    int held;
    sst_t *held_next;
    pul_id_t target;
    int target_ok;
    /* "tells": the frames being read (each item's type goes into st->type) */
    pul__sframe_rx_t sfr;
};

/* ---- lifetime ------------------------------------------------------------------------------- */

static void
tq_free(sst_t *st)
{
    while (st->tq_head != NULL) {
        tq_t *e = st->tq_head;
        st->tq_head = e->next;
        pul_msg_unref(e->msg);
        pool_free(&st->net->pool, e);
    }
    st->tq_tail = NULL;
}

static void
sst_unref(sst_t *st)
{
    if (--st->refs > 0) {
        return;
    }
    tq_free(st);
    outq_free(&st->out);
    pul__env_rx_free(&st->env);
    pul__free(st->buf);
    pool_free(&st->net->pool, st);
}

static void
sst_unlink(sst_t *st)
{
    conn_t *cn = st->cn;
    if (cn == NULL) {
        return;
    }
    atomic_fetch_sub_explicit(&st->net->sys->net_streams, 1, memory_order_relaxed);
    if (st->prev != NULL) {
        st->prev->next = st->next;
    } else {
        cn->ssts = st->next;
    }
    if (st->next != NULL) {
        st->next->prev = st->prev;
    }
    st->prev = st->next = NULL;
    st->cn = NULL;
}

/* The stream is gone (closed, reset, connection lost): stop the local work. */
static void
sst_close(sst_t *st)
{
    if (st->closed) {
        return;
    }
    st->closed = 1;
    if (st->call != NULL) {
        pul_call_t *c = st->call;
        st->call = NULL;
        /* The completion callback still runs (ECANCELED) and drops the call's reference. */
        pul_call_cancel(st->net->sys, c);
    }
}

/* ---- responses ------------------------------------------------------------------------------ */

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

static int
http_of(int status)
{
    switch (status) {
    case PUL_ENOTFOUND:
        return 404;
    case PUL_ETOOBIG:
        return 413;
    case PUL_EPROTO:
    case PUL_EINVAL:
    case PUL_ENAME:
        return 400;
    case PUL_ECLOSED:
        return 503;
    default:
        return 200;
    }
}

/* Submit the response headers (once) with the outq as body. */
static int
sst_respond(sst_t *st, int http, const char *pst, const char *type, const char *ctype)
{
    conn_t *cn = st->cn;
    if (st->closed || cn == NULL || cn->dead || st->responded) {
        return PUL_ECLOSED;
    }
    char sbuf[8];
    if (http >= 100 && http <= 999) {
        sbuf[0] = (char)('0' + http / 100);
        sbuf[1] = (char)('0' + http / 10 % 10);
        sbuf[2] = (char)('0' + http % 10);
        sbuf[3] = '\0';
    } else {
        snprintf(sbuf, sizeof sbuf, "%d", http);
    }
    nghttp2_nv nva[5];
    size_t n = 0;
    nva[n++] = (nghttp2_nv)NV(":status", sbuf);
    if (ctype != NULL) {
        nva[n++] = (nghttp2_nv)NV("content-type", ctype);
    }
    if (pst != NULL) {
        nva[n++] = (nghttp2_nv)NV("pul-status", pst);
    }
    if (type != NULL) {
        nva[n++] = (nghttp2_nv)NV("pul-type", type);
    }
    nghttp2_data_provider prov = outq_provider(&st->out);
    st->out.sid = st->sid;
    int empty = st->out.eof && st->out.head == NULL; /* END_STREAM on the HEADERS */
    if (nghttp2_submit_response(cn->ses, st->sid, nva, n, empty ? NULL : &prov) != 0) {
        return PUL_ENOMEM;
    }
    st->responded = 1;
    atomic_fetch_add_explicit(&st->net->msgs_out, 1, memory_order_relaxed);
    conn_flush_later(cn);
    return 0;
}

/* A whole response: status, a body (copied) and eof. */
static void
sst_respond_body(sst_t *st, int http, const char *pst, const char *ctype, const void *body,
                 size_t len)
{
    if (st->closed || st->responded) {
        return;
    }
    if (outq_push_copy(&st->out, body, len) != 0) {
        outq_free(&st->out);
        http = 500;
    }
    st->out.eof = 1;
    st->final_sent = 1;
    (void)sst_respond(st, http, pst, NULL, ctype);
}

static void
sst_respond_error(sst_t *st, int http, const pul_error_t *e)
{
    uint8_t *body = NULL;
    size_t len = 0;
    if (http != 200 && http != 202) {
        atomic_fetch_add_explicit(&st->net->errors, 1, memory_order_relaxed);
    }
    if (pul__errmap_encode(e, &body, &len) != 0) {
        sst_respond_body(st, 500, "error", NULL, "", 0);
        return;
    }
    sst_respond_body(st, http, "error", "application/msgpack", body, len);
    pul__free(body);
}

static void
sst_respond_status(sst_t *st, int status, const char *msg)
{
    pul_error_t e = {.kind = PUL_ERRKIND_RUNTIME,
                     .code = status,
                     .message = msg != NULL ? msg : pul_strerror(status)};
    sst_respond_error(st, http_of(status), &e);
}

/* Append one stream frame to the response body. */
static int
sst_push_frame(sst_t *st, unsigned kind, pul_msg_t *item, const uint8_t *body, size_t len)
{
    uint8_t hdr[PUL__SFRAME_HDR + 1 + 255];
    if (kind == PUL__SFRAME_ITEM) {
        const char *type = pul_msg_type(item);
        size_t tl = strlen(type);
        if (tl > 255 || pul_msg_nsegments(item) > PUL__ENV_MAX_SEGS) {
            return PUL_EINVAL;
        }
        uint64_t total = 1 + tl + pul__env_header_size(item) + pul_msg_size(item);
        if (total > st->net->sys->cfg.max_message_size || total > UINT32_MAX) {
            return PUL_ETOOBIG;
        }
        pul__sframe_hdr(hdr, kind, (uint32_t)total);
        hdr[PUL__SFRAME_HDR] = (uint8_t)tl;
        memcpy(hdr + PUL__SFRAME_HDR + 1, type, tl);
        return outq_push_msg(&st->out, hdr, PUL__SFRAME_HDR + 1 + tl, item);
    }
    pul__sframe_hdr(hdr, kind, (uint32_t)len);
    int rc = outq_push_copy(&st->out, hdr, PUL__SFRAME_HDR);
    return rc != 0 ? rc : outq_push_copy(&st->out, body, len);
}

static void
sst_drained(void *arg)
{
    sst_t *st = arg;
    if (st->paused && st->call != NULL) {
        st->paused = 0;
        pul__call_resume(st->call);
    }
}

static void
sst_observe(sst_t *st)
{
    net_observe_duration(st->net, (uv_hrtime() - st->t0) / 1000);
}

/* Completion of the local call made for a request (core thread; per item for streams). */
static void
sst_call_cb(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    sst_t *st = arg;
    int final = !(status == 0 && st->mode == MODE_STREAM);
    if (!st->closed) {
        conn_t *cn = st->cn;
        if (st->mode == MODE_STREAM && (st->responded || status == 0 || status == PUL_EOF)) {
            if (!st->responded) {
                (void)sst_respond(st, 200, "stream", NULL, "application/x-pulsing-msg");
            }
            int rc = 0;
            if (status == 0) {
                rc = sst_push_frame(st, PUL__SFRAME_ITEM, reply, NULL, 0);
                atomic_fetch_add_explicit(&st->net->msgs_out, 1, memory_order_relaxed);
                if (rc == 0 && st->out.bytes > NET_OUT_HIGH && !st->paused && st->call) {
                    /* Do not buffer without bound: hold the producer until the peer reads. */
                    st->paused = 1;
                    pul__call_pause(st->call);
                }
            } else if (status == PUL_EOF) {
                rc = sst_push_frame(st, PUL__SFRAME_END, NULL, NULL, 0);
            } else {
                pul_error_t re = {.kind = PUL_ERRKIND_RUNTIME,
                                  .code = status,
                                  .message = pul_strerror(status)};
                const pul_error_t *e = status == PUL_EACTOR && err != NULL ? err : &re;
                uint8_t *body = NULL;
                size_t len = 0;
                rc = pul__errmap_encode(e, &body, &len);
                if (rc == 0) {
                    rc = sst_push_frame(st, PUL__SFRAME_ERROR, NULL, body, len);
                }
                pul__free(body);
                atomic_fetch_add_explicit(&st->net->errors, 1, memory_order_relaxed);
            }
            if (rc != 0 && cn != NULL && !cn->dead) {
                (void)nghttp2_submit_rst_stream(cn->ses, NGHTTP2_FLAG_NONE, st->sid,
                                                NGHTTP2_INTERNAL_ERROR);
            }
            if (final) {
                st->out.eof = 1;
            }
            outq_kick(cn, &st->out);
        } else if (status == 0) {
            /* ask: the value */
            int rc = outq_push_msg(&st->out, NULL, 0, reply);
            st->out.eof = 1;
            if (rc == 0) {
                (void)sst_respond(st, 200, "ok", pul_msg_type(reply),
                                  "application/x-pulsing-msg");
                if (cn != NULL && pul__loop_borrowed(&st->net->sys->loop)) {
                    pump_offer(st->net, cn); /* replied by the actor's thread: it may read too */
                }
            } else {
                outq_free(&st->out);
                sst_respond_status(st, rc, NULL);
            }
        } else if (status == PUL_EACTOR && err != NULL) {
            sst_respond_error(st, 200, err);
        } else {
            sst_respond_status(st, status, NULL);
        }
    }
    if (final) {
        sst_observe(st);
        if (st->call != NULL) {
            pul_call_release(st->net->sys, st->call);
            st->call = NULL;
        }
        sst_unref(st); /* the call's */
    }
}

int
pul__net_direct_reply_ok(pul__net_t *net, pul_call_t *c)
{
    if (net == NULL || net->closing || net->direct != NULL || c->cb != sst_call_cb || c->done ||
        c->stream_mode) {
        return 0;
    }
    sst_t *st = c->arg; /* alive: the call holds a reference until its completion */
    conn_t *cn = st->cn;
    return !st->closed && st->mode == MODE_ASK && cn != NULL && cn->ssts == st &&
           st->next == NULL && conn_direct_ok(cn);
}

/* ---- requests ------------------------------------------------------------------------------- */

static void
sst_consume(sst_t *st)
{
    conn_t *cn = st->cn;
    if (st->unconsumed > 0 && cn != NULL && !cn->dead) {
        (void)nghttp2_session_consume(cn->ses, st->sid, st->unconsumed);
        conn_flush_later(cn);
    }
    st->unconsumed = 0;
}

/* Nothing of the stream's tells is waiting: its window goes back, and once the request has
 * ended every tell of it is in a mailbox: 202. */
static void
tells_idle(sst_t *st)
{
    sst_consume(st);
    if (st->ended && !st->responded && !st->closed) {
        sst_respond_body(st, 202, NULL, NULL, "", 0);
        sst_observe(st);
    }
}

static void sst_call(sst_t *st, pul_id_t target, pul_msg_t *msg);

/* Put the stream's waiting tells into their mailbox, in order. Returns 1 when none is left
 * (all in, or answered with an error: the rest dropped), 0 when the mailbox is still full. */
static int
tell_try(sst_t *st)
{
    if (st->closed || st->responded) {
        tq_free(st);
        return 1;
    }
    if (st->mode == MODE_ASK || st->mode == MODE_STREAM) {
        /* a call that waited behind tells: its turn (a call is never refused for room) */
        tq_t *e = st->tq_head;
        st->tq_head = st->tq_tail = NULL;
        if (e != NULL) {
            pul_msg_t *m = e->msg;
            pool_free(&st->net->pool, e);
            sst_call(st, st->target, m);
        }
        return 1;
    }
    while (st->tq_head != NULL) {
        tq_t *e = st->tq_head;
        int rc = pul_tell(st->net->sys, st->target, e->msg);
        if (rc == PUL_EFULL) {
            return 0;
        }
        st->tq_head = e->next;
        if (st->tq_head == NULL) {
            st->tq_tail = NULL;
        }
        if (rc != 0) {
            pul_msg_unref(e->msg);
            pool_free(&st->net->pool, e);
            tq_free(st);
            sst_consume(st);
            sst_respond_status(st, rc, NULL);
            sst_observe(st);
            return 1;
        }
        pool_free(&st->net->pool, e);
    }
    tells_idle(st);
    return 1;
}

static int
held_for(pul__net_t *net, pul_id_t target, const sst_t *upto)
{
    for (sst_t *e = net->held_head; e != NULL && e != upto; e = e->held_next) {
        if (pul_id_eq(e->target, target)) {
            return 1;
        }
    }
    return 0;
}

/* Tells to a full mailbox wait in one list of streams, in arrival order, retried every 5 ms; a
 * tell never overtakes an earlier one to the same actor. */
static void
tell_held_tick(pul__tmr_t *t)
{
    pul__net_t *net = (pul__net_t *)((char *)t - offsetof(pul__net_t, tell_timer));
    sst_t **pp = &net->held_head;
    net->held_tail = NULL;
    while (*pp != NULL) {
        sst_t *st = *pp;
        /* not past an earlier stream to the same actor that is still waiting */
        if (!held_for(net, st->target, st) && tell_try(st)) {
            *pp = st->held_next;
            st->held_next = NULL;
            st->held = 0;
            sst_unref(st); /* the list's */
            continue;
        }
        net->held_tail = st;
        pp = &st->held_next;
    }
    if (net->held_head != NULL && !net->closing) {
        (void)pul__timer_arm(&net->sys->loop, &net->tell_timer, pul__now_ms() + 5);
    }
}

/* The stream has tells waiting (st->tq_head): into the mailbox now if nothing earlier to the
 * same actor waits and there is room, otherwise held. */
static void
tell_deliver(sst_t *st)
{
    pul__net_t *net = st->net;
    if (st->held) {
        return; /* the tick takes them, in order */
    }
    if (!held_for(net, st->target, NULL) && tell_try(st)) {
        return;
    }
    /* A full mailbox holds the request (and with it the sender's window) until there is room. */
    st->refs++;
    st->held = 1;
    st->held_next = NULL;
    if (net->held_tail != NULL) {
        net->held_tail->held_next = st;
    } else {
        net->held_head = st;
    }
    net->held_tail = st;
    net->tell_timer.cb = tell_held_tick;
    if (net->tell_timer.idx == 0) {
        (void)pul__timer_arm(&net->sys->loop, &net->tell_timer, pul__now_ms() + 5);
    }
}

static int
tq_push(sst_t *st, pul_msg_t *msg)
{
    tq_t *e = pool_alloc(&st->net->pool, sizeof *e);
    if (e == NULL) {
        return PUL_ENOMEM;
    }
    e->msg = msg;
    e->next = NULL;
    if (st->tq_tail != NULL) {
        st->tq_tail->next = e;
    } else {
        st->tq_head = e;
    }
    st->tq_tail = e;
    return 0;
}

void
pul__net_room(pul__net_t *net)
{
    if (net != NULL && net->held_head != NULL && !net->closing) {
        (void)pul__timer_arm(&net->sys->loop, &net->tell_timer, pul__now_ms());
    }
}

void
server_net_close(pul__net_t *net)
{
    pul__timer_disarm(&net->sys->loop, &net->tell_timer);
    while (net->held_head != NULL) {
        sst_t *st = net->held_head;
        net->held_head = st->held_next;
        st->held_next = NULL;
        st->held = 0;
        sst_unref(st);
    }
    net->held_tail = NULL;
}

static void
sst_deliver(sst_t *st, pul_id_t target)
{
    atomic_fetch_add_explicit(&st->net->msgs_in, 1, memory_order_relaxed);
    if (st->env.max == 0 || !pul__env_rx_done(&st->env)) {
        sst_respond_status(st, PUL_EPROTO, "body is not a whole message encoding");
        return;
    }
    pul_msg_t *msg = pul__env_rx_take(&st->env, st->type);
    if (msg == NULL) {
        sst_respond_status(st, PUL_ENOMEM, NULL);
        return;
    }
    /* A tell goes into the mailbox in order; a call to an actor whose tells wait for room waits
     * behind them (it does not overtake them); tell_try starts it when its turn comes. */
    if (st->mode != MODE_TELL && !held_for(st->net, target, NULL)) {
        sst_call(st, target, msg);
        return;
    }
    if (tq_push(st, msg) != 0) {
        pul_msg_unref(msg);
        sst_respond_status(st, PUL_ENOMEM, NULL);
        return;
    }
    st->target = target;
    st->target_ok = 1;
    tell_deliver(st);
}

/* Start the local call of an ask or stream request. */
static void
sst_call(sst_t *st, pul_id_t target, pul_msg_t *msg)
{
    pul_system_t *sys = st->net->sys;
    st->refs++; /* the call's */
    pul_call_t *c = NULL;
    int rc = st->mode == MODE_STREAM
                 ? pul_ask_stream(sys, target, msg, st->deadline_ms, sst_call_cb, st, &c)
                 : pul_ask(sys, target, msg, st->deadline_ms, sst_call_cb, st, &c);
    if (rc != 0) {
        st->refs--;
        pul_msg_unref(msg);
        sst_respond_status(st, rc, NULL);
        return;
    }
    st->call = c;
    c->remote_caller = 1; /* the actor runs on a later turn: it sees this */
    sst_consume(st);
}

static int
parse_id32(const char *s, pul_id_t *out)
{
    if (strlen(s) != 32) {
        return PUL_EINVAL;
    }
    return pul_id_parse(s, 32, out);
}

/* ---- "tells": a batch of tells to one actor, delivered frame by frame as they arrive ---- */

static int
is_actor_path(const sst_t *st)
{
    return strncmp(st->path, "/actors/", 8) == 0 || strncmp(st->path, "/named/", 7) == 0;
}

/* Requests refused whatever they ask: the node is closing, malformed headers, a body refused
 * while reading (400/413). Nonzero when answered. */
static int
sst_refused(sst_t *st)
{
    if (st->net->closing) {
        sst_respond_status(st, PUL_ECLOSED, "node shutting down");
    } else if (st->bad || st->path_bad) {
        sst_respond_status(st, PUL_EPROTO, "malformed request");
    } else if (st->reject) {
        sst_respond_status(st, st->reject_code, NULL);
    } else {
        return 0;
    }
    return 1;
}

/* The actor of a POST to /actors/<id> or /named/<name>. 0 with *id, or the request was
 * answered with an error (returned nonzero). An actor of another node is forwarded there when
 * we have a route (a gateway serving an out-of-cluster client, pul_gateway_route), through the
 * same pul_ask/pul_tell as a local caller; a node without a default route never sends it
 * further than its owner. */
static int
sst_target(sst_t *st, pul_id_t *id)
{
    pul__net_t *net = st->net;
    if (sst_refused(st)) {
        return 1;
    }
    if (st->method != M_POST) {
        sst_respond_status(st, PUL_EPROTO, "method not allowed");
        return 1;
    }
    if (strncmp(st->path, "/actors/", 8) == 0) {
        if (parse_id32(st->path + 8, id) != 0) {
            sst_respond_status(st, PUL_EPROTO, "bad actor id");
            return 1;
        }
    } else {
        int rc = pul_lookup(net->sys, st->path + 7, id);
        if (rc != 0) {
            sst_respond_status(st, rc == PUL_ENAME ? PUL_EPROTO : PUL_ENOTFOUND, NULL);
            return 1;
        }
    }
    if (pul__net_is_remote(net->sys, *id) && !pul__net_has_route(net, *id)) {
        sst_respond_status(st, PUL_ENOTFOUND, "actor not on this node");
        return 1;
    }
    return 0;
}

/* A "tells" request's actor, resolved once (at its first bytes, or at its end if empty).
 * Nonzero when the request was answered with an error. */
static int
tells_target(sst_t *st)
{
    if (!st->target_ok) {
        if (sst_target(st, &st->target) != 0) {
            return 1;
        }
        st->target_ok = 1;
    }
    return 0;
}

/* One tell of the batch, whole. 0, or an error to answer the request with. */
static int
tells_one(sst_t *st, pul_msg_t *msg)
{
    atomic_fetch_add_explicit(&st->net->msgs_in, 1, memory_order_relaxed);
    if (st->tq_head == NULL && !st->held && !held_for(st->net, st->target, NULL)) {
        int rc = pul_tell(st->net->sys, st->target, msg);
        if (rc != PUL_EFULL) {
            if (rc != 0) {
                pul_msg_unref(msg);
            }
            return rc;
        }
    }
    int rc = tq_push(st, msg);
    if (rc != 0) {
        pul_msg_unref(msg);
        return rc;
    }
    tell_deliver(st);
    return 0;
}

/* Read the frames of a "tells" body (the stream frames of docs/design/wire-protocol.md, items
 * only). 0, an error to answer with, or 1: answered already (the actor was refused). */
static int
tells_feed(sst_t *st, const uint8_t *p, size_t n)
{
    if (st->sfr.env == NULL) {
        pul__sframe_rx_init(&st->sfr, st->net->sys->cfg.max_message_size,
                            1u << PUL__SFRAME_ITEM, 1, &st->env, st->type);
    }
    size_t used = 0;
    while (used < n) {
        if (st->responded) {
            return 1;
        }
        if (tells_target(st) != 0) {
            return 1; /* checked before the first frame is read */
        }
        pul__sfr_ev_t ev;
        long k = pul__sframe_rx_feed(&st->sfr, p + used, n - used, &ev);
        if (k < 0) {
            return (int)k;
        }
        used += (size_t)k;
        if (ev == PUL__SFR_ITEM) {
            pul_msg_t *m = pul__env_rx_take(&st->env, st->type);
            if (m == NULL) {
                return PUL_ENOMEM;
            }
            int r = tells_one(st, m);
            if (r != 0) {
                return r;
            }
        }
    }
    return 0;
}

/* The "tells" request has ended: 202 once its last tell is in the mailbox. */
static void
tells_end(sst_t *st)
{
    if (!pul__sframe_rx_idle(&st->sfr)) {
        sst_respond_status(st, PUL_EPROTO, "body ends inside a tell");
        sst_observe(st);
        return;
    }
    if (tells_target(st) != 0) {
        return; /* an empty batch is checked as well */
    }
    if (st->tq_head == NULL && !st->held) {
        tells_idle(st);
    }
}

static void
sst_dispatch(sst_t *st)
{
    pul__net_t *net = st->net;
    if (sst_refused(st)) {
        return;
    }
    if (is_actor_path(st) && (st->method == M_POST || st->mode == MODE_TELLS)) {
        pul_id_t id;
        if (st->mode == MODE_TELLS) {
            tells_end(st);
        } else if (sst_target(st, &id) == 0) {
            sst_deliver(st, id);
        }
        return;
    }
    if (st->method == M_GET) {
        pul_msg_t *body = NULL;
        const char *ctype = "application/json";
        int http = rest_get(net, st->path, &body, &ctype);
        if (body != NULL) {
            size_t len;
            const void *d = pul_msg_data(body, &len);
            (void)outq_push_ref(&st->out, body, d, len);
            pul_msg_unref(body);
        }
        st->out.eof = 1;
        (void)sst_respond(st, http, NULL, NULL, ctype);
        return;
    }
    if (st->method != M_POST) {
        sst_respond_status(st, PUL_EPROTO, "method not allowed");
        return;
    }
    for (handler_t *h = net->handlers; h != NULL; h = h->next) {
        if (strncmp(st->path, h->prefix, strlen(h->prefix)) == 0) {
            uint8_t *resp = NULL;
            size_t rlen = 0;
            int http = h->fn(h->arg, st->path, st->buf, st->blen, &resp, &rlen);
            sst_respond_body(st, http, NULL, "application/msgpack", resp, rlen);
            pul__free(resp);
            return;
        }
    }
    sst_respond_status(st, PUL_ENOTFOUND, "no such path");
}

/* ---- nghttp2 callbacks (server sessions) ---------------------------------------------------- */

static int
sv_on_begin_headers(nghttp2_session *ses, const nghttp2_frame *frame, void *user_data)
{
    conn_t *cn = user_data;
    if (cn->dead) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    sst_t *st = pool_calloc(&cn->net->pool, sizeof *st);
    if (st == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->net = cn->net;
    st->cn = cn;
    st->sid = frame->hd.stream_id;
    st->refs = 1;
    st->t0 = uv_hrtime();
    outq_init(&st->out, &cn->net->pool);
    st->out.on_drain = sst_drained;
    st->out.drain_arg = st;
    atomic_fetch_add_explicit(&cn->net->sys->net_streams, 1, memory_order_relaxed);
    st->next = cn->ssts;
    if (cn->ssts != NULL) {
        cn->ssts->prev = st;
    }
    cn->ssts = st;
    (void)nghttp2_session_set_stream_user_data(ses, st->sid, st);
    cn->hsid = st->sid;
    cn->hdata = st;
    return 0;
}

static int
sv_on_header(nghttp2_session *ses, const nghttp2_frame *frame, const uint8_t *name,
             size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
             void *user_data)
{
    conn_t *cn = user_data;
    if (cn->dead) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    sst_t *st = conn_stream_data(cn, frame->hd.stream_id);
    if (st == NULL) {
        return 0;
    }
    st->hdr_bytes += namelen + valuelen;
    if (st->hdr_bytes > NET_HDR_MAX) {
        st->reject = 1;
        st->reject_code = PUL_ETOOBIG;
        return 0;
    }
#define IS(s) (namelen == sizeof(s) - 1 && memcmp(name, s, namelen) == 0)
    if (IS(":method")) {
        st->method = valuelen == 4 && memcmp(value, "POST", 4) == 0  ? M_POST
                     : valuelen == 3 && memcmp(value, "GET", 3) == 0 ? M_GET
                                                                     : M_OTHER;
    } else if (IS(":path")) {
        if (valuelen >= sizeof st->path) {
            st->path_bad = 1;
        } else {
            memcpy(st->path, value, valuelen);
            st->path[valuelen] = '\0';
            if (memchr(st->path, '\0', valuelen) != NULL) {
                st->path_bad = 1;
            }
        }
    } else if (IS("pul-mode")) {
        if (valuelen == 3 && memcmp(value, "ask", 3) == 0) {
            st->mode = MODE_ASK;
        } else if (valuelen == 4 && memcmp(value, "tell", 4) == 0) {
            st->mode = MODE_TELL;
        } else if (valuelen == 6 && memcmp(value, "stream", 6) == 0) {
            st->mode = MODE_STREAM;
        } else if (valuelen == 5 && memcmp(value, "tells", 5) == 0) {
            st->mode = MODE_TELLS;
        } else {
            st->bad = 1;
        }
    } else if (IS("pul-type")) {
        if (valuelen > 255) {
            st->bad = 1;
        } else {
            for (size_t i = 0; i < valuelen; i++) {
                if (value[i] < 0x20 || value[i] > 0x7e) {
                    st->bad = 1;
                }
            }
            memcpy(st->type, value, valuelen);
            st->type[valuelen] = '\0';
        }
    } else if (IS("pul-deadline")) {
        uint64_t v = 0;
        if (valuelen == 0 || valuelen > 12) {
            st->bad = 1;
        }
        for (size_t i = 0; i < valuelen && !st->bad; i++) {
            if (value[i] < '0' || value[i] > '9') {
                st->bad = 1;
            }
            v = v * 10 + (uint64_t)(value[i] - '0');
        }
        st->deadline_ms = v != 0 ? v : 1;
    }
#undef IS
    return 0;
}

static int
sv_on_data_chunk(nghttp2_session *ses, uint8_t flags, int32_t sid, const uint8_t *data,
                 size_t len, void *user_data)
{
    conn_t *cn = user_data;
    if (cn->dead) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    sst_t *st = nghttp2_session_get_stream_user_data(ses, sid);
    if (st == NULL || st->reject || st->responded) {
        (void)nghttp2_session_consume(ses, sid, len);
        return 0;
    }
    size_t max = cn->net->sys->cfg.max_message_size;
    int rc = 0;
    int actor_path = is_actor_path(st);
    st->unconsumed += len;
    if (actor_path && st->mode == MODE_TELLS) {
        rc = tells_feed(st, data, len);
        if (rc == 1) {
            st->reject = 1; /* answered: the rest of the body is not read */
            sst_consume(st);
            return 0;
        }
        if (rc == 0) {
            /* The window goes back as the tells reach their mailbox: at once unless some wait. */
            if (st->tq_head == NULL && !st->held) {
                sst_consume(st);
            }
            return 0;
        }
    } else if (actor_path) {
        if (st->env.max == 0) {
            pul__env_rx_init(&st->env, max);
        }
        long k = pul__env_rx_feed(&st->env, data, len);
        rc = k < 0 ? (int)k : ((size_t)k != len ? PUL_EPROTO : 0);
    } else {
        if (st->blen + len > max) {
            rc = PUL_ETOOBIG;
        } else if (st->blen + len > st->bcap) {
            size_t nc = st->bcap ? st->bcap * 2 : 1024;
            while (nc < st->blen + len) {
                nc *= 2;
            }
            uint8_t *nb = pul__realloc(st->buf, nc);
            if (nb == NULL) {
                rc = PUL_ENOMEM;
            } else {
                st->buf = nb;
                st->bcap = nc;
            }
        }
        if (rc == 0) {
            memcpy(st->buf + st->blen, data, len);
            st->blen += len;
        }
    }
    /* Window goes back once the message reached the mailbox; a large body returns it as it
     * arrives (in 1 MiB steps), or it could never complete. */
    if (st->unconsumed >= NET_OUT_HIGH) {
        sst_consume(st);
    }
    if (rc != 0) {
        st->reject = 1;
        st->reject_code = rc;
        pul__env_rx_free(&st->env);
        sst_consume(st);
        /* Answer now (413/400) and stop the peer sending the rest. */
        sst_respond_status(st, rc, NULL);
    }
    return 0;
}

static int
sv_on_frame_recv(nghttp2_session *ses, const nghttp2_frame *frame, void *user_data)
{
    conn_t *cn = user_data;
    if (cn->dead) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        /* Rapid reset (CVE-2023-44487): streams opened and reset in a loop make us start and
         * cancel work for free. Past NET_RST_MAX a second, the peer is told to go away. */
        uint64_t now = pul__now_ms();
        if (now - cn->rst_window_ms >= 1000) {
            cn->rst_window_ms = now;
            cn->rst_count = 0;
        }
        if (++cn->rst_count > NET_RST_MAX) {
            atomic_fetch_add_explicit(&cn->net->errors, 1, memory_order_relaxed);
            (void)nghttp2_session_terminate_session(ses, NGHTTP2_ENHANCE_YOUR_CALM);
        }
    }
    if (frame->hd.type == NGHTTP2_SETTINGS) {
        /* The handshake is done: the peer is no longer on the silent-connection clock. */
        pul__timer_disarm(&cn->net->sys->loop, &cn->connect_timer);
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        sst_t *st = nghttp2_session_get_stream_user_data(ses, frame->hd.stream_id);
        if (st != NULL && !st->ended) {
            st->ended = 1;
            if (!st->responded) {
                sst_dispatch(st);
            }
        }
    }
    return 0;
}

static int
sv_on_frame_send(nghttp2_session *ses, const nghttp2_frame *frame, void *user_data)
{
    conn_t *cn = user_data;
    if (cn->dead) {
        return 0;
    }
    /* A response sent before the request body ended (413/400): stop the peer sending. */
    if (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) {
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            sst_t *st = nghttp2_session_get_stream_user_data(ses, frame->hd.stream_id);
            if (st != NULL && !st->ended) {
                (void)nghttp2_submit_rst_stream(ses, NGHTTP2_FLAG_NONE, st->sid,
                                                st->reject_code == PUL_ETOOBIG
                                                    ? NGHTTP2_REFUSED_STREAM
                                                    : NGHTTP2_NO_ERROR);
            }
        }
    }
    return 0;
}

static int
sv_on_stream_close(nghttp2_session *ses, int32_t sid, uint32_t error_code, void *user_data)
{
    conn_t *cn = user_data;
    if (cn->dead) {
        return 0;
    }
    if (sid == cn->hsid) {
        cn->hsid = 0;
        cn->hdata = NULL;
    }
    sst_t *st = nghttp2_session_get_stream_user_data(ses, sid);
    if (st == NULL) {
        return 0;
    }
    if (st->unconsumed > 0) {
        (void)nghttp2_session_consume_connection(ses, st->unconsumed);
        st->unconsumed = 0;
    }
    (void)nghttp2_session_set_stream_user_data(ses, sid, NULL);
    sst_unlink(st);
    sst_close(st);
    sst_unref(st);
    return 0;
}

void
server_callbacks(nghttp2_session_callbacks *cbs)
{
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, sv_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, sv_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, sv_on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, sv_on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, sv_on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, sv_on_stream_close);
}

void
server_conn_lost(conn_t *cn)
{
    for (sst_t *st = cn->ssts; st != NULL; st = st->next) {
        sst_close(st);
    }
}

void
server_conn_free(conn_t *cn)
{
    while (cn->ssts != NULL) {
        sst_t *st = cn->ssts;
        sst_unlink(st);
        sst_close(st);
        sst_unref(st);
    }
}
