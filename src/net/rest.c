/* rest.c — the REST endpoints on the node's port: /health, /cluster/members, /actors, /metrics
 * (JSON via cJSON, Prometheus text 0.0.4). Core thread. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "net/netint.h"

#define REST_MEMBERS_MAX 4096

static pul_msg_t *
json_msg(cJSON *j)
{
    char *s = j != NULL ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (s == NULL) {
        return NULL;
    }
    pul_msg_t *m = pul_msg_new("", s, strlen(s));
    cJSON_free(s);
    return m;
}

static int
members_snapshot(pul_system_t *sys, pul_member_t **out)
{
    pul_member_t *m = pul__calloc(REST_MEMBERS_MAX, sizeof *m);
    if (m == NULL) {
        return PUL_ENOMEM;
    }
    int n = pul_members(sys, m, REST_MEMBERS_MAX);
    if (n < 0) {
        pul__free(m);
        return n;
    }
    *out = m;
    return n > REST_MEMBERS_MAX ? REST_MEMBERS_MAX : n;
}

static void
actors_walk(pul_id_t id, const char *name, void *arg)
{
    cJSON *arr = arg;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return;
    }
    char hex[33];
    pul_id_format(id, hex);
    cJSON_AddStringToObject(o, "actor_id", hex);
    if (name != NULL) {
        cJSON_AddStringToObject(o, "name", name);
    } else {
        cJSON_AddNullToObject(o, "name");
    }
    cJSON_AddItemToArray(arr, o);
}

static void
count_walk(pul_id_t id, const char *name, void *arg)
{
    (*(size_t *)arg)++;
}

/* A growable text buffer for /metrics. */
typedef struct {
    char *p;
    size_t len, cap;
    int err;
} tbuf_t;

static void
tb_printf(tbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
tb_printf(tbuf_t *b, const char *fmt, ...)
{
    if (b->err) {
        return;
    }
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = 1;
            return;
        }
        if (b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = b->cap * 2 + (size_t)n;
        char *np = pul__realloc(b->p, nc);
        if (np == NULL) {
            b->err = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

static pul_msg_t *
metrics(pul__net_t *net)
{
    pul_system_t *sys = net->sys;
    tbuf_t b = {pul__malloc(4096), 0, 4096, 0};
    if (b.p == NULL) {
        return NULL;
    }
    pul__net_stats_t s;
    pul__net_stats(net, &s);
    size_t nactors = 0;
    pul_actors_foreach(sys, count_walk, &nactors);
    tb_printf(&b, "# HELP pulsing_actors Live actors on this node.\n"
                  "# TYPE pulsing_actors gauge\npulsing_actors %zu\n",
              nactors);
    tb_printf(&b,
              "# HELP pulsing_messages_total Messages through the transport.\n"
              "# TYPE pulsing_messages_total counter\n"
              "pulsing_messages_total{direction=\"in\"} %llu\n"
              "pulsing_messages_total{direction=\"out\"} %llu\n",
              (unsigned long long)s.msgs_in, (unsigned long long)s.msgs_out);
    tb_printf(&b,
              "# HELP pulsing_errors_total Failed calls and protocol errors.\n"
              "# TYPE pulsing_errors_total counter\npulsing_errors_total %llu\n",
              (unsigned long long)s.errors);
    tb_printf(&b,
              "# HELP pulsing_bytes_total Bytes through the transport.\n"
              "# TYPE pulsing_bytes_total counter\n"
              "pulsing_bytes_total{direction=\"in\"} %llu\n"
              "pulsing_bytes_total{direction=\"out\"} %llu\n",
              (unsigned long long)s.bytes_in, (unsigned long long)s.bytes_out);
    tb_printf(&b,
              "# HELP pulsing_direct_writes_total Write batches sent by the thread that made the "
              "call or the reply while the core thread slept, by who finished them.\n"
              "# TYPE pulsing_direct_writes_total counter\n"
              "pulsing_direct_writes_total{finished_by=\"caller\"} %llu\n"
              "pulsing_direct_writes_total{finished_by=\"core\"} %llu\n",
              (unsigned long long)(s.direct_writes - s.direct_held),
              (unsigned long long)s.direct_held);
    tb_printf(&b,
              "# HELP pulsing_pumped_reads_total Socket reads done by the thread that made a lone "
              "call (its event loop reading the reply) instead of the core thread.\n"
              "# TYPE pulsing_pumped_reads_total counter\npulsing_pumped_reads_total %llu\n",
              (unsigned long long)s.pumped);
    tb_printf(&b,
              "# HELP pulsing_connections Open connections.\n"
              "# TYPE pulsing_connections gauge\npulsing_connections %llu\n",
              (unsigned long long)s.connections);
    pul_member_t *m = NULL;
    int nm = members_snapshot(sys, &m);
    size_t by[4] = {0, 0, 0, 0};
    for (int i = 0; i < nm; i++) {
        if ((unsigned)m[i].status < 4) {
            by[m[i].status]++;
        }
    }
    pul__free(m);
    tb_printf(&b, "# HELP pulsing_members Cluster members by status.\n"
                  "# TYPE pulsing_members gauge\n");
    for (int st = 0; st < 4; st++) {
        tb_printf(&b, "pulsing_members{status=\"%s\"} %zu\n",
                  pul_member_status_str((pul_member_status_t)st), by[st]);
    }
    tb_printf(&b, "# HELP pulsing_call_duration_seconds Remote calls served, by duration.\n"
                  "# TYPE pulsing_call_duration_seconds histogram\n");
    unsigned long long cum = 0;
    for (size_t i = 0; i < NET_HIST_N; i++) {
        cum += atomic_load_explicit(&net->hist[i], memory_order_relaxed);
        tb_printf(&b, "pulsing_call_duration_seconds_bucket{le=\"%g\"} %llu\n",
                  (double)net_hist_bound_us(i) / 1e6, cum);
    }
    cum += atomic_load_explicit(&net->hist[NET_HIST_N], memory_order_relaxed);
    tb_printf(&b, "pulsing_call_duration_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    tb_printf(&b, "pulsing_call_duration_seconds_sum %.6f\n",
              (double)atomic_load_explicit(&net->hist_sum_us, memory_order_relaxed) / 1e6);
    tb_printf(&b, "pulsing_call_duration_seconds_count %llu\n",
              (unsigned long long)atomic_load_explicit(&net->hist_count, memory_order_relaxed));
    pul_msg_t *out = b.err ? NULL : pul_msg_new("", b.p, b.len);
    pul__free(b.p);
    return out;
}

int
rest_get(pul__net_t *net, const char *path, pul_msg_t **body, const char **ctype)
{
    pul_system_t *sys = net->sys;
    *ctype = "application/json";
    *body = NULL;
    char hex[33];
    if (strcmp(path, "/health") == 0) {
        cJSON *o = cJSON_CreateObject();
        pul_id_format(sys->node_id, hex);
        cJSON_AddStringToObject(o, "status", "ok");
        cJSON_AddStringToObject(o, "node_id", hex);
        cJSON_AddStringToObject(o, "addr", sys->addr);
        cJSON_AddNumberToObject(o, "uptime_s", (double)(pul__now_ms() - net->start_ms) / 1000.0);
        cJSON_AddNumberToObject(o, "members", pul_members(sys, NULL, 0));
        *body = json_msg(o);
    } else if (strcmp(path, "/cluster/members") == 0) {
        pul_member_t *m = NULL;
        int n = members_snapshot(sys, &m);
        cJSON *arr = cJSON_CreateArray();
        for (int i = 0; i < n; i++) {
            cJSON *o = cJSON_CreateObject();
            pul_id_format(m[i].node_id, hex);
            cJSON_AddStringToObject(o, "node_id", hex);
            cJSON_AddStringToObject(o, "addr", m[i].addr);
            cJSON_AddStringToObject(o, "status", pul_member_status_str(m[i].status));
            cJSON_AddNumberToObject(o, "incarnation", (double)m[i].incarnation);
            cJSON_AddItemToArray(arr, o);
        }
        pul__free(m);
        *body = json_msg(arr);
    } else if (strcmp(path, "/actors") == 0) {
        cJSON *arr = cJSON_CreateArray();
        if (arr != NULL) {
            pul_actors_foreach(sys, actors_walk, arr);
        }
        *body = json_msg(arr);
    } else if (strcmp(path, "/metrics") == 0) {
        *ctype = "text/plain; version=0.0.4";
        *body = metrics(net);
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "not found");
        cJSON_AddStringToObject(o, "path", path);
        *body = json_msg(o);
        return 404;
    }
    return *body != NULL ? 200 : 500;
}
