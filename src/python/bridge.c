/* bridge.c — the completion queue from core threads to the home loop, woken by an eventfd. */
#include "pulpy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* The queue is a mutex-protected vector, double-buffered: producers append to `q` under the
 * mutex (no allocation in the common case), the consumer swaps `q` with the exhausted batch
 * `cur` in O(1) and runs `cur` with the mutex released. The eventfd is written only by the
 * producer that finds `q` empty, so a burst of N completions costs one write and one wake-up. */

pulpy_bridge_t *
pulpy_bridge_new(void)
{
    pulpy_bridge_t *b = calloc(1, sizeof(*b));
    if (b == NULL) {
        return NULL;
    }
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (b->efd < 0) {
        int saved = errno;
        free(b);
        errno = saved;
        return NULL;
    }
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        close(b->efd);
        free(b);
        errno = ENOMEM;
        return NULL;
    }
    atomic_init(&b->refs, 1);
    atomic_init(&b->pushes, 0);
    atomic_init(&b->wakeups, 0);
    return b;
}

static int
vec_reserve(pulpy_vec_t *v, size_t want)
{
    if (want <= v->cap) {
        return 0;
    }
    size_t cap = v->cap ? v->cap * 2 : 64;
    while (cap < want) {
        cap *= 2;
    }
    pulpy_entry_t *nv = realloc(v->v, cap * sizeof(*nv));
    if (nv == NULL) {
        return PUL_ENOMEM;
    }
    v->v = nv;
    v->cap = cap;
    return 0;
}

int
pulpy_bridge_push(pulpy_bridge_t *b, const pulpy_entry_t *e)
{
    pthread_mutex_lock(&b->mu);
    if (vec_reserve(&b->q, b->q.n + 1) != 0) {
        pthread_mutex_unlock(&b->mu);
        return PUL_ENOMEM;
    }
    size_t n = b->q.n;
    int was_empty = n == 0;
    b->q.v[n] = *e;
    __atomic_store_n(&b->q.n, n + 1, __ATOMIC_RELEASE); /* read unlocked by spin() */
    pthread_mutex_unlock(&b->mu);
    atomic_fetch_add_explicit(&b->pushes, 1, memory_order_relaxed);
    if (was_empty) {
        uint64_t one = 1;
        atomic_fetch_add_explicit(&b->wakeups, 1, memory_order_relaxed);
        /* EAGAIN (counter saturated) still leaves the fd readable; nothing else can fail on a
         * valid eventfd, and the fd outlives every producer (closed after the core is joined). */
        ssize_t w = write(b->efd, &one, sizeof(one));
        (void)w;
    }
    return 0;
}

void
pulpy_bridge_ack(pulpy_bridge_t *b)
{
    uint64_t cnt;
    /* Must run before the swap: a push that lands after the swap writes the fd again. */
    ssize_t r = read(b->efd, &cnt, sizeof(cnt));
    (void)r; /* EAGAIN: nothing pending, a spurious call */
}

size_t
pulpy_bridge_take(pulpy_bridge_t *b)
{
    if (b->pos < b->cur.n) {
        return b->cur.n - b->pos;
    }
    pthread_mutex_lock(&b->mu);
    pulpy_vec_t tmp = b->cur;
    b->cur = b->q;
    b->q.v = tmp.v;
    b->q.cap = tmp.cap;
    __atomic_store_n(&b->q.n, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&b->mu);
    b->pos = 0;
    return b->cur.n;
}

void
pulpy_bridge_close(pulpy_bridge_t *b)
{
    if (b == NULL) {
        return;
    }
    if (b->efd >= 0) {
        close(b->efd);
        b->efd = -1;
    }
    pulpy_bridge_unref(b);
}

void
pulpy_bridge_unref(pulpy_bridge_t *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    pthread_mutex_destroy(&b->mu);
    free(b->q.v);
    free(b->cur.v);
    free(b);
}

pulpy_err_t *
pulpy_err_copy(const pul_error_t *err)
{
    if (err == NULL) {
        return NULL;
    }
    size_t lm = err->message ? strlen(err->message) + 1 : 0;
    size_t ld = err->details ? strlen(err->details) + 1 : 0;
    size_t lt = err->type_name ? strlen(err->type_name) + 1 : 0;
    pulpy_err_t *c = malloc(sizeof(*c) + lm + ld + lt);
    if (c == NULL) {
        return NULL;
    }
    c->e = *err;
    char *p = c->strings;
    if (lm) {
        memcpy(p, err->message, lm);
        c->e.message = p;
        p += lm;
    }
    if (ld) {
        memcpy(p, err->details, ld);
        c->e.details = p;
        p += ld;
    }
    if (lt) {
        memcpy(p, err->type_name, lt);
        c->e.type_name = p;
    }
    return c;
}
