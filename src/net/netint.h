/* netint.h — internals shared by the files of src/net: connections, outgoing bodies, peers,
 * client calls, server streams. Core thread only (a thread borrowing the loop counts as it:
 * pul__loop_borrow; such a thread never calls libuv, see conn_flush and conn_fail). */
#ifndef PUL_NET_NETINT_H
#define PUL_NET_NETINT_H

#include <nghttp2/nghttp2.h>
#include <stdatomic.h>
#include <uv.h>

#include "actor/actor.h"
#include "core/loop.h"
#include "net/net.h"
#include "wire/envelope.h"

#define NET_WINDOW_STREAM (16u << 20)
#define NET_WINDOW_CONN (64u << 20)
#define NET_MAX_FRAME (1u << 20)
#define NET_MAX_STREAMS 4096
#define NET_OUT_HIGH (1u << 20)   /* a stream response pauses its producer above this */
#define NET_WRITE_HIGH (8u << 20) /* bytes handed to the socket and not yet written */
#define NET_HDR_MAX (64u * 1024u) /* header bytes per stream */
#define NET_READ_BUF (256u * 1024u) /* one socket read */
#define NET_BACKOFF_MIN 50
#define NET_BACKOFF_MAX 2000
#define NET_HIST_N 12
#define NET_RST_MAX 1000 /* peer resets per second before GOAWAY (rapid reset) */

typedef struct conn_s conn_t;

/* ---- pool.c: a small-block cache (core thread only) ---- */
#define POOL_GRAIN 64
#define POOL_NCLASS 32                /* blocks up to 2 KiB, header included */
#define POOL_KEEP_BYTES (4u << 20)    /* free bytes kept; more go back to malloc */

typedef struct {
    void *head[POOL_NCLASS];
    unsigned n[POOL_NCLASS];
    size_t bytes;
} pool_t;

/* Blocks of any size (past 2 KiB straight from pul__malloc); NULL on failure. */
void *pool_alloc(pool_t *p, size_t n);
void *pool_calloc(pool_t *p, size_t n);
void *pool_realloc(pool_t *p, void *ptr, size_t n);
void pool_free(pool_t *p, void *ptr); /* accepts NULL */
/* Give every cached block back (the transport is being freed). */
void pool_drain(pool_t *p);
/* An nghttp2 allocator drawing from p. */
nghttp2_mem pool_nghttp2_mem(pool_t *p);

/* ---- outgoing bodies: a queue of pieces, each kept alive by a message reference ---- */
typedef struct piece_s {
    struct piece_s *next;
    pul_msg_t *owner; /* NULL: the bytes are inline (a small copy), in inl */
    const uint8_t *p;
    size_t len;
    size_t off;
    uint8_t inl[];
} piece_t;

/* Bytes copied into a piece rather than referenced: below this, a copy is cheaper than a
 * message reference, and the write batch copies them again (it does not keep the piece). */
#define OUTQ_INLINE_MAX 512

typedef struct {
    pool_t *pool;
    piece_t *head;
    piece_t *tail;
    size_t bytes;   /* queued and not yet handed to the socket */
    int eof;        /* nothing more will be appended */
    int deferred;   /* the data provider said DEFERRED: resume on push */
    int32_t sid;    /* the stream it feeds (0 until submitted) */
    void (*on_drain)(void *arg); /* called when bytes fall under NET_OUT_HIGH / 2 */
    void *drain_arg;
    /* Ordering (client requests, client.c): may_send says whether the body may start now (else
     * the provider defers until resumed); on_last runs once, when its last frame is produced. */
    int (*may_send)(void *arg);
    void (*on_last)(void *arg);
    void *order_arg;
} outq_t;

void outq_init(outq_t *q, pool_t *pool);
void outq_free(outq_t *q);
/* Append len bytes of owner's memory (a reference is taken). 0 or PUL_ENOMEM. */
int outq_push_ref(outq_t *q, pul_msg_t *owner, const void *p, size_t len);
/* Append a copy of len bytes. */
int outq_push_copy(outq_t *q, const void *p, size_t len);
/* Append plen bytes of prefix (copied; may be 0) then msg's encoding: header (copied), payload
 * (copied when small, referenced otherwise) and segments (referenced). All or nothing: on
 * failure the queue is as it was. */
int outq_push_msg(outq_t *q, const void *prefix, size_t plen, pul_msg_t *msg);
/* The queue got bytes or eof: wake the stream's data provider and schedule a flush. */
void outq_kick(conn_t *cn, outq_t *q);
nghttp2_data_provider outq_provider(outq_t *q);

/* ---- connections ---- */
enum { CONN_SERVER, CONN_DATA, CONN_CTRL };

/* The socket seam (TLS later): everything conn.c does with bytes goes through it. */
typedef struct {
    int (*start)(conn_t *cn);                          /* begin reading */
    int (*write)(conn_t *cn, uv_buf_t *bufs, size_t n, uv_write_t *req, uv_write_cb cb);
    void (*close)(conn_t *cn);
} conn_io_t;

typedef struct peer_s peer_t;
typedef struct rcall_s rcall_t;
typedef struct sst_s sst_t;

struct conn_s {
    pul__net_t *net;
    int kind;
    int refs;
    int dead;       /* failed/closed: no more I/O, streams already failed */
    int connected;
    int closing_after_write;
    const conn_io_t *io;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    pul__tmr_t connect_timer;
    nghttp2_session *ses;
    peer_t *peer;
    conn_t *prev; /* net->conns */
    conn_t *next;
    rcall_t *calls; /* client streams */
    sst_t *ssts;    /* server streams */
    size_t wbytes;  /* handed to the socket, not yet written */
    int nwrites;
    int flush_scheduled;
    pul__task_t flush_task;
    uint64_t rst_window_ms; /* rapid-reset accounting (server) */
    unsigned rst_count;
    int32_t hsid;   /* the stream whose headers are being read, and its user data: one */
    void *hdata;    /* lookup per header block instead of one per header (0: none) */
    void *wb;       /* the write batch being filled by nghttp2_session_send */
    void *wb_spare; /* a written batch kept for the next flush */
    /* Direct writes (a thread borrowing the loop, conn_flush): a batch the borrower could not
     * write whole waits here for the core thread's uv_write, which takes it before anything
     * newer, so bytes keep their order. Counted in nwrites/wbytes from the hand-off on. */
    void *wb_held;
    int fail_owed;  /* conn_fail asked by a borrower: fail_task runs it on the core thread */
    pul__task_t fail_task;
    /* Tells to one actor made in a row are sent as one request ("tells" mode, client.c): the
     * batch being filled, not yet submitted; submitted by the next flush or before any other
     * request on this connection, so nothing overtakes it. */
    rcall_t *tb;
    pul_id_t tb_target;
    unsigned tb_n;
    size_t tb_bytes;
    /* Requests to an actor whose body is not all produced yet, by actor (client.c): a body
     * starts only once the earlier ones to the same actor are out, so nghttp2 never interleaves
     * them and the node receives them in the order they were made. Allocated on first use. */
    struct obucket_s *ob;
    /* Pump (pump.c): 1 while a thread that made a lone ask reads this connection itself (the
     * core thread still reading until pump_claim_task stops it), 2 once the core stopped. */
    int pump;
    int pumped_ever; /* closed with shutdown(): the pumper's duplicate descriptor sees EOF */
};

/* The user data of stream sid, through the one-entry cache (hsid, hdata) that stream close and
 * begin-headers keep true. Core thread. */
static inline void *
conn_stream_data(conn_t *cn, int32_t sid)
{
    if (sid != cn->hsid || sid == 0) {
        cn->hdata = nghttp2_session_get_stream_user_data(cn->ses, sid);
        cn->hsid = sid;
    }
    return cn->hdata;
}

/* Install the write-side callbacks (send, send_data) shared by both session kinds. */
void conn_callbacks(nghttp2_session_callbacks *cbs);
conn_t *conn_new(pul__net_t *net, int kind);
/* Accepted socket (tcp already accepted into cn->tcp): start the server session. */
int conn_start_server(conn_t *cn);
/* Dial a client connection to sa: the session (requests queue until connected), the connect
 * timeout, the TCP connect. sa NULL: all but the connect, for conn_connect once the address is
 * known (net_dial). */
int conn_dial(conn_t *cn, const struct sockaddr *sa);
int conn_connect(conn_t *cn, const struct sockaddr *sa);
/* Schedule a flush on the next turn; from a thread borrowing the loop, note cn for
 * net_direct_flush instead (the borrower writes before it lets go of the loop). */
void conn_flush_later(conn_t *cn);
/* Hand nghttp2's pending frames to the socket. On the core thread through uv_write; from a
 * thread borrowing the loop with a raw non-blocking sendmsg when nothing is queued in libuv,
 * the rest (EAGAIN, a partial write, an error) handed to the core thread as a held batch. */
void conn_flush(conn_t *cn);
/* May a borrower write on cn now: connected, healthy, plain TCP, nothing in libuv's queue. */
int conn_direct_ok(const conn_t *cn);
/* Borrower: flush the connection noted by conn_flush_later (if any). */
void net_direct_flush(pul__net_t *net);
/* Fail every stream (status for client calls), close the socket, free on close. */
void conn_fail(conn_t *cn, int status);
/* Feed n bytes read from cn's socket to its session (core thread or a borrower). */
void conn_on_bytes(conn_t *cn, const uint8_t *p, size_t n);
/* Is cn on the plain TCP seam (the pump reads its socket itself)? */
int conn_is_tcp(const conn_t *cn);
/* pump.c: cn fails or the transport closes: the pumping of cn (if any) ends. Core thread. */
void pump_conn_gone(pul__net_t *net, conn_t *cn);
/* pump.c: a request was written on cn by a borrower: offer cn to a pumper. */
void pump_offer(pul__net_t *net, conn_t *cn);
/* pump.c: the transport closes: no pumping from now on. Core thread. */
void pump_net_close(pul__net_t *net);
void conn_unref(conn_t *cn);

/* ---- peers and routes ---- */
struct peer_s {
    peer_t *next;
    char addr[PUL_ADDR_MAX + 1];
    struct sockaddr_storage sa;
    int resolved;
    int resolve_err;          /* the last lookup failed with it (logged once, not per retry) */
    conn_t *conn[3];          /* CONN_DATA, CONN_CTRL */
    uint64_t backoff[3];
    uint64_t retry_at[3];
};

typedef struct {
    pul_id_t node;
    char addr[PUL_ADDR_MAX + 1];
} route_t;

typedef struct handler_s {
    struct handler_s *next;
    char *prefix;
    pul__net_handler_fn fn;
    void *arg;
} handler_t;

struct pul__net_s {
    pul_system_t *sys;
    int closing;
    int listening;
    uv_tcp_t listener;
    uv_timer_t keep; /* never started; its close frees the transport */
    int keep_init;
    size_t nhandles; /* libuv handles not yet closed (listener, sockets) */
    conn_t *conns;
    size_t ninbound;
    peer_t *peers;
    pthread_mutex_t rmu; /* routes: read from any thread by pul_tell */
    route_t *routes;
    size_t nroutes;
    size_t caproutes;
    handler_t *handlers;
    struct sst_s *held_head; /* tells waiting for mailbox room (server.c) */
    struct sst_s *held_tail;
    pul__tmr_t tell_timer;
    nghttp2_session_callbacks *cbs_server;
    nghttp2_session_callbacks *cbs_client;
    nghttp2_option *opt;
    pool_t pool;      /* per-message allocations of the transport, nghttp2's included */
    nghttp2_mem mem;  /* nghttp2's allocator: the pool */
    char from[33];    /* our node id in hex (pul-from), formatted on first use */
    char *rbuf;       /* the read buffer (NET_READ_BUF), allocated on the first read */
    pul_id_t path_id; /* client.c: the last actor path formatted, and its target */
    char path[48];
    uint64_t start_ms;
    conn_t *direct;   /* borrower: the connection to flush before letting go of the loop */
    /* Pump (pump.c; core-thread state unless said otherwise) */
    conn_t *pump_offer;          /* the data connection of the last directly written ask */
    atomic_int pump_offered;     /* pump_offer is set: any thread may read it */
    conn_t *pump_cn;             /* the connection being pumped (a reference) */
    atomic_ullong pump_gen;      /* the token of the current pumping; moves when it ends */
    unsigned long long pump_reads, pump_seen_reads;
    int pump_seen_pending;
    unsigned pump_idle_ticks;
    pul__tmr_t pump_timer; /* the claim (due at once), then the watchdog */
    /* metrics (relaxed atomics) */
    atomic_ullong msgs_in, msgs_out, errors, bytes_in, bytes_out, connections;
    atomic_ullong direct_writes, direct_held, pumped;
    atomic_ullong hist[NET_HIST_N + 1];
    atomic_ullong hist_sum_us, hist_count;
};

/* Parse "host:port" / "[v6]:port", resolving a host name with a blocking lookup: for the bind
 * address at start only. 0 or PUL_EADDR. */
int net_parse_addr(const char *addr, struct sockaddr_storage *out);
/* Dial cn (new, its peer p set) to p's address. An IP address, or a name resolved before, is
 * dialled at once; a host name is looked up with uv_getaddrinfo (libuv's thread pool, never the
 * core thread) while the session already takes requests, and dialled when the answer comes; a
 * lookup that fails fails the connection (PUL_EIO, the peer's backoff applies) and is logged
 * with the name and the reason. The connect timeout covers the lookup. Core thread. Returns 0,
 * or PUL_EIO/PUL_ENOMEM (the caller fails cn). */
int net_dial(conn_t *cn, peer_t *p);
void net_handle_closed(pul__net_t *net);
void net_observe_duration(pul__net_t *net, uint64_t us);
/* Upper bound (µs) of histogram bucket i < NET_HIST_N. */
uint64_t net_hist_bound_us(size_t i);

/* client.c */
void client_callbacks(nghttp2_session_callbacks *cbs);
/* A connection is gone: fail its client calls with status. */
void client_conn_lost(conn_t *cn, int status);
/* Free the call records of a connection being freed. */
void client_conn_free(conn_t *cn);
/* Submit the batch of tells being filled on cn (if any): conn_flush calls it first. */
void client_tells_submit(conn_t *cn);

/* server.c */
void server_callbacks(nghttp2_session_callbacks *cbs);
void server_conn_lost(conn_t *cn);
void server_conn_free(conn_t *cn);
/* Shutdown: drop the tells still waiting for mailbox room. */
void server_net_close(pul__net_t *net);
/* rest.c: answer GET path; returns the HTTP status and a body message (content type set). */
int rest_get(pul__net_t *net, const char *path, pul_msg_t **body, const char **ctype);

#endif
