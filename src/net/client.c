/* client.c — the calling side: actor calls (ask, stream, named), tells and control POSTs sent
 * on client sessions, their responses decoded and completed into the call layer. Core thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/netint.h"

enum { RC_CALL, RC_TELL, RC_POST };
enum { PST_NONE, PST_OK, PST_STREAM, PST_ERROR };

struct rcall_s {
    rcall_t *prev;
    rcall_t *next;
    conn_t *cn;
    pul__net_t *net;
    int32_t sid;
    int kind;
    int done;    /* the caller has its answer (or gave up) */
    int hinted;  /* counted in sys->net_calls */
    int freed_with_conn;
    pul_call_t *c; /* RC_CALL: a reference */
    outq_t out;
    int http_status;
    int pst;
    char type[256];
    size_t hdr_bytes;
    pul__env_rx_t env;
    uint8_t *buf; /* error map or POST answer */
    size_t blen, bcap;
    /* stream frames (initialized on the first bytes of a stream response) */
    pul__sframe_rx_t sfr;
    char ftype[256];
    size_t unconsumed;
    int ended;
    /* POST */
    pul__net_resp_cb cb;
    void *arg;
    pul__tmr_t timer;
    pul__task_t task;
    int later;
    int get; /* RC_POST sent as a GET without a body */
    /* ordering of bodies to one actor (cn->ob) */
    pul_id_t target;
    int ordered; /* a request to an actor by id: takes part */
    int in_ob;   /* in its bucket: the body is not all produced yet */
    rcall_t *onext;
};

/* ---- bodies to one actor go out in order -------------------------------------------------- */

/* nghttp2 interleaves the DATA frames of streams (by its scheduler, and when a flow-control
 * window splits a body), so two requests to one actor could reach the node in another order than
 * they were made when the first body takes more than one frame (a large message, a batch of tells
 * sent before the peer's SETTINGS raised the frame size). A body therefore starts only once every
 * earlier body to the same actor on the connection has been produced: requests whose body is not
 * all out wait in a bucket by actor, in the order they were made. In the common case the first in
 * its bucket is the one nghttp2 asks for, so the check is one comparison. */
#define OB_N 64

typedef struct obucket_s {
    rcall_t *head;
    rcall_t *tail;
} obucket_t;

static obucket_t *
ob_bucket(conn_t *cn, pul_id_t target)
{
    uint64_t h = target.lo ^ (target.lo >> 29) ^ target.hi;
    return &cn->ob[h & (OB_N - 1)];
}

static int
ob_may_send(void *arg)
{
    rcall_t *rc = arg;
    if (!rc->in_ob || rc->cn == NULL) {
        return 1;
    }
    for (rcall_t *e = ob_bucket(rc->cn, rc->target)->head; e != NULL && e != rc; e = e->onext) {
        if (pul_id_eq(e->target, rc->target)) {
            return 0;
        }
    }
    return 1;
}

static void
ob_remove(conn_t *cn, rcall_t *rc)
{
    if (!rc->in_ob) {
        return;
    }
    rc->in_ob = 0;
    rc->out.may_send = NULL;
    rc->out.on_last = NULL;
    obucket_t *b = ob_bucket(cn, rc->target);
    rcall_t **pp = &b->head, *prev = NULL;
    while (*pp != NULL && *pp != rc) {
        prev = *pp;
        pp = &(*pp)->onext;
    }
    if (*pp == NULL) {
        return;
    }
    *pp = rc->onext;
    if (b->tail == rc) {
        b->tail = prev;
    }
    rc->onext = NULL;
    if (cn->dead) {
        return;
    }
    /* The next body to that actor, if it waits for this one: its turn. */
    for (rcall_t *e = b->head; e != NULL; e = e->onext) {
        if (pul_id_eq(e->target, rc->target)) {
            if (e->out.deferred && e->sid > 0) {
                e->out.deferred = 0;
                (void)nghttp2_session_resume_data(cn->ses, e->sid);
                conn_flush_later(cn);
            }
            break;
        }
    }
}

/* on_last: the body's last frame is produced. */
static void
ob_body_out(void *arg)
{
    rcall_t *rc = arg;
    if (rc->cn != NULL) {
        ob_remove(rc->cn, rc);
    }
}

/* Before the request is submitted. 0 or PUL_ENOMEM. */
static int
ob_add(conn_t *cn, rcall_t *rc)
{
    if (cn->ob == NULL) {
        cn->ob = pul__calloc(OB_N, sizeof *cn->ob);
        if (cn->ob == NULL) {
            return PUL_ENOMEM;
        }
    }
    obucket_t *b = ob_bucket(cn, rc->target);
    rc->onext = NULL;
    if (b->tail != NULL) {
        b->tail->onext = rc;
    } else {
        b->head = rc;
    }
    b->tail = rc;
    rc->in_ob = 1;
    rc->out.may_send = ob_may_send;
    rc->out.on_last = ob_body_out;
    rc->out.order_arg = rc;
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------------- */

static void tells_drop(conn_t *cn);

/* sys->net_calls counts records until their caller is answered (not until the stream closes,
 * which may come after the caller's next ask has been made). */
static void
rcall_unhint(rcall_t *rc)
{
    if (rc->hinted) {
        rc->hinted = 0;
        pul_system_t *sys = rc->net->sys;
        if (atomic_fetch_sub_explicit(&sys->net_calls, 1, memory_order_relaxed) == 1) {
            unsigned peak = atomic_load_explicit(&sys->net_calls_peak, memory_order_relaxed);
            atomic_store_explicit(&sys->net_calls_last_peak, peak, memory_order_relaxed);
            atomic_store_explicit(&sys->net_calls_peak, 0, memory_order_relaxed);
        }
    }
}

static void
rcall_link(conn_t *cn, rcall_t *rc)
{
    pul_system_t *sys = cn->net->sys;
    unsigned n = atomic_fetch_add_explicit(&sys->net_calls, 1, memory_order_relaxed) + 1;
    if (n > atomic_load_explicit(&sys->net_calls_peak, memory_order_relaxed)) {
        atomic_store_explicit(&sys->net_calls_peak, n, memory_order_relaxed);
    }
    rc->hinted = 1;
    rc->cn = cn;
    rc->prev = NULL;
    rc->next = cn->calls;
    if (cn->calls != NULL) {
        cn->calls->prev = rc;
    }
    cn->calls = rc;
}

static void
rcall_unlink(rcall_t *rc)
{
    conn_t *cn = rc->cn;
    if (cn == NULL) {
        return;
    }
    ob_remove(cn, rc);
    rcall_unhint(rc);
    if (rc->prev != NULL) {
        rc->prev->next = rc->next;
    } else {
        cn->calls = rc->next;
    }
    if (rc->next != NULL) {
        rc->next->prev = rc->prev;
    }
    rc->prev = rc->next = NULL;
    rc->cn = NULL;
}

static void
rcall_free(rcall_t *rc)
{
    if (rc->c != NULL) {
        rc->c->net_op = NULL;
        pul__call_unref(rc->c);
    }
    pul__timer_disarm(&rc->net->sys->loop, &rc->timer);
    outq_free(&rc->out);
    pul__env_rx_free(&rc->env);
    pul__free(rc->buf);
    pool_free(&rc->net->pool, rc);
}

static int
map_remote(int http, const pul_error_t *e)
{
    if (e != NULL) {
        if (e->kind == PUL_ERRKIND_RUNTIME && e->code < 0 && e->code >= PUL_EADDR) {
            /* The remote node closing is, for this caller, a transport failure. */
            return e->code == PUL_ECLOSED ? PUL_EIO : (int)e->code;
        }
        return PUL_EACTOR;
    }
    switch (http) {
    case 404:
        return PUL_ENOTFOUND;
    case 413:
        return PUL_ETOOBIG;
    case 400:
        return PUL_EPROTO;
    default:
        return PUL_EIO;
    }
}

/* Complete the caller's call once (ownership of msg moves). */
static void
rcall_complete(rcall_t *rc, int status, pul_msg_t *msg, const pul_error_t *e)
{
    pul_call_t *c = rc->c;
    rc->done = 1;
    rcall_unhint(rc);
    if (c == NULL) {
        pul_msg_unref(msg);
        return;
    }
    rc->c = NULL;
    c->net_op = NULL;
    if (status != 0 && status != PUL_EOF) {
        atomic_fetch_add_explicit(&rc->net->errors, 1, memory_order_relaxed);
    }
    pul__err_t *ce = NULL;
    if (status == PUL_EACTOR) {
        ce = pul__err_copy(e);
        if (ce == NULL) {
            status = PUL_ENOMEM;
        }
    }
    pul__call_complete(c, status, msg, ce);
    pul__free(ce);
    pul__call_unref(c);
}

static void
post_finish(rcall_t *rc, int status, const uint8_t *body, size_t len)
{
    if (rc->done) {
        return;
    }
    rc->done = 1;
    pul__timer_disarm(&rc->net->sys->loop, &rc->timer);
    pul__net_resp_cb cb = rc->cb;
    rc->cb = NULL;
    if (cb != NULL) {
        cb(status, body, len, rc->arg);
    }
}

/* Reset our stream (we gave up, or the peer sent something we refuse). */
static void
rcall_reset(rcall_t *rc, uint32_t code)
{
    conn_t *cn = rc->cn;
    if (cn != NULL && !cn->dead && rc->sid > 0) {
        (void)nghttp2_submit_rst_stream(cn->ses, NGHTTP2_FLAG_NONE, rc->sid, code);
        conn_flush_later(cn);
    }
}

/* A failure while reading the response: the caller hears status, the stream is reset. */
static void
rcall_fail(rcall_t *rc, int status)
{
    if (rc->kind == RC_CALL) {
        rcall_complete(rc, status, NULL, NULL);
    } else if (rc->kind == RC_POST) {
        post_finish(rc, status, NULL, 0);
    }
    rc->done = 1;
    rcall_reset(rc, NGHTTP2_CANCEL);
}

static int
buf_append(rcall_t *rc, const uint8_t *p, size_t n)
{
    size_t max = rc->net->sys->cfg.max_message_size;
    if (rc->blen + n > max) {
        return PUL_ETOOBIG;
    }
    if (rc->blen + n > rc->bcap) {
        size_t nc = rc->bcap ? rc->bcap * 2 : 1024;
        while (nc < rc->blen + n) {
            nc *= 2;
        }
        if (nc > max) {
            nc = max;
        }
        uint8_t *nb = pul__realloc(rc->buf, nc);
        if (nb == NULL) {
            return PUL_ENOMEM;
        }
        rc->buf = nb;
        rc->bcap = nc;
    }
    memcpy(rc->buf + rc->blen, p, n);
    rc->blen += n;
    return 0;
}

/* ---- stream frames ------------------------------------------------------------------------- */

static void
stream_deliver(rcall_t *rc, pul_msg_t *item)
{
    pul_call_t *c = rc->c;
    atomic_fetch_add_explicit(&rc->net->msgs_in, 1, memory_order_relaxed);
    if (c == NULL || c->done) {
        pul_msg_unref(item);
        return;
    }
    if (!c->stream_mode) {
        /* A plain ask of a streaming actor takes the first item; the rest is not wanted. */
        rcall_complete(rc, 0, item, NULL);
        rcall_reset(rc, NGHTTP2_CANCEL);
        return;
    }
    /* Once items flow the deadline no longer applies (as for local streams). */
    pul__timer_disarm(&c->sys->loop, &c->deadline);
    c->cb(0, item, NULL, c->arg);
    pul_msg_unref(item);
}

/* The frames of a stream response, as they arrive. Returns 0 or an error code. */
static int
frames_feed(rcall_t *rc, const uint8_t *p, size_t n)
{
    if (rc->sfr.env == NULL) {
        pul__sframe_rx_init(&rc->sfr, rc->net->sys->cfg.max_message_size,
                            1u << PUL__SFRAME_ITEM | 1u << PUL__SFRAME_END |
                                1u << PUL__SFRAME_ERROR,
                            0, &rc->env, rc->ftype);
    }
    size_t used = 0;
    while (used < n) {
        if (rc->ended || rc->done) {
            return 0; /* trailing bytes after the end, or a caller that left: ignored */
        }
        pul__sfr_ev_t ev;
        long k = pul__sframe_rx_feed(&rc->sfr, p + used, n - used, &ev);
        if (k < 0) {
            return (int)k;
        }
        used += (size_t)k;
        if (ev == PUL__SFR_ITEM) {
            pul_msg_t *m = pul__env_rx_take(&rc->env, rc->ftype);
            if (m == NULL) {
                return PUL_ENOMEM;
            }
            stream_deliver(rc, m);
        } else if (ev == PUL__SFR_END) {
            rc->ended = 1;
            if (rc->c != NULL && !rc->c->stream_mode) {
                pul_msg_t *empty = pul_msg_new("", NULL, 0);
                rcall_complete(rc, empty != NULL ? 0 : PUL_ENOMEM, empty, NULL);
            } else {
                rcall_complete(rc, PUL_EOF, NULL, NULL);
            }
        } else if (ev == PUL__SFR_ERROR) {
            int r = buf_append(rc, rc->sfr.chunk, rc->sfr.chunk_len);
            if (r != 0) {
                return r;
            }
            if (rc->sfr.last) {
                rc->ended = 1;
                pul_error_t e;
                if (pul__errmap_decode(rc->buf, rc->blen, &e) != 0) {
                    return PUL_EPROTO;
                }
                rcall_complete(rc, map_remote(200, &e), NULL, &e);
                pul__errmap_clear(&e);
                rc->blen = 0;
            }
        }
    }
    return 0;
}

/* ---- nghttp2 callbacks (client sessions) -------------------------------------------------- */

static int
cl_on_header(nghttp2_session *ses, const nghttp2_frame *frame, const uint8_t *name,
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
    rcall_t *rc = conn_stream_data(cn, frame->hd.stream_id);
    if (rc == NULL) {
        return 0;
    }
    rc->hdr_bytes += namelen + valuelen;
    if (rc->hdr_bytes > NET_HDR_MAX) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    }
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int st = 0;
        for (size_t i = 0; i < valuelen && i < 4; i++) {
            st = st * 10 + (value[i] - '0');
        }
        if (st >= 200) {
            rc->http_status = st;
        }
    } else if (namelen == 10 && memcmp(name, "pul-status", 10) == 0) {
        if (valuelen == 2 && memcmp(value, "ok", 2) == 0) {
            rc->pst = PST_OK;
        } else if (valuelen == 6 && memcmp(value, "stream", 6) == 0) {
            rc->pst = PST_STREAM;
        } else if (valuelen == 5 && memcmp(value, "error", 5) == 0) {
            rc->pst = PST_ERROR;
        }
    } else if (namelen == 8 && memcmp(name, "pul-type", 8) == 0) {
        if (valuelen < sizeof rc->type) {
            memcpy(rc->type, value, valuelen);
            rc->type[valuelen] = '\0';
        }
    }
    return 0;
}

static void
rcall_consume(rcall_t *rc, conn_t *cn, int32_t sid, size_t len, int now)
{
    rc->unconsumed += len;
    if (now || rc->unconsumed >= NET_OUT_HIGH) {
        (void)nghttp2_session_consume(cn->ses, sid, rc->unconsumed);
        rc->unconsumed = 0;
    }
}

static int
cl_on_data_chunk(nghttp2_session *ses, uint8_t flags, int32_t sid, const uint8_t *data,
                 size_t len, void *user_data)
{
    conn_t *cn = user_data;
    if (cn->dead) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    rcall_t *rc = nghttp2_session_get_stream_user_data(ses, sid);
    if (rc == NULL || rc->done) {
        (void)nghttp2_session_consume(ses, sid, len);
        return 0;
    }
    int r = 0;
    if (rc->kind == RC_CALL && rc->pst == PST_OK && rc->http_status == 200) {
        if (rc->env.max == 0) {
            pul__env_rx_init(&rc->env, cn->net->sys->cfg.max_message_size);
        }
        long k = pul__env_rx_feed(&rc->env, data, len);
        r = k < 0 ? (int)k : ((size_t)k != len ? PUL_EPROTO : 0);
        rcall_consume(rc, cn, sid, len, 1);
    } else if (rc->kind == RC_CALL && rc->pst == PST_STREAM) {
        /* Window goes back as the consumer callback takes items: after each frame delivered,
         * or in 1 MiB steps within a frame larger than that. */
        r = frames_feed(rc, data, len);
        if (rc->c != NULL && rc->c->paused && !rc->done) {
            /* The consumer paused the call: its window stays taken until pul__net_resume, so
             * the server's window fills and it holds the producer. */
            rc->unconsumed += len;
        } else {
            rcall_consume(rc, cn, sid, len, pul__sframe_rx_idle(&rc->sfr) || rc->done);
        }
    } else if (rc->kind == RC_TELL) {
        rcall_consume(rc, cn, sid, len, 1);
    } else {
        r = buf_append(rc, data, len);
        rcall_consume(rc, cn, sid, len, 1);
    }
    if (r != 0 && !cn->dead) {
        rcall_fail(rc, r);
    }
    return 0;
}

static void
rcall_finish(rcall_t *rc)
{
    if (rc->done) {
        return;
    }
    if (rc->kind == RC_POST) {
        post_finish(rc, rc->http_status ? rc->http_status : PUL_EPROTO, rc->buf, rc->blen);
        return;
    }
    if (rc->kind == RC_TELL) {
        rc->done = 1;
        if (rc->http_status != 202) {
            atomic_fetch_add_explicit(&rc->net->errors, 1, memory_order_relaxed);
            PUL__LOG(PUL__LOG_DEBUG, "net", "remote tell answered %d", rc->http_status);
        }
        return;
    }
    atomic_fetch_add_explicit(&rc->net->msgs_in, rc->pst != PST_STREAM, memory_order_relaxed);
    if (rc->pst == PST_OK && rc->http_status == 200) {
        if (rc->env.max == 0) {
            pul__env_rx_init(&rc->env, rc->net->sys->cfg.max_message_size);
        }
        if (!pul__env_rx_done(&rc->env)) {
            rcall_complete(rc, PUL_EPROTO, NULL, NULL);
            return;
        }
        pul_msg_t *m = pul__env_rx_take(&rc->env, rc->type);
        rcall_complete(rc, m != NULL ? 0 : PUL_ENOMEM, m, NULL);
    } else if (rc->pst == PST_STREAM) {
        if (!rc->ended) {
            rcall_complete(rc, PUL_EPROTO, NULL, NULL);
        }
    } else {
        pul_error_t e;
        if (rc->blen > 0 && pul__errmap_decode(rc->buf, rc->blen, &e) == 0) {
            rcall_complete(rc, map_remote(rc->http_status, &e), NULL, &e);
            pul__errmap_clear(&e);
        } else {
            rcall_complete(rc, map_remote(rc->http_status, NULL), NULL, NULL);
        }
    }
}

static int
cl_on_frame_recv(nghttp2_session *ses, const nghttp2_frame *frame, void *user_data)
{
    conn_t *cn = user_data;
    if (cn->dead) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        rcall_t *rc = nghttp2_session_get_stream_user_data(ses, frame->hd.stream_id);
        if (rc != NULL) {
            rcall_finish(rc);
        }
    }
    return 0;
}

static int
cl_on_stream_close(nghttp2_session *ses, int32_t sid, uint32_t error_code, void *user_data)
{
    conn_t *cn = user_data;
    if (cn->dead) {
        return 0;
    }
    if (sid == cn->hsid) {
        cn->hsid = 0;
        cn->hdata = NULL;
    }
    rcall_t *rc = nghttp2_session_get_stream_user_data(ses, sid);
    if (rc == NULL) {
        return 0;
    }
    if (rc->unconsumed > 0) {
        /* Window of a stream that is gone goes back to the connection. */
        (void)nghttp2_session_consume_connection(ses, rc->unconsumed);
        rc->unconsumed = 0;
    }
    if (!rc->done) {
        /* Closed before the response ended: reset by the peer, or refused (GOAWAY). */
        if (rc->kind == RC_CALL) {
            rcall_complete(rc, PUL_EIO, NULL, NULL);
        } else if (rc->kind == RC_POST) {
            post_finish(rc, PUL_EIO, NULL, 0);
        }
    }
    (void)nghttp2_session_set_stream_user_data(ses, sid, NULL);
    rcall_unlink(rc);
    rcall_free(rc);
    return 0;
}

void
client_callbacks(nghttp2_session_callbacks *cbs)
{
    nghttp2_session_callbacks_set_on_header_callback(cbs, cl_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cl_on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cl_on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cl_on_stream_close);
}

void
client_conn_lost(conn_t *cn, int status)
{
    tells_drop(cn);
    /* Answer every caller now; the records are freed with the connection (we may be inside a
     * callback of this very session). */
    for (rcall_t *rc = cn->calls; rc != NULL; rc = rc->next) {
        if (rc->done) {
            continue;
        }
        if (rc->kind == RC_CALL) {
            rcall_complete(rc, status == PUL_ECLOSED ? PUL_ECLOSED : PUL_EIO, NULL, NULL);
        } else if (rc->kind == RC_POST) {
            int st = status == PUL_ETIMEDOUT || status == PUL_ECLOSED ? status : PUL_EIO;
            post_finish(rc, st, NULL, 0);
        }
        rc->done = 1;
    }
}

void
client_conn_free(conn_t *cn)
{
    tells_drop(cn);
    for (rcall_t *rc = cn->calls; rc != NULL; rc = rc->next) {
        rc->in_ob = 0; /* the connection goes: nothing waits for anything */
    }
    pul__free(cn->ob);
    cn->ob = NULL;
    while (cn->calls != NULL) {
        rcall_t *rc = cn->calls;
        rcall_unlink(rc);
        rcall_free(rc);
    }
}

/* ---- routes and peers ---------------------------------------------------------------------- */

static peer_t *
peer_get(pul__net_t *net, const char *addr)
{
    for (peer_t *p = net->peers; p != NULL; p = p->next) {
        if (strcmp(p->addr, addr) == 0) {
            return p;
        }
    }
    peer_t *p = pul__calloc(1, sizeof *p);
    if (p == NULL) {
        return NULL;
    }
    snprintf(p->addr, sizeof p->addr, "%s", addr);
    p->next = net->peers;
    net->peers = p;
    return p;
}

/* The connection of that kind to addr, dialled when needed. NULL with *err set: PUL_EIO
 * (unresolvable, in backoff after a failure, dial failed), PUL_ENOMEM, PUL_ECLOSED. */
static conn_t *
peer_conn(pul__net_t *net, const char *addr, int kind, int *err)
{
    if (net->closing) {
        *err = PUL_ECLOSED;
        return NULL;
    }
    peer_t *p = peer_get(net, addr);
    if (p == NULL) {
        *err = PUL_ENOMEM;
        return NULL;
    }
    conn_t *old = p->conn[kind];
    if (old != NULL && !old->dead) {
        if (!old->connected || nghttp2_session_check_request_allowed(old->ses)) {
            return old;
        }
        /* The peer sent GOAWAY: its streams finish on the old connection (which closes itself
         * when done); new calls go to a fresh one. */
        old->peer = NULL;
        p->conn[kind] = NULL;
    }
    if (pul__now_ms() < p->retry_at[kind]) {
        *err = PUL_EIO; /* failed a moment ago: fail fast until the backoff has passed */
        return NULL;
    }
    conn_t *cn = conn_new(net, kind);
    if (cn == NULL) {
        *err = PUL_ENOMEM;
        return NULL;
    }
    cn->peer = p;
    p->conn[kind] = cn;
    int rc = net_dial(cn, p);
    if (rc != 0) {
        conn_fail(cn, PUL_EIO);
        *err = rc == PUL_ENOMEM ? PUL_ENOMEM : PUL_EIO;
        return NULL;
    }
    return cn;
}

static int
route_addr(pul__net_t *net, uint64_t hi, char addr[PUL_ADDR_MAX + 1], pul_id_t *node)
{
    int found = 0;
    const route_t *dflt = NULL; /* a client's default gateway (node id zero; pul_gateway_route) */
    pthread_mutex_lock(&net->rmu);
    for (size_t i = 0; i < net->nroutes; i++) {
        if (net->routes[i].node.hi == hi) {
            memcpy(addr, net->routes[i].addr, PUL_ADDR_MAX + 1);
            if (node != NULL) {
                *node = net->routes[i].node;
            }
            found = 1;
            break;
        }
        if (net->routes[i].node.hi == 0 && net->routes[i].node.lo == 0) {
            dflt = &net->routes[i];
        }
    }
    if (!found && dflt != NULL && hi != 0) {
        memcpy(addr, dflt->addr, PUL_ADDR_MAX + 1);
        if (node != NULL) {
            *node = dflt->node;
        }
        found = 1;
    }
    pthread_mutex_unlock(&net->rmu);
    return found;
}

int
pul__net_has_route(pul__net_t *net, pul_id_t target)
{
    char addr[PUL_ADDR_MAX + 1];
    return net != NULL && route_addr(net, target.hi, addr, NULL);
}

int
pul__net_direct_call_ok(pul__net_t *net, pul_call_t *c)
{
    if (net == NULL || net->closing || net->direct != NULL) {
        return 0;
    }
    char addr[PUL_ADDR_MAX + 1];
    if (!route_addr(net, c->target.hi, addr, NULL)) {
        return 0;
    }
    for (peer_t *p = net->peers; p != NULL; p = p->next) {
        if (strcmp(p->addr, addr) == 0) {
            conn_t *cn = p->conn[CONN_DATA];
            /* Alone on the connection: with other calls in flight the core thread is busy with
             * it anyway and batches their writes (one writev per turn). */
            return cn != NULL && cn->calls == NULL && conn_direct_ok(cn) &&
                   nghttp2_session_check_request_allowed(cn->ses);
        }
    }
    return 0;
}

void
pul__net_direct_flush(pul__net_t *net)
{
    if (net != NULL) {
        net_direct_flush(net);
    }
}

/* ---- sending requests ---------------------------------------------------------------------- */

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

static rcall_t *
rcall_new(pul__net_t *net, int kind)
{
    rcall_t *rc = pool_calloc(&net->pool, sizeof *rc);
    if (rc == NULL) {
        return NULL;
    }
    rc->net = net;
    rc->kind = kind;
    outq_init(&rc->out, &net->pool);
    return rc;
}

/* Decimal digits of v into buf (at least 21 bytes), NUL-terminated: snprintf costs ~400
 * instructions and this runs for every call with a deadline. */
static void
fmt_u64(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) {
        buf[i] = tmp[n - 1 - i];
    }
    buf[n] = '\0';
}

/* Submit a POST carrying rc->out (complete, eof set) on cn. 0 or an error (rc not linked). */
static int
rcall_submit(conn_t *cn, rcall_t *rc, const char *path, const char *mode, const char *type,
             uint64_t due)
{
    pul__net_t *net = cn->net;
    char deadline[24];
    if (cn->tb != NULL) {
        client_tells_submit(cn); /* tells made before this request go first */
    }
    if (net->from[0] == '\0') {
        pul_id_format(net->sys->node_id, net->from);
    }
    const char *from = net->from;
    nghttp2_nv nva[9];
    size_t n = 0;
    nva[n++] = (nghttp2_nv)NV(":method", rc->get ? "GET" : "POST");
    nva[n++] = (nghttp2_nv)NV(":path", path);
    nva[n++] = (nghttp2_nv)NV(":scheme", "http");
    nva[n++] = (nghttp2_nv)NV(":authority", cn->peer != NULL ? cn->peer->addr : "pulsing");
    if (mode != NULL) {
        nva[n++] = (nghttp2_nv)NV("content-type", "application/x-pulsing-msg");
        nva[n++] = (nghttp2_nv)NV("pul-mode", mode);
        nva[n++] = (nghttp2_nv)NV("pul-type", type);
        nva[n++] = (nghttp2_nv)NV("pul-from", from);
        if (due != 0) {
            uint64_t now = pul__now_ms();
            fmt_u64(deadline, due > now ? due - now : 1);
            nva[n++] = (nghttp2_nv)NV("pul-deadline", deadline);
        }
    } else if (!rc->get) {
        nva[n++] = (nghttp2_nv)NV("content-type", "application/msgpack");
    }
    rc->out.eof = 1;
    if (rc->ordered && !rc->get && ob_add(cn, rc) != 0) {
        return PUL_ENOMEM;
    }
    nghttp2_data_provider prov = outq_provider(&rc->out);
    int32_t sid = nghttp2_submit_request(cn->ses, NULL, nva, n, rc->get ? NULL : &prov, rc);
    if (sid < 0) {
        ob_remove(cn, rc);
        return sid == NGHTTP2_ERR_NOMEM ? PUL_ENOMEM : PUL_EIO;
    }
    rc->sid = sid;
    rc->out.sid = sid;
    rcall_link(cn, rc);
    atomic_fetch_add_explicit(&net->msgs_out, 1, memory_order_relaxed);
    conn_flush_later(cn);
    return 0;
}

/* "/actors/<32 hex>" for target, from a one-entry cache (calls in a row mostly go to one actor).
 * Valid until the next call. Core thread. */
static const char *
actor_path(pul__net_t *net, pul_id_t target)
{
    if (net->path[0] == '\0' || !pul_id_eq(net->path_id, target)) {
        memcpy(net->path, "/actors/", 8);
        pul_id_format(target, net->path + 8);
        net->path_id = target;
    }
    return net->path;
}

static int
net_call_to(pul__net_t *net, pul_call_t *c, const char *addr, const char *path)
{
    if (pul_msg_size(c->msg) > net->sys->cfg.max_message_size ||
        pul_msg_nsegments(c->msg) > PUL__ENV_MAX_SEGS) {
        return PUL_ETOOBIG;
    }
    const char *type = pul_msg_type(c->msg);
    if (strlen(type) > 255) {
        return PUL_EINVAL;
    }
    int err = 0;
    conn_t *cn = peer_conn(net, addr, CONN_DATA, &err);
    if (cn == NULL) {
        return err;
    }
    rcall_t *rc = rcall_new(net, RC_CALL);
    if (rc == NULL) {
        return PUL_ENOMEM;
    }
    if (strncmp(path, "/actors/", 8) == 0) {
        rc->ordered = 1; /* by name: the actor is not known here */
        rc->target = c->target;
    }
    int r = outq_push_msg(&rc->out, NULL, 0, c->msg);
    if (r == 0) {
        r = rcall_submit(cn, rc, path, c->stream_mode ? "stream" : "ask", type, c->due);
    }
    if (r != 0) {
        rcall_free(rc);
        return r;
    }
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    rc->c = c;
    c->net_op = rc;
    if (!c->stream_mode && pul__loop_borrowed(&net->sys->loop)) {
        pump_offer(net, cn); /* written by the caller's thread: it may read the reply too */
    }
    return 0;
}

int
pul__net_call(pul__net_t *net, pul_call_t *c)
{
    if (net == NULL || net->closing) {
        return PUL_ECLOSED;
    }
    char addr[PUL_ADDR_MAX + 1];
    if (!route_addr(net, c->target.hi, addr, NULL)) {
        return PUL_ENOTFOUND;
    }
    return net_call_to(net, c, addr, actor_path(net, c->target));
}

int
pul__net_call_named(pul__net_t *net, pul_call_t *c, pul_id_t node_id, const char *name)
{
    if (net == NULL || net->closing) {
        return PUL_ECLOSED;
    }
    char addr[PUL_ADDR_MAX + 1];
    pul_id_t node;
    if (!route_addr(net, node_id.hi, addr, &node) || !pul_id_eq(node, node_id)) {
        return PUL_ENOTFOUND;
    }
    char path[PUL_NAME_MAX + 16];
    snprintf(path, sizeof path, "/named/%s", name);
    return net_call_to(net, c, addr, path);
}

void
pul__net_cancel(pul__net_t *net, pul_call_t *c)
{
    rcall_t *rc = c->net_op;
    if (rc == NULL) {
        return;
    }
    c->net_op = NULL;
    rc->c = NULL;
    rc->done = 1;
    rcall_unhint(rc);
    pul__call_unref(c);
    rcall_reset(rc, NGHTTP2_CANCEL);
}

void
pul__net_resume(pul__net_t *net, pul_call_t *c)
{
    (void)net;
    rcall_t *rc = c->net_op;
    if (rc == NULL || rc->done || rc->cn == NULL || rc->cn->dead || rc->sid <= 0 ||
        rc->unconsumed == 0) {
        return;
    }
    (void)nghttp2_session_consume(rc->cn->ses, rc->sid, rc->unconsumed);
    rc->unconsumed = 0;
    conn_flush_later(rc->cn); /* the WINDOW_UPDATE */
}

/* Tells to one actor made in a row travel in one request of mode "tells" (its body stream
 * frames, one item per tell; docs/design/wire-protocol.md): the headers, the stream and its 202
 * are paid once per batch instead of once per tell. A batch is filled until the next flush of its
 * connection (the end of the loop turn), another request on the connection, a tell to another
 * actor, or these bounds, so a batch never waits for more tells and a large one does not delay
 * the start of the next. */
#define TB_MAX_N 4096
#define TB_MAX_BYTES (256u * 1024u)

void
client_tells_submit(conn_t *cn)
{
    rcall_t *rc = cn->tb;
    if (rc == NULL) {
        return;
    }
    pul__net_t *net = cn->net;
    unsigned n = cn->tb_n;
    cn->tb = NULL;
    cn->tb_n = 0;
    cn->tb_bytes = 0;
    int r = rcall_submit(cn, rc, actor_path(net, cn->tb_target), "tells", "", 0);
    if (r != 0) {
        /* Like a tell whose request fails: dropped, counted, logged (a tell has no answer). */
        atomic_fetch_add_explicit(&net->errors, n, memory_order_relaxed);
        PUL__LOG(PUL__LOG_DEBUG, "net", "%u remote tells dropped: %s", n, pul_strerror(r));
        rcall_free(rc);
        return;
    }
    atomic_fetch_add_explicit(&net->msgs_out, n - 1, memory_order_relaxed);
}

/* Drop the batch being filled (its connection is lost or freed). */
static void
tells_drop(conn_t *cn)
{
    if (cn->tb != NULL) {
        atomic_fetch_add_explicit(&cn->net->errors, cn->tb_n, memory_order_relaxed);
        rcall_free(cn->tb);
        cn->tb = NULL;
        cn->tb_n = 0;
        cn->tb_bytes = 0;
    }
}

int
pul__net_tell(pul__net_t *net, pul_id_t target, pul_msg_t *msg)
{
    if (net == NULL || net->closing) {
        return PUL_ECLOSED;
    }
    const char *type = pul_msg_type(msg);
    size_t tl = strlen(type);
    uint64_t total = 1 + tl + pul__env_header_size(msg) + pul_msg_size(msg);
    if (pul_msg_size(msg) > net->sys->cfg.max_message_size ||
        pul_msg_nsegments(msg) > PUL__ENV_MAX_SEGS || total > net->sys->cfg.max_message_size ||
        total > UINT32_MAX) {
        return PUL_ETOOBIG;
    }
    if (tl > 255) {
        return PUL_EINVAL;
    }
    char addr[PUL_ADDR_MAX + 1];
    if (!route_addr(net, target.hi, addr, NULL)) {
        return PUL_ENOTFOUND;
    }
    int err = 0;
    conn_t *cn = peer_conn(net, addr, CONN_DATA, &err);
    if (cn == NULL) {
        return err;
    }
    if (cn->tb != NULL && (!pul_id_eq(cn->tb_target, target) || cn->tb_n >= TB_MAX_N ||
                           cn->tb_bytes >= TB_MAX_BYTES)) {
        client_tells_submit(cn);
    }
    int fresh = cn->tb == NULL;
    rcall_t *rc = cn->tb;
    if (fresh) {
        rc = rcall_new(net, RC_TELL);
        if (rc == NULL) {
            return PUL_ENOMEM;
        }
        rc->ordered = 1;
        rc->target = target;
    }
    uint8_t hdr[PUL__SFRAME_HDR + 1 + 255];
    pul__sframe_hdr(hdr, PUL__SFRAME_ITEM, (uint32_t)total);
    hdr[PUL__SFRAME_HDR] = (uint8_t)tl;
    memcpy(hdr + PUL__SFRAME_HDR + 1, type, tl);
    int r = outq_push_msg(&rc->out, hdr, PUL__SFRAME_HDR + 1 + tl, msg);
    if (r != 0) {
        /* outq_push_msg appends nothing on failure: the batch stays whole */
        if (fresh) {
            rcall_free(rc);
        }
        return r;
    }
    if (fresh) {
        cn->tb = rc;
        cn->tb_target = target;
        conn_flush_later(cn); /* submits the batch at the end of the turn */
    }
    cn->tb_n++;
    cn->tb_bytes += PUL__SFRAME_HDR + (size_t)total;
    pul_msg_unref(msg); /* the body holds its own references */
    return 0;
}

/* ---- control POST ---------------------------------------------------------------------------- */

static void
post_timeout(pul__tmr_t *t)
{
    rcall_t *rc = (rcall_t *)((char *)t - offsetof(rcall_t, timer));
    post_finish(rc, PUL_ETIMEDOUT, NULL, 0);
    rcall_reset(rc, NGHTTP2_CANCEL);
}

static void
post_later_task(pul__task_t *t)
{
    rcall_t *rc = (rcall_t *)((char *)t - offsetof(rcall_t, task));
    post_finish(rc, rc->later, NULL, 0);
    rcall_free(rc);
}

static int
net_ctrl(pul__net_t *net, int get, const char *addr, const char *path, const uint8_t *body,
         size_t len, uint64_t timeout_ms, pul__net_resp_cb cb, void *arg)
{
    if (net == NULL || net->closing) {
        return PUL_ECLOSED;
    }
    rcall_t *rc = rcall_new(net, RC_POST);
    if (rc == NULL) {
        return PUL_ENOMEM;
    }
    rc->cb = cb;
    rc->arg = arg;
    rc->get = get;
    if (!get && outq_push_copy(&rc->out, body, len) != 0) {
        rcall_free(rc);
        return PUL_ENOMEM;
    }
    int err = 0;
    conn_t *cn = peer_conn(net, addr, CONN_CTRL, &err);
    int r = cn != NULL ? rcall_submit(cn, rc, path, NULL, NULL, 0) : err;
    if (r == PUL_ENOMEM && cn == NULL) {
        rcall_free(rc);
        return PUL_ENOMEM;
    }
    if (r != 0) {
        /* Known at once, told on the next turn. */
        rc->later = r;
        rc->task.run = post_later_task;
        pul__loop_defer(&net->sys->loop, &rc->task);
        return 0;
    }
    if (timeout_ms != 0) {
        rc->timer.cb = post_timeout;
        if (pul__timer_arm(&net->sys->loop, &rc->timer, pul__now_ms() + timeout_ms) != 0) {
            rc->cb = NULL;
            rc->done = 1;
            rcall_reset(rc, NGHTTP2_CANCEL);
            return PUL_ENOMEM;
        }
    }
    return 0;
}

int
pul__net_post(pul__net_t *net, const char *addr, const char *path, const uint8_t *body,
              size_t len, uint64_t timeout_ms, pul__net_resp_cb cb, void *arg)
{
    return net_ctrl(net, 0, addr, path, body, len, timeout_ms, cb, arg);
}

int
pul__net_get(pul__net_t *net, const char *addr, const char *path, uint64_t timeout_ms,
             pul__net_resp_cb cb, void *arg)
{
    return net_ctrl(net, 1, addr, path, NULL, 0, timeout_ms, cb, arg);
}

/* ---- pul_http_get: the public door to pul__net_get ------------------------------------------ */

#define HGET_PATH_MAX 270

typedef struct {
    pul_system_t *sys;
    char addr[PUL_ADDR_MAX + 1];
    char path[HGET_PATH_MAX + 1];
    uint64_t timeout_ms;
    pul_ask_cb cb;
    void *arg;
} hget_t;

static void
hget_resp(int status, const uint8_t *body, size_t len, void *arg)
{
    hget_t *h = arg;
    pul_ask_cb cb = h->cb;
    void *cbarg = h->arg;
    pul__free(h);
    if (status < 0) {
        cb(status, NULL, NULL, cbarg);
        return;
    }
    char type[16];
    snprintf(type, sizeof type, "%d", status);
    pul_msg_t *m = pul_msg_new(type, body, len);
    if (m == NULL) {
        cb(PUL_ENOMEM, NULL, NULL, cbarg);
        return;
    }
    cb(0, m, NULL, cbarg);
    pul_msg_unref(m);
}

static void
hget_start(void *arg)
{
    hget_t *h = arg;
    int rc = pul__net_get(h->sys->net, h->addr, h->path, h->timeout_ms, hget_resp, h);
    if (rc != 0) {
        /* We run on a posted task, not inside pul_http_get: answering now is not re-entrant. */
        hget_resp(rc, NULL, 0, h);
    }
}

int
pul_http_get(pul_system_t *sys, const char *addr, const char *path, uint64_t timeout_ms,
             pul_ask_cb cb, void *arg)
{
    if (sys == NULL || addr == NULL || path == NULL || cb == NULL || path[0] != '/' ||
        strlen(addr) > PUL_ADDR_MAX || strlen(path) > HGET_PATH_MAX) {
        return PUL_EINVAL;
    }
    hget_t *h = pul__calloc(1, sizeof *h);
    if (h == NULL) {
        return PUL_ENOMEM;
    }
    h->sys = sys;
    strcpy(h->addr, addr);
    strcpy(h->path, path);
    h->timeout_ms = timeout_ms;
    h->cb = cb;
    h->arg = arg;
    int rc = pul_system_post(sys, hget_start, h);
    if (rc != 0) {
        pul__free(h);
    }
    return rc;
}
