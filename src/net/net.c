/* net.c — the transport of a system: start (bind, advertised address), shutdown, the listener,
 * routes, control-plane handlers and metrics. Core thread unless said. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/netint.h"

/* ---- addresses ----------------------------------------------------------------------------- */

/* Split "host:port" / "[v6]:port" into host (NUL-terminated) and port. */
static int
addr_split(const char *addr, char host[PUL_ADDR_MAX + 1], int *port)
{
    if (addr == NULL || strlen(addr) > PUL_ADDR_MAX) {
        return PUL_EADDR;
    }
    const char *colon;
    size_t hl;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':') {
            return PUL_EADDR;
        }
        hl = (size_t)(end - addr - 1);
        memcpy(host, addr + 1, hl);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            return PUL_EADDR;
        }
        hl = (size_t)(colon - addr);
        memcpy(host, addr, hl);
    }
    host[hl] = '\0';
    char *endp;
    long p = strtol(colon + 1, &endp, 10);
    if (hl == 0 || *endp != '\0' || colon[1] == '\0' || p < 0 || p > 65535) {
        return PUL_EADDR;
    }
    *port = (int)p;
    return 0;
}

static void
addr_set_port(struct sockaddr_storage *sa, int port)
{
    if (sa->ss_family == AF_INET) {
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    } else {
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
    }
}

/* An IP literal: 1; a host name: 0 (host and port set); malformed: PUL_EADDR. No lookup. */
static int
addr_parse_ip(const char *addr, struct sockaddr_storage *out, char host[PUL_ADDR_MAX + 1],
              int *port)
{
    if (addr_split(addr, host, port) != 0) {
        return PUL_EADDR;
    }
    memset(out, 0, sizeof *out);
    return uv_ip4_addr(host, *port, (struct sockaddr_in *)out) == 0 ||
           uv_ip6_addr(host, *port, (struct sockaddr_in6 *)out) == 0;
}

int
net_parse_addr(const char *addr, struct sockaddr_storage *out)
{
    char host[PUL_ADDR_MAX + 1];
    int port;
    int rc = addr_parse_ip(addr, out, host, &port);
    if (rc != 0) {
        return rc < 0 ? rc : 0;
    }
    /* A host name to bind to: resolved blocking, once, while the system starts (nothing else
     * runs on its loop yet). Peers' names never come here (net_dial). */
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL) {
        return PUL_EADDR;
    }
    memcpy(out, res->ai_addr, res->ai_addrlen);
    addr_set_port(out, port);
    freeaddrinfo(res);
    return 0;
}

/* ---- dialling peers: asynchronous name lookups -------------------------------------------- */

typedef struct {
    uv_getaddrinfo_t req;
    conn_t *cn; /* holds a reference until the lookup calls back */
    peer_t *p;  /* lives as long as net, which this lookup keeps (one of its handles) */
    int port;
} lookup_t;

static void
net_looked_up(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    lookup_t *lk = (lookup_t *)req;
    conn_t *cn = lk->cn;
    pul__net_t *net = cn->net;
    peer_t *p = lk->p;
    pul__loop_enter(&net->sys->loop);
    if (status != 0 || res == NULL) {
        if (status == 0) {
            status = UV_EAI_NONAME;
        }
        int level = p->resolve_err == status ? PUL__LOG_DEBUG : PUL__LOG_WARN;
        p->resolve_err = status;
        PUL__LOG(level, "net", "%s: cannot resolve the host of %s: %s (%s); calls to it fail, "
                 "retried with backoff", net->sys->addr, p->addr, uv_strerror(status),
                 uv_err_name(status));
        conn_fail(cn, PUL_EIO); /* no-op if it already failed (timeout, shutdown) */
    } else {
        /* Nodes listen on IPv4 unless told otherwise: an IPv4 answer first, if there is one. */
        const struct addrinfo *a = res;
        while (a != NULL && a->ai_family != AF_INET) {
            a = a->ai_next;
        }
        if (a == NULL) {
            a = res;
        }
        memcpy(&p->sa, a->ai_addr, a->ai_addrlen);
        addr_set_port(&p->sa, lk->port);
        p->resolved = 1;
        if (p->resolve_err != 0) {
            PUL__LOG(PUL__LOG_WARN, "net", "%s: %s resolves again", net->sys->addr, p->addr);
            p->resolve_err = 0;
        }
        if (!cn->dead && conn_connect(cn, (const struct sockaddr *)&p->sa) != 0) {
            conn_fail(cn, PUL_EIO);
        }
    }
    uv_freeaddrinfo(res);
    pul__free(lk);
    conn_unref(cn);
    net_handle_closed(net);
}

int
net_dial(conn_t *cn, peer_t *p)
{
    if (p->resolved) {
        return conn_dial(cn, (const struct sockaddr *)&p->sa);
    }
    char host[PUL_ADDR_MAX + 1];
    int port;
    int ip = addr_parse_ip(p->addr, &p->sa, host, &port);
    if (ip < 0) {
        PUL__LOG(PUL__LOG_DEBUG, "net", "malformed address %s", p->addr);
        return PUL_EIO;
    }
    if (ip == 1) {
        p->resolved = 1;
        return conn_dial(cn, (const struct sockaddr *)&p->sa);
    }
    lookup_t *lk = pul__calloc(1, sizeof *lk);
    if (lk == NULL) {
        return PUL_ENOMEM;
    }
    int rc = conn_dial(cn, NULL);
    if (rc != 0) {
        pul__free(lk);
        return rc;
    }
    lk->cn = cn;
    lk->p = p;
    lk->port = port;
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    pul__net_t *net = cn->net;
    if (uv_getaddrinfo(&net->sys->loop.uv, &lk->req, net_looked_up, host, NULL, &hints) != 0) {
        pul__free(lk);
        return PUL_EIO;
    }
    cn->refs++;
    net->nhandles++;
    return 0;
}

static void
addr_format(const struct sockaddr *sa, int port, char out[PUL_ADDR_MAX + 1])
{
    char ip[48] = "";
    if (sa->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof ip);
        snprintf(out, PUL_ADDR_MAX + 1, "[%.46s]:%d", ip, port & 0xffff);
    } else {
        uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof ip);
        snprintf(out, PUL_ADDR_MAX + 1, "%.46s:%d", ip, port & 0xffff);
    }
}

/* For a wildcard bind: the first non-loopback IPv4 address, else 127.0.0.1. */
static void
addr_routable(int port, char out[PUL_ADDR_MAX + 1])
{
    uv_interface_address_t *ifs = NULL;
    int n = 0;
    snprintf(out, PUL_ADDR_MAX + 1, "127.0.0.1:%d", port);
    if (uv_interface_addresses(&ifs, &n) != 0) {
        return;
    }
    for (int i = 0; i < n; i++) {
        if (!ifs[i].is_internal && ifs[i].address.address4.sin_family == AF_INET) {
            addr_format((const struct sockaddr *)&ifs[i].address.address4, port, out);
            break;
        }
    }
    uv_free_interface_addresses(ifs, n);
}

/* ---- metrics ------------------------------------------------------------------------------- */

static const uint64_t hist_bounds_us[NET_HIST_N] = {100,   250,   500,    1000,   2500,   5000,
                                                    10000, 25000, 50000, 100000, 500000, 1000000};

void
net_observe_duration(pul__net_t *net, uint64_t us)
{
    size_t i = 0;
    while (i < NET_HIST_N && us > hist_bounds_us[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&net->hist[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&net->hist_sum_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&net->hist_count, 1, memory_order_relaxed);
}

uint64_t
net_hist_bound_us(size_t i)
{
    return hist_bounds_us[i];
}

void
pul__net_stats(pul__net_t *net, pul__net_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (net == NULL) {
        return;
    }
    out->msgs_in = atomic_load_explicit(&net->msgs_in, memory_order_relaxed);
    out->msgs_out = atomic_load_explicit(&net->msgs_out, memory_order_relaxed);
    out->errors = atomic_load_explicit(&net->errors, memory_order_relaxed);
    out->bytes_in = atomic_load_explicit(&net->bytes_in, memory_order_relaxed);
    out->bytes_out = atomic_load_explicit(&net->bytes_out, memory_order_relaxed);
    out->connections = atomic_load_explicit(&net->connections, memory_order_relaxed);
    out->direct_writes = atomic_load_explicit(&net->direct_writes, memory_order_relaxed);
    out->direct_held = atomic_load_explicit(&net->direct_held, memory_order_relaxed);
    out->pumped = atomic_load_explicit(&net->pumped, memory_order_relaxed);
}

/* ---- lifetime ------------------------------------------------------------------------------ */

static void
net_free(pul__net_t *net)
{
    while (net->peers != NULL) {
        peer_t *p = net->peers;
        net->peers = p->next;
        pul__free(p);
    }
    while (net->handlers != NULL) {
        handler_t *h = net->handlers;
        net->handlers = h->next;
        pul__free(h->prefix);
        pul__free(h);
    }
    pul__free(net->routes);
    if (net->cbs_server != NULL) {
        nghttp2_session_callbacks_del(net->cbs_server);
    }
    if (net->cbs_client != NULL) {
        nghttp2_session_callbacks_del(net->cbs_client);
    }
    if (net->opt != NULL) {
        nghttp2_option_del(net->opt);
    }
    pool_drain(&net->pool);
    pul__free(net->rbuf);
    pthread_mutex_destroy(&net->rmu);
    if (net->sys->net == net) {
        net->sys->net = NULL;
    }
    pul__free(net);
}

void
net_handle_closed(pul__net_t *net)
{
    if (--net->nhandles == 0 && net->closing) {
        net_free(net);
    }
}

static void
listener_close_cb(uv_handle_t *h)
{
    net_handle_closed(h->data);
}

static void
net_on_connection(uv_stream_t *server, int status)
{
    pul__net_t *net = server->data;
    pul__loop_enter(&net->sys->loop);
    if (status < 0 || net->closing) {
        return;
    }
    conn_t *cn = conn_new(net, CONN_SERVER);
    if (cn == NULL) {
        return; /* the connection stays in the backlog; retried on the next event */
    }
    net->ninbound++;
    if (uv_accept(server, (uv_stream_t *)&cn->tcp) != 0) {
        conn_fail(cn, PUL_EIO);
        return;
    }
    size_t max = net->sys->cfg.max_connections ? net->sys->cfg.max_connections : 1024;
    if (net->ninbound > max) {
        PUL__LOG(PUL__LOG_WARN, "net", "refusing a connection: %zu open (max_connections)",
                 net->ninbound - 1);
        atomic_fetch_add_explicit(&net->errors, 1, memory_order_relaxed);
        conn_fail(cn, PUL_EIO);
        return;
    }
    if (conn_start_server(cn) != 0) {
        conn_fail(cn, PUL_EIO);
    }
}

int
pul__net_start(pul_system_t *sys, char out_addr[PUL_ADDR_MAX + 1], pul__net_t **out)
{
    *out = NULL;
    out_addr[0] = '\0';
    pul__net_t *net = pul__calloc(1, sizeof *net);
    if (net == NULL) {
        return PUL_ENOMEM;
    }
    net->sys = sys;
    net->start_ms = pul__now_ms();
    net->mem = pool_nghttp2_mem(&net->pool);
    if (pthread_mutex_init(&net->rmu, NULL) != 0) {
        pul__free(net);
        return PUL_ENOMEM;
    }
    int rc = PUL_ENOMEM;
    if (nghttp2_session_callbacks_new(&net->cbs_server) != 0 ||
        nghttp2_session_callbacks_new(&net->cbs_client) != 0 ||
        nghttp2_option_new(&net->opt) != 0) {
        goto fail;
    }
    conn_callbacks(net->cbs_server);
    conn_callbacks(net->cbs_client);
    server_callbacks(net->cbs_server);
    client_callbacks(net->cbs_client);
    /* Window is returned as the consumer takes bytes (see server.c / client.c). */
    nghttp2_option_set_no_auto_window_update(net->opt, 1);
    nghttp2_option_set_peer_max_concurrent_streams(net->opt, NET_MAX_STREAMS);
    /* A handle that is never started: the transport is always freed from a close callback,
     * after every task the shutdown runs (a record may still point at it until then). */
    if (uv_timer_init(&sys->loop.uv, &net->keep) != 0) {
        goto fail;
    }
    net->keep.data = net;
    net->nhandles++;
    net->keep_init = 1;
    sys->net = net;
    const char *listen = sys->cfg.listen_addr;
    if (listen == NULL) {
        *out = net;
        return 0;
    }
    struct sockaddr_storage sa;
    rc = PUL_EADDR;
    if (net_parse_addr(listen, &sa) != 0) {
        goto fail;
    }
    if (uv_tcp_init(&sys->loop.uv, &net->listener) != 0) {
        goto fail;
    }
    net->listener.data = net;
    net->nhandles++;
    net->listening = 1;
    int backlog = 511;
    int brc = uv_tcp_bind(&net->listener, (const struct sockaddr *)&sa, 0);
    if (brc == 0) {
        brc = uv_listen((uv_stream_t *)&net->listener, backlog, net_on_connection);
    }
    if (brc != 0) {
        /* The caller gets PUL_EADDR and reports it; this line is for debugging only. */
        PUL__LOG(PUL__LOG_DEBUG, "net", "cannot bind %s: %s", listen, uv_strerror(brc));
        goto fail;
    }
    struct sockaddr_storage bound;
    int blen = sizeof bound;
    if (uv_tcp_getsockname(&net->listener, (struct sockaddr *)&bound, &blen) != 0) {
        goto fail;
    }
    int port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                 : ((struct sockaddr_in *)&bound)->sin_port);
    if (sys->cfg.advertise_addr != NULL) {
        snprintf(out_addr, PUL_ADDR_MAX + 1, "%s", sys->cfg.advertise_addr);
    } else {
        int wildcard = 0;
        if (bound.ss_family == AF_INET) {
            wildcard = ((struct sockaddr_in *)&bound)->sin_addr.s_addr == htonl(INADDR_ANY);
        } else {
            wildcard = memcmp(&((struct sockaddr_in6 *)&bound)->sin6_addr, &in6addr_any,
                              sizeof in6addr_any) == 0;
        }
        if (wildcard) {
            addr_routable(port, out_addr);
        } else {
            addr_format((const struct sockaddr *)&bound, port, out_addr);
        }
    }
    *out = net;
    return 0;

fail:
    sys->net = NULL;
    net->closing = 1;
    if (net->listening) {
        net->listening = 0;
        uv_close((uv_handle_t *)&net->listener, listener_close_cb);
    }
    if (net->keep_init) {
        uv_close((uv_handle_t *)&net->keep, listener_close_cb); /* frees net when closed */
        return rc;
    }
    net_free(net);
    return rc;
}

void
pul__net_close(pul__net_t *net)
{
    if (net == NULL || net->closing) {
        return;
    }
    net->closing = 1;
    pump_net_close(net);
    if (net->listening) {
        net->listening = 0;
        uv_close((uv_handle_t *)&net->listener, listener_close_cb);
    }
    server_net_close(net);
    for (conn_t *cn = net->conns; cn != NULL; cn = cn->next) {
        if (!cn->dead) {
            if (cn->kind == CONN_SERVER && cn->connected) {
                /* Best effort: tell the peer we are going away. */
                (void)nghttp2_submit_goaway(cn->ses, NGHTTP2_FLAG_NONE,
                                            nghttp2_session_get_last_proc_stream_id(cn->ses),
                                            NGHTTP2_NO_ERROR, NULL, 0);
                conn_flush(cn);
            }
            conn_fail(cn, PUL_ECLOSED);
        }
    }
    uv_close((uv_handle_t *)&net->keep, listener_close_cb); /* the last close frees net */
}

/* ---- calls -------------------------------------------------------------------------------- */

int
pul__net_is_remote(pul_system_t *sys, pul_id_t target)
{
    /* Ids carry their node's high 64 bits: no lookup, any thread. */
    return target.hi != sys->node_id.hi;
}

/* ---- routes ------------------------------------------------------------------------------- */

int
pul__net_route_set(pul__net_t *net, pul_id_t node_id, const char *addr)
{
    if (net == NULL || addr == NULL || strlen(addr) > PUL_ADDR_MAX) {
        return PUL_EINVAL;
    }
    pthread_mutex_lock(&net->rmu);
    for (size_t i = 0; i < net->nroutes; i++) {
        if (net->routes[i].node.hi == node_id.hi) {
            net->routes[i].node = node_id;
            snprintf(net->routes[i].addr, sizeof net->routes[i].addr, "%s", addr);
            pthread_mutex_unlock(&net->rmu);
            return 0;
        }
    }
    if (net->nroutes == net->caproutes) {
        size_t nc = net->caproutes ? net->caproutes * 2 : 8;
        route_t *nr = pul__realloc(net->routes, nc * sizeof *nr);
        if (nr == NULL) {
            pthread_mutex_unlock(&net->rmu);
            return PUL_ENOMEM;
        }
        net->routes = nr;
        net->caproutes = nc;
    }
    route_t *r = &net->routes[net->nroutes++];
    r->node = node_id;
    snprintf(r->addr, sizeof r->addr, "%s", addr);
    pthread_mutex_unlock(&net->rmu);
    return 0;
}

void
pul__net_route_drop(pul__net_t *net, pul_id_t node_id)
{
    if (net == NULL) {
        return;
    }
    char addr[PUL_ADDR_MAX + 1] = "";
    pthread_mutex_lock(&net->rmu);
    for (size_t i = 0; i < net->nroutes; i++) {
        if (net->routes[i].node.hi == node_id.hi) {
            memcpy(addr, net->routes[i].addr, sizeof addr);
            net->routes[i] = net->routes[--net->nroutes];
            break;
        }
    }
    pthread_mutex_unlock(&net->rmu);
    if (addr[0] == '\0') {
        return;
    }
    for (peer_t *p = net->peers; p != NULL; p = p->next) {
        if (strcmp(p->addr, addr) == 0) {
            for (int k = CONN_DATA; k <= CONN_CTRL; k++) {
                if (p->conn[k] != NULL) {
                    conn_fail(p->conn[k], PUL_EIO);
                }
                /* A node that comes back at this address is dialled at once. */
                p->backoff[k] = 0;
                p->retry_at[k] = 0;
            }
        }
    }
}

typedef struct {
    pul_system_t *sys;
    pul_id_t node;
} route_drop_t;

static void
route_drop_task(void *arg)
{
    route_drop_t *d = arg;
    pul__net_route_drop(d->sys->net, d->node); /* NULL net (shut down): nothing to drop */
    pul__free(d);
}

int
pul_gateway_route(pul_system_t *sys, pul_id_t node_id, const char *addr)
{
    if (sys == NULL || (addr != NULL && (addr[0] == '\0' || strlen(addr) > PUL_ADDR_MAX))) {
        return PUL_EINVAL;
    }
    if (sys->net == NULL) {
        return PUL_ECLOSED;
    }
    if (addr == NULL) {
        /* The peer's connections are the core thread's. */
        route_drop_t *d = pul__malloc(sizeof *d);
        if (d == NULL) {
            return PUL_ENOMEM;
        }
        *d = (route_drop_t){.sys = sys, .node = node_id};
        int rc = pul_system_post(sys, route_drop_task, d);
        if (rc != 0) {
            pul__free(d);
        }
        return rc;
    }
    return pul__net_route_set(sys->net, node_id, addr);
}

/* ---- control-plane handlers ----------------------------------------------------------------- */

int
pul__net_handle(pul__net_t *net, const char *prefix, pul__net_handler_fn fn, void *arg)
{
    if (net == NULL || prefix == NULL || fn == NULL) {
        return PUL_EINVAL;
    }
    handler_t *h = pul__calloc(1, sizeof *h);
    if (h == NULL) {
        return PUL_ENOMEM;
    }
    h->prefix = pul__strndup(prefix, strlen(prefix));
    if (h->prefix == NULL) {
        pul__free(h);
        return PUL_ENOMEM;
    }
    h->fn = fn;
    h->arg = arg;
    h->next = net->handlers;
    net->handlers = h;
    return 0;
}
