/* cluster.c — glue between the membership state machines (swim.c, head.c), the transport and
 * the actor table: timers, control-plane POSTs and handlers, routes, snapshots under a mutex. */
#include "cluster/cluster.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "actor/actor.h"
#include "cluster/head.h"
#include "cluster/swim.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

#define LEAVE_WAIT_MS 500

typedef struct {
    pul_id_t node;
    char addr[PUL_ADDR_MAX + 1];
    pul_member_status_t st;
} cev_t;

struct pul__cluster_s {
    pul_system_t *sys;
    void *net;
    pul__cluster_net_ops_t ops;
    pthread_mutex_t mu; /* guards swim/head state and ev against snapshot readers */
    pul__swim_t *swim;  /* gossip mode */
    pul__head_t *head;  /* head-node mode (head or worker) */
    int is_head;
    char head_addr[PUL_ADDR_MAX + 1];
    size_t max_msg;
    uint64_t post_timeout;
    /* Core thread. */
    pul__tmr_t tick;
    pul__tmr_t flush_tmr; /* applies member events to routes on a later turn */
    uint64_t next_hb;
    int hb_inflight;
    uint64_t hb_backoff; /* worker: delay before the next try while the head is unreachable */
    long hb_failed;      /* worker: heartbeats in a row without a view */
    cev_t *ev; /* member events produced under mu, applied to routes after it */
    size_t nev;
    size_t evcap;
    long inflight; /* posts whose callback has not run yet */
    int freed;     /* pul__cluster_free ran; the last callback frees the struct */
    int leaving;
    int silenced; /* test hook: frozen */
    int leave_fired;
    long leave_wait;
    void (*leave_done)(void *);
    void *leave_arg;
    pul__tmr_t leave_tmr;
};

enum { POST_GOSSIP, POST_SYNC, POST_HB };

typedef struct {
    pul__cluster_t *cl;
    int kind;
    int flags;
    char addr[PUL_ADDR_MAX + 1];
} post_t;

static void cluster_flush(pul__cluster_t *cl);
static void cluster_arm(pul__cluster_t *cl, uint64_t due);

/* ---- events and posts ---------------------------------------------------------------------- */

static void
cluster_event(void *arg, pul_id_t node, const char *addr, pul_member_status_t st)
{
    pul__cluster_t *cl = arg;
    if (cl->nev == cl->evcap) {
        size_t nc = cl->evcap ? cl->evcap * 2 : 8;
        cev_t *ne = pul__realloc(cl->ev, nc * sizeof *ne);
        if (ne == NULL) {
            return; /* the route catches up at the next change */
        }
        cl->ev = ne;
        cl->evcap = nc;
    }
    cev_t *e = &cl->ev[cl->nev++];
    e->node = node;
    snprintf(e->addr, sizeof e->addr, "%s", addr);
    e->st = st;
    if (st == PUL_MEMBER_ALIVE) {
        /* Set the route now, not a turn later: the member's names are visible to resolve() as
         * soon as mu is released, and a call to one of them must find its route. Setting a
         * route fails nothing, so it may happen here; the queued event sets it again in order
         * with a drop queued before it. */
        (void)cl->ops.route_set(cl->net, node, addr);
    }
    char idb[33];
    pul_id_format(node, idb);
    PUL__LOG(PUL__LOG_INFO, "cluster", "%s: member %s (%s) is %s", cl->sys->addr, idb, addr,
             pul_member_status_str(st));
}

/* Apply queued member events to the transport's routes, outside the mutex: dropping a route
 * fails calls, whose callbacks may read snapshots. */
static void
cluster_flush(pul__cluster_t *cl)
{
    for (;;) {
        pthread_mutex_lock(&cl->mu);
        cev_t *ev = cl->ev;
        size_t n = cl->nev;
        cl->ev = NULL;
        cl->nev = cl->evcap = 0;
        pthread_mutex_unlock(&cl->mu);
        if (n == 0) {
            pul__free(ev);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            if (ev[i].st == PUL_MEMBER_ALIVE) {
                (void)cl->ops.route_set(cl->net, ev[i].node, ev[i].addr);
            } else if (ev[i].st == PUL_MEMBER_DEAD || ev[i].st == PUL_MEMBER_LEFT) {
                cl->ops.route_drop(cl->net, ev[i].node);
            }
        }
        pul__free(ev);
    }
}

static void
flush_fire(pul__tmr_t *t)
{
    cluster_flush((pul__cluster_t *)((char *)t - offsetof(pul__cluster_t, flush_tmr)));
}

/* Route changes never happen inside a transport callback (a handler or a post completion): they
 * fail calls and close connections, so they wait for the next turn. */
static void
cluster_flush_soon(pul__cluster_t *cl)
{
    pthread_mutex_lock(&cl->mu);
    size_t n = cl->nev;
    pthread_mutex_unlock(&cl->mu);
    if (n > 0 && !cl->freed && cl->flush_tmr.idx == 0) {
        (void)pul__timer_arm(&cl->sys->loop, &cl->flush_tmr, pul__now_ms());
    }
}

static void
cluster_release(pul__cluster_t *cl)
{
    pthread_mutex_destroy(&cl->mu);
    pul__free(cl);
}

static void post_cb(int status, const uint8_t *body, size_t len, void *arg);

static int
cluster_post(pul__cluster_t *cl, const char *addr, const char *path, const uint8_t *body,
             size_t len, int kind, int flags)
{
    post_t *p = pul__calloc(1, sizeof *p);
    if (p == NULL) {
        return PUL_ENOMEM;
    }
    p->cl = cl;
    p->kind = kind;
    p->flags = flags;
    snprintf(p->addr, sizeof p->addr, "%s", addr);
    int rc = cl->ops.post(cl->net, addr, path, body, len, cl->post_timeout, post_cb, p);
    if (rc != 0) {
        pul__free(p);
        return rc;
    }
    cl->inflight++;
    return 0;
}

static void
leave_finish(pul__cluster_t *cl)
{
    if (cl->leave_fired) {
        return;
    }
    cl->leave_fired = 1;
    pul__timer_disarm(&cl->sys->loop, &cl->leave_tmr);
    if (cl->leave_done != NULL) {
        cl->leave_done(cl->leave_arg);
    }
}

/* Finish the leave on a later turn, from the timer: done() shuts the system down, which must
 * not happen inside a transport callback. */
static void
leave_soon(pul__cluster_t *cl)
{
    if (!cl->leave_fired) {
        (void)pul__timer_arm(&cl->sys->loop, &cl->leave_tmr, pul__now_ms());
    }
}

static void
leave_tmr_fire(pul__tmr_t *t)
{
    pul__cluster_t *cl = (pul__cluster_t *)((char *)t - offsetof(pul__cluster_t, leave_tmr));
    leave_finish(cl);
}

/* Worker: the answer to a heartbeat. Without a view the head is unreachable: we keep what we
 * know (our actors, our view, calls to live peers), report it (log, the head Suspect then Dead
 * in members()) and retry with a backoff that doubles from heartbeat_interval up to half of
 * heartbeat_timeout, so a head that comes back hears from every worker well before it would
 * consider one gone. Returns when to tick next (0: as planned). */
static uint64_t
worker_heartbeat_done(pul__cluster_t *cl, const char *addr, int status, const uint8_t *body,
                      size_t len, uint64_t now)
{
    const pul_cluster_timing_t *t = &cl->sys->cfg.timing;
    int rc = PUL_EPROTO;
    if (status == 200) {
        pthread_mutex_lock(&cl->mu);
        rc = pul__head_view_recv(cl->head, body, len, cl->max_msg, now);
        pthread_mutex_unlock(&cl->mu);
    }
    if (rc == 0) {
        if (cl->hb_failed > 0) {
            PUL__LOG(PUL__LOG_WARN, "cluster", "%s: head %s reachable again after %ld failed "
                     "heartbeats; registered", cl->sys->addr, addr, cl->hb_failed);
        }
        cl->hb_failed = 0;
        cl->hb_backoff = 0;
        return 0;
    }
    char why[64];
    if (status < 0) {
        snprintf(why, sizeof why, "%s", pul_strerror(status));
    } else if (status == 200) {
        snprintf(why, sizeof why, "unreadable view (%s)", pul_strerror(rc));
    } else {
        snprintf(why, sizeof why, "answered %d", status);
    }
    pthread_mutex_lock(&cl->mu);
    (void)pul__head_unreachable(cl->head, now);
    pthread_mutex_unlock(&cl->mu);
    uint64_t step = t->heartbeat_interval_ms ? t->heartbeat_interval_ms : 1000;
    uint64_t cap = t->heartbeat_timeout_ms / 2 > step ? t->heartbeat_timeout_ms / 2 : step;
    cl->hb_backoff = cl->hb_backoff == 0 ? step : cl->hb_backoff * 2;
    if (cl->hb_backoff > cap) {
        cl->hb_backoff = cap;
    }
    cl->hb_failed++;
    PUL__LOG(cl->hb_failed == 1 ? PUL__LOG_WARN : PUL__LOG_DEBUG, "cluster",
             "%s: head %s unreachable (%s): keeping the last view, retrying in %llu ms",
             cl->sys->addr, addr, why, (unsigned long long)cl->hb_backoff);
    cl->next_hb = now + cl->hb_backoff;
    return cl->next_hb;
}

static void
post_cb(int status, const uint8_t *body, size_t len, void *arg)
{
    post_t *p = arg;
    pul__cluster_t *cl = p->cl;
    cl->inflight--;
    if (cl->freed) {
        pul__free(p);
        if (cl->inflight == 0) {
            cluster_release(cl);
        }
        return;
    }
    if (cl->silenced && !(p->flags & PUL__SWIM_SEND_LEAVE)) {
        pul__free(p);
        return;
    }
    uint64_t now = pul__now_ms();
    uint64_t due = 0;
    switch (p->kind) {
    case POST_GOSSIP:
        if (p->flags & PUL__SWIM_SEND_LEAVE) {
            if (--cl->leave_wait <= 0 && cl->leaving) {
                leave_soon(cl);
            }
            break;
        }
        /* A refused or reset connection fails the probe at once; a timeout is only slow. */
        if (status < 0 && status != PUL_ETIMEDOUT && status != PUL_ECLOSED && !cl->leaving) {
            pthread_mutex_lock(&cl->mu);
            pul__swim_refused(cl->swim, p->addr, now);
            due = pul__swim_tick(cl->swim, now);
            pthread_mutex_unlock(&cl->mu);
        }
        break;
    case POST_SYNC:
        if (status == 200 && !cl->leaving) {
            pthread_mutex_lock(&cl->mu);
            if (pul__swim_sync_recv(cl->swim, body, len, cl->max_msg, now) != 0) {
                PUL__LOG(PUL__LOG_WARN, "cluster", "bad sync answer from %s", p->addr);
            }
            due = pul__swim_tick(cl->swim, now);
            pthread_mutex_unlock(&cl->mu);
        }
        break;
    case POST_HB:
        if (p->flags & PUL__SWIM_SEND_LEAVE) {
            leave_soon(cl);
            break;
        }
        cl->hb_inflight = 0;
        if (cl->leaving) {
            break;
        }
        due = worker_heartbeat_done(cl, p->addr, status, body, len, now);
        break;
    }
    pul__free(p);
    cluster_flush_soon(cl);
    if (due != 0) {
        cluster_arm(cl, due);
    }
}

/* ---- swim io (called under mu, on the core thread) ---------------------------------------- */

static void
swim_send_cb(void *arg, const char *addr, const uint8_t *buf, size_t len, int flags)
{
    pul__cluster_t *cl = arg;
    if (cluster_post(cl, addr, "/cluster/gossip", buf, len, POST_GOSSIP, flags) == 0 &&
        (flags & PUL__SWIM_SEND_LEAVE)) {
        cl->leave_wait++;
    }
}

static void
swim_sync_cb(void *arg, const char *addr, int join)
{
    pul__cluster_t *cl = arg;
    pul__gbuf_t b;
    pul__gbuf_init(&b, 0);
    if (pul__swim_sync_encode(cl->swim, join, cl->max_msg, &b) == 0) {
        (void)cluster_post(cl, addr, "/cluster/sync", b.p, b.len, POST_SYNC, 0);
    }
    pul__gbuf_free(&b);
}

/* ---- timers ------------------------------------------------------------------------------- */

static void
cluster_arm(pul__cluster_t *cl, uint64_t due)
{
    if (cl->leaving || cl->freed || cl->silenced) {
        return;
    }
    if (cl->tick.idx == 0 || due < cl->tick.due) {
        (void)pul__timer_arm(&cl->sys->loop, &cl->tick, due);
    }
}

static void
worker_heartbeat(pul__cluster_t *cl, int leaving)
{
    pul__gbuf_t b;
    pul__gbuf_init(&b, 0);
    pthread_mutex_lock(&cl->mu);
    int rc = pul__head_heartbeat_body(cl->head, leaving, &b);
    pthread_mutex_unlock(&cl->mu);
    int flags = leaving ? PUL__SWIM_SEND_LEAVE : 0;
    if (rc == 0 && cluster_post(cl, cl->head_addr, "/head/register", b.p, b.len, POST_HB,
                                flags) == 0) {
        if (leaving) {
            cl->leave_wait = 1;
        } else {
            cl->hb_inflight = 1;
        }
    }
    pul__gbuf_free(&b);
}

static void
tick_fire(pul__tmr_t *t)
{
    pul__cluster_t *cl = (pul__cluster_t *)((char *)t - offsetof(pul__cluster_t, tick));
    uint64_t now = pul__now_ms();
    uint64_t due;
    if (cl->swim != NULL) {
        pthread_mutex_lock(&cl->mu);
        due = pul__swim_tick(cl->swim, now);
        pthread_mutex_unlock(&cl->mu);
    } else if (cl->is_head) {
        pthread_mutex_lock(&cl->mu);
        due = pul__head_tick(cl->head, now);
        pthread_mutex_unlock(&cl->mu);
    } else {
        if (now >= cl->next_hb && !cl->hb_inflight) {
            cl->next_hb = now + cl->sys->cfg.timing.heartbeat_interval_ms;
            worker_heartbeat(cl, 0);
        }
        due = cl->next_hb > now ? cl->next_hb : now + cl->sys->cfg.timing.heartbeat_interval_ms;
    }
    cluster_flush(cl);
    cluster_arm(cl, due);
}

/* ---- handlers (core thread) --------------------------------------------------------------- */

static int
path_is(const char *path, const char *want)
{
    /* The transport may hand the full path or the part under the registered prefix. */
    return strcmp(path, want) == 0 || strcmp(path, strrchr(want, '/') + 1) == 0;
}

static int
cluster_handler(void *arg, const char *path, const uint8_t *body, size_t len, uint8_t **resp,
                size_t *resp_len)
{
    pul__cluster_t *cl = arg;
    uint64_t now = pul__now_ms();
    int status = 404;
    uint64_t due = 0;
    *resp = NULL;
    *resp_len = 0;
    if (cl->leaving || cl->freed || cl->silenced) {
        return 503;
    }
    if (path_is(path, "/cluster/gossip") && cl->swim != NULL) {
        pthread_mutex_lock(&cl->mu);
        int rc = pul__swim_recv(cl->swim, body, len, now);
        due = pul__swim_tick(cl->swim, now);
        pthread_mutex_unlock(&cl->mu);
        status = rc == 0 ? 204 : 400;
    } else if (path_is(path, "/cluster/sync") && cl->swim != NULL) {
        pul__gbuf_t b;
        pul__gbuf_init(&b, 0);
        pthread_mutex_lock(&cl->mu);
        int rc = pul__swim_sync_recv(cl->swim, body, len, cl->max_msg, now);
        if (rc == 0) {
            rc = pul__swim_sync_encode(cl->swim, 0, cl->max_msg, &b);
            status = rc == 0 ? 200 : 500;
        } else {
            status = 400;
        }
        due = pul__swim_tick(cl->swim, now);
        pthread_mutex_unlock(&cl->mu);
        if (status == 200) {
            *resp = b.p;
            *resp_len = b.len;
        } else {
            pul__gbuf_free(&b);
        }
    } else if (path_is(path, "/head/register") && cl->is_head) {
        pul__gbuf_t b;
        pul__gbuf_init(&b, 0);
        pthread_mutex_lock(&cl->mu);
        int rc = pul__head_register(cl->head, body, len, cl->max_msg, now, &b);
        pthread_mutex_unlock(&cl->mu);
        if (rc == 0) {
            status = 200;
            *resp = b.p;
            *resp_len = b.len;
        } else {
            status = rc == PUL_ENOMEM ? 500 : 400;
            pul__gbuf_free(&b);
        }
    }
    cluster_flush_soon(cl);
    if (due != 0) {
        cluster_arm(cl, due);
    }
    return status;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static int
net_post(void *net, const char *addr, const char *path, const uint8_t *body, size_t len,
         uint64_t timeout_ms, pul__net_resp_cb cb, void *arg)
{
    return pul__net_post(net, addr, path, body, len, timeout_ms, cb, arg);
}

static int
net_handle(void *net, const char *prefix, pul__net_handler_fn fn, void *arg)
{
    return pul__net_handle(net, prefix, fn, arg);
}

static int
net_route_set(void *net, pul_id_t node_id, const char *addr)
{
    return pul__net_route_set(net, node_id, addr);
}

static void
net_route_drop(void *net, pul_id_t node_id)
{
    pul__net_route_drop(net, node_id);
}

static const pul__cluster_net_ops_t net_ops = {net_post, net_handle, net_route_set,
                                               net_route_drop};

int
pul__cluster_start(pul_system_t *sys, pul__net_t *net, const char *self_addr,
                   pul__cluster_t **out)
{
    return pul__cluster_start_with(sys, net, &net_ops, self_addr, out);
}

int
pul__cluster_start_with(pul_system_t *sys, void *net, const pul__cluster_net_ops_t *ops,
                        const char *self_addr, pul__cluster_t **out)
{
    pul__cluster_t *cl = pul__calloc(1, sizeof *cl);
    if (cl == NULL) {
        return PUL_ENOMEM;
    }
    if (pthread_mutex_init(&cl->mu, NULL) != 0) {
        pul__free(cl);
        return PUL_ENOMEM;
    }
    cl->sys = sys;
    cl->net = net;
    cl->ops = *ops;
    cl->max_msg = sys->cfg.max_message_size;
    cl->post_timeout = sys->cfg.connect_timeout_ms ? sys->cfg.connect_timeout_ms : 2000;
    cl->tick.cb = tick_fire;
    cl->flush_tmr.cb = flush_fire;
    cl->leave_tmr.cb = leave_tmr_fire;
    const pul_system_config_t *cfg = &sys->cfg;
    int rc;
    if (cfg->is_head_node || cfg->head_addr != NULL) {
        cl->is_head = cfg->is_head_node;
        if (cfg->head_addr != NULL) {
            snprintf(cl->head_addr, sizeof cl->head_addr, "%s", cfg->head_addr);
        }
        rc = pul__head_new(cl->is_head, sys->node_id, self_addr, &cfg->timing, cluster_event, cl,
                           &cl->head);
    } else {
        pul__swim_cfg_t sc = {.self = sys->node_id, .addr = self_addr, .timing = cfg->timing,
                              .seeds = cfg->seeds, .nseeds = cfg->nseeds};
        pul__swim_io_t io = {.send = swim_send_cb, .sync = swim_sync_cb, .event = cluster_event,
                             .arg = cl};
        rc = pul__swim_new(&sc, &io, pul__now_ms(), &cl->swim);
    }
    if (rc == 0) {
        rc = ops->handle(net, "/cluster/", cluster_handler, cl);
    }
    if (rc == 0) {
        rc = ops->handle(net, "/head/", cluster_handler, cl);
    }
    if (rc != 0) {
        pul__swim_free(cl->swim);
        pul__head_free(cl->head);
        cluster_release(cl);
        return rc;
    }
    /* First tick on the next turn: joins the seeds / sends the first heartbeat at once. */
    cluster_arm(cl, pul__now_ms());
    *out = cl;
    return 0;
}

void
pul__cluster_leave(pul__cluster_t *cl, void (*done)(void *arg), void *arg)
{
    if (cl == NULL || cl->leaving) {
        return;
    }
    cl->leave_done = done;
    cl->leave_arg = arg;
    pul__timer_disarm(&cl->sys->loop, &cl->tick);
    uint64_t now = pul__now_ms();
    if (cl->silenced) {
        /* Frozen nodes say nothing. */
    } else if (cl->swim != NULL) {
        pthread_mutex_lock(&cl->mu);
        (void)pul__swim_leave(cl->swim, now); /* its sends count leave_wait up */
        pthread_mutex_unlock(&cl->mu);
    } else if (!cl->is_head) {
        worker_heartbeat(cl, 1);
    }
    cl->leaving = 1;
    /* Done when every peer answered or after LEAVE_WAIT_MS; never inside this call. */
    (void)pul__timer_arm(&cl->sys->loop, &cl->leave_tmr,
                         cl->leave_wait > 0 ? now + LEAVE_WAIT_MS : now);
}

void
pul__cluster_silence(pul__cluster_t *cl)
{
    cl->silenced = 1;
    pul__timer_disarm(&cl->sys->loop, &cl->tick);
}

void
pul__cluster_free(pul__cluster_t *cl)
{
    if (cl == NULL) {
        return;
    }
    pul__timer_disarm(&cl->sys->loop, &cl->tick);
    pul__timer_disarm(&cl->sys->loop, &cl->flush_tmr);
    pul__timer_disarm(&cl->sys->loop, &cl->leave_tmr);
    pthread_mutex_lock(&cl->mu);
    pul__swim_free(cl->swim);
    pul__head_free(cl->head);
    cl->swim = NULL;
    cl->head = NULL;
    pul__free(cl->ev);
    cl->ev = NULL;
    cl->nev = cl->evcap = 0;
    pthread_mutex_unlock(&cl->mu);
    cl->freed = 1;
    if (cl->inflight == 0) {
        cluster_release(cl);
    }
}

/* ---- names -------------------------------------------------------------------------------- */

typedef struct {
    pul__cluster_t *cl;
    pul_id_t actor;
    int live;
    char name[PUL_NAME_MAX + 1];
} name_task_t;

static void
name_apply(pul__cluster_t *cl, const char *name, pul_id_t actor, int live)
{
    if (cl->freed || cl->silenced) {
        return;
    }
    uint64_t now = pul__now_ms();
    uint64_t due = 0;
    pthread_mutex_lock(&cl->mu);
    if (cl->swim != NULL) {
        (void)pul__swim_name_changed(cl->swim, name, actor, live, now);
        due = cl->leaving ? 0 : pul__swim_tick(cl->swim, now);
    } else if (cl->head != NULL) {
        (void)pul__head_name_changed(cl->head, name, actor, live);
    }
    pthread_mutex_unlock(&cl->mu);
    cluster_flush_soon(cl);
    if (due != 0) {
        cluster_arm(cl, due);
    }
}

static void
name_task_run(void *arg)
{
    name_task_t *t = arg;
    name_apply(t->cl, t->name, t->actor, t->live);
    pul__free(t);
}

void
pul__cluster_name_changed(pul__cluster_t *cl, const char *name, pul_id_t actor_id, int live)
{
    if (cl == NULL || name == NULL) {
        return;
    }
    if (pul__loop_on_thread(&cl->sys->loop)) {
        name_apply(cl, name, actor_id, live);
        return;
    }
    name_task_t *t = pul__calloc(1, sizeof *t);
    if (t == NULL) {
        return;
    }
    t->cl = cl;
    t->actor = actor_id;
    t->live = live;
    snprintf(t->name, sizeof t->name, "%s", name);
    if (pul_system_post(cl->sys, name_task_run, t) != 0) {
        pul__free(t); /* shutting down: the name leaves with the node */
    }
}

/* ---- snapshots (any thread) --------------------------------------------------------------- */

int
pul__cluster_members(pul__cluster_t *cl, pul_member_t *out, size_t max)
{
    pthread_mutex_lock(&cl->mu);
    int n = cl->swim != NULL   ? pul__swim_members(cl->swim, out, max)
            : cl->head != NULL ? pul__head_members(cl->head, out, max)
                               : 0;
    pthread_mutex_unlock(&cl->mu);
    return n;
}

/* Live remote nodes only: our own names come from the actor table, which is never behind. */
static int
node_ok_remote(void *arg, pul_id_t node)
{
    pul__cluster_t *cl = arg;
    if (pul_id_eq(node, cl->sys->node_id)) {
        return 0;
    }
    return cl->swim != NULL ? pul__swim_node_ok(cl->swim, node)
                            : pul__head_node_ok(cl->head, node);
}

static const pul__registry_t *
cluster_reg(pul__cluster_t *cl)
{
    return cl->swim != NULL ? pul__swim_registry(cl->swim) : pul__head_registry(cl->head);
}

int
pul__cluster_resolve(pul__cluster_t *cl, const char *name, pul_instance_t *out, size_t max)
{
    pul_id_t local;
    int have_local = pul_lookup(cl->sys, name, &local) == 0;
    pul_id_t self = cl->sys->node_id;
    pthread_mutex_lock(&cl->mu);
    int total = 0;
    if (cl->swim != NULL || cl->head != NULL) {
        total = pul__registry_lookup(cluster_reg(cl), name, node_ok_remote, cl, out, max);
    }
    pthread_mutex_unlock(&cl->mu);
    if (!have_local) {
        return total;
    }
    /* Insert our own instance at its place by node id. */
    size_t shown = (size_t)total < max ? (size_t)total : max;
    size_t pos = 0;
    while (pos < shown && pul__id_cmp(out[pos].node_id, self) < 0) {
        pos++;
    }
    if (pos < max) {
        size_t last = shown < max ? shown : max - 1;
        memmove(&out[pos + 1], &out[pos], (last - pos) * sizeof *out);
        out[pos].node_id = self;
        out[pos].actor_id = local;
    }
    return total + 1;
}

void
pul__cluster_named_foreach(pul__cluster_t *cl,
                           void (*cb)(const char *name, pul_id_t node_id, pul_id_t actor_id,
                                      void *arg),
                           void *arg)
{
    pthread_mutex_lock(&cl->mu);
    if (cl->swim != NULL || cl->head != NULL) {
        const pul__registry_t *r = cluster_reg(cl);
        for (size_t i = 0; i < r->n; i++) {
            const pul__reg_entry_t *e = &r->v[i];
            if (e->live && node_ok_remote(cl, e->node)) {
                cb(e->name, e->node, e->actor, arg);
            }
        }
    }
    pthread_mutex_unlock(&cl->mu);
}

int
pul__cluster_node_of(pul__cluster_t *cl, uint64_t prefix, pul_id_t *out_node)
{
    if (prefix == cl->sys->node_id.hi) {
        *out_node = cl->sys->node_id;
        return 0;
    }
    pthread_mutex_lock(&cl->mu);
    int rc = cl->swim != NULL   ? pul__swim_node_of(cl->swim, prefix, out_node)
             : cl->head != NULL ? pul__head_node_of(cl->head, prefix, out_node)
                                : PUL_ENOTFOUND;
    pthread_mutex_unlock(&cl->mu);
    return rc;
}

int
pul__cluster_entries_of(pul__cluster_t *cl, pul_id_t node)
{
    int n = 0;
    pthread_mutex_lock(&cl->mu);
    if (cl->swim != NULL || cl->head != NULL) {
        const pul__registry_t *r = cluster_reg(cl);
        for (size_t i = 0; i < r->n; i++) {
            n += pul_id_eq(r->v[i].node, node);
        }
    }
    pthread_mutex_unlock(&cl->mu);
    return n;
}
