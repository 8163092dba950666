/* msg.c — payloads between Python buffers and pul_msg_t, without copies where they matter. */
#include "pulpy.h"

#include <stdlib.h>
#include <string.h>

/* Buffers at least this large travel as zero-copy segments (a Py_buffer held until the core
 * frees the message); smaller ones are copied, which is cheaper than the bookkeeping. */
#define PULPY_ZEROCOPY_MIN (16 * 1024)

#if PY_VERSION_HEX >= 0x030D0000
#define pulpy_tstate_unchecked() PyThreadState_GetUnchecked()
#else
#define pulpy_tstate_unchecked() _PyThreadState_UncheckedGet()
#endif

/* Nonzero when the calling thread holds the GIL. Safe on threads Python never saw (the core's):
 * their thread-local state is NULL. Before 3.12 the "current" thread state is process-wide (the
 * GIL holder's, whichever thread that is), so it must match this thread's own state. */
static int
holds_gil(void)
{
    PyThreadState *mine = PyGILState_GetThisThreadState();
    return mine != NULL && mine == pulpy_tstate_unchecked();
}

/* A zero-copy segment: the Py_buffer is released under the GIL only. */
typedef struct {
    Py_buffer view;
    pulpy_bridge_t *bridge; /* a reference: the bridge outlives the segment */
} pulpy_segment_t;

static void
segment_release(pulpy_segment_t *s)
{
    PyBuffer_Release(&s->view);
    pulpy_bridge_unref(s->bridge);
    free(s);
}

/* pul_free_fn of a zero-copy segment: runs wherever the message's last reference drops. A
 * thread holding the GIL releases at once; any other thread (a core thread, or ours with the
 * GIL released) queues the release for the next drain. */
static void
segment_free(void *opaque)
{
    pulpy_segment_t *s = opaque;
    if (holds_gil()) {
        segment_release(s);
        return;
    }
    pulpy_entry_t e = {.kind = PULPY_E_BUF_RELEASE, .obj = s};
    if (pulpy_bridge_push(s->bridge, &e) != 0) {
        /* Out of memory off the GIL: leaking the view is the only safe choice. */
        return;
    }
}

void
pulpy_segment_entry(pulpy_entry_t *e)
{
    segment_release(e->obj);
}

static int
add_segment(pul_msg_t *msg, pulpy_bridge_t *b, PyObject *obj)
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_ANY_CONTIGUOUS) < 0) {
        return -1;
    }
    int rc;
    if (view.len < PULPY_ZEROCOPY_MIN) {
        void *copy = malloc(view.len ? (size_t)view.len : 1);
        if (copy == NULL) {
            PyBuffer_Release(&view);
            PyErr_NoMemory();
            return -1;
        }
        memcpy(copy, view.buf, (size_t)view.len);
        rc = pul_msg_add_segment(msg, copy, (size_t)view.len, free, copy);
        PyBuffer_Release(&view);
        if (rc != 0) {
            free(copy);
        }
    } else {
        pulpy_segment_t *s = malloc(sizeof(*s));
        if (s == NULL) {
            PyBuffer_Release(&view);
            PyErr_NoMemory();
            return -1;
        }
        s->view = view;
        s->bridge = b;
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
        rc = pul_msg_add_segment(msg, view.buf, (size_t)view.len, segment_free, s);
        if (rc != 0) {
            segment_release(s);
        }
    }
    if (rc != 0) {
        if (rc == PUL_ENOMEM) {
            PyErr_NoMemory();
        } else {
            PyErr_Format(PyExc_ValueError, "cannot add a segment: %s", pul_strerror(rc));
        }
        return -1;
    }
    return 0;
}

static pul_msg_t *
msg_from_buffer(const char *type, PyObject *obj)
{
    pul_msg_t *msg;
    if (obj == Py_None) {
        msg = pul_msg_new(type, NULL, 0);
    } else if (PyBytes_CheckExact(obj)) {
        msg = pul_msg_new(type, PyBytes_AS_STRING(obj), (size_t)PyBytes_GET_SIZE(obj));
    } else {
        Py_buffer view;
        if (PyObject_GetBuffer(obj, &view, PyBUF_ANY_CONTIGUOUS) < 0) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_TypeError,
                             "payload must be a bytes-like object or a list/tuple of them, "
                             "not %.100s",
                             Py_TYPE(obj)->tp_name);
            }
            return NULL;
        }
        msg = pul_msg_new(type, view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
    }
    if (msg == NULL) {
        PyErr_NoMemory();
    }
    return msg;
}

pul_msg_t *
pulpy_msg_from_py(pulpy_state *st, pulpy_bridge_t *b, PyObject *type, PyObject *payload)
{
    if (!PyUnicode_Check(type)) {
        PyErr_Format(PyExc_TypeError, "msg_type must be str, not %.100s",
                     Py_TYPE(type)->tp_name);
        return NULL;
    }
    const char *t = PyUnicode_AsUTF8(type);
    if (t == NULL) {
        return NULL;
    }
    if (!PyList_Check(payload) && !PyTuple_Check(payload)) {
        return msg_from_buffer(t, payload);
    }
    PyObject *seq = PySequence_Fast(payload, "payload");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    pul_msg_t *msg = msg_from_buffer(t, n > 0 ? PySequence_Fast_GET_ITEM(seq, 0) : Py_None);
    for (Py_ssize_t i = 1; msg != NULL && i < n; i++) {
        if (add_segment(msg, b, PySequence_Fast_GET_ITEM(seq, i)) < 0) {
            pul_msg_unref(msg);
            msg = NULL;
        }
    }
    Py_DECREF(seq);
    return msg;
}

PyObject *
pulpy_msg_type(pul_msg_t *msg)
{
    const char *t = pul_msg_type(msg);
    if (t == NULL) {
        t = "";
    }
    return PyUnicode_DecodeUTF8(t, (Py_ssize_t)strlen(t), "replace");
}

PyObject *
pulpy_msg_bytes(pul_msg_t *msg)
{
    size_t len = 0;
    const void *data = pul_msg_data(msg, &len);
    size_t nseg = pul_msg_nsegments(msg);
    if (nseg == 0) {
        return PyBytes_FromStringAndSize(len ? data : NULL, (Py_ssize_t)len);
    }
    size_t total = pul_msg_size(msg);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (out == NULL) {
        return NULL;
    }
    char *p = PyBytes_AS_STRING(out);
    if (len) {
        memcpy(p, data, len);
    }
    p += len;
    for (size_t i = 0; i < nseg; i++) {
        size_t sl = 0;
        const void *sd = pul_msg_segment(msg, i, &sl);
        if (sl) {
            memcpy(p, sd, sl);
        }
        p += sl;
    }
    return out;
}

/* ---- MsgBuffer: exports a message's payload or one segment without a copy ----------------- */

typedef struct {
    PyObject_HEAD
    pul_msg_t *msg;
    Py_ssize_t idx; /* -1: the payload; else the segment index */
    int writable;
} MsgBufferObject;

static int
msgbuf_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    MsgBufferObject *mb = (MsgBufferObject *)self;
    size_t len = 0;
    const void *data = mb->idx < 0 ? pul_msg_data(mb->msg, &len)
                                   : pul_msg_segment(mb->msg, (size_t)mb->idx, &len);
    /* A received segment belongs to the receiver alone (the transport allocated it), so it is
     * exported writable: pickle.loads(..., buffers=) then rebuilds writable numpy arrays, as
     * an in-band pickle would. */
    return PyBuffer_FillInfo(view, self, (void *)(len ? data : ""), (Py_ssize_t)len,
                             !mb->writable, flags);
}

static void
msgbuf_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    pul_msg_unref(((MsgBufferObject *)self)->msg);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot msgbuf_slots[] = {
    {Py_bf_getbuffer, msgbuf_getbuffer},
    {Py_tp_dealloc, msgbuf_dealloc},
    {0, NULL},
};

PyType_Spec pulpy_msgbuffer_spec = {
    .name = "pulsing._core._MsgBuffer",
    .basicsize = sizeof(MsgBufferObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = msgbuf_slots,
};

static PyObject *
msgbuf_view(pulpy_state *st, pul_msg_t *msg, Py_ssize_t idx, int writable)
{
    MsgBufferObject *mb = PyObject_New(MsgBufferObject, st->MsgBufferType);
    if (mb == NULL) {
        return NULL;
    }
    mb->msg = pul_msg_ref(msg);
    mb->idx = idx;
    mb->writable = writable;
    PyObject *mv = PyMemoryView_FromObject((PyObject *)mb);
    Py_DECREF(mb);
    return mv;
}

PyObject *
pulpy_msg_memoryview(pulpy_state *st, pul_msg_t *msg)
{
    if (pul_msg_nsegments(msg) != 0) {
        PyObject *b = pulpy_msg_bytes(msg);
        if (b == NULL) {
            return NULL;
        }
        PyObject *mv = PyMemoryView_FromObject(b);
        Py_DECREF(b);
        return mv;
    }
    return msgbuf_view(st, msg, -1, 0);
}

PyObject *
pulpy_msg_head_memoryview(pulpy_state *st, pul_msg_t *msg)
{
    return msgbuf_view(st, msg, -1, 0);
}

PyObject *
pulpy_msg_head_bytes(pul_msg_t *msg)
{
    size_t len = 0;
    const void *data = pul_msg_data(msg, &len);
    return PyBytes_FromStringAndSize(len ? data : NULL, (Py_ssize_t)len);
}

PyObject *
pulpy_msg_segments(pulpy_state *st, pul_msg_t *msg)
{
    size_t n = pul_msg_nsegments(msg);
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; t != NULL && i < n; i++) {
        PyObject *mv = msgbuf_view(st, msg, (Py_ssize_t)i, 1);
        if (mv == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, mv);
    }
    return t;
}
