/* conn.c — one HTTP/2 connection over a libuv TCP socket: the socket seam (a vtable, so TLS can
 * slot in), nghttp2 session set-up, the write path (nghttp2 frames copied into a batch, DATA
 * payloads referenced without a copy and written with one uv_write of many bufs), outgoing
 * bodies (outq) and teardown. Core thread only, or a thread borrowing the loop
 * (pul__loop_borrow), which writes with sendmsg instead of libuv (conn_flush). */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/netint.h"

/* ---- outgoing bodies ---------------------------------------------------------------------- */

void
outq_init(outq_t *q, pool_t *pool)
{
    memset(q, 0, sizeof *q);
    q->pool = pool;
}

static void
piece_free(outq_t *q, piece_t *pc)
{
    pul_msg_unref(pc->owner);
    pool_free(q->pool, pc);
}

void
outq_free(outq_t *q)
{
    while (q->head != NULL) {
        piece_t *p = q->head;
        q->head = p->next;
        piece_free(q, p);
    }
    q->tail = NULL;
    q->bytes = 0;
}

static void
outq_append(outq_t *q, piece_t *pc)
{
    pc->next = NULL;
    pc->off = 0;
    if (q->tail != NULL) {
        q->tail->next = pc;
    } else {
        q->head = pc;
    }
    q->tail = pc;
    q->bytes += pc->len;
}

int
outq_push_ref(outq_t *q, pul_msg_t *owner, const void *p, size_t len)
{
    if (len == 0) {
        return 0;
    }
    piece_t *pc = pool_alloc(q->pool, sizeof *pc);
    if (pc == NULL) {
        return PUL_ENOMEM;
    }
    pc->owner = pul_msg_ref(owner);
    pc->p = p;
    pc->len = len;
    outq_append(q, pc);
    return 0;
}

/* A piece with room for len inline bytes (filled by the caller). */
static piece_t *
outq_inline(outq_t *q, size_t len)
{
    piece_t *pc = pool_alloc(q->pool, sizeof *pc + len);
    if (pc == NULL) {
        return NULL;
    }
    pc->owner = NULL;
    pc->p = pc->inl;
    pc->len = len;
    return pc;
}

int
outq_push_copy(outq_t *q, const void *p, size_t len)
{
    if (len == 0) {
        return 0;
    }
    if (len <= OUTQ_INLINE_MAX) {
        piece_t *pc = outq_inline(q, len);
        if (pc == NULL) {
            return PUL_ENOMEM;
        }
        memcpy(pc->inl, p, len);
        outq_append(q, pc);
        return 0;
    }
    pul_msg_t *m = pul_msg_new("", p, len);
    if (m == NULL) {
        return PUL_ENOMEM;
    }
    const void *d = pul_msg_data(m, &len);
    int rc = outq_push_ref(q, m, d, len);
    pul_msg_unref(m);
    return rc;
}

int
outq_push_msg(outq_t *q, const void *prefix, size_t plen, pul_msg_t *msg)
{
    uint8_t hdr[4 + 8 * (1 + PUL__ENV_MAX_SEGS)];
    long n = pul__env_header_encode(msg, hdr, sizeof hdr);
    if (n < 0) {
        return (int)n;
    }
    size_t len;
    const void *d = pul_msg_data(msg, &len);
    size_t hl = plen + (size_t)n;
    piece_t *old_tail = q->tail;
    size_t old_bytes = q->bytes;
    /* A small payload travels in the same piece as the prefix and header (one allocation). */
    int inl = len <= OUTQ_INLINE_MAX && hl + len <= 2 * OUTQ_INLINE_MAX;
    int rc = 0;
    if (hl + (inl ? len : 0) <= 2 * OUTQ_INLINE_MAX) {
        piece_t *pc = outq_inline(q, hl + (inl ? len : 0));
        if (pc == NULL) {
            return PUL_ENOMEM;
        }
        if (plen > 0) {
            memcpy(pc->inl, prefix, plen);
        }
        memcpy(pc->inl + plen, hdr, (size_t)n);
        if (inl && len > 0) {
            memcpy(pc->inl + hl, d, len);
        }
        outq_append(q, pc);
    } else {
        inl = 0;
        rc = outq_push_copy(q, prefix, plen);
        if (rc == 0) {
            rc = outq_push_copy(q, hdr, (size_t)n);
        }
    }
    if (rc == 0 && !inl) {
        rc = outq_push_ref(q, msg, d, len);
    }
    for (size_t i = 0; rc == 0 && i < pul_msg_nsegments(msg); i++) {
        d = pul_msg_segment(msg, i, &len);
        rc = outq_push_ref(q, msg, d, len);
    }
    if (rc != 0) {
        /* All or nothing: what this call appended goes, the queue is as before. */
        piece_t *p = old_tail != NULL ? old_tail->next : q->head;
        if (old_tail != NULL) {
            old_tail->next = NULL;
        } else {
            q->head = NULL;
        }
        q->tail = old_tail;
        q->bytes = old_bytes;
        while (p != NULL) {
            piece_t *next = p->next;
            piece_free(q, p);
            p = next;
        }
    }
    return rc;
}

void
outq_kick(conn_t *cn, outq_t *q)
{
    if (cn == NULL || cn->dead) {
        return;
    }
    if (q->deferred && q->sid != 0) {
        q->deferred = 0;
        (void)nghttp2_session_resume_data(cn->ses, q->sid);
    }
    conn_flush_later(cn);
}

/* The body's last frame is being produced (frames go to the socket in the order they are
 * produced): later bodies to the same actor may start. */
static void
outq_last(outq_t *q)
{
    void (*fn)(void *) = q->on_last;
    q->on_last = NULL;
    q->may_send = NULL;
    if (fn != NULL) {
        fn(q->order_arg);
    }
}

static ssize_t
outq_read_cb(nghttp2_session *ses, int32_t sid, uint8_t *buf, size_t length,
             uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    outq_t *q = source->ptr;
    piece_t *pc = q->head;
    if (q->may_send != NULL && !q->may_send(q->order_arg)) {
        q->deferred = 1; /* resumed when the earlier body is out */
        return NGHTTP2_ERR_DEFERRED;
    }
    if (pc == NULL) {
        if (q->eof) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
            outq_last(q);
            return 0;
        }
        q->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    /* As many pieces as fit in one frame (conn_send_data_cb walks them): a body of many small
     * pieces (a batch of tells, stream items) is a few frames, not one per piece. */
    size_t n = q->bytes < length ? q->bytes : length;
    *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (q->eof && n == q->bytes) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        outq_last(q);
    }
    return (ssize_t)n;
}

nghttp2_data_provider
outq_provider(outq_t *q)
{
    nghttp2_data_provider p;
    p.source.ptr = q;
    p.read_callback = outq_read_cb;
    return p;
}

/* ---- write batches ------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p; /* NULL: bytes at off in the batch's copy area */
    size_t off;
    size_t len;
} went_t;

typedef struct wbatch_s {
    uv_write_t req;
    struct wbatch_s *next; /* cn->wb_held */
    size_t first;          /* bufs before it were written directly */
    conn_t *cn;
    went_t *ents;
    size_t nents, capents;
    uint8_t *small;
    size_t nsmall, capsmall;
    pul_msg_t **refs;
    size_t nrefs, caprefs;
    uv_buf_t *bufs;
    size_t capbufs;
    size_t bytes;
} wbatch_t;

#define WB_KEEP_MAX (256u * 1024u)

/* Drop the batch's references and forget its contents; its arrays keep their capacity. */
static void
wb_reset(wbatch_t *wb)
{
    for (size_t i = 0; i < wb->nrefs; i++) {
        pul_msg_unref(wb->refs[i]);
    }
    wb->nrefs = 0;
    wb->nents = 0;
    wb->nsmall = 0;
    wb->bytes = 0;
    wb->first = 0;
    wb->next = NULL;
}

static void
wb_free(wbatch_t *wb)
{
    if (wb == NULL) {
        return;
    }
    wb_reset(wb);
    pul__free(wb->refs);
    pul__free(wb->ents);
    pul__free(wb->small);
    pul__free(wb->bufs);
    pul__free(wb);
}

/* A written batch becomes the connection's spare (one fewer set of allocations per flush),
 * unless it grew large (a bulk write) or one is kept already. */
static void
wb_recycle(conn_t *cn, wbatch_t *wb)
{
    wb_reset(wb);
    if (cn->wb_spare == NULL && !cn->dead && wb->capsmall <= WB_KEEP_MAX &&
        wb->capents * sizeof(went_t) <= WB_KEEP_MAX) {
        cn->wb_spare = wb;
        return;
    }
    wb_free(wb);
}

static int
wb_ent(wbatch_t *wb, const uint8_t *p, size_t off, size_t len)
{
    if (p == NULL && wb->nents > 0 && wb->ents[wb->nents - 1].p == NULL) {
        wb->ents[wb->nents - 1].len += len; /* copies are contiguous */
        return 0;
    }
    if (wb->nents == wb->capents) {
        size_t nc = wb->capents ? wb->capents * 2 : 16;
        went_t *ne = pul__realloc(wb->ents, nc * sizeof *ne);
        if (ne == NULL) {
            return PUL_ENOMEM;
        }
        wb->ents = ne;
        wb->capents = nc;
    }
    wb->ents[wb->nents++] = (went_t){p, off, len};
    return 0;
}

static int
wb_copy(wbatch_t *wb, const uint8_t *p, size_t len)
{
    if (wb->nsmall + len > wb->capsmall) {
        size_t nc = wb->capsmall ? wb->capsmall * 2 : 16384;
        while (nc < wb->nsmall + len) {
            nc *= 2;
        }
        uint8_t *ns = pul__realloc(wb->small, nc);
        if (ns == NULL) {
            return PUL_ENOMEM;
        }
        wb->small = ns;
        wb->capsmall = nc;
    }
    int rc = wb_ent(wb, NULL, wb->nsmall, len);
    if (rc != 0) {
        return rc;
    }
    memcpy(wb->small + wb->nsmall, p, len);
    wb->nsmall += len;
    wb->bytes += len;
    return 0;
}

static int
wb_ref(wbatch_t *wb, pul_msg_t *owner, const uint8_t *p, size_t len)
{
    if (wb->nrefs == wb->caprefs) {
        size_t nc = wb->caprefs ? wb->caprefs * 2 : 8;
        pul_msg_t **nr = pul__realloc(wb->refs, nc * sizeof *nr);
        if (nr == NULL) {
            return PUL_ENOMEM;
        }
        wb->refs = nr;
        wb->caprefs = nc;
    }
    int rc = wb_ent(wb, p, 0, len);
    if (rc != 0) {
        return rc;
    }
    wb->refs[wb->nrefs++] = pul_msg_ref(owner);
    wb->bytes += len;
    return 0;
}

/* nghttp2 hands us serialized frames (headers, settings, window updates, frame headers). */
static ssize_t
conn_send_cb(nghttp2_session *ses, const uint8_t *data, size_t length, int flags, void *user_data)
{
    conn_t *cn = user_data;
    if (cn->wb == NULL || wb_copy(cn->wb, data, length) != 0) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return (ssize_t)length;
}

/* A DATA frame whose payload is referenced, not copied: 9 header bytes + the piece's memory. */
static int
conn_send_data_cb(nghttp2_session *ses, nghttp2_frame *frame, const uint8_t *framehd,
                  size_t length, nghttp2_data_source *source, void *user_data)
{
    conn_t *cn = user_data;
    outq_t *q = source->ptr;
    wbatch_t *wb = cn->wb;
    assert(frame->data.padlen == 0);
    if (wb == NULL || wb_copy(wb, framehd, 9) != 0) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    size_t left = length;
    while (left > 0) {
        piece_t *pc = q->head;
        if (pc == NULL) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        size_t k = pc->len - pc->off;
        if (k > left) {
            k = left;
        }
        int rc = pc->owner != NULL ? wb_ref(wb, pc->owner, pc->p + pc->off, k)
                                   : wb_copy(wb, pc->p + pc->off, k);
        if (rc != 0) {
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        pc->off += k;
        left -= k;
        q->bytes -= k;
        if (pc->off == pc->len) {
            q->head = pc->next;
            if (q->head == NULL) {
                q->tail = NULL;
            }
            piece_free(q, pc);
        }
    }
    if (q->on_drain != NULL && q->bytes < NET_OUT_HIGH / 2) {
        q->on_drain(q->drain_arg);
    }
    return 0;
}

/* nghttp2 sends DATA frames of 16 KiB unless told otherwise: as large as the peer accepts (both
 * sides announce 1 MiB) and flow control allows, so a 64 MiB segment goes out as 64 frames, not
 * 4096 (fewer frame headers, callbacks, iovecs and, on the receiver, frames to parse). */
static ssize_t
conn_data_len_cb(nghttp2_session *ses, uint8_t frame_type, int32_t sid, int32_t conn_window,
                 int32_t stream_window, uint32_t remote_max_frame_size, void *user_data)
{
    return remote_max_frame_size < NET_MAX_FRAME ? (ssize_t)remote_max_frame_size
                                                 : (ssize_t)NET_MAX_FRAME;
}

void
conn_callbacks(nghttp2_session_callbacks *cbs)
{
    nghttp2_session_callbacks_set_send_callback(cbs, conn_send_cb);
    nghttp2_session_callbacks_set_send_data_callback(cbs, conn_send_data_cb);
    nghttp2_session_callbacks_set_data_source_read_length_callback(cbs, conn_data_len_cb);
}

/* ---- the plain TCP seam ------------------------------------------------------------------- */

/* One read buffer per transport (one read at a time on its core thread; nghttp2 keeps nothing
 * that points into it), allocated on the first read: NET_READ_BUF bytes, so bulk transfers take
 * a quarter of the syscalls 64 KiB reads did. Failing to allocate it fails the read (ENOBUFS). */
static void
conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *cn = h->data;
    pul__net_t *net = cn->net;
    pul__loop_enter(&net->sys->loop);
    if (net->rbuf == NULL) {
        net->rbuf = pul__malloc(NET_READ_BUF);
    }
    buf->base = net->rbuf;
    buf->len = net->rbuf != NULL ? NET_READ_BUF : 0;
}

static void
tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *cn = s->data;
    pul__loop_enter(&cn->net->sys->loop);
    if (cn->dead) {
        return;
    }
    if (nread < 0) {
        conn_fail(cn, PUL_EIO);
        return;
    }
    if (nread > 0) {
        conn_on_bytes(cn, (const uint8_t *)buf->base, (size_t)nread);
    }
}

static int
tcp_start(conn_t *cn)
{
    return uv_read_start((uv_stream_t *)&cn->tcp, conn_alloc_cb, tcp_read_cb) == 0 ? 0 : PUL_EIO;
}

static int
tcp_write(conn_t *cn, uv_buf_t *bufs, size_t n, uv_write_t *req, uv_write_cb cb)
{
    return uv_write(req, (uv_stream_t *)&cn->tcp, bufs, (unsigned)n, cb) == 0 ? 0 : PUL_EIO;
}

static void conn_close_cb(uv_handle_t *h);

static void
tcp_close(conn_t *cn)
{
    uv_os_fd_t fd;
    if (cn->pumped_ever && uv_fileno((uv_handle_t *)&cn->tcp, &fd) == 0) {
        /* A pumper may hold a duplicate of the descriptor: end the connection for it too (and
         * for the peer, which would not see our close while the duplicate lives). */
        (void)shutdown(fd, SHUT_RDWR);
    }
    uv_close((uv_handle_t *)&cn->tcp, conn_close_cb);
}

static const conn_io_t tcp_io = {tcp_start, tcp_write, tcp_close};

int
conn_is_tcp(const conn_t *cn)
{
    return cn->io == &tcp_io;
}

/* ---- connections -------------------------------------------------------------------------- */

static void conn_flush_task(pul__task_t *t);

conn_t *
conn_new(pul__net_t *net, int kind)
{
    conn_t *cn = pul__calloc(1, sizeof *cn);
    if (cn == NULL) {
        return NULL;
    }
    if (uv_tcp_init(&net->sys->loop.uv, &cn->tcp) != 0) {
        pul__free(cn);
        return NULL;
    }
    cn->tcp.data = cn;
    cn->net = net;
    cn->kind = kind;
    cn->refs = 1; /* the handle's */
    cn->io = &tcp_io;
    cn->flush_task.run = conn_flush_task;
    net->nhandles++;
    cn->next = net->conns;
    if (net->conns != NULL) {
        net->conns->prev = cn;
    }
    net->conns = cn;
    atomic_fetch_add_explicit(&net->connections, 1, memory_order_relaxed);
    return cn;
}

static int
conn_session_setup(conn_t *cn)
{
    nghttp2_settings_entry iv[4] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, NET_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, NET_WINDOW_STREAM},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, NET_MAX_FRAME},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(cn->ses, NGHTTP2_FLAG_NONE, iv, 4) != 0) {
        return PUL_ENOMEM;
    }
    if (nghttp2_session_set_local_window_size(cn->ses, NGHTTP2_FLAG_NONE, 0, NET_WINDOW_CONN) !=
        0) {
        return PUL_ENOMEM;
    }
    return 0;
}

static void conn_connect_timeout(pul__tmr_t *t);

int
conn_start_server(conn_t *cn)
{
    pul__net_t *net = cn->net;
    if (nghttp2_session_server_new3(&cn->ses, net->cbs_server, cn, net->opt, &net->mem) != 0) {
        return PUL_ENOMEM;
    }
    int rc = conn_session_setup(cn);
    if (rc != 0) {
        return rc;
    }
    (void)uv_tcp_nodelay(&cn->tcp, 1); /* small frames must not wait for Nagle */
    if (cn->io->start(cn) != 0) {
        return PUL_EIO;
    }
    cn->connected = 1;
    /* A peer that connects and says nothing must not hold a slot of max_connections: its
     * preface and SETTINGS are due within connect_timeout_ms (disarmed in server.c). */
    uint64_t to = net->sys->cfg.connect_timeout_ms ? net->sys->cfg.connect_timeout_ms : 2000;
    cn->connect_timer.cb = conn_connect_timeout;
    rc = pul__timer_arm(&net->sys->loop, &cn->connect_timer, pul__now_ms() + to);
    if (rc != 0) {
        return rc;
    }
    conn_flush_later(cn);
    return 0;
}

static void
conn_connect_timeout(pul__tmr_t *t)
{
    conn_t *cn = (conn_t *)((char *)t - offsetof(conn_t, connect_timer));
    conn_fail(cn, PUL_ETIMEDOUT);
}

static void
conn_connect_cb(uv_connect_t *req, int status)
{
    conn_t *cn = req->data;
    pul__loop_enter(&cn->net->sys->loop);
    if (cn->dead) {
        return;
    }
    pul__timer_disarm(&cn->net->sys->loop, &cn->connect_timer);
    if (status != 0) {
        conn_fail(cn, PUL_EIO);
        return;
    }
    (void)uv_tcp_nodelay(&cn->tcp, 1);
    if (cn->io->start(cn) != 0) {
        conn_fail(cn, PUL_EIO);
        return;
    }
    cn->connected = 1;
    if (cn->peer != NULL) {
        cn->peer->backoff[cn->kind] = 0;
    }
    conn_flush(cn);
}

int
conn_dial(conn_t *cn, const struct sockaddr *sa)
{
    pul__net_t *net = cn->net;
    if (nghttp2_session_client_new3(&cn->ses, net->cbs_client, cn, net->opt, &net->mem) != 0) {
        return PUL_ENOMEM;
    }
    int rc = conn_session_setup(cn);
    if (rc != 0) {
        return rc;
    }
    uint64_t to = net->sys->cfg.connect_timeout_ms ? net->sys->cfg.connect_timeout_ms : 2000;
    cn->connect_timer.cb = conn_connect_timeout;
    rc = pul__timer_arm(&net->sys->loop, &cn->connect_timer, pul__now_ms() + to);
    if (rc != 0 || sa == NULL) {
        return rc;
    }
    return conn_connect(cn, sa);
}

int
conn_connect(conn_t *cn, const struct sockaddr *sa)
{
    cn->connect_req.data = cn;
    return uv_tcp_connect(&cn->connect_req, &cn->tcp, sa, conn_connect_cb) != 0 ? PUL_EIO : 0;
}

void
conn_unref(conn_t *cn)
{
    if (cn == NULL || --cn->refs > 0) {
        return;
    }
    client_conn_free(cn);
    server_conn_free(cn);
    if (cn->ses != NULL) {
        nghttp2_session_del(cn->ses);
    }
    while (cn->wb_held != NULL) {
        wbatch_t *wb = cn->wb_held;
        cn->wb_held = wb->next;
        wb_free(wb);
    }
    wb_free(cn->wb_spare);
    pul__free(cn);
}

static void
conn_close_cb(uv_handle_t *h)
{
    conn_t *cn = h->data;
    pul__net_t *net = cn->net;
    if (cn->prev != NULL) {
        cn->prev->next = cn->next;
    } else {
        net->conns = cn->next;
    }
    if (cn->next != NULL) {
        cn->next->prev = cn->prev;
    }
    conn_unref(cn);
    net_handle_closed(net);
}

static void
conn_fail_task(pul__task_t *t)
{
    conn_t *cn = (conn_t *)((char *)t - offsetof(conn_t, fail_task));
    conn_fail(cn, cn->fail_owed);
    conn_unref(cn);
}

void
conn_fail(conn_t *cn, int status)
{
    if (cn->dead) {
        return;
    }
    pul__net_t *net = cn->net;
    if (pul__loop_borrowed(&net->sys->loop)) {
        /* Not here: failing answers every caller of the connection (callbacks must not run
         * inside the call that borrowed the loop) and closes the handle (libuv). */
        if (cn->fail_owed == 0) {
            cn->fail_owed = status != 0 ? status : PUL_EIO;
            cn->refs++;
            cn->fail_task.run = conn_fail_task;
            pul__loop_defer(&net->sys->loop, &cn->fail_task);
        }
        return;
    }
    cn->dead = 1;
    pul__timer_disarm(&net->sys->loop, &cn->connect_timer);
    if (cn->peer != NULL) {
        peer_t *p = cn->peer;
        if (p->conn[cn->kind] == cn) {
            p->conn[cn->kind] = NULL;
        }
        /* Re-dial on the next use, not before the backoff has passed. */
        uint64_t b = p->backoff[cn->kind];
        b = b == 0 ? NET_BACKOFF_MIN : (b * 2 > NET_BACKOFF_MAX ? NET_BACKOFF_MAX : b * 2);
        if (status == PUL_ECLOSED) {
            b = 0;
        }
        p->backoff[cn->kind] = b;
        p->retry_at[cn->kind] = pul__now_ms() + b;
        cn->peer = NULL;
    }
    if (cn->kind == CONN_SERVER) {
        net->ninbound--;
    }
    atomic_fetch_sub_explicit(&net->connections, 1, memory_order_relaxed);
    pump_conn_gone(net, cn);
    client_conn_lost(cn, status);
    server_conn_lost(cn);
    cn->io->close(cn);
}

static void
conn_write_cb(uv_write_t *req, int status)
{
    wbatch_t *wb = req->data;
    conn_t *cn = wb->cn;
    pul__loop_enter(&cn->net->sys->loop);
    cn->wbytes -= wb->bytes;
    cn->nwrites--;
    wb_recycle(cn, wb);
    if (cn->dead) {
        return;
    }
    if (status != 0) {
        conn_fail(cn, PUL_EIO);
        return;
    }
    if (cn->closing_after_write && cn->nwrites == 0) {
        conn_fail(cn, PUL_EPROTO);
        return;
    }
    conn_flush(cn);
}

/* Schedule conn_flush on the core thread (from a borrower too: the loop is woken). */
static void
conn_flush_core(conn_t *cn)
{
    if (cn->dead || cn->flush_scheduled || cn->net->closing) {
        return;
    }
    cn->flush_scheduled = 1;
    cn->refs++;
    pul__loop_defer(&cn->net->sys->loop, &cn->flush_task);
}

int
conn_direct_ok(const conn_t *cn)
{
    return cn != NULL && !cn->dead && cn->connected && !cn->fail_owed &&
           !cn->closing_after_write && !cn->flush_scheduled && cn->nwrites == 0 &&
           cn->wb_held == NULL && cn->tb == NULL && cn->io == &tcp_io;
}

/* A borrower's write: as much of wb as the socket takes now, with a raw non-blocking sendmsg
 * (no libuv off its thread; MSG_NOSIGNAL because the calling thread may not block SIGPIPE). The
 * rest, or the whole batch when libuv still has writes queued or on any error, is handed to the
 * core thread (cn->wb_held, then its uv_write reports errors the usual way). */
static void
conn_write_direct(conn_t *cn, wbatch_t *wb)
{
    size_t done = 0;
    uv_os_fd_t fd;
    if (conn_direct_ok(cn) && uv_fileno((uv_handle_t *)&cn->tcp, &fd) == 0) {
        struct msghdr mh;
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = (struct iovec *)wb->bufs; /* uv_buf_t is laid out as iovec on Unix */
        mh.msg_iovlen = wb->nents > IOV_MAX ? IOV_MAX : wb->nents;
        ssize_t w;
        do {
            w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (w < 0 && errno == EINTR);
        if (w > 0) {
            done = (size_t)w;
        }
    }
    atomic_fetch_add_explicit(&cn->net->bytes_out, wb->bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&cn->net->direct_writes, 1, memory_order_relaxed);
    if (done == wb->bytes) {
        wb_recycle(cn, wb);
        return;
    }
    atomic_fetch_add_explicit(&cn->net->direct_held, 1, memory_order_relaxed);
    size_t i = 0, left = done;
    while (i < wb->nents && left >= wb->bufs[i].len) {
        left -= wb->bufs[i].len;
        i++;
    }
    if (left > 0) {
        wb->bufs[i].base += left;
        wb->bufs[i].len -= left;
    }
    wb->first = i;
    wb->bytes -= done;
    wb->next = NULL;
    wbatch_t **pp = (wbatch_t **)&cn->wb_held;
    while (*pp != NULL) {
        pp = &(*pp)->next;
    }
    *pp = wb;
    cn->wbytes += wb->bytes;
    cn->nwrites++;
    conn_flush_core(cn);
}

/* Core thread: give libuv the batches a borrower could not write, oldest first. 0 or PUL_EIO
 * (cn failed). */
static int
conn_write_held(conn_t *cn)
{
    while (cn->wb_held != NULL) {
        wbatch_t *wb = cn->wb_held;
        cn->wb_held = wb->next;
        wb->next = NULL;
        if (cn->io->write(cn, wb->bufs + wb->first, wb->nents - wb->first, &wb->req,
                          conn_write_cb) != 0) {
            cn->wbytes -= wb->bytes;
            cn->nwrites--;
            wb_free(wb);
            conn_fail(cn, PUL_EIO);
            return PUL_EIO;
        }
    }
    return 0;
}

void
conn_flush(conn_t *cn)
{
    if (cn->tb != NULL && !cn->dead) {
        client_tells_submit(cn); /* queued in the session even before the connect completes */
    }
    if (cn->dead || cn->fail_owed || !cn->connected || cn->closing_after_write == 2) {
        return;
    }
    int borrowed = pul__loop_borrowed(&cn->net->sys->loop);
    if (!borrowed && cn->wb_held != NULL && conn_write_held(cn) != 0) {
        return;
    }
    if (cn->wbytes >= NET_WRITE_HIGH) {
        return; /* the write callback flushes again */
    }
    wbatch_t *wb = cn->wb_spare;
    if (wb != NULL) {
        cn->wb_spare = NULL;
    } else {
        wb = pul__calloc(1, sizeof *wb);
        if (wb == NULL) {
            conn_fail(cn, PUL_ENOMEM);
            return;
        }
    }
    wb->cn = cn;
    cn->wb = wb;
    int rv = nghttp2_session_send(cn->ses);
    cn->wb = NULL;
    if (rv != 0) {
        wb_free(wb);
        conn_fail(cn, PUL_EIO);
        return;
    }
    if (wb->nents > 0) {
        if (wb->nents > wb->capbufs) {
            uv_buf_t *nb = pul__realloc(wb->bufs, wb->capents * sizeof *nb);
            if (nb == NULL) {
                wb_free(wb);
                conn_fail(cn, PUL_ENOMEM);
                return;
            }
            wb->bufs = nb;
            wb->capbufs = wb->capents;
        }
        for (size_t i = 0; i < wb->nents; i++) {
            const went_t *e = &wb->ents[i];
            const uint8_t *p = e->p != NULL ? e->p : wb->small + e->off;
            wb->bufs[i] = uv_buf_init((char *)p, (unsigned)e->len);
        }
        wb->req.data = wb;
        wb->first = 0;
        if (borrowed) {
            conn_write_direct(cn, wb);
        } else {
            size_t bytes = wb->bytes;
            if (cn->io->write(cn, wb->bufs, wb->nents, &wb->req, conn_write_cb) != 0) {
                wb_free(wb);
                conn_fail(cn, PUL_EIO);
                return;
            }
            cn->wbytes += bytes;
            cn->nwrites++;
            atomic_fetch_add_explicit(&cn->net->bytes_out, bytes, memory_order_relaxed);
        }
    } else {
        wb_recycle(cn, wb);
    }
    if (!nghttp2_session_want_read(cn->ses) && !nghttp2_session_want_write(cn->ses)) {
        if (borrowed) {
            conn_flush_core(cn); /* the core thread decides (it may close the handle) */
        } else if (cn->nwrites == 0) {
            conn_fail(cn, PUL_EIO);
        } else {
            cn->closing_after_write = 1;
        }
    }
}

static void
conn_flush_task(pul__task_t *t)
{
    conn_t *cn = (conn_t *)((char *)t - offsetof(conn_t, flush_task));
    cn->flush_scheduled = 0;
    if (!cn->dead) {
        conn_flush(cn);
    }
    conn_unref(cn);
}

void
conn_flush_later(conn_t *cn)
{
    pul__net_t *net = cn->net;
    if (!cn->dead && !cn->flush_scheduled && !net->closing &&
        pul__loop_borrowed(&net->sys->loop) && (net->direct == NULL || net->direct == cn)) {
        net->direct = cn; /* written by net_direct_flush before the borrower lets go */
        return;
    }
    conn_flush_core(cn);
}

void
net_direct_flush(pul__net_t *net)
{
    /* Twice at most: frames submitted by callbacks of the first send go out in the second;
     * anything after that is left to the core thread. */
    for (int round = 0; round < 2 && net->direct != NULL; round++) {
        conn_t *cn = net->direct;
        net->direct = NULL;
        conn_flush(cn);
    }
    if (net->direct != NULL) {
        conn_t *cn = net->direct;
        net->direct = NULL;
        conn_flush_core(cn);
    }
}

void
conn_on_bytes(conn_t *cn, const uint8_t *p, size_t n)
{
    atomic_fetch_add_explicit(&cn->net->bytes_in, n, memory_order_relaxed);
    ssize_t rv = nghttp2_session_mem_recv(cn->ses, p, n);
    if (cn->dead) {
        return;
    }
    if (rv < 0) {
        /* A peer that violates HTTP/2 (garbage instead of the preface, bad frames): GOAWAY with
         * PROTOCOL_ERROR, then close this connection only. */
        PUL__LOG(PUL__LOG_DEBUG, "net", "protocol error from peer: %s",
                 nghttp2_strerror((int)rv));
        atomic_fetch_add_explicit(&cn->net->errors, 1, memory_order_relaxed);
        if (pul__loop_borrowed(&cn->net->sys->loop)) {
            conn_fail(cn, PUL_EPROTO); /* a pumper (no libuv here): the core thread closes it */
            return;
        }
        uv_read_stop((uv_stream_t *)&cn->tcp);
        (void)nghttp2_session_terminate_session(cn->ses, NGHTTP2_PROTOCOL_ERROR);
        conn_flush(cn);
        if (cn->dead) {
            return;
        }
        cn->closing_after_write = 2;
        if (cn->nwrites == 0) {
            conn_fail(cn, PUL_EPROTO);
        }
        return;
    }
    conn_flush(cn);
}
