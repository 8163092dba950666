/* system.c — systems, the actor table, spawn/stop/lookup, supervision, shutdown, user timers. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "actor/actor.h"
#include "cluster/cluster.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/net.h"
#include "wire/envelope.h"

/* ---- configuration ------------------------------------------------------------------------ */

void
pul_system_config_init(pul_system_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->mailbox_capacity = 256;
    cfg->max_message_size = (64u << 20) + (1u << 20);
    cfg->stream_window = 32;
    cfg->default_deadline_ms = 0;
    cfg->max_connections = 1024;
    cfg->connect_timeout_ms = 2000;
    cfg->remote_deadline_ms = 0;
    pul_cluster_timing_t *t = &cfg->timing;
    t->probe_interval_ms = 500;
    t->probe_timeout_ms = 250;
    t->indirect_checks = 3;
    t->suspicion_mult = 4;
    t->suspicion_max_mult = 6;
    t->retransmit_mult = 4;
    t->gossip_interval_ms = 200;
    t->gossip_nodes = 3;
    t->push_pull_interval_ms = 30000;
    t->awareness_max = 8;
    t->dead_reclaim_ms = 30000;
    t->join_retry_ms = 1000;
    t->heartbeat_interval_ms = 1000;
    t->heartbeat_timeout_ms = 5000;
}

void
pul_spawn_opts_init(pul_spawn_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->restart_policy = PUL_RESTART_NEVER;
    opts->max_restarts = 3;
    opts->restart_window_ms = 60000;
    opts->min_backoff_s = 0.1;
    opts->max_backoff_s = 30.0;
}

/* ---- references --------------------------------------------------------------------------- */

void
pul__system_ref(pul_system_t *sys)
{
    atomic_fetch_add_explicit(&sys->refs, 1, memory_order_relaxed);
}

void
pul__system_unref(pul_system_t *sys)
{
    if (atomic_fetch_sub_explicit(&sys->refs, 1, memory_order_acq_rel) == 1) {
        pul__loop_destroy(&sys->loop);
        pthread_mutex_destroy(&sys->tmu);
        pul__free(sys->by_id);
        pul__free(sys->by_name);
        pul__free(sys->cfg_strings);
        pul__free(sys);
    }
}

void
pul__actor_unref(pul__actor_t *a)
{
    if (a == NULL || atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    pul_system_t *sys = a->sys;
    pul__free(a->ring);
    pul__free(a->name);
    pul__free(a);
    pul__system_unref(sys);
}

/* ---- table (under tmu) -------------------------------------------------------------------- */

static size_t
table_hash_id(pul_id_t id)
{
    return (size_t)(id.lo ^ (id.hi * 0x9e3779b97f4a7c15ull));
}

static size_t
table_hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return (size_t)h;
}

static pul__actor_t *
table_find_id(pul_system_t *sys, pul_id_t id)
{
    pul__actor_t *a = sys->by_id[table_hash_id(id) & (sys->nbuckets - 1)];
    while (a != NULL && !pul_id_eq(a->id, id)) {
        a = a->next_id;
    }
    return a;
}

static pul__actor_t *
table_find_name(pul_system_t *sys, const char *name)
{
    pul__actor_t *a = sys->by_name[table_hash_name(name) & (sys->nbuckets - 1)];
    while (a != NULL && strcmp(a->name, name) != 0) {
        a = a->next_name;
    }
    return a;
}

static void
table_link(pul_system_t *sys, pul__actor_t *a)
{
    size_t m = sys->nbuckets - 1;
    pul__actor_t **b = &sys->by_id[table_hash_id(a->id) & m];
    a->next_id = *b;
    *b = a;
    if (a->name != NULL) {
        b = &sys->by_name[table_hash_name(a->name) & m];
        a->next_name = *b;
        *b = a;
    }
}

static int
table_grow(pul_system_t *sys)
{
    size_t n = sys->nbuckets * 2;
    pul__actor_t **ni = pul__calloc(n, sizeof *ni);
    pul__actor_t **nn = pul__calloc(n, sizeof *nn);
    if (ni == NULL || nn == NULL) {
        pul__free(ni);
        pul__free(nn);
        return PUL_ENOMEM;
    }
    pul__free(sys->by_id);
    pul__free(sys->by_name);
    sys->by_id = ni;
    sys->by_name = nn;
    sys->nbuckets = n;
    for (pul__actor_t *a = sys->all; a != NULL; a = a->all_next) {
        if (a->in_maps) {
            table_link(sys, a);
        }
    }
    return 0;
}

/* Returns 1 when a was mapped (its name, if any, is released now). */
static int
table_unmap(pul_system_t *sys, pul__actor_t *a)
{
    if (!a->in_maps) {
        return 0;
    }
    size_t m = sys->nbuckets - 1;
    pul__actor_t **p = &sys->by_id[table_hash_id(a->id) & m];
    while (*p != a) {
        p = &(*p)->next_id;
    }
    *p = a->next_id;
    if (a->name != NULL) {
        p = &sys->by_name[table_hash_name(a->name) & m];
        while (*p != a) {
            p = &(*p)->next_name;
        }
        *p = a->next_name;
    }
    a->in_maps = 0;
    sys->nmapped--;
    return 1;
}

/* Tell the cluster that a local name was registered or released. Called outside tmu. */
static void
system_name_changed(pul_system_t *sys, const char *name, pul_id_t id, int live)
{
    if (name != NULL && sys->cluster != NULL) {
        pul__cluster_name_changed(sys->cluster, name, id, live);
    }
}

pul__actor_t *
pul__actor_get(pul_system_t *sys, pul_id_t id)
{
    pthread_mutex_lock(&sys->tmu);
    pul__actor_t *a = table_find_id(sys, id);
    if (a != NULL) {
        atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&sys->tmu);
    return a;
}

/* ---- system ------------------------------------------------------------------------------- */

static void system_shutdown_task(pul__task_t *t);

/* Copy every string of the config into one block owned by the system. 0 or PUL_ENOMEM. */
static int
system_copy_strings(pul_system_t *sys)
{
    pul_system_config_t *c = &sys->cfg;
    size_t n = 0;
    const char *one[3] = {c->listen_addr, c->advertise_addr, c->head_addr};
    for (int i = 0; i < 3; i++) {
        n += one[i] != NULL ? strlen(one[i]) + 1 : 0;
    }
    if (c->seeds == NULL) {
        c->nseeds = 0;
    }
    for (size_t i = 0; i < c->nseeds; i++) {
        n += c->seeds[i] != NULL ? strlen(c->seeds[i]) + 1 : 1;
    }
    size_t ptrs = c->nseeds * sizeof(char *);
    if (n + ptrs == 0) {
        return 0;
    }
    char *block = pul__malloc(ptrs + n);
    if (block == NULL) {
        return PUL_ENOMEM;
    }
    char **seeds = (char **)block;
    char *p = block + ptrs;
    const char **dst[3] = {&c->listen_addr, &c->advertise_addr, &c->head_addr};
    for (int i = 0; i < 3; i++) {
        if (one[i] != NULL) {
            size_t l = strlen(one[i]) + 1;
            memcpy(p, one[i], l);
            *dst[i] = p;
            p += l;
        }
    }
    for (size_t i = 0; i < c->nseeds; i++) {
        const char *sd = c->seeds[i] != NULL ? c->seeds[i] : "";
        size_t l = strlen(sd) + 1;
        memcpy(p, sd, l);
        seeds[i] = p;
        p += l;
    }
    c->seeds = c->nseeds > 0 ? (const char *const *)seeds : NULL;
    sys->cfg_strings = block;
    return 0;
}

/* Start the transport on the core thread and wait for it (the port is bound on return). */
typedef struct {
    pul__task_t task;
    pul_system_t *sys;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int rc;
} net_start_t;

static void
system_net_start_task(pul__task_t *t)
{
    net_start_t *op = (net_start_t *)t;
    pul_system_t *sys = op->sys;
    pul__net_t *net = NULL;
    int rc = pul__net_start(sys, sys->addr, &net);
    if (rc == 0) {
        sys->net = net;
        /* Membership runs on nodes that listen (the others have no address to be reached at). */
        if (sys->cfg.listen_addr != NULL) {
            rc = pul__cluster_start(sys, net, sys->addr, &sys->cluster);
        }
    }
    pthread_mutex_lock(&op->mu);
    op->rc = rc;
    op->done = 1;
    pthread_cond_signal(&op->cv);
    pthread_mutex_unlock(&op->mu);
}

static int
system_net_start(pul_system_t *sys)
{
    net_start_t op;
    memset(&op, 0, sizeof op);
    op.task.run = system_net_start_task;
    op.sys = sys;
    pthread_mutex_init(&op.mu, NULL);
    pthread_cond_init(&op.cv, NULL);
    int rc = pul__loop_post(&sys->loop, &op.task);
    if (rc == 0) {
        pthread_mutex_lock(&op.mu);
        while (!op.done) {
            pthread_cond_wait(&op.cv, &op.mu);
        }
        rc = op.rc;
        pthread_mutex_unlock(&op.mu);
    }
    pthread_mutex_destroy(&op.mu);
    pthread_cond_destroy(&op.cv);
    return rc;
}

int
pul_system_new(const pul_system_config_t *cfg, pul_system_t **out)
{
    if (out == NULL) {
        return PUL_EINVAL;
    }
    *out = NULL;
    pul_system_t *sys = pul__calloc(1, sizeof *sys);
    if (sys == NULL) {
        return PUL_ENOMEM;
    }
    if (cfg != NULL) {
        sys->cfg = *cfg;
    } else {
        pul_system_config_init(&sys->cfg);
    }
    if (sys->cfg.mailbox_capacity == 0) {
        sys->cfg.mailbox_capacity = 256;
    }
    if (sys->cfg.stream_window == 0) {
        sys->cfg.stream_window = 32;
    }
    if (sys->cfg.max_message_size == 0) {
        sys->cfg.max_message_size = (64u << 20) + (1u << 20);
    }
    if (sys->cfg.listen_addr != NULL && strlen(sys->cfg.listen_addr) > PUL_ADDR_MAX) {
        pul__free(sys);
        return PUL_EADDR;
    }
    if (system_copy_strings(sys) != 0) {
        pul__free(sys);
        return PUL_ENOMEM;
    }
    atomic_init(&sys->refs, 1);
    sys->node_id = pul_id_random();
    sys->nbuckets = 64;
    sys->by_id = pul__calloc(sys->nbuckets, sizeof *sys->by_id);
    sys->by_name = pul__calloc(sys->nbuckets, sizeof *sys->by_name);
    if (sys->by_id == NULL || sys->by_name == NULL) {
        goto fail;
    }
    if (pthread_mutex_init(&sys->tmu, NULL) != 0) {
        goto fail;
    }
    sys->shutdown_task.run = system_shutdown_task;
    int rc = pul__loop_start(&sys->loop, pul__dispatch, sys);
    if (rc != 0) {
        pthread_mutex_destroy(&sys->tmu);
        pul__free(sys->by_id);
        pul__free(sys->by_name);
        pul__free(sys->cfg_strings);
        pul__free(sys);
        return rc;
    }
    pul__env_cache_use(1); /* released by pul_system_shutdown */
    /* Every system gets a transport (it can call other nodes); a listener only with
     * listen_addr. */
    rc = system_net_start(sys);
    if (rc != 0) {
        pul_system_shutdown(sys);
        return rc;
    }
    *out = sys;
    return 0;

fail:
    pul__free(sys->by_id);
    pul__free(sys->by_name);
    pul__free(sys->cfg_strings);
    pul__free(sys);
    return PUL_ENOMEM;
}

static void system_shutdown_rest(void *arg);

static void
system_shutdown_task(pul__task_t *t)
{
    pul_system_t *sys = (pul_system_t *)((char *)t - offsetof(pul_system_t, shutdown_task));
    atomic_store(&sys->closing, 1);
    if (sys->cluster != NULL) {
        /* Leave the cluster while the transport still runs; the rest of the shutdown follows
         * the leave's done callback (at most 500 ms later) and the loop keeps turning
         * meanwhile. */
        pul__cluster_leave(sys->cluster, system_shutdown_rest, sys);
        return;
    }
    system_shutdown_rest(sys);
}

static void
system_shutdown_rest(void *arg)
{
    pul_system_t *sys = arg;
    /* The transport: outgoing calls fail with PUL_ECLOSED, connections close (the loop runs
     * until their handles are closed, then the transport frees itself). */
    pul__net_close(sys->net);
    /* Actors first (their on_stop may still reply to deferred asks), then every call left. */
    for (;;) {
        pthread_mutex_lock(&sys->tmu);
        pul__actor_t *a = sys->all;
        if (a != NULL) {
            atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
        }
        pthread_mutex_unlock(&sys->tmu);
        if (a == NULL) {
            break;
        }
        pul__actor_stop(a, PUL_ECLOSED);
        pul__actor_unref(a);
    }
    pul__loop_run_pending(&sys->loop);
    pul__calls_shutdown(sys);
    pul__loop_run_pending(&sys->loop);
    while (sys->timers != NULL) {
        pul__utimer_t *ut = sys->timers;
        sys->timers = ut->next;
        pul__timer_disarm(&sys->loop, &ut->t);
        pul__free(ut);
    }
    /* The transport closed above, before the cluster is freed: the cluster's outstanding
     * posts call back with PUL_ECLOSED and the last one releases it. */
    if (sys->cluster != NULL) {
        pul__cluster_free(sys->cluster);
        sys->cluster = NULL;
    }
    pul__loop_stop(&sys->loop);
}

void
pul_system_shutdown(pul_system_t *sys)
{
    if (sys == NULL) {
        return;
    }
    assert(!pul__loop_on_thread(&sys->loop));
    if (pul__loop_post_last(&sys->loop, &sys->shutdown_task) != 0) {
        return; /* already shut down: a second call is a caller bug; do nothing */
    }
    pul__loop_join(&sys->loop);
    pul__env_cache_use(0);
    pul__system_unref(sys);
}

pul_id_t
pul_system_node_id(const pul_system_t *sys)
{
    return sys->node_id;
}

const char *
pul_system_addr(const pul_system_t *sys)
{
    return sys != NULL && sys->addr[0] != '\0' ? sys->addr : NULL;
}

int
pul_system_on_core_thread(const pul_system_t *sys)
{
    return sys != NULL && pul__loop_on_thread(&sys->loop);
}

void
pul_system_hold(pul_system_t *sys)
{
    if (sys != NULL) {
        pul__loop_hold(&sys->loop);
    }
}

void
pul_system_release(pul_system_t *sys)
{
    if (sys != NULL) {
        pul__loop_release(&sys->loop);
    }
}

typedef struct {
    pul__task_t task;
    void (*fn)(void *);
    void *arg;
} system_post_t;

static void
system_post_run(pul__task_t *t)
{
    system_post_t *p = (system_post_t *)t;
    p->fn(p->arg);
    pul__free(p);
}

int
pul_system_post(pul_system_t *sys, void (*fn)(void *arg), void *arg)
{
    if (sys == NULL || fn == NULL) {
        return PUL_EINVAL;
    }
    system_post_t *p = pul__malloc(sizeof *p);
    if (p == NULL) {
        return PUL_ENOMEM;
    }
    p->task.run = system_post_run;
    p->fn = fn;
    p->arg = arg;
    int rc = pul__loop_post(&sys->loop, &p->task);
    if (rc != 0) {
        pul__free(p);
    }
    return rc;
}

static void
system_noop(void *arg)
{
    (void)arg;
}

int
pul__system_poke(pul_system_t *sys)
{
    return pul_system_post(sys, system_noop, NULL);
}

/* ---- user timers -------------------------------------------------------------------------- */

static void
utimer_fire(pul__tmr_t *t)
{
    pul__utimer_t *ut = (pul__utimer_t *)t;
    ut->firing = 1;
    ut->cb(ut->arg);
    ut->firing = 0;
    if (ut->stopped) {
        pul_timer_stop(ut);
    }
}

int
pul_timer_start(pul_system_t *sys, uint64_t timeout_ms, uint64_t repeat_ms,
                void (*cb)(void *arg), void *arg, pul_timer_t **out)
{
    if (sys == NULL || cb == NULL || out == NULL) {
        return PUL_EINVAL;
    }
    assert(pul__loop_on_thread(&sys->loop));
    pul__utimer_t *ut = pul__calloc(1, sizeof *ut);
    if (ut == NULL) {
        return PUL_ENOMEM;
    }
    ut->t.cb = utimer_fire;
    ut->t.repeat = repeat_ms;
    ut->sys = sys;
    ut->cb = cb;
    ut->arg = arg;
    int rc = pul__timer_arm(&sys->loop, &ut->t, pul__now_ms() + timeout_ms);
    if (rc != 0) {
        pul__free(ut);
        return rc;
    }
    ut->next = sys->timers;
    if (sys->timers != NULL) {
        sys->timers->prev = ut;
    }
    sys->timers = ut;
    *out = ut;
    return 0;
}

void
pul_timer_stop(pul_timer_t *ut)
{
    if (ut == NULL) {
        return;
    }
    pul_system_t *sys = ut->sys;
    pul__timer_disarm(&sys->loop, &ut->t);
    if (ut->firing) {
        ut->stopped = 1; /* freed when its callback returns */
        return;
    }
    if (ut->prev != NULL) {
        ut->prev->next = ut->next;
    } else {
        sys->timers = ut->next;
    }
    if (ut->next != NULL) {
        ut->next->prev = ut->prev;
    }
    pul__free(ut);
}

/* ---- spawn, start, stop ------------------------------------------------------------------- */

static void
actor_start(pul__actor_t *a)
{
    if (a->stopped) {
        return;
    }
    if (a->vt.factory != NULL && !a->has_state) {
        a->state = a->vt.factory(a->vt.factory_arg);
        if (a->state == NULL) {
            pul__actor_failed(a);
            return;
        }
        a->has_state = 1;
    }
    if (a->vt.on_start != NULL && a->vt.on_start(a->id, a->state) != 0) {
        pul__actor_failed(a);
        return;
    }
    a->started = 1;
    a->restarting = 0;
    if (a->count > 0) {
        pul__actor_schedule(a);
    }
}

static void
actor_start_task(pul__task_t *t)
{
    pul__actor_t *a = (pul__actor_t *)((char *)t - offsetof(pul__actor_t, start_task));
    actor_start(a);
    pul__actor_unref(a);
}

static void
actor_stop_task(pul__task_t *t)
{
    pul__actor_t *a = (pul__actor_t *)((char *)t - offsetof(pul__actor_t, stop_task));
    pul__actor_stop(a, PUL_ESTOPPED);
    pul__actor_unref(a);
}

static void
actor_release_state(pul__actor_t *a)
{
    if (!a->has_state) {
        return;
    }
    if (a->started && a->vt.on_stop != NULL) {
        a->vt.on_stop(a->state);
    }
    a->started = 0;
    if (a->vt.free_state != NULL) {
        a->vt.free_state(a->state);
    }
    a->state = NULL;
    a->has_state = 0;
}

void
pul__actor_stop(pul__actor_t *a, int status)
{
    pul_system_t *sys = a->sys;
    if (a->stopped) {
        return;
    }
    a->stopped = 1;
    pthread_mutex_lock(&sys->tmu);
    int released = table_unmap(sys, a);
    if (a->all_prev != NULL) {
        a->all_prev->all_next = a->all_next;
    } else {
        sys->all = a->all_next;
    }
    if (a->all_next != NULL) {
        a->all_next->all_prev = a->all_prev;
    }
    a->all_prev = a->all_next = NULL;
    pthread_mutex_unlock(&sys->tmu);
    if (released) {
        system_name_changed(sys, a->name, a->id, 0);
    }
    pul__timer_disarm(&sys->loop, &a->restart_timer);
    pul__mailbox_drain(a, status);
    if (!a->started && a->vt.factory == NULL) {
        /* Never started: still give the state back. */
        a->started = 0;
    }
    actor_release_state(a);
    pul__actor_unref(a); /* the "alive" reference */
}

static void
actor_restart_fire(pul__tmr_t *t)
{
    pul__actor_t *a = (pul__actor_t *)((char *)t - offsetof(pul__actor_t, restart_timer));
    actor_start(a);
}

void
pul__actor_failed(pul__actor_t *a)
{
    pul_system_t *sys = a->sys;
    if (a->stopped) {
        return;
    }
    int can_restart = a->opts.restart_policy != PUL_RESTART_NEVER &&
                      (a->vt.factory != NULL || a->has_state);
    if (a->opts.restart_policy == PUL_RESTART_NEVER) {
        /* Without supervision a failed message is the caller's problem only; a failed start
         * leaves nothing to run, so the actor stops. */
        if (!a->started) {
            pul__actor_stop(a, PUL_ESTOPPED);
        }
        return;
    }
    uint64_t now = pul__now_ms();
    if (a->restarts == 0 || now - a->window_start >= a->opts.restart_window_ms) {
        a->window_start = now;
        a->restarts = 0;
    }
    if (!can_restart || a->restarts >= a->opts.max_restarts) {
        PUL__LOG(PUL__LOG_WARN, "actor", "%s: giving up after %u restarts",
                 a->name ? a->name : "(anonymous)", a->restarts);
        pul__actor_stop(a, PUL_ESTOPPED);
        return;
    }
    a->restarts++;
    double b = a->opts.min_backoff_s * 1000.0;
    for (uint32_t i = 1; i < a->restarts && b < a->opts.max_backoff_s * 1000.0; i++) {
        b *= 2;
    }
    if (b > a->opts.max_backoff_s * 1000.0) {
        b = a->opts.max_backoff_s * 1000.0;
    }
    /* +-25% jitter so restarted siblings do not stampede together. */
    double j = 0.75 + 0.5 * ((double)(pul_id_random().lo >> 11) / (double)(1ull << 53));
    uint64_t delay = (uint64_t)(b * j);
    a->last_backoff_ms = delay;
    /* The old instance goes; a factory builds the next one. Without a factory the same state
     * is kept and on_start runs again. */
    if (a->vt.factory != NULL) {
        actor_release_state(a);
    } else if (a->started && a->vt.on_stop != NULL) {
        a->vt.on_stop(a->state);
    }
    a->started = 0;
    a->restarting = 1;
    a->restart_timer.cb = actor_restart_fire;
    if (pul__timer_arm(&sys->loop, &a->restart_timer, now + delay) != 0) {
        pul__actor_stop(a, PUL_ESTOPPED);
    }
}

int
pul_spawn(pul_system_t *sys, const pul_actor_vtable_t *vt, void *state,
          const pul_spawn_opts_t *opts, pul_id_t *out_id)
{
    if (sys == NULL || vt == NULL || vt->receive == NULL) {
        return PUL_EINVAL;
    }
    pul_spawn_opts_t o;
    if (opts != NULL) {
        o = *opts;
    } else {
        pul_spawn_opts_init(&o);
    }
    char name[PUL_NAME_MAX + 1];
    size_t nlen = 0;
    if (o.name != NULL) {
        int rc = pul_name_normalize(o.name, strlen(o.name), o.allow_system_name, name,
                                    sizeof name);
        if (rc != 0) {
            return rc == PUL_EINVAL ? PUL_ENAME : rc;
        }
        nlen = strlen(name);
    }
    if (atomic_load(&sys->closing)) {
        return PUL_ECLOSED;
    }
    pul__actor_t *a = pul__calloc(1, sizeof *a);
    if (a == NULL) {
        return PUL_ENOMEM;
    }
    a->cap = o.mailbox_capacity ? o.mailbox_capacity : sys->cfg.mailbox_capacity;
    a->ring = pul__malloc(a->cap * sizeof *a->ring);
    if (a->ring == NULL) {
        goto fail;
    }
    if (o.name != NULL) {
        a->name = pul__strndup(name, nlen);
        if (a->name == NULL) {
            goto fail;
        }
    }
    o.name = NULL;
    a->opts = o;
    a->vt = *vt;
    a->sys = sys;
    /* The high half of an actor id is its node's: any node routes by the prefix alone. */
    a->id.hi = sys->node_id.hi;
    do {
        a->id.lo = pul_id_random().lo;
    } while (a->id.lo == 0);
    atomic_init(&a->refs, 2); /* alive + the start task */
    atomic_init(&a->occ, 0);
    if (vt->factory == NULL) {
        a->state = state;
        a->has_state = 1;
    }
    a->start_task.run = actor_start_task;
    a->stop_task.run = actor_stop_task;

    pthread_mutex_lock(&sys->tmu);
    int rc = 0;
    if (a->name != NULL && table_find_name(sys, a->name) != NULL) {
        rc = PUL_EEXIST;
    } else if (sys->nmapped + 1 > sys->nbuckets && table_grow(sys) != 0) {
        rc = PUL_ENOMEM;
    }
    if (rc != 0) {
        pthread_mutex_unlock(&sys->tmu);
        pul__free(a->name);
        pul__free(a->ring);
        pul__free(a);
        return rc;
    }
    table_link(sys, a);
    a->in_maps = 1;
    sys->nmapped++;
    a->all_next = sys->all;
    if (sys->all != NULL) {
        sys->all->all_prev = a;
    }
    sys->all = a;
    pul__system_ref(sys);
    pthread_mutex_unlock(&sys->tmu);

    pul_id_t id = a->id;
    if (nlen > 0) {
        system_name_changed(sys, name, id, 1);
    }
    if (pul__loop_on_thread(&sys->loop)) {
        pul__loop_defer(&sys->loop, &a->start_task);
    } else if (pul__loop_post(&sys->loop, &a->start_task) != 0) {
        /* Closed between the check and the post: the shutdown task already ran or will find
         * it in the table; undo here only if it is still ours. */
        pthread_mutex_lock(&sys->tmu);
        int ours = a->in_maps;
        if (ours) {
            table_unmap(sys, a);
            if (a->all_prev != NULL) {
                a->all_prev->all_next = a->all_next;
            } else {
                sys->all = a->all_next;
            }
            if (a->all_next != NULL) {
                a->all_next->all_prev = a->all_prev;
            }
        }
        pthread_mutex_unlock(&sys->tmu);
        if (ours) {
            a->has_state = 0; /* the caller keeps state */
            pul__actor_unref(a);
            pul__actor_unref(a);
        } else {
            pul__actor_unref(a);
        }
        return PUL_ECLOSED;
    }
    if (out_id != NULL) {
        *out_id = id;
    }
    return 0;

fail:
    pul__free(a->name);
    pul__free(a->ring);
    pul__free(a);
    return PUL_ENOMEM;
}

int
pul_stop(pul_system_t *sys, pul_id_t id)
{
    if (sys == NULL) {
        return PUL_EINVAL;
    }
    pthread_mutex_lock(&sys->tmu);
    pul__actor_t *a = table_find_id(sys, id);
    if (a == NULL || a->stop_posted) {
        pthread_mutex_unlock(&sys->tmu);
        return PUL_ENOTFOUND;
    }
    /* Unmapped at once: the name is free again and new calls fail promptly. */
    int released = table_unmap(sys, a) && a->name != NULL;
    a->stop_posted = 1;
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&sys->tmu);
    if (released) {
        system_name_changed(sys, a->name, id, 0); /* a->name lives while we hold a ref */
    }
    if (pul__loop_on_thread(&sys->loop)) {
        pul__loop_defer(&sys->loop, &a->stop_task);
    } else if (pul__loop_post(&sys->loop, &a->stop_task) != 0) {
        pul__actor_unref(a); /* shutdown stops it */
    }
    return 0;
}

int
pul_lookup(pul_system_t *sys, const char *name, pul_id_t *out_id)
{
    if (sys == NULL || name == NULL) {
        return PUL_EINVAL;
    }
    char norm[PUL_NAME_MAX + 1];
    int rc = pul_name_normalize(name, strlen(name), 1, norm, sizeof norm);
    if (rc != 0) {
        return PUL_ENAME;
    }
    pthread_mutex_lock(&sys->tmu);
    pul__actor_t *a = table_find_name(sys, norm);
    if (a != NULL && out_id != NULL) {
        *out_id = a->id;
    }
    pthread_mutex_unlock(&sys->tmu);
    return a != NULL ? 0 : PUL_ENOTFOUND;
}

void
pul_actors_foreach(pul_system_t *sys, void (*cb)(pul_id_t id, const char *name, void *arg),
                   void *arg)
{
    if (sys == NULL || cb == NULL) {
        return;
    }
    pthread_mutex_lock(&sys->tmu);
    for (pul__actor_t *a = sys->all; a != NULL; a = a->all_next) {
        if (a->in_maps) {
            cb(a->id, a->name, arg);
        }
    }
    pthread_mutex_unlock(&sys->tmu);
}
