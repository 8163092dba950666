/* loop.c — the core loop thread and its one door. */
#include "core/loop.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "pulsing/pulsing.h"

static _Thread_local const pul__loop_t *loop_current;
static _Thread_local pul__loop_t *loop_borrowed;        /* pul__loop_borrow */
static _Thread_local const pul__loop_t *borrow_saved;   /* loop_current before the borrow */

/* ---- timer heap ---------------------------------------------------------------------------- */

static void
heap_swap(pul__loop_t *l, size_t a, size_t b)
{
    pul__tmr_t *t = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->idx = a + 1;
    l->heap[b]->idx = b + 1;
}

static void
heap_up(pul__loop_t *l, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (l->heap[p]->due <= l->heap[i]->due) {
            break;
        }
        heap_swap(l, i, p);
        i = p;
    }
}

static void
heap_down(pul__loop_t *l, size_t i)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= l->heap_len) {
            break;
        }
        if (c + 1 < l->heap_len && l->heap[c + 1]->due < l->heap[c]->due) {
            c++;
        }
        if (l->heap[i]->due <= l->heap[c]->due) {
            break;
        }
        heap_swap(l, i, c);
        i = c;
    }
}

static void loop_timer_cb(uv_timer_t *h);

static void
loop_rearm(pul__loop_t *l)
{
    if (l->stopping) {
        return;
    }
    if (l->borrowing) {
        /* No libuv from a borrower: a timer now due before the armed one needs the loop
         * (which rearms on its turn); a later or removed one at worst wakes it early. */
        if (l->heap_len > 0 &&
            (l->timer_armed_due == 0 || l->heap[0]->due < l->timer_armed_due)) {
            l->borrow_wake = 1;
        }
        return;
    }
    if (l->heap_len == 0) {
        uv_timer_stop(&l->timer);
        l->timer_armed_due = 0;
        return;
    }
    uint64_t due = l->heap[0]->due;
    if (due == l->timer_armed_due && uv_is_active((uv_handle_t *)&l->timer)) {
        return;
    }
    uint64_t now = pul__now_ms();
    uint64_t wait = due > now ? due - now : 0;
    if (pul__clock_is_fake() && wait > 0) {
        /* Fake time only moves when a test advances it and pokes the loop. */
        wait = 3600000;
    }
    l->timer_armed_due = due;
    uv_timer_start(&l->timer, loop_timer_cb, wait, 0);
}

int
pul__timer_arm(pul__loop_t *l, pul__tmr_t *t, uint64_t due)
{
    if (t->idx != 0) {
        pul__timer_disarm(l, t);
    }
    if (l->heap_len == l->heap_cap) {
        size_t ncap = l->heap_cap ? l->heap_cap * 2 : 64;
        pul__tmr_t **nh = pul__realloc(l->heap, ncap * sizeof *nh);
        if (nh == NULL) {
            return PUL_ENOMEM;
        }
        l->heap = nh;
        l->heap_cap = ncap;
    }
    t->due = due;
    l->heap[l->heap_len] = t;
    t->idx = ++l->heap_len;
    heap_up(l, l->heap_len - 1);
    loop_rearm(l);
    return 0;
}

void
pul__timer_disarm(pul__loop_t *l, pul__tmr_t *t)
{
    if (t == NULL || t->idx == 0) {
        return;
    }
    size_t i = t->idx - 1;
    size_t last = l->heap_len - 1;
    if (i != last) {
        heap_swap(l, i, last);
    }
    l->heap_len--;
    t->idx = 0;
    if (i < l->heap_len) {
        heap_down(l, i);
        heap_up(l, i);
    }
    loop_rearm(l);
}

static void
loop_run_timers(pul__loop_t *l)
{
    uint64_t now = pul__now_ms();
    while (l->heap_len > 0 && l->heap[0]->due <= now) {
        pul__tmr_t *t = l->heap[0];
        pul__timer_disarm(l, t);
        if (t->repeat > 0) {
            /* Re-armed before the callback so the callback may disarm it. */
            if (pul__timer_arm(l, t, now + t->repeat) != 0) {
                t->repeat = 0;
            }
        }
        t->cb(t);
    }
    loop_rearm(l);
}

/* ---- turns ------------------------------------------------------------------------------- */

static void
loop_run_local(pul__loop_t *l)
{
    /* Only the tasks present now: tasks deferred while running wait for the next turn. */
    pul__task_t *t = l->local_head;
    l->local_head = l->local_tail = NULL;
    while (t != NULL) {
        pul__task_t *next = t->next;
        t->next = NULL;
        t->run(t);
        t = next;
    }
}

/* Arm (us > 0) or disarm the door timer. Under l->mu. Returns 0 or PUL_EIO (cannot happen
 * with a valid fd and value; door_armed then stays as it was). */
static int
door_timer_set(pul__loop_t *l, long us)
{
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_nsec = us * 1000;
    if (timerfd_settime(l->door_tfd, 0, &its, NULL) != 0) {
        return PUL_EIO;
    }
    l->door_armed = us > 0;
    return 0;
}

static void
loop_drain_inbox(pul__loop_t *l)
{
    pthread_mutex_lock(&l->mu);
    pul__task_t *t = l->in_head;
    l->in_head = l->in_tail = NULL;
    /* Everything queued is taken: no wake-up is owed any more, and the door timer a holder
     * armed for it would only wake us for nothing. */
    l->wake_owed = 0;
    if (l->door_armed) {
        (void)door_timer_set(l, 0); /* failing, it fires once for nothing */
    }
    pthread_mutex_unlock(&l->mu);
    while (t != NULL) {
        pul__task_t *next = t->next;
        t->next = NULL;
        t->run(t);
        t = next;
    }
}

static void loop_idle_cb(uv_idle_t *h);

/* One turn of work: the door, local tasks, timers, then the dispatcher. */
static void
loop_turn(pul__loop_t *l)
{
    loop_current = l;
    loop_drain_inbox(l);
    loop_run_local(l);
    loop_run_timers(l);
    int more = l->on_turn != NULL && !l->stopping ? l->on_turn(l->owner) : 0;
    int want = !l->stopping && (more || l->local_head != NULL);
    if (want && !l->idle_active) {
        uv_idle_start(&l->idle, loop_idle_cb);
        l->idle_active = 1;
    } else if (!want && l->idle_active) {
        uv_idle_stop(&l->idle);
        l->idle_active = 0;
    }
}

static void
loop_idle_cb(uv_idle_t *h)
{
    loop_turn(h->data);
}

static void
loop_async_cb(uv_async_t *h)
{
    pul__loop_enter(h->data);
    loop_turn(h->data);
}

/* The door timer: a held post has waited PUL__LOOP_HOLD_MAX_US; the turn drains it. */
static void
loop_door_cb(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    pul__loop_t *l = h->data;
    pul__loop_enter(l); /* an I/O callback: take run_mu back first */
    uint64_t ticks;
    while (read(l->door_tfd, &ticks, sizeof ticks) < 0 && errno == EINTR) {
    } /* EAGAIN: disarmed since it fired */
    loop_turn(l);
}

void
pul__loop_enter(pul__loop_t *l)
{
    if (!l->run_held) {
        pthread_mutex_lock(&l->run_mu); /* waits for a borrower to finish */
        l->run_held = 1;
    }
}

/* Just before libuv polls: the thread may sleep now, so a borrower may have run_mu. */
static void
loop_prepare_cb(uv_prepare_t *h)
{
    pul__loop_t *l = h->data;
    if (l->run_held) {
        l->run_held = 0;
        pthread_mutex_unlock(&l->run_mu);
    }
}

/* After the poll phase (when no I/O callback took run_mu back already). */
static void
loop_check_cb(uv_check_t *h)
{
    pul__loop_enter(h->data);
}

static void
loop_timer_cb(uv_timer_t *h)
{
    pul__loop_t *l = h->data;
    l->timer_armed_due = 0;
    loop_turn(l);
}

void
pul__loop_run_pending(pul__loop_t *l)
{
    loop_drain_inbox(l);
    loop_run_local(l);
    loop_run_timers(l);
}

void
pul__loop_kick(pul__loop_t *l)
{
    if (l->borrowing) {
        l->borrow_wake = 1; /* the woken loop's turn starts the idle handle if still needed */
        return;
    }
    if (!l->idle_active && !l->stopping) {
        uv_idle_start(&l->idle, loop_idle_cb);
        l->idle_active = 1;
    }
}

void
pul__loop_defer(pul__loop_t *l, pul__task_t *t)
{
    assert(pul__loop_on_thread(l));
    t->next = NULL;
    if (l->local_tail != NULL) {
        l->local_tail->next = t;
    } else {
        l->local_head = t;
    }
    l->local_tail = t;
    pul__loop_kick(l);
}

/* The loops the calling thread holds (pul__loop_hold): a few at most. */
#define HELD_MAX 4
typedef struct {
    const pul__loop_t *loop;
    uint64_t serial;
    int depth;
    int owed; /* a post of ours skipped its wake-up */
} held_t;
static _Thread_local held_t held[HELD_MAX];
static uint64_t loop_serials;

static held_t *
held_find(const pul__loop_t *l)
{
    for (int i = 0; i < HELD_MAX; i++) {
        if (held[i].loop == l && held[i].serial == l->serial) {
            return &held[i];
        }
    }
    return NULL;
}

static int
loop_push(pul__loop_t *l, pul__task_t *t, int last)
{
    t->next = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->closed) {
        pthread_mutex_unlock(&l->mu);
        return PUL_ECLOSED;
    }
    int was_empty = l->in_head == NULL;
    if (l->in_tail != NULL) {
        l->in_tail->next = t;
    } else {
        l->in_head = t;
    }
    l->in_tail = t;
    if (last) {
        l->closed = 1;
    }
    held_t *h = last || !l->door_on ? NULL : held_find(l);
    int wake = 0;
    if (was_empty || l->wake_owed) {
        if (h != NULL && (l->door_armed || door_timer_set(l, PUL__LOOP_HOLD_MAX_US) == 0)) {
            /* The release wakes the loop, or the door timer does if the holder is not back by
             * then (it may be blocked in user code waiting for what this post leads to). */
            l->wake_owed = 1;
            h->owed = 1;
        } else {
            l->wake_owed = 0;
            wake = 1;
        }
    }
    pthread_mutex_unlock(&l->mu);
    /* Only the push that finds the inbox empty wakes the loop: the drain takes everything. */
    if (wake) {
        uv_async_send(&l->async);
    }
    return 0;
}

void
pul__loop_hold(pul__loop_t *l)
{
    held_t *h = held_find(l);
    if (h == NULL) {
        for (int i = 0; i < HELD_MAX; i++) {
            /* Free, or left by a loop that was joined while held (its address reused). */
            if (held[i].loop == NULL || held[i].loop == l) {
                h = &held[i];
                h->loop = l;
                h->serial = l->serial;
                h->depth = 0;
                h->owed = 0;
                break;
            }
        }
    }
    if (h != NULL) {
        h->depth++;
    } /* else: too many loops held by this thread at once: this one is not held */
}

void
pul__loop_release(pul__loop_t *l)
{
    held_t *h = held_find(l);
    if (h == NULL || --h->depth > 0) {
        return;
    }
    int owed = h->owed;
    h->loop = NULL;
    h->owed = 0;
    if (!owed) {
        return;
    }
    pthread_mutex_lock(&l->mu);
    /* Cleared when another push woke the loop since; once closed, the last task woke it. */
    int wake = l->wake_owed && !l->closed;
    l->wake_owed = 0;
    pthread_mutex_unlock(&l->mu);
    if (wake) {
        uv_async_send(&l->async);
    }
}

int
pul__loop_post(pul__loop_t *l, pul__task_t *t)
{
    return loop_push(l, t, 0);
}

int
pul__loop_post_last(pul__loop_t *l, pul__task_t *t)
{
    return loop_push(l, t, 1);
}

int
pul__loop_on_thread(const pul__loop_t *l)
{
    return loop_current == l;
}

int
pul__loop_borrow(pul__loop_t *l)
{
    if (loop_current == l || loop_borrowed != NULL || pthread_mutex_trylock(&l->run_mu) != 0) {
        return 0;
    }
    /* run_mu is free: the core thread sleeps in poll (or has not started / has exited). */
    int ok = l->running && !l->stopping && l->local_head == NULL && !l->idle_active;
    if (ok) {
        pthread_mutex_lock(&l->mu);
        ok = l->in_head == NULL && !l->closed; /* queued work: the loop is being woken anyway */
        pthread_mutex_unlock(&l->mu);
    }
    if (!ok) {
        pthread_mutex_unlock(&l->run_mu);
        return 0;
    }
    l->borrowing = 1;
    l->borrow_wake = 0;
    loop_borrowed = l;
    borrow_saved = loop_current;
    loop_current = l;
    return 1;
}

void
pul__loop_unborrow(pul__loop_t *l)
{
    assert(loop_borrowed == l);
    int wake = l->borrow_wake || l->local_head != NULL;
    l->borrowing = 0;
    l->borrow_wake = 0;
    loop_current = borrow_saved;
    borrow_saved = NULL;
    loop_borrowed = NULL;
    pthread_mutex_unlock(&l->run_mu);
    if (wake) {
        uv_async_send(&l->async); /* its turn runs the local queue, timers and the rearm */
    }
}

void
pul__loop_borrow_dispatch(pul__loop_t *l)
{
    assert(loop_borrowed == l);
    int more = l->on_turn != NULL && !l->stopping ? l->on_turn(l->owner) : 0;
    int timer = l->heap_len > 0 &&
                (l->timer_armed_due == 0 || l->heap[0]->due < l->timer_armed_due);
    /* What set borrow_wake so far: kicks (the dispatcher, just run), deferred tasks (local)
     * and timers due before the armed one; recomputed from what is left. */
    l->borrow_wake = more || l->local_head != NULL || timer;
}

int
pul__loop_borrowed(const pul__loop_t *l)
{
    return loop_borrowed == l;
}

/* The core thread holds run_mu whenever it runs anything but libuv's poll: it lets go in the
 * prepare phase (just before the poll) and takes it back in the first I/O callback after it
 * (each calls pul__loop_enter first) or in the check phase, so a borrower can take run_mu
 * exactly while the loop waits for events, and a wake-up costs no extra syscall. */
static void *
loop_main(void *arg)
{
    pul__loop_t *l = arg;
    loop_current = l;
    pthread_mutex_lock(&l->run_mu);
    l->run_held = 1;
    l->running = 1;
    uv_run(&l->uv, UV_RUN_DEFAULT);
    pul__loop_enter(l);
    l->running = 0;
    l->run_held = 0;
    pthread_mutex_unlock(&l->run_mu);
    loop_current = NULL;
    return NULL;
}

int
pul__loop_start(pul__loop_t *l, int (*on_turn)(void *), void *owner)
{
    int rc = PUL_EIO;
    l->on_turn = on_turn;
    l->owner = owner;
    l->door_tfd = -1;
    l->door_on = 0;
    l->door_armed = 0;
    l->serial = __atomic_add_fetch(&loop_serials, 1, __ATOMIC_RELAXED);
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        return PUL_EIO;
    }
    if (pthread_mutex_init(&l->run_mu, NULL) != 0) {
        pthread_mutex_destroy(&l->mu);
        return PUL_EIO;
    }
    if (uv_loop_init(&l->uv) != 0) {
        goto fail_mu;
    }
    if (uv_async_init(&l->uv, &l->async, loop_async_cb) != 0) {
        goto fail_loop;
    }
    l->async.data = l;
    uv_idle_init(&l->uv, &l->idle);
    l->idle.data = l;
    uv_timer_init(&l->uv, &l->timer);
    l->timer.data = l;
    /* The door timer. Without it, holds are not honoured (every post wakes the loop at once):
     * slower, never a hang. */
    l->door_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (l->door_tfd >= 0 && uv_poll_init(&l->uv, &l->door_poll, l->door_tfd) != 0) {
        close(l->door_tfd);
        l->door_tfd = -1;
    }
    if (l->door_tfd >= 0) {
        l->door_poll.data = l;
        l->door_on = uv_poll_start(&l->door_poll, UV_READABLE, loop_door_cb) == 0;
    }
    uv_prepare_init(&l->uv, &l->prepare);
    l->prepare.data = l;
    uv_prepare_start(&l->prepare, loop_prepare_cb);
    uv_unref((uv_handle_t *)&l->prepare); /* they do not keep the loop alive */
    uv_check_init(&l->uv, &l->check);
    l->check.data = l;
    uv_check_start(&l->check, loop_check_cb);
    uv_unref((uv_handle_t *)&l->check);
    /* The core thread writes to sockets whose peer may be gone: it blocks SIGPIPE (a write then
     * fails with EPIPE) instead of asking the host program to ignore the signal. */
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    int crc = pthread_create(&l->thread, NULL, loop_main, l);
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    if (crc != 0) {
        goto fail_handles;
    }
    l->thread_started = 1;
    return 0;

fail_handles:
    uv_close((uv_handle_t *)&l->async, NULL);
    uv_close((uv_handle_t *)&l->idle, NULL);
    uv_close((uv_handle_t *)&l->timer, NULL);
    if (l->door_tfd >= 0) {
        uv_close((uv_handle_t *)&l->door_poll, NULL);
    }
    uv_close((uv_handle_t *)&l->prepare, NULL);
    uv_close((uv_handle_t *)&l->check, NULL);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    if (l->door_tfd >= 0) {
        close(l->door_tfd);
        l->door_tfd = -1;
    }
fail_loop:
    uv_loop_close(&l->uv);
fail_mu:
    pthread_mutex_destroy(&l->run_mu);
    pthread_mutex_destroy(&l->mu);
    return rc;
}

void
pul__loop_stop(pul__loop_t *l)
{
    l->stopping = 1;
    uv_close((uv_handle_t *)&l->async, NULL);
    uv_close((uv_handle_t *)&l->idle, NULL);
    uv_close((uv_handle_t *)&l->timer, NULL);
    if (l->door_tfd >= 0) {
        uv_close((uv_handle_t *)&l->door_poll, NULL);
    }
    uv_close((uv_handle_t *)&l->prepare, NULL); /* run_mu stays held until the thread exits */
    uv_close((uv_handle_t *)&l->check, NULL);
    l->idle_active = 0;
}

void
pul__loop_join(pul__loop_t *l)
{
    held_t *h = held_find(l); /* joined while this thread holds it (closed from a drain) */
    if (h != NULL) {
        memset(h, 0, sizeof *h);
    }
    if (l->thread_started) {
        pthread_join(l->thread, NULL);
        l->thread_started = 0;
    }
    uv_loop_close(&l->uv);
    if (l->door_tfd >= 0) {
        close(l->door_tfd); /* after the thread: nobody arms it any more (the door is closed) */
        l->door_tfd = -1;
    }
    pul__free(l->heap);
    l->heap = NULL;
    l->heap_len = l->heap_cap = 0;
}

/* The mutexes outlive the join: a thread holding a reference to the owner (a reply handle, a
 * call) may still post, hold/release or try to borrow while or after the loop is joined, and
 * must find `closed` under a live mutex rather than lock a destroyed one. */
void
pul__loop_destroy(pul__loop_t *l)
{
    pthread_mutex_destroy(&l->run_mu);
    pthread_mutex_destroy(&l->mu);
}
