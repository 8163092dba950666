/* loop.h — the core loop thread: a libuv loop on its own thread, one thread-safe door (an MPSC
 * inbox + a coalescing uv_async_send), a timer heap on pul__now_ms(), and a local work queue.
 * "Core thread" below means the loop's thread, or a thread that borrows the loop while that
 * thread sleeps (pul__loop_borrow): never both at once. */
#ifndef PUL_CORE_LOOP_H
#define PUL_CORE_LOOP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct pul__task_s pul__task_t;
/* A unit of work run on the core thread; embedded in its owner (no allocation to post it). */
struct pul__task_s {
    pul__task_t *next;
    void (*run)(pul__task_t *t);
};

typedef struct pul__tmr_s pul__tmr_t;
/* A timer of the heap; embedded in its owner. Core thread only. */
struct pul__tmr_s {
    uint64_t due;
    uint64_t repeat;
    size_t idx; /* position in the heap + 1; 0 = not armed */
    void (*cb)(pul__tmr_t *t);
};

typedef struct pul__loop_s {
    uv_loop_t uv;
    uv_async_t async;
    uv_idle_t idle;
    uv_timer_t timer;
    uv_prepare_t prepare; /* lets go of run_mu before libuv polls */
    uv_check_t check;     /* takes it back after the poll */
    pthread_t thread;
    int thread_started;
    /* The door: guarded by mu. closed is set together with the last task (shutdown). */
    pthread_mutex_t mu;
    pul__task_t *in_head;
    pul__task_t *in_tail;
    int closed;
    int wake_owed;   /* a holding thread queued work without waking the loop (pul__loop_hold) */
    int door_armed;  /* door_tfd is armed for the work a holder queued */
    int door_tfd;    /* timerfd: wakes the loop at most PUL__LOOP_HOLD_MAX_US after a held post */
    int door_on;     /* door_poll watches door_tfd: holds are honoured */
    uv_poll_t door_poll;
    uint64_t serial; /* unique per loop started: tells a held loop from a later one at its address */
    /* Core-thread-only local queue: work for the next loop turn. */
    pul__task_t *local_head;
    pul__task_t *local_tail;
    /* Timer heap (core thread). */
    pul__tmr_t **heap;
    size_t heap_len;
    size_t heap_cap;
    uint64_t timer_armed_due;
    /* Called once per turn while it returns nonzero ("more work"): the actor dispatcher. */
    int (*on_turn)(void *owner);
    void *owner;
    int idle_active;
    int stopping;
    /* Held by the core thread whenever it is not asleep waiting for events, so a thread that
     * takes it (pul__loop_borrow) may run core-thread code while the core sleeps. */
    pthread_mutex_t run_mu;
    int run_held;    /* the core thread holds run_mu (core thread only) */
    int running;     /* the thread is in its loop (under run_mu) */
    int borrowing;   /* a borrower holds run_mu (under run_mu) */
    int borrow_wake; /* the borrower left work for the loop: wake it at pul__loop_unborrow */
} pul__loop_t;

/* Initialise the loop and start its thread. Any thread. Returns 0, PUL_ENOMEM, PUL_EIO. */
int pul__loop_start(pul__loop_t *l, int (*on_turn)(void *), void *owner);
/* Post t through the door. Any thread. Returns 0 or PUL_ECLOSED (t will not run). */
int pul__loop_post(pul__loop_t *l, pul__task_t *t);
/* Post t as the last task and close the door atomically. Any thread but the core thread. */
int pul__loop_post_last(pul__loop_t *l, pul__task_t *t);
/* Longest a hold delays the wake-up owed for a post, in microseconds. */
#define PUL__LOOP_HOLD_MAX_US 50

/* Hold the door's wake-up for the calling thread: tasks it posts until the matching
 * pul__loop_release are queued as usual, but the loop is woken (at most once) by the release
 * rather than at the first post — or PUL__LOOP_HOLD_MAX_US after the first post it held,
 * whichever comes first, so a holder that blocks (or runs long) before releasing delays its
 * posts by that bound and no more. Nests. Any thread. Posts of other threads still wake the loop
 * (also when they find the holder's tasks queued), and so does the last task
 * (pul__loop_post_last). */
void pul__loop_hold(pul__loop_t *l);
void pul__loop_release(pul__loop_t *l);
/* Borrow the loop: when the core thread is asleep with nothing queued, take its place (the
 * calling thread counts as the core thread, pul__loop_on_thread is true) without waking it, so
 * a reply or request can be written from the thread that produced it. Returns 1 when borrowed
 * (end with pul__loop_unborrow, soon: the core thread waits meanwhile), 0 otherwise (the loop
 * is busy, has queued work, is stopping, or this is its thread): post as usual. Never blocks.
 * While borrowed, nothing may call libuv on the loop: deferred tasks, kicks and timers armed
 * earlier than the armed one are noted and the loop is woken at pul__loop_unborrow. */
int pul__loop_borrow(pul__loop_t *l);
void pul__loop_unborrow(pul__loop_t *l);
/* A borrower that made actors ready (a request it read for them) runs the dispatcher itself, so
 * the core thread need not wake for it; the loop is still woken at the unborrow when anything is
 * left (tasks, actors, an earlier timer). Borrower only. */
void pul__loop_borrow_dispatch(pul__loop_t *l);
/* Nonzero while the calling thread borrows l (it may not call libuv on l's loop). */
int pul__loop_borrowed(const pul__loop_t *l);
/* First call of every libuv I/O callback that runs core-thread code (read, write, connect,
 * accept, lookup done): the core thread takes run_mu back after the poll (waiting for a borrower
 * to finish). Timers, idle and close callbacks run with it held already. Core thread. */
void pul__loop_enter(pul__loop_t *l);
/* Run t on the next loop turn. Core thread only. */
void pul__loop_defer(pul__loop_t *l, pul__task_t *t);
/* Ask for on_turn to run on the next turn. Core thread only. */
void pul__loop_kick(pul__loop_t *l);
/* Nonzero when the calling thread is the loop's thread. */
int pul__loop_on_thread(const pul__loop_t *l);
/* Arm t to fire at due (pul__now_ms() time). Re-arming an armed timer moves it. Returns 0 or
 * PUL_ENOMEM. Core thread. */
int pul__timer_arm(pul__loop_t *l, pul__tmr_t *t, uint64_t due);
/* Disarm (no-op when not armed). Core thread. */
void pul__timer_disarm(pul__loop_t *l, pul__tmr_t *t);
/* Run every expired timer and every pending task now. Core thread. */
void pul__loop_run_pending(pul__loop_t *l);
/* From the core thread during the last task: close the handles and let the thread exit. */
void pul__loop_stop(pul__loop_t *l);
/* Join the thread and release the loop. Not from the core thread. */
void pul__loop_join(pul__loop_t *l);
/* Frees what outlives the join (the mutexes), once nobody refers to the loop any more. */
void pul__loop_destroy(pul__loop_t *l);

#endif
