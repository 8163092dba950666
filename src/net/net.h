/* net.h — the transport: one listener, HTTP/2 (nghttp2) sessions over libuv TCP, actor calls to
 * and from other nodes, the control plane and the REST endpoints. Core thread only unless said.
 * The protocol is docs/design/wire-protocol.md. */
#ifndef PUL_NET_NET_H
#define PUL_NET_NET_H

#include <stddef.h>
#include <stdint.h>

#include "pulsing/pulsing.h"

typedef struct pul__net_s pul__net_t;

/* Create the transport of sys and bind cfg->listen_addr (when set). Runs on the core thread
 * during system start; fills *out_addr (the advertised address, NUL-terminated). A system
 * without listen_addr still gets a transport (it can call other nodes) but opens no port.
 * Returns 0, PUL_EADDR (bind/resolve failed), PUL_ENOMEM. */
int pul__net_start(pul_system_t *sys, char out_addr[PUL_ADDR_MAX + 1], pul__net_t **out);
/* Begin shutdown: stop accepting, fail every outgoing call with PUL_ECLOSED, answer incoming ones
 * with 503, close every connection. Frees everything once libuv has closed the handles (the
 * system's loop runs until then). */
void pul__net_close(pul__net_t *net);

/* ---- calls from the actor layer (src/actor/call.c) ---- */

/* Nonzero when an actor id belongs to another node (its prefix differs from ours). */
int pul__net_is_remote(pul_system_t *sys, pul_id_t target);
/* Take over an ask or stream whose target is remote (c->target, c->msg, c->stream_mode, c->due
 * set; the call layer already holds it pending with its deadline armed). On success the
 * transport holds a reference on c and sets c->net_op; c->msg stays the call's (the request body
 * references its memory, no copy). Completion goes through pul__call_complete (items of a stream
 * straight to c->cb, as stream_task does). Returns 0, or a PUL_E code with which the call layer
 * fails the call: PUL_ENOTFOUND (no route to the node), PUL_EIO (cannot dial, or in backoff
 * after a failure), PUL_ETOOBIG (over max_message_size or 1024 segments), PUL_EINVAL (type over
 * 255 bytes), PUL_ENOMEM, PUL_ECLOSED. Core thread. */
int pul__net_call(pul__net_t *net, pul_call_t *c);
/* Same for a named ask to node_id (name normalized). */
int pul__net_call_named(pul__net_t *net, pul_call_t *c, pul_id_t node_id, const char *name);
/* The call layer gave up on c (cancel, deadline, shutdown): reset its HTTP/2 stream, drop the
 * transport's reference and clear c->net_op. pul__call_complete calls it for every call with
 * c->net_op set, so the transport clears c->net_op before completing a call itself. Core
 * thread. */
void pul__net_cancel(pul__net_t *net, pul_call_t *c);
/* A paused remote stream call (c->paused was set, so its client stream kept the HTTP/2 window of
 * the bytes it took) resumes: the held window goes back to the server. Core thread. */
void pul__net_resume(pul__net_t *net, pul_call_t *c);
/* Direct writes from a thread borrowing the system's loop (pul__loop_borrow; see
 * docs/design/threads.md). pul__net_direct_call_ok: nonzero when c (remote, not yet accepted)
 * would go out on a data connection that is open, idle (no other call on it) and has nothing
 * queued in libuv, so that accepting it in the borrower and pul__net_direct_flush write the
 * request at once. pul__net_direct_reply_ok: nonzero when c is the local call of a remote ask
 * whose connection is in the same state, so completing c in the borrower writes the response.
 * pul__net_direct_flush: write what the borrower submitted (before pul__loop_unborrow). All
 * three only while borrowing; net may be NULL (then 0 / nothing). */
int pul__net_direct_call_ok(pul__net_t *net, pul_call_t *c);
int pul__net_direct_reply_ok(pul__net_t *net, pul_call_t *c);
void pul__net_direct_flush(pul__net_t *net);
/* A mailbox that refused a tell of the core thread has room again: the tells the transport
 * holds for full mailboxes are retried on the next turn (not only on their 5 ms tick). Core
 * thread. net may be NULL. */
void pul__net_room(pul__net_t *net);
/* Nonzero when a route to target's node is known (so a remote tell can fail at once with
 * PUL_ENOTFOUND). Any thread (routes are under a mutex). net may be NULL. */
int pul__net_has_route(pul__net_t *net, pul_id_t target);
/* A remote tell: takes msg on success (answered 202 by the peer; a failure after that is only
 * counted in the metrics). Returns 0, PUL_ENOTFOUND, PUL_EIO, PUL_ETOOBIG, PUL_ENOMEM,
 * PUL_ECLOSED. Core thread. */
int pul__net_tell(pul__net_t *net, pul_id_t target, pul_msg_t *msg);

/* ---- routes, kept current by the cluster layer ---- */

/* Where node `node_id` listens. Replaces an older address. */
int pul__net_route_set(pul__net_t *net, pul_id_t node_id, const char *addr);
/* The node is Dead or Left: fail its calls in flight with PUL_EIO, forget its route and close
 * its connections. */
void pul__net_route_drop(pul__net_t *net, pul_id_t node_id);

/* ---- control plane (src/cluster/) ---- */

/* Response of a control POST: status is the HTTP status (>= 100) or a negative PUL_E code for a
 * transport failure (PUL_EIO connect refused/reset, PUL_ETIMEDOUT). body is valid during cb. */
typedef void (*pul__net_resp_cb)(int status, const uint8_t *body, size_t len, void *arg);
/* POST body to http://addr/path over the control connection to addr (opened on demand). The body
 * is copied. cb runs exactly once, never inside this call. Returns 0 or PUL_ENOMEM/PUL_ECLOSED. */
int pul__net_post(pul__net_t *net, const char *addr, const char *path, const uint8_t *body,
                  size_t len, uint64_t timeout_ms, pul__net_resp_cb cb, void *arg);

/* GET http://addr/path over the same control connection (no request body), for the REST
 * endpoints. Same contract as pul__net_post: cb runs exactly once, never inside this call.
 * Returns 0 or PUL_ENOMEM/PUL_ECLOSED. Core thread. */
int pul__net_get(pul__net_t *net, const char *addr, const char *path, uint64_t timeout_ms,
                 pul__net_resp_cb cb, void *arg);

/* A handler for POST requests under a path prefix ("/cluster/", "/head/"). It gets the whole
 * body and answers synchronously: returns the HTTP status and may set *resp (allocated with
 * pul__malloc, freed by the transport) and *resp_len. */
typedef int (*pul__net_handler_fn)(void *arg, const char *path, const uint8_t *body, size_t len,
                                   uint8_t **resp, size_t *resp_len);
int pul__net_handle(pul__net_t *net, const char *prefix, pul__net_handler_fn fn, void *arg);

/* ---- metrics (any thread; relaxed atomics) ---- */
typedef struct {
    uint64_t msgs_in, msgs_out, errors, bytes_in, bytes_out, connections;
    /* write batches a borrowing thread sent itself, and those of them it handed to the core
     * thread (not written whole at once) */
    uint64_t direct_writes, direct_held;
    uint64_t pumped; /* socket reads done by a pumper (pul_pump) */
} pul__net_stats_t;
void pul__net_stats(pul__net_t *net, pul__net_stats_t *out);

#endif
