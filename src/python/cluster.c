/* cluster.c — CoreSystem's network configuration and its cluster queries (members, names). */
#include "pulpy.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- configuration -------------------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t off;
} timing_fields[] = {
#define F(n) {#n, offsetof(pul_cluster_timing_t, n)}
    F(probe_interval_ms),     F(probe_timeout_ms),      F(indirect_checks),
    F(suspicion_mult),        F(suspicion_max_mult),    F(retransmit_mult),
    F(gossip_interval_ms),    F(gossip_nodes),          F(push_pull_interval_ms),
    F(awareness_max),         F(dead_reclaim_ms),       F(join_retry_ms),
    F(heartbeat_interval_ms), F(heartbeat_timeout_ms),
#undef F
};

static int
apply_timing(pul_cluster_timing_t *t, PyObject *timing)
{
    if (timing == Py_None) {
        return 0;
    }
    if (!PyDict_Check(timing)) {
        PyErr_Format(PyExc_TypeError, "timing must be a dict, not %.100s",
                     Py_TYPE(timing)->tp_name);
        return -1;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(timing, &pos, &key, &value)) {
        const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        if (k == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "timing keys must be str");
            }
            return -1;
        }
        size_t i, n = sizeof timing_fields / sizeof timing_fields[0];
        for (i = 0; i < n && strcmp(timing_fields[i].name, k) != 0; i++) {
        }
        if (i == n) {
            PyErr_Format(PyExc_ValueError, "unknown timing field %R (pul_cluster_timing_t)", key);
            return -1;
        }
        unsigned long v = PyLong_AsUnsignedLong(value);
        if (v == (unsigned long)-1 && PyErr_Occurred()) {
            return -1;
        }
        if (v > UINT32_MAX) {
            PyErr_Format(PyExc_ValueError, "timing field %s out of range", k);
            return -1;
        }
        *(uint32_t *)((char *)t + timing_fields[i].off) = (uint32_t)v;
    }
    return 0;
}

/* The core copies the config struct, not the strings it points to: they are copied into one
 * block owned by the CoreSystem and freed after the core is gone. */
int
pulpy_config_from_kwargs(CoreSystemObject *self, pul_system_config_t *cfg, PyObject *seeds,
                         PyObject *timing)
{
    if (apply_timing(&cfg->timing, timing) < 0) {
        return -1;
    }
    PyObject *seq = NULL;
    Py_ssize_t nseeds = 0;
    if (seeds != Py_None) {
        if (PyUnicode_Check(seeds)) {
            PyErr_SetString(PyExc_TypeError, "seeds must be a list of \"host:port\" strings");
            return -1;
        }
        seq = PySequence_Fast(seeds, "seeds must be a list of \"host:port\" strings");
        if (seq == NULL) {
            return -1;
        }
        nseeds = PySequence_Fast_GET_SIZE(seq);
    }
    const char *fixed[3] = {cfg->listen_addr, cfg->advertise_addr, cfg->head_addr};
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        total += fixed[i] ? strlen(fixed[i]) + 1 : 0;
    }
    for (Py_ssize_t i = 0; i < nseeds; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
        Py_ssize_t len;
        if (!PyUnicode_Check(o) || PyUnicode_AsUTF8AndSize(o, &len) == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "seeds must be \"host:port\" strings");
            }
            Py_DECREF(seq);
            return -1;
        }
        total += (size_t)len + 1;
    }
    char *mem = malloc(total ? total : 1);
    const char **sv = nseeds ? calloc((size_t)nseeds, sizeof *sv) : NULL;
    if (mem == NULL || (nseeds && sv == NULL)) {
        free(mem);
        free(sv);
        Py_XDECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    char *p = mem;
    const char **dst[3] = {&cfg->listen_addr, &cfg->advertise_addr, &cfg->head_addr};
    for (int i = 0; i < 3; i++) {
        if (fixed[i] != NULL) {
            size_t l = strlen(fixed[i]) + 1;
            memcpy(p, fixed[i], l);
            *dst[i] = p;
            p += l;
        }
    }
    for (Py_ssize_t i = 0; i < nseeds; i++) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(PySequence_Fast_GET_ITEM(seq, i), &len);
        memcpy(p, s, (size_t)len + 1);
        sv[i] = p;
        p += len + 1;
    }
    Py_XDECREF(seq);
    cfg->seeds = sv;
    cfg->nseeds = (size_t)nseeds;
    free(self->cfg_mem);
    free(self->cfg_seeds);
    self->cfg_mem = mem;
    self->cfg_seeds = sv;
    return 0;
}

/* ---- queries -------------------------------------------------------------------------------- */

static int
check(CoreSystemObject *self)
{
    return pulpy_system_check(self);
}

static PyObject *
raise_rc(CoreSystemObject *self, int rc, const char *what)
{
    if (rc == PUL_ENOMEM) {
        return PyErr_NoMemory();
    }
    return pulpy_raise(pulpy_state_of_type(Py_TYPE(self)), rc, what);
}

PyObject *
pulpy_sys_members(PyObject *op, PyObject *unused)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    if (check(self) < 0) {
        return NULL;
    }
    size_t cap = 16;
    pul_member_t *v = NULL;
    int n;
    for (;;) {
        pul_member_t *nv = realloc(v, cap * sizeof *v);
        if (nv == NULL) {
            free(v);
            return PyErr_NoMemory();
        }
        v = nv;
        n = pul_members(self->sys, v, cap);
        if (n < 0) {
            free(v);
            return raise_rc(self, n, "members");
        }
        if ((size_t)n <= cap) {
            break;
        }
        cap = (size_t)n + 8; /* grew meanwhile: retry with room */
    }
    PyObject *list = PyList_New(n);
    for (int i = 0; list != NULL && i < n; i++) {
        PyObject *nid = pulpy_id_to_py(v[i].node_id);
        PyObject *t = nid ? Py_BuildValue("(NssK)", nid, v[i].addr,
                                          pul_member_status_str(v[i].status),
                                          (unsigned long long)v[i].incarnation)
                          : NULL;
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, t);
    }
    free(v);
    return list;
}

PyObject *
pulpy_sys_resolve_name(PyObject *op, PyObject *name)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    char norm[PUL_NAME_MAX + 1];
    if (check(self) < 0 || pulpy_normalize_name(name, 1, norm, sizeof norm) < 0) {
        return NULL;
    }
    size_t cap = 8;
    pul_instance_t *v = NULL;
    int n;
    for (;;) {
        pul_instance_t *nv = realloc(v, cap * sizeof *v);
        if (nv == NULL) {
            free(v);
            return PyErr_NoMemory();
        }
        v = nv;
        n = pul_resolve_name(self->sys, norm, v, cap);
        if (n < 0) {
            free(v);
            return raise_rc(self, n, "resolve_name");
        }
        if ((size_t)n <= cap) {
            break;
        }
        cap = (size_t)n + 8;
    }
    PyObject *list = PyList_New(n);
    for (int i = 0; list != NULL && i < n; i++) {
        PyObject *a = pulpy_id_to_py(v[i].node_id);
        PyObject *b = a ? pulpy_id_to_py(v[i].actor_id) : NULL;
        PyObject *t = b ? PyTuple_Pack(2, a, b) : NULL;
        Py_XDECREF(a);
        Py_XDECREF(b);
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, t);
    }
    free(v);
    return list;
}

typedef struct {
    char *name;
    pul_id_t node, actor;
} named_row_t;

typedef struct {
    named_row_t *v;
    size_t n, cap;
    int oom;
} named_rows_t;

/* Runs under the cluster's lock: plain C only (no Python allocation, which could run a
 * finalizer that calls back into the system). */
static void
named_cb(const char *name, pul_id_t node, pul_id_t actor, void *arg)
{
    named_rows_t *rows = arg;
    if (rows->oom) {
        return;
    }
    if (rows->n == rows->cap) {
        size_t cap = rows->cap ? rows->cap * 2 : 32;
        named_row_t *nv = realloc(rows->v, cap * sizeof *nv);
        if (nv == NULL) {
            rows->oom = 1;
            return;
        }
        rows->v = nv;
        rows->cap = cap;
    }
    char *copy = strdup(name);
    if (copy == NULL) {
        rows->oom = 1;
        return;
    }
    rows->v[rows->n++] = (named_row_t){copy, node, actor};
}

PyObject *
pulpy_sys_named_actors(PyObject *op, PyObject *unused)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    if (check(self) < 0) {
        return NULL;
    }
    named_rows_t rows = {0};
    pul_system_t *sys = self->sys;
    Py_BEGIN_ALLOW_THREADS
    pul_named_foreach(sys, named_cb, &rows);
    Py_END_ALLOW_THREADS
    PyObject *list = NULL;
    if (rows.oom) {
        PyErr_NoMemory();
        goto done;
    }
    list = PyList_New((Py_ssize_t)rows.n);
    for (size_t i = 0; list != NULL && i < rows.n; i++) {
        PyObject *nm = PyUnicode_FromString(rows.v[i].name);
        PyObject *a = nm ? pulpy_id_to_py(rows.v[i].node) : NULL;
        PyObject *b = a ? pulpy_id_to_py(rows.v[i].actor) : NULL;
        PyObject *t = b ? PyTuple_Pack(3, nm, a, b) : NULL;
        Py_XDECREF(nm);
        Py_XDECREF(a);
        Py_XDECREF(b);
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
done:
    for (size_t i = 0; i < rows.n; i++) {
        free(rows.v[i].name);
    }
    free(rows.v);
    return list;
}

PyObject *
pulpy_sys_actor_node(PyObject *op, PyObject *arg)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    pul_id_t id, node;
    if (check(self) < 0 || pulpy_id_from_py(arg, &id) < 0) {
        return NULL;
    }
    int rc = pul_actor_node(self->sys, id, &node);
    if (rc == PUL_ENOTFOUND) {
        Py_RETURN_NONE;
    }
    if (rc != 0) {
        return raise_rc(self, rc, "actor_node");
    }
    return pulpy_id_to_py(node);
}

/* ask_named(node_id, name, msg_type, payload, future, deadline_ms=0, segments=False,
 * complete=None): node_id None or 0 means this node; `complete` as for ask(). */
PyObject *
pulpy_sys_ask_named(PyObject *op, PyObject *args, PyObject *kw)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    static char *kwlist[] = {"node_id", "name",     "msg_type", "payload", "future",
                             "deadline_ms", "segments", "complete", NULL};
    PyObject *node_o, *name, *type, *payload, *future, *complete = Py_None;
    unsigned long long deadline = 0;
    int segments = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOO|KpO:ask_named", kwlist, &node_o, &name,
                                     &type, &payload, &future, &deadline, &segments,
                                     &complete)) {
        return NULL;
    }
    if (complete != Py_None && !PyCallable_Check(complete)) {
        PyErr_SetString(PyExc_TypeError, "ask_named() complete must be callable or None");
        return NULL;
    }
    if (check(self) < 0) {
        return NULL;
    }
    pul_id_t node = {0, 0};
    if (node_o != Py_None && !(PyLong_Check(node_o) && PyObject_Not(node_o) == 1) &&
        pulpy_id_from_py(node_o, &node) < 0) {
        return NULL;
    }
    char norm[PUL_NAME_MAX + 1];
    if (pulpy_normalize_name(name, 1, norm, sizeof norm) < 0) {
        return NULL;
    }
    pul_msg_t *msg =
        pulpy_msg_from_py(pulpy_state_of_type(Py_TYPE(self)), self->bridge, type, payload);
    if (msg == NULL) {
        return NULL;
    }
    AskObject *a = pulpy_ask_prepare(self, future, segments, complete);
    if (a == NULL) {
        pul_msg_unref(msg);
        return NULL;
    }
    int rc = pul_ask_named(self->sys, node, norm, msg, deadline, pulpy_ask_core_cb, a, &a->call);
    if (rc != 0) {
        pul_msg_unref(msg);
        return pulpy_ask_abort(self, a, rc, "ask_named");
    }
    Py_RETURN_NONE;
}

/* http_get(addr, path, future, timeout_ms=0): GET a REST endpoint of any node over the core's
 * HTTP/2 client; the future gets ("<status>", body bytes) or a CoreError. Home thread. */
PyObject *
pulpy_sys_http_get(PyObject *op, PyObject *args, PyObject *kw)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    static char *names[] = {"addr", "path", "future", "timeout_ms", NULL};
    const char *addr, *path;
    PyObject *future;
    unsigned long long timeout_ms = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ssO|K:http_get", names, &addr, &path, &future,
                                     &timeout_ms)) {
        return NULL;
    }
    if (check(self) < 0) {
        return NULL;
    }
    if (path[0] != '/' || strlen(path) > 270 || strlen(addr) > PUL_ADDR_MAX) {
        PyErr_SetString(PyExc_ValueError, "http_get: addr too long, or path not an absolute path");
        return NULL;
    }
    AskObject *a = pulpy_ask_prepare(self, future, 0, NULL);
    if (a == NULL) {
        return NULL;
    }
    int rc = pul_http_get(self->sys, addr, path, timeout_ms, pulpy_ask_core_cb, a);
    if (rc != 0) {
        return pulpy_ask_abort(self, a, rc, "http_get");
    }
    Py_RETURN_NONE;
}

/* gateway_route(node_id, addr): calls for node node_id's actors (node_id 0: every node without a
 * route of its own) go to the gateway at addr; addr None drops the route. Home thread. */
PyObject *
pulpy_sys_gateway_route(PyObject *op, PyObject *args)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    PyObject *node_o, *addr_o;
    if (!PyArg_ParseTuple(args, "OO:gateway_route", &node_o, &addr_o)) {
        return NULL;
    }
    if (check(self) < 0) {
        return NULL;
    }
    pul_id_t node = {0, 0};
    if (!(PyLong_Check(node_o) && PyObject_Not(node_o) == 1) &&
        pulpy_id_from_py(node_o, &node) < 0) {
        return NULL;
    }
    const char *addr = NULL;
    if (addr_o != Py_None) {
        addr = PyUnicode_AsUTF8(addr_o);
        if (addr == NULL) {
            return NULL;
        }
    }
    int rc = pul_gateway_route(self->sys, node, addr);
    if (rc != 0) {
        return pulpy_raise(pulpy_state_of_type(Py_TYPE(self)), rc, "gateway_route");
    }
    Py_RETURN_NONE;
}
