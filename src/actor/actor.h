/* actor.h — internals shared by the actor layer: the system, actors, calls, streams. */
#ifndef PUL_ACTOR_ACTOR_H
#define PUL_ACTOR_ACTOR_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/loop.h"
#include "pulsing/pulsing.h"

typedef struct pul__actor_s pul__actor_t;

/* A copied structured error: one block holding the struct and its strings. */
typedef struct {
    pul_error_t e;
} pul__err_t;

typedef struct {
    pul_msg_t *msg;    /* tells */
    pul_call_t *call;  /* asks (message inside the call) */
} pul__slot_t;

struct pul__actor_s {
    atomic_long refs;
    pul_system_t *sys;
    pul_id_t id;
    char *name;
    pul__actor_t *next_id;   /* table chains, under the table lock */
    pul__actor_t *next_name;
    pul__actor_t *all_prev;  /* every actor not yet stopped, under the table lock */
    pul__actor_t *all_next;
    int in_maps;             /* under the table lock */
    int stop_posted;         /* under the table lock */
    pul_actor_vtable_t vt;
    void *state;
    int has_state;
    pul_spawn_opts_t opts;
    /* Mailbox: occ counts ring items plus tells reserved by other threads (atomic so a foreign
     * pul_tell can answer PUL_EFULL at once); the ring itself is core-thread only. */
    size_t cap;
    atomic_size_t occ;
    pul__slot_t *ring;
    size_t head;
    size_t count;
    pul_call_t *held_head; /* asks waiting for room */
    pul_call_t *held_tail;
    /* Core-thread state. */
    int room_wanted; /* a tell from the core thread found it full: pul__net_room when a slot frees */
    int started;
    int stopped;
    int restarting;
    int in_ready;
    pul__actor_t *ready_next;
    uint32_t restarts;
    uint64_t window_start;
    uint64_t last_backoff_ms; /* for tests */
    pul__tmr_t restart_timer;
    pul__task_t start_task;
    pul__task_t stop_task;
};

struct pul_call_s {
    pul__task_t task;        /* delivery, then a deferred reply from another thread */
    pul__task_t cancel_task;
    atomic_int refs;
    pul_system_t *sys;
    pul_id_t target;
    pul_msg_t *msg;
    pul_ask_cb cb;
    void *arg;
    int stream_mode;
    int done;
    int status_later; /* a status delivered on the next turn */
    uint64_t due;     /* 0 = no deadline */
    pul__tmr_t deadline;
    pul_call_t *prev; /* pending list (core thread) */
    pul_call_t *next;
    int pending;
    pul_call_t *held_next;
    pul_msg_t *reply_msg; /* a reply from another thread, carried by task */
    pul__err_t *reply_err;
    int reply_status;
    struct pul_stream_s *stream;
    void *net_op;  /* the transport's record of a remote call (core thread) */
    int remote_caller; /* asked by the transport for a caller on another node (set before
                        * the actor sees it; read-only afterwards) */
    char *name;    /* a named call to another node: the normalized name (target = node id) */
    int paused;    /* stream delivery held by the consumer (pul__call_pause) */
    pul__task_t flow_task;   /* pul_call_pause from another thread: applies flow_want */
    atomic_int flow_want;    /* the pause state asked for by pul_call_pause */
    atomic_int flow_queued;  /* flow_task is posted and has not run yet */
    void (*on_end)(int status, void *arg); /* pul_ctx_on_end (core thread) */
    void *on_end_arg;
};

enum { STREAM_OPEN, STREAM_ENDED, STREAM_ERRORED, STREAM_CANCELED, STREAM_CLOSED };

struct pul_stream_s {
    pul__task_t task;
    atomic_int refs;
    pthread_mutex_t mu;
    pul_system_t *sys;
    pul_call_t *call; /* ref held until the stream is freed */
    /* Under mu. */
    pul_msg_t **items;
    size_t window;
    size_t head;
    size_t count;
    int state;
    int producer_done;
    int scheduled;
    int was_full;   /* a push found the window full; cleared when the writable callback runs */
    int wake_owed;  /* the callback is owed: registered after its wake-up went by (see
                     * pul_stream_on_writable) */
    void (*wcb)(void *);
    void *warg;
    pul__err_t *err;
    /* Core thread. */
    int attached;
    int final_done;
};

typedef struct pul_timer_s {
    pul__tmr_t t;
    pul_system_t *sys;
    void (*cb)(void *);
    void *arg;
    int firing;
    int stopped;
    struct pul_timer_s *prev;
    struct pul_timer_s *next;
} pul__utimer_t;

struct pul__net_s;
struct pul__cluster_s;

struct pul_system_s {
    pul__loop_t loop;
    pul_system_config_t cfg;
    pul_id_t node_id;
    char addr[PUL_ADDR_MAX + 1];    /* advertised address; "" without a listener */
    struct pul__net_s *net;         /* the transport (NULL: single process) */
    struct pul__cluster_s *cluster; /* membership and registry (NULL: single process) */
    atomic_long refs;
    atomic_int closing;
    /* Client calls and server streams the transport holds (kept by the core thread, read
     * relaxed by any thread): a direct write (call.c, ask_direct/reply_direct) is only worth
     * trying when they show the connection idle, so a busy system does not even borrow. */
    atomic_uint net_calls;
    atomic_uint net_streams;
    /* The most client calls in flight at once in the current busy period (net_calls > 0), and
     * in the last one: a caller that just had many in flight (a burst) is likely to make many
     * again, and writing the first of the next burst directly would split it from the rest. */
    atomic_uint net_calls_peak;
    atomic_uint net_calls_last_peak;
    /* Actor table, under tmu. */
    pthread_mutex_t tmu;
    pul__actor_t **by_id;
    pul__actor_t **by_name;
    size_t nbuckets;
    size_t nmapped;
    pul__actor_t *all;
    /* Core thread. */
    pul__actor_t *ready_head;
    pul__actor_t *ready_tail;
    pul_call_t *pending;
    pul_call_t *freelist;
    size_t nfree;
    pul__utimer_t *timers;
    pul__task_t shutdown_task;
    void *cfg_strings; /* one block: copies of every string of cfg (the caller's die) */
};

/* system.c */
/* Take/drop a reference on the system (calls and handles keep it alive past shutdown). */
void pul__system_ref(pul_system_t *sys);
void pul__system_unref(pul_system_t *sys);
/* Find a live actor by id and take a reference. Any thread. NULL when unknown. */
pul__actor_t *pul__actor_get(pul_system_t *sys, pul_id_t id);
void pul__actor_unref(pul__actor_t *a);
/* Stop an actor on the core thread: queued asks fail with status, on_stop and free_state run,
 * the name is released. Idempotent. */
void pul__actor_stop(pul__actor_t *a, int status);
/* The actor failed (receive returned nonzero, or start failed): apply its restart policy. */
void pul__actor_failed(pul__actor_t *a);
/* Post a no-op through the door so timers are checked (fake-clock tests). Any thread. */
int pul__system_poke(pul_system_t *sys);

/* call.c */
/* Put the actor on the ready list. Core thread. */
void pul__actor_schedule(pul__actor_t *a);
/* Run ready actors for one turn; nonzero when more work is left. Core thread. */
int pul__dispatch(void *sys);
/* Complete a call once: cb runs, reply is consumed. Core thread. */
void pul__call_complete(pul_call_t *c, int status, pul_msg_t *reply, const pul__err_t *err);
void pul__call_unref(pul_call_t *c);
/* Fail every queued and held ask of a stopping actor with status; drop queued tells. */
void pul__mailbox_drain(pul__actor_t *a, int status);
/* Copy a structured error into one block. NULL on allocation failure. */
pul__err_t *pul__err_copy(const pul_error_t *e);
/* Hold / restart the delivery of a stream call's items (the consumer cannot take more: e.g. a
 * remote response whose socket is behind). While held, items stay in the stream window, so the
 * producer is held by it; a call to another node stops returning HTTP/2 window instead
 * (pul__net_resume gives it back). Core thread. */
void pul__call_pause(pul_call_t *c);
void pul__call_resume(pul_call_t *c);
/* Shutdown: fail every pending call with PUL_ECLOSED and free the call freelist. Core thread. */
void pul__calls_shutdown(pul_system_t *sys);

#endif
