/* pump.c — the thread that made a lone remote ask reads its reply itself (docs/design/threads.md,
 * "Pumping").
 *
 * A lone ask from a thread with its own event loop (the Python home loop) is written by that
 * thread ("Direct writes"); without a pump its reply wakes the core thread, which reads it and
 * wakes the caller's thread through the bridge: two wake-ups of halted vCPUs. With a pump the
 * caller's loop watches a duplicate of the connection's descriptor, and when it is readable
 * borrows the core's loop (pul__loop_borrow: only while the core thread sleeps) and reads and
 * processes the bytes itself, standing in for the core thread: one wake-up.
 *
 *   pul_pump_fd    the pumper takes the connection offered by its last direct ask (a duplicate
 *                  descriptor and a token); the core thread stops reading it (pump_claim_task)
 *   pul_pump       readable: read and process what is there (borrowing); or "busy" (the core
 *                  thread runs: the pumper stops, the core reads again), or "stale"
 *   pul_pump_stop  the pumper stops: the core thread reads the connection again
 *
 * The core thread keeps a watchdog while a connection is pumped (every PUMP_TICK_MS): bytes
 * left unread for a whole tick (the pumper's loop is blocked, e.g. by user code waiting for a
 * reply on that very connection) or no read for PUMP_IDLE_MS end the pumping, and the core
 * reads again: a blocked pumper delays the connection by two ticks at most. The pumper learns it
 * at its next pul_pump (stale). A connection that closes while pumped is shut down first, so
 * the pumper's duplicate sees EOF. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "net/netint.h"

#define PUMP_TICK_MS 20
#define PUMP_IDLE_MS 1000

/* Core thread (not a borrower: may call libuv). */
static void
pump_end(pul__net_t *net, int read_again)
{
    conn_t *cn = net->pump_cn;
    if (cn == NULL) {
        return;
    }
    net->pump_cn = NULL;
    atomic_fetch_add_explicit(&net->pump_gen, 1, memory_order_relaxed); /* the token goes stale */
    pul__timer_disarm(&net->sys->loop, &net->pump_timer);
    int stopped = cn->pump == 2;
    cn->pump = 0;
    if (read_again && stopped && !cn->dead && cn->io->start(cn) != 0) {
        conn_fail(cn, PUL_EIO);
    }
    conn_unref(cn); /* the pump's */
}

void
pump_conn_gone(pul__net_t *net, conn_t *cn)
{
    if (net->pump_offer == cn) {
        net->pump_offer = NULL;
        atomic_store_explicit(&net->pump_offered, 0, memory_order_relaxed);
    }
    if (net->pump_cn == cn) {
        pump_end(net, 0);
    }
}

void
pump_offer(pul__net_t *net, conn_t *cn)
{
    if (net->pump_cn == NULL && conn_is_tcp(cn)) {
        net->pump_offer = cn;
        atomic_store_explicit(&net->pump_offered, 1, memory_order_relaxed);
    }
}

static int
conn_fd(conn_t *cn)
{
    uv_os_fd_t fd;
    return uv_fileno((uv_handle_t *)&cn->tcp, &fd) == 0 ? fd : -1;
}

/* The transport of a system that is not shutting down, and whose pumping (if any) has token
 * `token` (0: any); NULL otherwise. Any thread. */
static pul__net_t *
pump_net(pul_system_t *sys, uint64_t token)
{
    if (sys == NULL || atomic_load_explicit(&sys->closing, memory_order_relaxed)) {
        return NULL;
    }
    pul__net_t *net = sys->net;
    if (net == NULL ||
        (token != 0 && atomic_load_explicit(&net->pump_gen, memory_order_relaxed) != token)) {
        return NULL;
    }
    return net;
}

static void
pump_tick(pul__tmr_t *t)
{
    pul__net_t *net = (pul__net_t *)((char *)t - offsetof(pul__net_t, pump_timer));
    conn_t *cn = net->pump_cn;
    if (cn == NULL) {
        return;
    }
    int fd = conn_fd(cn);
    int pending = 0;
    if (fd < 0 || ioctl(fd, FIONREAD, &pending) != 0) {
        pending = 0;
    }
    int late = pending > 0 && net->pump_seen_pending && net->pump_seen_reads == net->pump_reads;
    net->pump_idle_ticks = net->pump_reads == net->pump_seen_reads ? net->pump_idle_ticks + 1 : 0;
    if (late || net->pump_idle_ticks * PUMP_TICK_MS >= PUMP_IDLE_MS) {
        pump_end(net, 1); /* the core thread reads it again */
        return;
    }
    net->pump_seen_pending = pending > 0;
    net->pump_seen_reads = net->pump_reads;
    (void)pul__timer_arm(&net->sys->loop, &net->pump_timer, pul__now_ms() + PUMP_TICK_MS);
}

/* The core thread stops reading the claimed connection and starts the watchdog (the pump
 * timer, armed due now by the claim: a timer, unlike a deferred task, is disarmed with the
 * pumping, so nothing is left queued when the transport closes). */
static void
pump_claim(pul__tmr_t *t)
{
    pul__net_t *net = (pul__net_t *)((char *)t - offsetof(pul__net_t, pump_timer));
    conn_t *cn = net->pump_cn;
    if (cn == NULL || cn->pump != 1) {
        return;
    }
    if (cn->dead) {
        pump_end(net, 0);
        return;
    }
    (void)uv_read_stop((uv_stream_t *)&cn->tcp);
    cn->pump = 2;
    net->pump_seen_pending = 0;
    net->pump_seen_reads = net->pump_reads;
    net->pump_idle_ticks = 0;
    net->pump_timer.cb = pump_tick;
    (void)pul__timer_arm(&net->sys->loop, &net->pump_timer, pul__now_ms() + PUMP_TICK_MS);
}

int
pul_pump_fd(pul_system_t *sys, uint64_t *token)
{
    if (sys == NULL || token == NULL) {
        return -1;
    }
    pul__net_t *net = pump_net(sys, 0);
    if (net == NULL || !atomic_load_explicit(&net->pump_offered, memory_order_relaxed) ||
        !pul__loop_borrow(&sys->loop)) {
        return -1;
    }
    int dup_fd = -1;
    conn_t *cn = net->pump_offer;
    net->pump_offer = NULL;
    atomic_store_explicit(&net->pump_offered, 0, memory_order_relaxed);
    if (cn != NULL && net->pump_cn == NULL && !net->closing &&
        !cn->dead && !cn->fail_owed && cn->connected && cn->pump == 0 && conn_is_tcp(cn)) {
        int fd = conn_fd(cn);
        dup_fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
        if (dup_fd >= 0) {
            cn->refs++; /* the pump's */
            cn->pump = 1;
            cn->pumped_ever = 1;
            net->pump_cn = cn;
            *token = atomic_fetch_add_explicit(&net->pump_gen, 1, memory_order_relaxed) + 1;
            net->pump_timer.cb = pump_claim; /* the core thread wakes for it when we let go */
            if (pul__timer_arm(&sys->loop, &net->pump_timer, pul__now_ms()) != 0) {
                net->pump_cn = NULL;
                cn->pump = 0;
                cn->refs--;
                atomic_fetch_add_explicit(&net->pump_gen, 1, memory_order_relaxed);
                close(dup_fd);
                dup_fd = -1;
            }
        }
    }
    pul__loop_unborrow(&sys->loop);
    return dup_fd;
}

int
pul_pump(pul_system_t *sys, uint64_t token)
{
    pul__net_t *net = pump_net(sys, token);
    if (net == NULL) {
        return PUL_ECLOSED;
    }
    if (!pul__loop_borrow(&sys->loop)) {
        return PUL_EAGAIN;
    }
    int rc;
    conn_t *cn = net->pump_cn;
    if (cn == NULL || net->closing || cn->dead || cn->fail_owed ||
        atomic_load_explicit(&net->pump_gen, memory_order_relaxed) != token) {
        rc = PUL_ECLOSED;
    } else {
        if (net->rbuf == NULL) {
            net->rbuf = pul__malloc(NET_READ_BUF);
        }
        int fd = conn_fd(cn);
        ssize_t n = -1;
        int err = ENOMEM;
        if (net->rbuf != NULL && fd >= 0) {
            do {
                n = recv(fd, net->rbuf, NET_READ_BUF, MSG_DONTWAIT);
            } while (n < 0 && errno == EINTR);
            err = errno;
        }
        if (n > 0) {
            net->pump_reads++;
            atomic_fetch_add_explicit(&net->pumped, 1, memory_order_relaxed);
            cn->refs++; /* conn_on_bytes may fail it */
            conn_on_bytes(cn, (const uint8_t *)net->rbuf, (size_t)n);
            if (cn->kind == CONN_SERVER) {
                /* Requests it read went to actors' mailboxes: run them here (a Python actor's
                 * delivery goes to the bridge this thread drains next), not on a woken core. */
                pul__loop_borrow_dispatch(&sys->loop);
            }
            conn_unref(cn);
            rc = 1;
        } else if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
            rc = 0;
        } else if (n < 0 && err == ENOMEM) {
            rc = PUL_EAGAIN; /* let the core thread read it */
        } else {
            /* EOF or a socket error: the core thread fails the connection (deferred here). */
            conn_fail(cn, PUL_EIO);
            rc = PUL_ECLOSED;
        }
    }
    pul__net_direct_flush(net);
    pul__loop_unborrow(&sys->loop);
    return rc;
}

typedef struct {
    pul_system_t *sys;
    uint64_t token;
} pump_stop_t;

static void
pump_stop_task(void *arg)
{
    pump_stop_t *op = arg;
    pul__net_t *net = op->sys->net;
    if (net != NULL && net->pump_cn != NULL &&
        atomic_load_explicit(&net->pump_gen, memory_order_relaxed) == op->token) {
        pump_end(net, 1);
    }
    pul__free(op);
}

void
pul_pump_stop(pul_system_t *sys, uint64_t token)
{
    if (pump_net(sys, token) == NULL) {
        return; /* already over (or the system is shutting down: so is the pumping) */
    }
    pump_stop_t *op = pul__malloc(sizeof *op);
    if (op == NULL) {
        return; /* the watchdog ends it */
    }
    op->sys = sys;
    op->token = token;
    if (pul_system_post(sys, pump_stop_task, op) != 0) {
        pul__free(op);
    }
}

void
pump_net_close(pul__net_t *net)
{
    net->pump_offer = NULL;
    atomic_store_explicit(&net->pump_offered, 0, memory_order_relaxed);
    pump_end(net, 0);
}
