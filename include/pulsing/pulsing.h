/* pulsing.h — the public C API of libpulsing: systems, actors, messages, calls, streams. */
#ifndef PULSING_PULSING_H
#define PULSING_PULSING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(PUL_BUILDING_LIBRARY)
#define PUL_EXTERN __attribute__((visibility("default")))
#else
#define PUL_EXTERN
#endif

/* ------------------------------------------------------------------------------------------ */
/* Errors. Every function returns 0 or a negative PUL_E* code.                                */
/* ------------------------------------------------------------------------------------------ */

#define PUL_ERRNO_MAP(X)                                                                  \
    X(EINVAL, -1, "invalid argument")                                                    \
    X(ENOMEM, -2, "out of memory")                                                       \
    X(ENOTFOUND, -3, "actor not found")                                                  \
    X(EEXIST, -4, "name already registered")                                             \
    X(ENAME, -5, "invalid actor name")                                                   \
    X(ECLOSED, -6, "system or stream closed")                                            \
    X(ESTOPPED, -7, "actor stopped")                                                     \
    X(ETIMEDOUT, -8, "deadline exceeded")                                                \
    X(ECANCELED, -9, "operation canceled")                                               \
    X(EFULL, -10, "mailbox or stream window full")                                       \
    X(EACTOR, -11, "actor replied with an error")                                        \
    X(ETOOBIG, -12, "message larger than the configured maximum")                        \
    X(EPROTO, -13, "protocol violation")                                                 \
    X(EIO, -14, "i/o error")                                                             \
    X(ESTATE, -15, "operation not valid in this state")                                  \
    X(EOF, -16, "end of stream")                                                         \
    X(EAGAIN, -17, "try again")                                                          \
    X(EINTERNAL, -18, "internal error")                                                  \
    X(EADDR, -19, "cannot bind or resolve address")

typedef enum {
    PUL_OK = 0,
#define PUL__ERR_ENUM(name, val, str) PUL_##name = (val),
    PUL_ERRNO_MAP(PUL__ERR_ENUM)
#undef PUL__ERR_ENUM
} pul_err_t;

/* Static string naming any return code (never NULL; unknown codes give "unknown error"). */
PUL_EXTERN const char *pul_strerror(int err);

/* ------------------------------------------------------------------------------------------ */
/* Allocation hooks. All library allocations go through these counters.                      */
/* ------------------------------------------------------------------------------------------ */

/* Number of live allocations made by the library (any thread). Tests assert it returns to 0. */
PUL_EXTERN long pul_mem_live(void);
/* Make the n-th allocation from now fail (n >= 1); 0 disables. Test-only fault injection. */
PUL_EXTERN void pul_mem_fail_after(long n);

/* ------------------------------------------------------------------------------------------ */
/* Identity. 128-bit random ids, unique cluster-wide.                                          */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    uint64_t hi;
    uint64_t lo;
} pul_id_t;

/* A fresh random id (never all-zero). Thread-safe. */
PUL_EXTERN pul_id_t pul_id_random(void);
PUL_EXTERN int pul_id_eq(pul_id_t a, pul_id_t b);
PUL_EXTERN int pul_id_is_zero(pul_id_t a);
/* Format as 32 lowercase hex digits + NUL into buf (size >= 33). */
PUL_EXTERN void pul_id_format(pul_id_t id, char buf[33]);
/* Parse 1..32 hex digits (no prefix). Returns 0 or PUL_EINVAL. */
PUL_EXTERN int pul_id_parse(const char *s, size_t len, pul_id_t *out);

/* ------------------------------------------------------------------------------------------ */
/* Names. Paths of >= 2 segments of [A-Za-z0-9_-]; "x" means "actors/x"; "system/" reserved.   */
/* ------------------------------------------------------------------------------------------ */

#define PUL_NAME_MAX 255

/* Validate `name` (len bytes) and write the normalized form ("x" -> "actors/x") NUL-terminated
 * into out (size outsz). allow_system != 0 permits the reserved "system/" prefix.
 * Returns 0, PUL_ENAME (bad syntax, empty segment, too long, reserved) or PUL_EINVAL. */
PUL_EXTERN int pul_name_normalize(const char *name, size_t len, int allow_system, char *out,
                                  size_t outsz);

/* ------------------------------------------------------------------------------------------ */
/* Messages: a type string plus payload bytes, refcounted, with out-of-band segments.          */
/* ------------------------------------------------------------------------------------------ */

typedef struct pul_msg_s pul_msg_t;

/* Called once when the last reference to a segment's owner drops (any thread). */
typedef void (*pul_free_fn)(void *opaque);

/* A new message with a copy of `type` and of the `len` bytes at `data` (data may be NULL when
 * len is 0). Refcount 1, owned by the caller. Returns NULL on allocation failure. */
PUL_EXTERN pul_msg_t *pul_msg_new(const char *type, const void *data, size_t len);
/* Append an out-of-band segment that is NOT copied: the bytes stay valid until free_fn(opaque)
 * runs, which happens when the message is freed (free_fn may be NULL for static memory).
 * On error the caller still owns `opaque`. Returns 0, PUL_ENOMEM, PUL_EINVAL. */
PUL_EXTERN int pul_msg_add_segment(pul_msg_t *msg, const void *data, size_t len,
                                   pul_free_fn free_fn, void *opaque);
PUL_EXTERN pul_msg_t *pul_msg_ref(pul_msg_t *msg);
/* Drop a reference; frees on the last one. Accepts NULL. Thread-safe (atomic refcount). */
PUL_EXTERN void pul_msg_unref(pul_msg_t *msg);
PUL_EXTERN const char *pul_msg_type(const pul_msg_t *msg);
PUL_EXTERN const void *pul_msg_data(const pul_msg_t *msg, size_t *len);
PUL_EXTERN size_t pul_msg_nsegments(const pul_msg_t *msg);
PUL_EXTERN const void *pul_msg_segment(const pul_msg_t *msg, size_t i, size_t *len);
/* Total size: payload plus all segments. */
PUL_EXTERN size_t pul_msg_size(const pul_msg_t *msg);

/* ------------------------------------------------------------------------------------------ */
/* Systems. Each owns one core thread running a libuv loop.                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct pul_system_s pul_system_t;

/* Membership timings (docs/design/membership.md). Defaults: memberlist's LAN profile. */
typedef struct {
    uint32_t probe_interval_ms;     /* 500 (memberlist LAN: 1000; see membership.md) */
    uint32_t probe_timeout_ms;      /* 250 */
    uint32_t indirect_checks;       /* 3 */
    uint32_t suspicion_mult;        /* 4 */
    uint32_t suspicion_max_mult;    /* 6 */
    uint32_t retransmit_mult;       /* 4 */
    uint32_t gossip_interval_ms;    /* 200 */
    uint32_t gossip_nodes;          /* 3 */
    uint32_t push_pull_interval_ms; /* 30000 */
    uint32_t awareness_max;         /* 8 */
    uint32_t dead_reclaim_ms;       /* 30000: how long Dead/Left members stay in views */
    uint32_t join_retry_ms;         /* 1000: seeds are retried this often until one answers */
    uint32_t heartbeat_interval_ms; /* head-node mode: 1000 */
    uint32_t heartbeat_timeout_ms;  /* head-node mode: 5000 */
} pul_cluster_timing_t;

#define PUL_ADDR_MAX 63 /* "host:port" text, IPv6 "[addr]:port" included */

typedef struct {
    size_t mailbox_capacity; /* default 256 */
    size_t max_message_size; /* default 64 MiB + 1 MiB */
    size_t stream_window;    /* items a stream may buffer before the producer is held; 32 */
    uint64_t default_deadline_ms; /* asks without a deadline get this one; 0 = none */
    /* ---- network (docs/design/wire-protocol.md). All NULL/0: a single process, no port. ---- */
    const char *listen_addr;        /* "host:port" to bind; port 0 = ephemeral; NULL = none */
    const char *advertise_addr;     /* NULL = derived: the bound address, or for 0.0.0.0 / ::
                                       the first non-loopback interface address */
    const char *const *seeds;       /* "host:port" of nodes to join through */
    size_t nseeds;
    const char *head_addr;          /* head-node mode: this node is a worker of that head */
    int is_head_node;               /* head-node mode: this node is the head */
    size_t max_connections;         /* inbound connections accepted at once; 1024 */
    uint64_t connect_timeout_ms;    /* 2000 */
    uint64_t remote_deadline_ms;    /* remote asks without a deadline get this one; 0 = none */
    pul_cluster_timing_t timing;
} pul_system_config_t;

PUL_EXTERN void pul_system_config_init(pul_system_config_t *cfg);

/* Create a system and start its core thread. *out is owned by the caller until
 * pul_system_shutdown. Any thread. Returns 0, PUL_ENOMEM, PUL_EIO (thread or loop failure). */
PUL_EXTERN int pul_system_new(const pul_system_config_t *cfg, pul_system_t **out);
/* Stop every actor (on_stop runs), fail every pending call with PUL_ECLOSED, join the core
 * thread and free everything. Must not be called from the core thread. Accepts NULL. */
PUL_EXTERN void pul_system_shutdown(pul_system_t *sys);
PUL_EXTERN pul_id_t pul_system_node_id(const pul_system_t *sys);
/* The advertised "host:port" (the real port when 0 was asked), or NULL for a system without a
 * listener. Valid until shutdown. With listen_addr set, pul_system_new returns only once the port
 * is bound (PUL_EADDR when it cannot be) and joins the seeds in the background. */
PUL_EXTERN const char *pul_system_addr(const pul_system_t *sys);
/* Nonzero when the calling thread is this system's core thread (or stands in for it inside a
 * pul_ask or pul_reply_* that writes to the network directly). */
PUL_EXTERN int pul_system_on_core_thread(const pul_system_t *sys);
/* Batch the core thread's wake-ups: what the calling thread posts to the system (pul_ask,
 * pul_tell, pul_reply_send, pul_system_post, ...) between pul_system_hold and the matching
 * pul_system_release is queued as usual, but the core thread is woken once, by the release,
 * instead of at the first post — or 50 microseconds after the first post held, if the release
 * has not come by then: a hold delays a post by that bound at most, so a holder may block
 * (even on something its held posts lead to) without hanging. For a thread that posts a batch
 * (a home loop draining its completions): each wake-up of a halted vCPU costs both threads tens
 * of microseconds here (docs/design/threads.md). Per thread: other threads' posts still wake the
 * core thread, and so does pul_system_shutdown. Nests; any thread. Accept NULL. */
PUL_EXTERN void pul_system_hold(pul_system_t *sys);
PUL_EXTERN void pul_system_release(pul_system_t *sys);

/* Run fn(arg) on the core thread on a later loop turn (the one thread-safe door). Any thread.
 * Returns 0 or PUL_ECLOSED (system shutting down; fn will not run) or PUL_ENOMEM. */
PUL_EXTERN int pul_system_post(pul_system_t *sys, void (*fn)(void *arg), void *arg);

/* Timers on the core thread. cb runs on the core thread. Core thread only. */
typedef struct pul_timer_s pul_timer_t;
PUL_EXTERN int pul_timer_start(pul_system_t *sys, uint64_t timeout_ms, uint64_t repeat_ms,
                               void (*cb)(void *arg), void *arg, pul_timer_t **out);
/* Stop and release a timer (memory freed after libuv closes it). Accepts NULL. Core thread. */
PUL_EXTERN void pul_timer_stop(pul_timer_t *t);

/* ------------------------------------------------------------------------------------------ */
/* Actors.                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct pul_ctx_s pul_ctx_t;       /* a message being handled; valid during receive */
typedef struct pul_reply_s pul_reply_t;   /* a deferred reply; one per ask */
typedef struct pul_stream_s pul_stream_t; /* the producing end of a streamed reply */

/* Error detail carried by a failed reply: category + fields, structured. */
typedef enum {
    PUL_ERRKIND_NONE = 0,
    PUL_ERRKIND_RUNTIME = 1,     /* framework: not found, transport, config */
    PUL_ERRKIND_BUSINESS = 2,    /* code, message, details */
    PUL_ERRKIND_SYSTEM = 3,      /* error, recoverable */
    PUL_ERRKIND_TIMEOUT = 4,     /* operation, duration_ms */
    PUL_ERRKIND_UNSUPPORTED = 5, /* operation */
} pul_errkind_t;

typedef struct {
    pul_errkind_t kind;
    int64_t code;          /* business code */
    int recoverable;       /* system errors */
    uint64_t duration_ms;  /* timeout errors */
    const char *message;   /* message / error / operation text (UTF-8) */
    const char *details;   /* business details, may be NULL */
    const char *type_name; /* original exception type name, may be NULL */
} pul_error_t;

typedef struct {
    /* Handle one message. Core thread. Reply with pul_ctx_reply/_error/_stream, or
     * pul_ctx_defer to reply later; returning without replying to an ask replies with an empty
     * message. A nonzero return is a failure of the actor (system-class error: supervision). */
    int (*receive)(pul_ctx_t *ctx, pul_msg_t *msg, void *state);
    /* Optional. Called on the core thread before the first message / after the last. */
    int (*on_start)(pul_id_t self, void *state);
    void (*on_stop)(void *state);
    /* Optional. Releases state when the actor is gone for good (core thread). */
    void (*free_state)(void *state);
    /* Optional. For supervision: build fresh state (a restart re-runs it). Returns NULL on
     * failure. When set, `state` passed to spawn is ignored and factory(factory_arg) is used. */
    void *(*factory)(void *factory_arg);
    void *factory_arg;
} pul_actor_vtable_t;

typedef enum {
    PUL_RESTART_NEVER = 0,
    PUL_RESTART_ON_FAILURE = 1,
    PUL_RESTART_ALWAYS = 2,
} pul_restart_policy_t;

typedef struct {
    const char *name;         /* NULL = anonymous; else validated and normalized */
    size_t mailbox_capacity;  /* 0 = the system default */
    pul_restart_policy_t restart_policy;
    uint32_t max_restarts;    /* within restart_window_ms; default 3 */
    uint64_t restart_window_ms; /* default 60000 */
    double min_backoff_s;     /* default 0.1 */
    double max_backoff_s;     /* default 30.0 */
    int allow_system_name;    /* permit the reserved "system/" prefix */
} pul_spawn_opts_t;

PUL_EXTERN void pul_spawn_opts_init(pul_spawn_opts_t *opts);

/* Spawn an actor. The vtable is copied. `state` ownership passes to the actor on success
 * (free_state releases it); on error the caller keeps it. Any thread (blocks briefly on the
 * core thread's table lock). Returns 0, PUL_ENAME, PUL_EEXIST, PUL_ENOMEM, PUL_ECLOSED. */
PUL_EXTERN int pul_spawn(pul_system_t *sys, const pul_actor_vtable_t *vt, void *state,
                         const pul_spawn_opts_t *opts, pul_id_t *out_id);

/* Stop an actor: queued asks fail with PUL_ESTOPPED, on_stop runs, the name is released.
 * Any thread. Returns 0 or PUL_ENOTFOUND. */
PUL_EXTERN int pul_stop(pul_system_t *sys, pul_id_t id);
/* Look up a name (normalized by the call). Any thread. Returns 0, PUL_ENOTFOUND, PUL_ENAME. */
PUL_EXTERN int pul_lookup(pul_system_t *sys, const char *name, pul_id_t *out_id);

/* Enumerate live actors: cb(id, name-or-NULL, arg) for each, under the table lock (cb must not
 * call back into the system). Any thread. */
PUL_EXTERN void pul_actors_foreach(pul_system_t *sys,
                                   void (*cb)(pul_id_t id, const char *name, void *arg),
                                   void *arg);

/* ---- Cluster (docs/design/membership.md) ---- */

typedef enum {
    PUL_MEMBER_ALIVE = 0,
    PUL_MEMBER_SUSPECT = 1,
    PUL_MEMBER_DEAD = 2,
    PUL_MEMBER_LEFT = 3,
} pul_member_status_t;

typedef struct {
    pul_id_t node_id;
    char addr[PUL_ADDR_MAX + 1];
    pul_member_status_t status;
    uint64_t incarnation;
} pul_member_t;

/* Static string for a status: "Alive", "Suspect", "Dead", "Left". */
PUL_EXTERN const char *pul_member_status_str(pul_member_status_t st);

/* Snapshot of the membership, this node first: writes up to max entries into out and returns the
 * total number of members (may exceed max), or a negative code. A system without a listener has
 * exactly itself. Any thread. */
PUL_EXTERN int pul_members(pul_system_t *sys, pul_member_t *out, size_t max);

typedef struct {
    pul_id_t node_id;
    pul_id_t actor_id;
} pul_instance_t;

/* Live instances of `name` (normalized by the call) cluster-wide, on Alive or Suspect nodes,
 * ordered by node id: writes up to max into out and returns the total (0 when none), or
 * PUL_ENAME / a negative code. Any thread. */
PUL_EXTERN int pul_resolve_name(pul_system_t *sys, const char *name, pul_instance_t *out,
                                size_t max);

/* Every live named entry of the cluster view (this node's included): cb(name, node, actor, arg)
 * under the cluster's lock (cb must not call into the system). Any thread. */
PUL_EXTERN void pul_named_foreach(pul_system_t *sys,
                                  void (*cb)(const char *name, pul_id_t node_id,
                                             pul_id_t actor_id, void *arg),
                                  void *arg);

/* The node that hosts an actor id (ids carry their node's 64-bit prefix). Returns 0 and the
 * member's full node id, or PUL_ENOTFOUND when no known member has that prefix. Any thread. */
PUL_EXTERN int pul_actor_node(pul_system_t *sys, pul_id_t actor_id, pul_id_t *out_node);

/* ---- Calls ---- */

typedef struct pul_call_s pul_call_t;

/* Completion of an ask: status 0 with a reply message (callee owns nothing; the callback
 * borrows `reply` and must pul_msg_ref it to keep it), or an error code with `err` detail
 * (err non-NULL when status == PUL_EACTOR). Runs on the core thread, never inside the call that
 * started the ask. */
typedef void (*pul_ask_cb)(int status, pul_msg_t *reply, const pul_error_t *err, void *arg);

/* Streamed replies: cb(0, item, NULL, arg) per item; then exactly one final call with
 * status PUL_EOF (clean end), PUL_EACTOR (err set), or another error code. Core thread. */
typedef pul_ask_cb pul_stream_cb;

/* Send `msg` and get one reply. Takes ownership of msg on success. deadline_ms 0 = the system
 * default. *out_call (may be NULL) lets the caller cancel; it is set before cb can first run,
 * so cb may read it. Any thread. When the target mailbox
 * is full the message waits (the ask is held, not dropped) until there is room or the deadline.
 * Returns 0 (cb will run exactly once), PUL_ECLOSED, PUL_ENOMEM, PUL_EINVAL. */
PUL_EXTERN int pul_ask(pul_system_t *sys, pul_id_t target, pul_msg_t *msg, uint64_t deadline_ms,
                       pul_ask_cb cb, void *arg, pul_call_t **out_call);
/* GET http://addr/path (a REST endpoint of any node, e.g. "/cluster/members") over the system's
 * HTTP/2 control connection to addr; works on a system without a listener. cb runs once on the
 * core thread, never inside this call: status 0 with a reply whose type is the HTTP status in
 * decimal ("200") and whose payload is the response body, or PUL_EIO (cannot connect, reset),
 * PUL_ETIMEDOUT (timeout_ms passed; 0 = none), PUL_ETOOBIG (body over max_message_size),
 * PUL_ECLOSED. Any thread. Returns 0 (cb will run), PUL_EINVAL (path not starting with '/',
 * over 270 bytes, or addr over PUL_ADDR_MAX), PUL_ECLOSED, PUL_ENOMEM. */
PUL_EXTERN int pul_http_get(pul_system_t *sys, const char *addr, const char *path,
                            uint64_t timeout_ms, pul_ask_cb cb, void *arg);
/* Pumping (docs/design/threads.md, "Pumping"): a thread with its own event loop that makes lone
 * remote asks (their requests written by that thread: "Direct writes") reads their replies
 * itself, so the core thread is not woken to read them and wake it in turn.
 *
 * pul_pump_fd: after such an ask, the connection it went out on, if offered and no connection
 * is pumped yet: returns a new descriptor (a duplicate the caller owns and closes) to watch for
 * readability, and *token; -1 otherwise (nothing to do). The core thread stops reading that
 * connection. pul_pump: the descriptor is readable: read and process what is there, standing in
 * for the core thread (completion callbacks of calls on that connection run on this thread
 * meanwhile, never concurrently with the core thread). Returns 1 (bytes processed), 0 (nothing
 * there), PUL_EAGAIN (the core thread is running: stop watching and call pul_pump_stop; it
 * reads the connection again — calling pul_pump again at once instead would keep taking the loop
 * from under the waking core thread) or PUL_ECLOSED (the pumping is over: the connection closed, the
 * system shuts down, or the core thread took the connection back because it was not read for a
 * while; stop watching). pul_pump_stop: the caller stops watching; the core thread reads the
 * connection again. Close the descriptor after the last call with its token. Any thread, one
 * pumper per system. */
PUL_EXTERN int pul_pump_fd(pul_system_t *sys, uint64_t *token);
PUL_EXTERN int pul_pump(pul_system_t *sys, uint64_t token);
PUL_EXTERN void pul_pump_stop(pul_system_t *sys, uint64_t token);
/* Out-of-cluster clients (the Python `Connect`): send the calls and tells for the actors of node
 * `node_id` to `addr`, a gateway node that forwards them, instead of to a route the membership
 * layer set. node_id zero sets the default gateway: every node without a route of its own.
 * addr NULL drops the route (and fails what is in flight over it with PUL_EIO, as a dead
 * member's route does). A node that receives a call or tell for an actor of another node it has
 * a route to forwards it there with the same contract (streams, errors, cancellation,
 * deadlines); without one the caller gets PUL_ENOTFOUND. Any thread. Returns 0, PUL_EINVAL (addr
 * over PUL_ADDR_MAX), PUL_ENOMEM. */
PUL_EXTERN int pul_gateway_route(pul_system_t *sys, pul_id_t node_id, const char *addr);
/* Like pul_ask but the reply is a stream (a plain reply arrives as one item then EOF). */
PUL_EXTERN int pul_ask_stream(pul_system_t *sys, pul_id_t target, pul_msg_t *msg,
                              uint64_t deadline_ms, pul_stream_cb cb, void *arg,
                              pul_call_t **out_call);
/* Remote targets. An actor id whose node prefix is another member's is called over the network
 * (docs/design/wire-protocol.md) with the same contract: the same callbacks, structured errors
 * with all their fields, items before a stream error, cancellation (the remote call is cancelled
 * too) and deadlines (remote asks without one get cfg.remote_deadline_ms). Transport failures
 * complete the call with PUL_EIO; an unknown or dead node with PUL_ENOTFOUND. */
/* Ask the instance of `name` on node `node_id` (POST /named/...), or on this node when node_id is
 * zero. Same contract as pul_ask. */
PUL_EXTERN int pul_ask_named(pul_system_t *sys, pul_id_t node_id, const char *name, pul_msg_t *msg,
                             uint64_t deadline_ms, pul_ask_cb cb, void *arg,
                             pul_call_t **out_call);
/* Fire and forget. Takes ownership of msg on success. Returns 0, PUL_ENOTFOUND (known at once),
 * PUL_EFULL (mailbox full: tell never blocks and never drops silently; from the core thread
 * also while asks wait for room in that mailbox, which a tell does not overtake), PUL_ECLOSED.
 * Any thread. Tells from the core thread to one remote actor travel in batches (one request per
 * loop turn), in order, and a call made after them does not overtake them. A remote tell returns 0 once the message is handed to the transport: it is delivered unless
 * the connection fails, and a full remote mailbox holds it through flow control. From the core
 * thread a remote tell may also return PUL_EIO (the node could not be reached a moment ago) or
 * PUL_ETOOBIG; from other threads such failures are only counted (the tell is posted first). */
PUL_EXTERN int pul_tell(pul_system_t *sys, pul_id_t target, pul_msg_t *msg);
/* Cancel a call: its callback runs once more with PUL_ECANCELED (unless it already completed),
 * a streaming producer sees its stream closed. The pul_call_t is released by this call or by
 * completion, whichever is later; call it at most once, before or inside the callback never.
 * Any thread. */
PUL_EXTERN void pul_call_cancel(pul_system_t *sys, pul_call_t *call);
/* Hold (paused != 0) or restart the delivery of a stream call's items: the consumer's buffer is
 * full. While held, items already on their way may still arrive (at most one HTTP/2 stream
 * window of a remote call, whose window is no longer returned; none of a local one, whose items
 * wait in the producer's stream window), and the producer is held by flow control. Requests are
 * applied in order on the core thread; the last one wins. Cancel and deadlines work as usual.
 * call is a handle from out_call not yet released or cancelled, or (inside the call's own
 * callback, for an item) the call itself. Any thread. Returns 0, PUL_EINVAL, PUL_ECLOSED (the
 * system is shutting down). */
PUL_EXTERN int pul_call_pause(pul_system_t *sys, pul_call_t *call, int paused);
/* Release a call handle obtained through out_call without cancelling. Any thread. */
PUL_EXTERN void pul_call_release(pul_system_t *sys, pul_call_t *call);

/* ---- Inside receive (core thread) ---- */

PUL_EXTERN pul_id_t pul_ctx_self(const pul_ctx_t *ctx);
PUL_EXTERN pul_system_t *pul_ctx_system(const pul_ctx_t *ctx);
/* Nonzero when the sender expects a reply (ask), zero for tell. */
PUL_EXTERN int pul_ctx_is_ask(const pul_ctx_t *ctx);
/* Reply now. Takes ownership of msg on success. */
PUL_EXTERN int pul_ctx_reply(pul_ctx_t *ctx, pul_msg_t *msg);
/* Reply with a structured error (copied). */
PUL_EXTERN int pul_ctx_reply_error(pul_ctx_t *ctx, const pul_error_t *err);
/* Detach the reply to answer later from any thread (pul_reply_*). NULL for tells. */
PUL_EXTERN pul_reply_t *pul_ctx_defer(pul_ctx_t *ctx);
/* For an ask: cb(status, arg) runs exactly once, on the core thread, when the call ends (a
 * deferred reply to a caller on another node may run it on the thread calling pul_reply_*, while
 * that thread stands in for a sleeping core thread: never concurrently with it): 0 or
 * PUL_EACTOR once answered (also through a deferred reply), PUL_ESTOPPED when abandoned, and
 * PUL_ECANCELED / PUL_ETIMEDOUT / PUL_ECLOSED when it ended unanswered because the caller
 * cancelled it (locally, or by resetting its HTTP/2 stream), its deadline passed or the system
 * is closing -- so the work of a deferred reply can be stopped. Call it inside receive (before
 * or after pul_ctx_defer), at most once. Returns 0, PUL_ESTATE (a tell, or the call already
 * ended: cb will not run), PUL_EINVAL. */
PUL_EXTERN int pul_ctx_on_end(pul_ctx_t *ctx, void (*cb)(int status, void *arg), void *arg);
/* Answer with a stream. The stream is owned by the actor until pul_stream_end/_error. */
PUL_EXTERN pul_stream_t *pul_ctx_stream(pul_ctx_t *ctx);

/* ---- Deferred replies (any thread; each consumes the reply handle) ---- */

PUL_EXTERN int pul_reply_send(pul_reply_t *r, pul_msg_t *msg);
PUL_EXTERN int pul_reply_error(pul_reply_t *r, const pul_error_t *err);
PUL_EXTERN pul_stream_t *pul_reply_stream(pul_reply_t *r);
/* Drop a deferred reply unanswered: the caller gets PUL_ESTOPPED. */
PUL_EXTERN void pul_reply_abandon(pul_reply_t *r);
/* Nonzero when the ask came from a caller on another node through the transport: the answer is
 * only ever encoded onto the wire, so an actor host that copies values for local callers (copy
 * semantics) need not copy this one. Any thread, until the reply is used. */
PUL_EXTERN int pul_reply_is_remote(const pul_reply_t *r);

/* ---- Streams (producer side; any thread) ---- */

/* Push one item (ownership moves on success). Returns 0, PUL_EFULL (window full: wait for the
 * writable callback), PUL_ECANCELED (consumer went away: stop producing), PUL_ESTATE. */
PUL_EXTERN int pul_stream_push(pul_stream_t *s, pul_msg_t *item);
/* cb(arg) is called once (core thread) when a full window has room again or when the consumer
 * cancels; register again to be called again. Register it after pul_stream_push returned
 * PUL_EFULL: if the room came (or the consumer went) in between, cb still runs, soon after this
 * call. A registration replaces an earlier one not yet called. */
PUL_EXTERN void pul_stream_on_writable(pul_stream_t *s, void (*cb)(void *arg), void *arg);
/* End cleanly / with an error; both release the stream handle. */
PUL_EXTERN int pul_stream_end(pul_stream_t *s);
PUL_EXTERN int pul_stream_error(pul_stream_t *s, const pul_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* PULSING_PULSING_H */
