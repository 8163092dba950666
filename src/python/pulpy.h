/* pulpy.h — private declarations shared by the files of the pulsing._core extension. */
#ifndef PULSING_PY_PULPY_H
#define PULSING_PY_PULPY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "pulsing/pulsing.h"

/* ---- module state (module.c) ---------------------------------------------------------------- */

typedef struct {
    PyObject *CoreError;            /* pulsing._core.CoreError */
    PyTypeObject *CoreSystemType;   /* system.c */
    PyTypeObject *ReplyType;        /* reply.c */
    PyTypeObject *StreamWriterType; /* reply.c */
    PyTypeObject *StreamCallType;   /* reply.c */
    PyTypeObject *AskType;          /* system.c: pending ask, also the future's done callback */
    PyTypeObject *MsgBufferType;    /* msg.c: buffer exporter over a pul_msg_t */
    PyObject *pickle_dumps;         /* copy.c, imported lazily */
    PyObject *pickle_loads;
    PyObject *str_done;             /* interned method / keyword names */
    PyObject *str_set_result;
    PyObject *str_set_exception;
    PyObject *str_add_done_callback;
    PyObject *str_remove_done_callback;
    PyObject *str_protocol;
    PyObject *str_buffer_callback;
    PyObject *str_buffers;
    PyObject *str_raw;
} pulpy_state;

extern PyModuleDef pulpy_module_def;

/* State of the module that defined `tp` (a heap type of this module). GIL held. */
static inline pulpy_state *
pulpy_state_of_type(PyTypeObject *tp)
{
    return (pulpy_state *)PyType_GetModuleState(tp);
}

/* ---- ids and errors (module.c) ------------------------------------------------------------ */

/* pul_id_t <-> Python int (0 < id < 2**128). pulpy_id_from_py sets TypeError/ValueError/
 * OverflowError and returns -1 on a bad value. GIL held. */
PyObject *pulpy_id_to_py(pul_id_t id);
int pulpy_id_from_py(PyObject *obj, pul_id_t *out);

/* A new CoreError instance for `code` (a PUL_E* code); `err` (may be NULL) fills the structured
 * fields when the actor replied with an error; `context` (may be NULL) prefixes the message.
 * Returns a new reference or NULL with an exception set. GIL held. */
PyObject *pulpy_error_new(pulpy_state *st, int code, const pul_error_t *err, const char *context);
/* Validate and normalize an actor name into out (PUL_NAME_MAX + 1 bytes): TypeError for a
 * non-str, ValueError naming the rule broken. Returns 0 or -1. GIL held. */
int pulpy_normalize_name(PyObject *name, int allow_system, char *out, size_t outsz);
/* Raise CoreError(code) and return NULL (for `return pulpy_raise(...)`). GIL held. */
PyObject *pulpy_raise(pulpy_state *st, int code, const char *context);

/* ---- the bridge (bridge.c) ------------------------------------------------------------------ */

/* What a queued completion means. Producers are core threads (no GIL); drain runs under the
 * GIL on the home loop. */
typedef enum {
    PULPY_E_ASK_DONE = 1,  /* obj: AskObject (core ref); status, msg or err */
    PULPY_E_STREAM,        /* obj: StreamCallObject (core ref); status 0 = item, else the end */
    PULPY_E_DELIVER,       /* obj: pulpy_foreign_t; msg; reply (NULL for a tell) */
    PULPY_E_FOREIGN_FREE,  /* obj: pulpy_foreign_t whose actor is gone for good */
    PULPY_E_WRITABLE,      /* obj: pulpy_wstate_t (a stream writer may push again) */
    PULPY_E_BUF_RELEASE,   /* obj: pulpy_segment_t (a zero-copy segment freed off the GIL) */
    PULPY_E_REPLY_CANCEL,  /* obj: pulpy_rtoken_t (a deferred ask ended unanswered) */
} pulpy_entry_kind;

/* A structured error copied off the core thread (the core's pul_error_t is borrowed). */
typedef struct {
    pul_error_t e;
    char strings[]; /* message, details, type_name packed; e.* point inside */
} pulpy_err_t;

typedef struct {
    int kind;           /* pulpy_entry_kind */
    int status;         /* PUL_E* / 0 */
    void *obj;          /* see kind */
    pul_msg_t *msg;     /* a reference owned by the entry, or NULL */
    pulpy_err_t *err;   /* malloc'd copy, or NULL */
    pul_reply_t *reply; /* deferred reply (DELIVER of an ask) */
} pulpy_entry_t;

typedef struct {
    pulpy_entry_t *v;
    size_t n, cap;
} pulpy_vec_t;

typedef struct pulpy_bridge_s {
    pthread_mutex_t mu;
    pulpy_vec_t q;   /* producer side, under mu */
    pulpy_vec_t cur; /* consumer side: the batch being drained (GIL) */
    size_t pos;      /* next entry of cur to run (shared by nested drains) */
    int efd;         /* eventfd, written when q goes from empty to non-empty */
    atomic_long refs; /* the system + every zero-copy segment still alive */
    atomic_ullong pushes, wakeups; /* counters for benches */
} pulpy_bridge_t;

/* Create a bridge with a fresh non-blocking eventfd. Returns NULL with errno on failure. */
pulpy_bridge_t *pulpy_bridge_new(void);
/* Push one entry (any thread, no GIL needed; never touches a PyObject). Writes the eventfd
 * when the queue was empty. Returns 0 or PUL_ENOMEM (entry not queued: caller cleans up). */
int pulpy_bridge_push(pulpy_bridge_t *b, const pulpy_entry_t *e);
/* Nonzero when entries are queued (a racy hint, any thread). */
static inline int
pulpy_bridge_nonempty(pulpy_bridge_t *b)
{
    return __atomic_load_n(&b->q.n, __ATOMIC_ACQUIRE) != 0;
}
/* Consume the eventfd's counter (home thread). */
void pulpy_bridge_ack(pulpy_bridge_t *b);
/* Make the queued entries the current batch when the current batch is exhausted. Returns the
 * number of entries left to run in the batch. GIL held. */
size_t pulpy_bridge_take(pulpy_bridge_t *b);
/* Close the eventfd and drop the system's reference (frees when no segment holds it). */
void pulpy_bridge_close(pulpy_bridge_t *b);
void pulpy_bridge_unref(pulpy_bridge_t *b);
/* Copy a borrowed core error (any thread). NULL when err is NULL or on OOM. */
pulpy_err_t *pulpy_err_copy(const pul_error_t *err);

/* ---- objects ------------------------------------------------------------------------------ */

typedef struct pulpy_link_s {
    struct pulpy_link_s *prev, *next;
} pulpy_link_t;

static inline void
pulpy_list_init(pulpy_link_t *head)
{
    head->prev = head->next = head;
}
static inline void
pulpy_list_add(pulpy_link_t *head, pulpy_link_t *l)
{
    l->next = head->next;
    l->prev = head;
    head->next->prev = l;
    head->next = l;
}
static inline void
pulpy_list_del(pulpy_link_t *l)
{
    if (l->next != NULL) {
        l->prev->next = l->next;
        l->next->prev = l->prev;
        l->next = l->prev = NULL;
    }
}
#define PULPY_CONTAINER(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

typedef struct CoreSystemObject CoreSystemObject;

/* A Python (foreign) actor registered in the C table. Its `handler` reference is owned by the
 * system and released on the home thread when the actor's free_state entry drains (or at close). */
typedef struct {
    pulpy_link_t link; /* in sys->foreigns */
    CoreSystemObject *owner; /* borrowed; valid until the FOREIGN_FREE entry drains */
    pulpy_bridge_t *bridge;
    PyObject *handler;
    PyObject *on_stop; /* optional: called on the home loop once the actor is gone */
    pul_id_t id;
    int segments; /* deliver (type, payload, reply, segments) instead of concatenating */
} pulpy_foreign_t;

/* Per-writer state the core can name in on_writable callbacks (see reply.c). */
typedef struct pulpy_wstate_s pulpy_wstate_t;

struct CoreSystemObject {
    PyObject_HEAD
    pul_system_t *sys;
    pulpy_bridge_t *bridge;
    int closed;
    int closing;
    PyObject *node_id;
    pulpy_link_t asks;     /* AskObject with a core ref */
    pulpy_link_t streams;  /* StreamCallObject with a core ref */
    pulpy_link_t replies;  /* ReplyObject holding a pul_reply_t */
    pulpy_link_t writers;  /* pulpy_wstate_t of live writers */
    pulpy_link_t foreigns; /* pulpy_foreign_t */
    PyObject *weakreflist;
    PyObject *addr;        /* str "host:port", or None without a listener */
    char *cfg_mem;         /* strings of the config (the core may keep pointers to them) */
    const char **cfg_seeds;
};

/* A pending ask: the core holds one reference (carried as an opaque pointer, never touched off
 * the GIL) from pul_ask to the drain of its completion. Also the future's done callback. */
typedef struct {
    PyObject_HEAD
    pulpy_link_t link;
    CoreSystemObject *sys; /* strong */
    pulpy_bridge_t *bridge; /* read by the core callback: immutable while the core holds us */
    PyObject *future;      /* strong until resolved */
    pul_call_t *call;      /* our handle; NULL once cancelled or released */
    int completed;
    int segments;          /* resolve with (type, payload, segments) */
    PyObject *complete;    /* strong or NULL: complete(future, ok, value) resolves the future */
} AskObject;

typedef struct {
    PyObject_HEAD
    pulpy_link_t link;
    CoreSystemObject *sys; /* strong */
    pulpy_bridge_t *bridge; /* read by the core callback: immutable while the core holds us */
    PyObject *on_item;     /* strong until the end is delivered or cancel() */
    pul_call_t *call;
    int finished;          /* the end was delivered (or the call was cancelled) */
    int core_ref;          /* the core still holds its reference */
    int segments;          /* on_item(type, payload, None, segments) for items */
    /* Backpressure (docs/design/python-runtime.md): items handed over by the core and not yet
     * taken by the consumer; above PULPY_STREAM_HIGH the call is paused, at PULPY_STREAM_LOW it
     * resumes. Under flow_mu, taken by the core thread (per item) and the home loop (taken()). */
    pthread_mutex_t flow_mu;
    pul_call_t *ccall;     /* the call as the core thread sees it (set before its first item) */
    long pending;
    int paused;
    int flow;              /* ask_stream(flow=True): the bound applies (immutable) */
} StreamCallObject;

#define PULPY_STREAM_HIGH 64
#define PULPY_STREAM_LOW 16

typedef struct {
    PyObject_HEAD
    pulpy_link_t link;
    CoreSystemObject *sys; /* strong */
    pul_reply_t *reply;    /* NULL once consumed */
    PyObject *on_cancel;   /* optional: called when the caller gave up before the answer */
    int cancelled;         /* the caller gave up (before on_cancel was set) */
} ReplyObject;

/* Names a deferred reply for pul_ctx_on_end (malloc'd on the core thread, freed there or by the
 * drain of its REPLY_CANCEL entry). The reply pointer stays valid while it is unconsumed, and
 * a reused pointer cannot be confused with it: a later delivery drains after this entry. */
typedef struct {
    pulpy_bridge_t *bridge;
    pul_reply_t *reply;
} pulpy_rtoken_t;

/* Drain handler of REPLY_CANCEL (reply.c): run on_cancel of the matching live Reply. */
int pulpy_reply_cancel_entry(CoreSystemObject *sys, pulpy_entry_t *e);

typedef struct {
    PyObject_HEAD
    CoreSystemObject *sys; /* strong */
    pulpy_wstate_t *ws;    /* NULL once ended */
} StreamWriterObject;

/* ---- system.c ------------------------------------------------------------------------------ */

/* Fail fast when the system is closed: raises CoreError(ECLOSED) and returns -1. */
int pulpy_system_check(CoreSystemObject *self);
/* Run every entry of the current batch (taking a new one first when it is exhausted).
 * Exceptions raised by callbacks are kept: the first is re-raised at the end (returns -1),
 * the others are reported as unraisable. GIL held, home thread. */
int pulpy_system_drain(CoreSystemObject *self);

/* Shared by system.c and cluster.c: an ask whose completion resolves `future` (the reference
 * returned becomes the core's once the call is started; see sys_ask). */
void pulpy_ask_core_cb(int status, pul_msg_t *reply, const pul_error_t *err, void *arg);
AskObject *pulpy_ask_prepare(CoreSystemObject *self, PyObject *future, int segments,
                             PyObject *complete);
/* Undo pulpy_ask_prepare when starting the call failed (rc != 0); raises and returns NULL. */
PyObject *pulpy_ask_abort(CoreSystemObject *self, AskObject *a, int rc, const char *what);
/* Parse "host:port"-style config and the cluster queries (cluster.c). */
int pulpy_config_from_kwargs(CoreSystemObject *self, pul_system_config_t *cfg, PyObject *seeds,
                             PyObject *timing);
PyObject *pulpy_sys_members(PyObject *op, PyObject *unused);
PyObject *pulpy_sys_http_get(PyObject *op, PyObject *args, PyObject *kw);
PyObject *pulpy_sys_gateway_route(PyObject *op, PyObject *args);
PyObject *pulpy_sys_resolve_name(PyObject *op, PyObject *name);
PyObject *pulpy_sys_named_actors(PyObject *op, PyObject *unused);
PyObject *pulpy_sys_actor_node(PyObject *op, PyObject *arg);
PyObject *pulpy_sys_ask_named(PyObject *op, PyObject *args, PyObject *kw);

/* ---- reply.c ------------------------------------------------------------------------------- */

PyObject *pulpy_reply_new(CoreSystemObject *sys, pul_reply_t *r);
PyObject *pulpy_streamcall_new(CoreSystemObject *sys, PyObject *on_item);
/* Drain handlers of the entries owned by reply.c. Return -1 with an exception set when a
 * Python callback raised (the entry is fully consumed either way). */
int pulpy_streamcall_entry(pulpy_state *st, pulpy_entry_t *e);
int pulpy_wstate_entry(pulpy_state *st, pulpy_entry_t *e);
/* At close: abandon live replies and end live writers (before pul_system_shutdown), then once
 * the core is gone, finish stream calls that never got their end. GIL held. */
void pulpy_reply_close_all(CoreSystemObject *sys);
/* At close, before the shutdown: end every stream call with ECLOSED and release its handle. */
void pulpy_streams_fail_all(CoreSystemObject *sys);
void pulpy_streams_after_shutdown(CoreSystemObject *sys);
void pulpy_writers_after_shutdown(CoreSystemObject *sys);

/* ---- msg.c --------------------------------------------------------------------------------- */

/* Build a message from a payload: a buffer (copied into the message), or a list/tuple whose
 * first buffer is copied as the payload and the others are attached as out-of-band segments
 * (large ones without a copy). Returns a new message or NULL with an exception set. GIL held. */
pul_msg_t *pulpy_msg_from_py(pulpy_state *st, pulpy_bridge_t *b, PyObject *type,
                             PyObject *payload);
/* The message's bytes (payload then segments, concatenated). GIL held. */
PyObject *pulpy_msg_bytes(pul_msg_t *msg);
/* A read-only memoryview over the message's bytes without copying when it has no segments
 * (a MsgBuffer exporter keeps a reference on msg). GIL held. */
PyObject *pulpy_msg_memoryview(pulpy_state *st, pul_msg_t *msg);
/* Segment-aware receive (the `segments=True` calls): the payload alone as bytes, or as a
 * read-only memoryview without a copy; and a tuple of writable memoryviews, one per
 * out-of-band segment, each keeping a reference on msg (empty tuple when none). GIL held. */
PyObject *pulpy_msg_head_bytes(pul_msg_t *msg);
PyObject *pulpy_msg_head_memoryview(pulpy_state *st, pul_msg_t *msg);
PyObject *pulpy_msg_segments(pulpy_state *st, pul_msg_t *msg);
/* The message's type as str (NULL type gives ""). */
PyObject *pulpy_msg_type(pul_msg_t *msg);
/* Release of a zero-copy segment queued by the bridge. GIL held. */
void pulpy_segment_entry(pulpy_entry_t *e);

/* ---- copy.c -------------------------------------------------------------------------------- */

PyObject *pulpy_copy_value(PyObject *module, PyObject *obj);

/* ---- builtins.c ---------------------------------------------------------------------------- */

/* Spawn a built-in C actor ("echo", "counter", "streamer", "failer", "forwarder"). Any thread,
 * no GIL needed. Returns 0, PUL_EINVAL (unknown kind) or pul_spawn's errors. */
int pulpy_builtin_spawn(pul_system_t *sys, const char *kind, const char *name, pul_id_t *out);

/* ---- type specs ---------------------------------------------------------------------------- */

extern PyType_Spec pulpy_coresystem_spec;
extern PyType_Spec pulpy_ask_spec;
extern PyType_Spec pulpy_reply_spec;
extern PyType_Spec pulpy_streamwriter_spec;
extern PyType_Spec pulpy_streamcall_spec;
extern PyType_Spec pulpy_msgbuffer_spec;

#endif /* PULSING_PY_PULPY_H */
