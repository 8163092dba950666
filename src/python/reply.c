/* reply.c — Reply and StreamWriter (answering core callers), StreamCall (consuming streams). */
#include "pulpy.h"

#include <stdlib.h>
#include <string.h>

static pulpy_state *
st_of(PyObject *o)
{
    return pulpy_state_of_type(Py_TYPE(o));
}

/* Parse (kind, message, *, code, details, recoverable, duration_ms, type_name) into a
 * pul_error_t whose strings borrow from the arguments (valid while args/kw live). */
static int
parse_error(PyObject *args, PyObject *kw, const char *fname, pul_error_t *err)
{
    static char *kwlist[] = {"kind",        "message",   "code", "details", "recoverable",
                             "duration_ms", "type_name", NULL};
    int kind;
    const char *message;
    long long code = 0;
    const char *details = NULL;
    int recoverable = 1;
    unsigned long long duration = 0;
    const char *type_name = NULL;
    char fmt[64];
    snprintf(fmt, sizeof(fmt), "is|$LzpKz:%s", fname);
    if (!PyArg_ParseTupleAndKeywords(args, kw, fmt, kwlist, &kind, &message, &code, &details,
                                     &recoverable, &duration, &type_name)) {
        return -1;
    }
    if (kind < PUL_ERRKIND_RUNTIME || kind > PUL_ERRKIND_UNSUPPORTED) {
        PyErr_Format(PyExc_ValueError, "%s: unknown error kind %d", fname, kind);
        return -1;
    }
    memset(err, 0, sizeof(*err));
    err->kind = (pul_errkind_t)kind;
    err->message = message;
    err->code = code;
    err->details = details;
    err->recoverable = recoverable;
    err->duration_ms = duration;
    err->type_name = type_name;
    return 0;
}

static PyObject *
raise_rc(PyObject *o, int rc, const char *context)
{
    if (rc == PUL_ENOMEM) {
        return PyErr_NoMemory();
    }
    return pulpy_raise(st_of(o), rc, context);
}

/* ---- StreamWriter and its core-visible state ------------------------------------------------ */

struct pulpy_wstate_s {
    pulpy_link_t link;          /* in sys->writers */
    pul_stream_t *stream;       /* NULL once ended */
    StreamWriterObject *writer; /* borrowed back pointer; NULL once the writer is gone */
    PyObject *callback;         /* pending on_writable callback (one-shot) */
    pulpy_bridge_t *bridge;
    int registered;             /* a WRITABLE entry may still come from the core */
};

static void
wstate_maybe_free(pulpy_wstate_t *ws)
{
    if (ws->stream == NULL && ws->writer == NULL && !ws->registered) {
        pulpy_list_del(&ws->link);
        Py_CLEAR(ws->callback);
        PyMem_RawFree(ws);
    }
}

static void
writable_core_cb(void *arg)
{
    /* Core thread: a plain C struct travels to the home thread. */
    pulpy_wstate_t *ws = arg;
    pulpy_entry_t e = {.kind = PULPY_E_WRITABLE, .obj = ws};
    (void)pulpy_bridge_push(ws->bridge, &e); /* OOM: the producer is cancelled/ends later */
}

int
pulpy_wstate_entry(pulpy_state *st, pulpy_entry_t *e)
{
    pulpy_wstate_t *ws = e->obj;
    ws->registered = 0;
    PyObject *cb = ws->callback;
    ws->callback = NULL;
    int ret = 0;
    if (cb != NULL) {
        if (ws->writer != NULL && ws->stream != NULL && !ws->writer->sys->closing) {
            PyObject *r = PyObject_CallNoArgs(cb);
            if (r == NULL) {
                ret = -1;
            }
            Py_XDECREF(r);
        }
        Py_DECREF(cb);
    }
    wstate_maybe_free(ws);
    return ret;
}

static int
writer_check(StreamWriterObject *w)
{
    if (pulpy_system_check(w->sys) < 0) {
        return -1;
    }
    if (w->ws == NULL || w->ws->stream == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "stream already ended");
        return -1;
    }
    return 0;
}

static PyObject *
writer_push(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    StreamWriterObject *w = (StreamWriterObject *)op;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "push(msg_type, payload)");
        return NULL;
    }
    if (writer_check(w) < 0) {
        return NULL;
    }
    pul_msg_t *msg = pulpy_msg_from_py(st_of(op), w->sys->bridge, args[0], args[1]);
    if (msg == NULL) {
        return NULL;
    }
    int rc = pul_stream_push(w->ws->stream, msg);
    if (rc == 0) {
        Py_RETURN_TRUE;
    }
    pul_msg_unref(msg);
    if (rc == PUL_EFULL) {
        Py_RETURN_FALSE;
    }
    return raise_rc(op, rc, "stream push");
}

static PyObject *
writer_on_writable(PyObject *op, PyObject *cb)
{
    StreamWriterObject *w = (StreamWriterObject *)op;
    if (writer_check(w) < 0) {
        return NULL;
    }
    if (!PyCallable_Check(cb)) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable");
        return NULL;
    }
    Py_XSETREF(w->ws->callback, Py_NewRef(cb));
    w->ws->registered = 1;
    pul_stream_on_writable(w->ws->stream, writable_core_cb, w->ws);
    Py_RETURN_NONE;
}

static PyObject *
writer_end(PyObject *op, PyObject *unused)
{
    StreamWriterObject *w = (StreamWriterObject *)op;
    if (writer_check(w) < 0) {
        return NULL;
    }
    pul_stream_t *s = w->ws->stream;
    w->ws->stream = NULL;
    int rc = pul_stream_end(s);
    if (rc != 0 && rc != PUL_ECANCELED) {
        return raise_rc(op, rc, "stream end");
    }
    Py_RETURN_NONE;
}

static PyObject *
writer_error(PyObject *op, PyObject *args, PyObject *kw)
{
    StreamWriterObject *w = (StreamWriterObject *)op;
    pul_error_t err;
    if (parse_error(args, kw, "error", &err) < 0 || writer_check(w) < 0) {
        return NULL;
    }
    pul_stream_t *s = w->ws->stream;
    w->ws->stream = NULL;
    int rc = pul_stream_error(s, &err);
    if (rc != 0 && rc != PUL_ECANCELED) {
        return raise_rc(op, rc, "stream error");
    }
    Py_RETURN_NONE;
}

static int
writer_traverse(PyObject *op, visitproc visit, void *arg)
{
    StreamWriterObject *w = (StreamWriterObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(w->sys);
    if (w->ws != NULL) {
        Py_VISIT(w->ws->callback);
    }
    return 0;
}

static int
writer_clear(PyObject *op)
{
    StreamWriterObject *w = (StreamWriterObject *)op;
    if (w->ws != NULL) {
        Py_CLEAR(w->ws->callback);
    }
    return 0;
}

/* Drop the writer's side of the state; an unended stream fails (the consumer gets an error). */
static void
writer_detach(StreamWriterObject *w)
{
    pulpy_wstate_t *ws = w->ws;
    if (ws == NULL) {
        return;
    }
    w->ws = NULL;
    if (ws->stream != NULL && w->sys != NULL && w->sys->sys != NULL) {
        pul_error_t err = {.kind = PUL_ERRKIND_SYSTEM,
                           .recoverable = 1,
                           .message = "stream writer dropped without end()"};
        (void)pul_stream_error(ws->stream, &err); /* releases the handle whatever it returns */
    }
    ws->stream = NULL;
    ws->writer = NULL;
    Py_CLEAR(ws->callback);
    wstate_maybe_free(ws);
}

static void
writer_dealloc(PyObject *op)
{
    StreamWriterObject *w = (StreamWriterObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    writer_detach(w);
    Py_CLEAR(w->sys);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef writer_methods[] = {
    {"push", (PyCFunction)(void (*)(void))writer_push, METH_FASTCALL,
     "push(msg_type, payload) -> bool: False when the window is full (use on_writable)."},
    {"on_writable", writer_on_writable, METH_O,
     "on_writable(callback): callback() runs on the home loop once there is room (or on "
     "cancel)."},
    {"end", writer_end, METH_NOARGS, "End the stream cleanly."},
    {"error", (PyCFunction)(void (*)(void))writer_error, METH_VARARGS | METH_KEYWORDS,
     "error(kind, message, *, code=0, details=None, recoverable=True, duration_ms=0, "
     "type_name=None): end the stream with a structured error."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot writer_slots[] = {
    {Py_tp_doc, "Producing end of a streamed reply to a core caller."},
    {Py_tp_dealloc, writer_dealloc},
    {Py_tp_traverse, writer_traverse},
    {Py_tp_clear, writer_clear},
    {Py_tp_methods, writer_methods},
    {0, NULL},
};

PyType_Spec pulpy_streamwriter_spec = {
    .name = "pulsing._core.StreamWriter",
    .basicsize = sizeof(StreamWriterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = writer_slots,
};

static PyObject *
writer_new(CoreSystemObject *sys, pul_stream_t *s)
{
    pulpy_state *st = pulpy_state_of_type(Py_TYPE(sys));
    pulpy_wstate_t *ws = PyMem_RawCalloc(1, sizeof(*ws));
    if (ws == NULL) {
        pul_error_t err = {.kind = PUL_ERRKIND_SYSTEM, .message = "out of memory"};
        (void)pul_stream_error(s, &err);
        return PyErr_NoMemory();
    }
    StreamWriterObject *w = PyObject_GC_New(StreamWriterObject, st->StreamWriterType);
    if (w == NULL) {
        pul_error_t err = {.kind = PUL_ERRKIND_SYSTEM, .message = "out of memory"};
        (void)pul_stream_error(s, &err);
        PyMem_RawFree(ws);
        return NULL;
    }
    ws->stream = s;
    ws->writer = w;
    ws->bridge = sys->bridge;
    pulpy_list_add(&sys->writers, &ws->link);
    w->sys = (CoreSystemObject *)Py_NewRef(sys);
    w->ws = ws;
    PyObject_GC_Track(w);
    return (PyObject *)w;
}

/* ---- Reply ---------------------------------------------------------------------------------- */

PyObject *
pulpy_reply_new(CoreSystemObject *sys, pul_reply_t *r)
{
    pulpy_state *st = pulpy_state_of_type(Py_TYPE(sys));
    ReplyObject *o = PyObject_GC_New(ReplyObject, st->ReplyType);
    if (o == NULL) {
        pul_reply_abandon(r);
        return NULL;
    }
    o->sys = (CoreSystemObject *)Py_NewRef(sys);
    o->reply = r;
    o->on_cancel = NULL;
    o->cancelled = 0;
    pulpy_list_add(&sys->replies, &o->link);
    PyObject_GC_Track(o);
    return (PyObject *)o;
}

/* Take the handle (consumed by every answer). RuntimeError on a second use. */
static pul_reply_t *
reply_take(ReplyObject *o)
{
    if (pulpy_system_check(o->sys) < 0) {
        return NULL;
    }
    if (o->reply == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "reply already used");
        return NULL;
    }
    pul_reply_t *r = o->reply;
    o->reply = NULL;
    pulpy_list_del(&o->link);
    return r;
}

static PyObject *
reply_send(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    ReplyObject *o = (ReplyObject *)op;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send(msg_type, payload)");
        return NULL;
    }
    if (pulpy_system_check(o->sys) < 0) {
        return NULL;
    }
    if (o->reply == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "reply already used");
        return NULL;
    }
    /* Build first: a bad payload leaves the reply usable. */
    pul_msg_t *msg = pulpy_msg_from_py(st_of(op), o->sys->bridge, args[0], args[1]);
    if (msg == NULL) {
        return NULL;
    }
    pul_reply_t *r = reply_take(o);
    int rc = pul_reply_send(r, msg);
    if (rc != 0) {
        pul_msg_unref(msg);
        return raise_rc(op, rc, "reply");
    }
    Py_RETURN_NONE;
}

static PyObject *
reply_error(PyObject *op, PyObject *args, PyObject *kw)
{
    ReplyObject *o = (ReplyObject *)op;
    pul_error_t err;
    if (parse_error(args, kw, "error", &err) < 0) {
        return NULL;
    }
    pul_reply_t *r = reply_take(o);
    if (r == NULL) {
        return NULL;
    }
    int rc = pul_reply_error(r, &err);
    if (rc != 0) {
        return raise_rc(op, rc, "reply error");
    }
    Py_RETURN_NONE;
}

static PyObject *
reply_stream(PyObject *op, PyObject *unused)
{
    ReplyObject *o = (ReplyObject *)op;
    pul_reply_t *r = reply_take(o);
    if (r == NULL) {
        return NULL;
    }
    pul_stream_t *s = pul_reply_stream(r);
    if (s == NULL) {
        return pulpy_raise(st_of(op), PUL_ESTATE, "reply stream");
    }
    return writer_new(o->sys, s);
}

static PyObject *
reply_abandon(PyObject *op, PyObject *unused)
{
    ReplyObject *o = (ReplyObject *)op;
    pul_reply_t *r = reply_take(o);
    if (r == NULL) {
        return NULL;
    }
    pul_reply_abandon(r);
    Py_RETURN_NONE;
}

int
pulpy_reply_cancel_entry(CoreSystemObject *sys, pulpy_entry_t *e)
{
    pulpy_rtoken_t *tok = e->obj;
    int ret = 0;
    for (pulpy_link_t *l = sys->replies.next; l != NULL && l != &sys->replies; l = l->next) {
        ReplyObject *o = PULPY_CONTAINER(l, ReplyObject, link);
        if (o->reply != tok->reply) {
            continue;
        }
        o->cancelled = 1;
        PyObject *cb = o->on_cancel;
        o->on_cancel = NULL;
        if (cb != NULL && !sys->closing) {
            PyObject *r = PyObject_CallNoArgs(cb);
            if (r == NULL) {
                ret = -1;
            }
            Py_XDECREF(r);
        }
        Py_XDECREF(cb);
        break;
    }
    free(tok);
    return ret;
}

static PyObject *
reply_on_cancel(PyObject *op, PyObject *cb)
{
    ReplyObject *o = (ReplyObject *)op;
    if (!PyCallable_Check(cb)) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable");
        return NULL;
    }
    if (o->cancelled) {
        return PyObject_CallNoArgs(cb); /* the caller already gave up */
    }
    if (o->reply == NULL) {
        Py_RETURN_NONE; /* answered: nothing can be cancelled any more */
    }
    Py_XSETREF(o->on_cancel, Py_NewRef(cb));
    Py_RETURN_NONE;
}

static PyObject *
reply_get_cancelled(PyObject *op, void *unused)
{
    return PyBool_FromLong(((ReplyObject *)op)->cancelled);
}

static PyObject *
reply_get_is_ask(PyObject *op, void *unused)
{
    Py_RETURN_TRUE; /* tells are delivered with reply=None */
}

static PyObject *
reply_get_used(PyObject *op, void *unused)
{
    return PyBool_FromLong(((ReplyObject *)op)->reply == NULL);
}

static PyObject *
reply_get_remote(PyObject *op, void *unused)
{
    pul_reply_t *r = ((ReplyObject *)op)->reply;
    return PyBool_FromLong(r != NULL && pul_reply_is_remote(r));
}

static int
reply_traverse(PyObject *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(((ReplyObject *)op)->sys);
    Py_VISIT(((ReplyObject *)op)->on_cancel);
    return 0;
}

static int
reply_clear(PyObject *op)
{
    Py_CLEAR(((ReplyObject *)op)->on_cancel);
    return 0;
}

static void
reply_dealloc(PyObject *op)
{
    ReplyObject *o = (ReplyObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    if (o->reply != NULL) {
        pul_reply_t *r = o->reply;
        o->reply = NULL;
        pulpy_list_del(&o->link);
        pul_reply_abandon(r); /* dropped unanswered: the caller gets ESTOPPED */
    }
    Py_CLEAR(o->on_cancel);
    Py_CLEAR(o->sys);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef reply_methods[] = {
    {"send", (PyCFunction)(void (*)(void))reply_send, METH_FASTCALL,
     "send(msg_type, payload): answer the ask."},
    {"error", (PyCFunction)(void (*)(void))reply_error, METH_VARARGS | METH_KEYWORDS,
     "error(kind, message, *, code=0, details=None, recoverable=True, duration_ms=0, "
     "type_name=None): answer with a structured error."},
    {"stream", reply_stream, METH_NOARGS, "stream() -> StreamWriter: answer with a stream."},
    {"abandon", reply_abandon, METH_NOARGS, "Drop unanswered (the caller gets ESTOPPED)."},
    {"on_cancel", reply_on_cancel, METH_O,
     "on_cancel(callback): callback() runs on the home loop if the caller gives up (cancels, "
     "or its deadline passes) before the answer; at once if it already has."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef reply_getset[] = {
    {"is_ask", reply_get_is_ask, NULL, "Always True (a tell has no Reply).", NULL},
    {"used", reply_get_used, NULL, "True once send/error/stream/abandon consumed it.", NULL},
    {"remote", reply_get_remote, NULL,
     "True when the caller is on another node (the answer only goes onto the wire); False "
     "once used.", NULL},
    {"cancelled", reply_get_cancelled, NULL, "True once the caller gave up unanswered.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot reply_slots[] = {
    {Py_tp_doc, "The deferred reply to a message delivered by the core to a Python actor."},
    {Py_tp_dealloc, reply_dealloc},
    {Py_tp_traverse, reply_traverse},
    {Py_tp_clear, reply_clear},
    {Py_tp_methods, reply_methods},
    {Py_tp_getset, reply_getset},
    {0, NULL},
};

PyType_Spec pulpy_reply_spec = {
    .name = "pulsing._core.Reply",
    .basicsize = sizeof(ReplyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = reply_slots,
};

/* ---- StreamCall ------------------------------------------------------------------------------ */

PyObject *
pulpy_streamcall_new(CoreSystemObject *sys, PyObject *on_item)
{
    pulpy_state *st = pulpy_state_of_type(Py_TYPE(sys));
    StreamCallObject *s = PyObject_GC_New(StreamCallObject, st->StreamCallType);
    if (s == NULL) {
        return NULL;
    }
    s->link.next = s->link.prev = NULL;
    s->sys = (CoreSystemObject *)Py_NewRef(sys);
    s->bridge = sys->bridge;
    s->on_item = Py_NewRef(on_item);
    s->call = NULL;
    s->finished = 0;
    s->core_ref = 0;
    s->segments = 0;
    s->ccall = NULL;
    s->pending = 0;
    s->paused = 0;
    s->flow = 0;
    if (pthread_mutex_init(&s->flow_mu, NULL) != 0) {
        s->on_item = NULL;
        Py_DECREF(on_item);
        Py_CLEAR(s->sys);
        PyObject_GC_Del(s);
        Py_DECREF(st->StreamCallType);
        PyErr_NoMemory();
        return NULL;
    }
    PyObject_GC_Track(s);
    return (PyObject *)s;
}

/* The end of a stream call: release the handle, drop the core's reference. */
static void
streamcall_release(StreamCallObject *s)
{
    pulpy_list_del(&s->link);
    if (s->call != NULL) {
        pul_call_t *c = s->call;
        s->call = NULL;
        if (s->sys->sys != NULL) {
            pul_call_release(s->sys->sys, c);
        }
    }
    if (s->core_ref) {
        s->core_ref = 0;
        Py_DECREF(s);
    }
}

static int
streamcall_deliver_end(pulpy_state *st, StreamCallObject *s, int status, const pul_error_t *err)
{
    int ret = 0;
    PyObject *cb = s->on_item;
    s->on_item = NULL;
    if (!s->finished && cb != NULL) {
        s->finished = 1;
        PyObject *exc = Py_NewRef(Py_None);
        if (status != PUL_EOF) {
            Py_SETREF(exc, pulpy_error_new(st, status, err, NULL));
        }
        if (exc == NULL) {
            ret = -1;
        } else {
            PyObject *r = PyObject_CallFunctionObjArgs(cb, Py_None, Py_None, exc, NULL);
            if (r == NULL) {
                ret = -1;
            }
            Py_XDECREF(r);
            Py_DECREF(exc);
        }
    }
    s->finished = 1;
    Py_XDECREF(cb);
    return ret;
}

int
pulpy_streamcall_entry(pulpy_state *st, pulpy_entry_t *e)
{
    StreamCallObject *s = e->obj;
    int ret = 0;
    if (e->status == 0) {
        if (!s->finished && s->on_item != NULL && e->msg != NULL) {
            PyObject *t = pulpy_msg_type(e->msg);
            PyObject *b = NULL, *segs = NULL;
            if (t != NULL && s->segments) {
                b = pulpy_msg_head_bytes(e->msg);
                segs = b ? pulpy_msg_segments(st, e->msg) : NULL;
                if (segs == NULL) {
                    Py_CLEAR(b);
                }
            } else if (t != NULL) {
                b = pulpy_msg_bytes(e->msg);
            }
            if (b != NULL) {
                PyObject *args[4] = {t, b, Py_None, segs};
                PyObject *r = PyObject_Vectorcall(s->on_item, args, segs ? 4 : 3, NULL);
                if (r == NULL) {
                    ret = -1;
                }
                Py_XDECREF(r);
            } else {
                ret = -1;
            }
            Py_XDECREF(t);
            Py_XDECREF(b);
            Py_XDECREF(segs);
        }
        pul_msg_unref(e->msg);
        return ret;
    }
    ret = streamcall_deliver_end(st, s, e->status, e->err ? &e->err->e : NULL);
    free(e->err);
    pul_msg_unref(e->msg);
    streamcall_release(s);
    return ret;
}

void
pulpy_streams_fail_all(CoreSystemObject *sys)
{
    pulpy_state *st = pulpy_state_of_type(Py_TYPE(sys));
    for (pulpy_link_t *l = sys->streams.next; l != &sys->streams; l = l->next) {
        StreamCallObject *s = PULPY_CONTAINER(l, StreamCallObject, link);
        if (streamcall_deliver_end(st, s, PUL_ECLOSED, NULL) < 0) {
            PyErr_WriteUnraisable((PyObject *)s);
        }
        if (s->call != NULL) {
            pul_call_t *c = s->call;
            s->call = NULL;
            pul_call_release(sys->sys, c);
        }
    }
}

void
pulpy_streams_after_shutdown(CoreSystemObject *sys)
{
    pulpy_state *st = pulpy_state_of_type(Py_TYPE(sys));
    while (sys->streams.next != &sys->streams) {
        StreamCallObject *s = PULPY_CONTAINER(sys->streams.next, StreamCallObject, link);
        Py_INCREF(s);
        if (streamcall_deliver_end(st, s, PUL_ECLOSED, NULL) < 0) {
            PyErr_WriteUnraisable((PyObject *)s);
        }
        streamcall_release(s);
        Py_DECREF(s);
    }
}

static PyObject *
streamcall_cancel(PyObject *op, PyObject *unused)
{
    StreamCallObject *s = (StreamCallObject *)op;
    if (s->finished) {
        Py_RETURN_NONE;
    }
    s->finished = 1;
    Py_CLEAR(s->on_item);
    if (s->call != NULL && s->sys->sys != NULL) {
        pul_call_t *c = s->call;
        s->call = NULL;
        pul_call_cancel(s->sys->sys, c);
    }
    Py_RETURN_NONE;
}

static PyObject *
streamcall_taken(PyObject *op, PyObject *unused)
{
    StreamCallObject *s = (StreamCallObject *)op;
    pthread_mutex_lock(&s->flow_mu);
    if (s->pending > 0) {
        s->pending--;
    }
    if (s->paused && s->pending <= PULPY_STREAM_LOW) {
        s->paused = 0;
        if (!s->finished && s->call != NULL && s->sys->sys != NULL) {
            /* A pointer push through the core's door; ECLOSED (shutting down) ends the call. */
            (void)pul_call_pause(s->sys->sys, s->call, 0);
        }
    }
    pthread_mutex_unlock(&s->flow_mu);
    Py_RETURN_NONE;
}

static PyObject *
streamcall_get_done(PyObject *op, void *unused)
{
    return PyBool_FromLong(((StreamCallObject *)op)->finished);
}

static int
streamcall_traverse(PyObject *op, visitproc visit, void *arg)
{
    StreamCallObject *s = (StreamCallObject *)op;
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(s->sys);
    Py_VISIT(s->on_item);
    return 0;
}

static int
streamcall_clear(PyObject *op)
{
    Py_CLEAR(((StreamCallObject *)op)->on_item);
    return 0;
}

static void
streamcall_dealloc(PyObject *op)
{
    StreamCallObject *s = (StreamCallObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    /* The core's reference keeps us alive until the end drains, so nothing is in flight. */
    pulpy_list_del(&s->link);
    Py_CLEAR(s->on_item);
    Py_CLEAR(s->sys);
    pthread_mutex_destroy(&s->flow_mu);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef streamcall_methods[] = {
    {"taken", streamcall_taken, METH_NOARGS,
     "taken(): the consumer took one item. Once 64 items are handed over and not taken, the "
     "call is paused (the producer is held by flow control); it resumes at 16."},
    {"cancel", streamcall_cancel, METH_NOARGS,
     "Cancel the stream: the producer sees it closed; on_item is not called again."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef streamcall_getset[] = {
    {"done", streamcall_get_done, NULL, "True once the end was delivered or cancel() ran.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot streamcall_slots[] = {
    {Py_tp_doc, "A streamed call through the core (see CoreSystem.ask_stream)."},
    {Py_tp_dealloc, streamcall_dealloc},
    {Py_tp_traverse, streamcall_traverse},
    {Py_tp_clear, streamcall_clear},
    {Py_tp_methods, streamcall_methods},
    {Py_tp_getset, streamcall_getset},
    {0, NULL},
};

PyType_Spec pulpy_streamcall_spec = {
    .name = "pulsing._core.StreamCall",
    .basicsize = sizeof(StreamCallObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = streamcall_slots,
};

/* ---- close -------------------------------------------------------------------------------- */

void
pulpy_reply_close_all(CoreSystemObject *sys)
{
    while (sys->replies.next != &sys->replies) {
        ReplyObject *o = PULPY_CONTAINER(sys->replies.next, ReplyObject, link);
        pul_reply_t *r = o->reply;
        o->reply = NULL;
        pulpy_list_del(&o->link);
        pul_reply_abandon(r);
    }
    for (pulpy_link_t *l = sys->writers.next; l != &sys->writers;) {
        pulpy_wstate_t *ws = PULPY_CONTAINER(l, pulpy_wstate_t, link);
        l = l->next;
        if (ws->stream != NULL) {
            pul_error_t err = {.kind = PUL_ERRKIND_RUNTIME,
                               .message = "system or stream closed"};
            pul_stream_t *s = ws->stream;
            ws->stream = NULL;
            (void)pul_stream_error(s, &err); /* releases the handle whatever it returns */
        }
    }
}

/* Once the core is joined no WRITABLE entry can come: free every writer state. */
void
pulpy_writers_after_shutdown(CoreSystemObject *sys)
{
    while (sys->writers.next != &sys->writers) {
        pulpy_wstate_t *ws = PULPY_CONTAINER(sys->writers.next, pulpy_wstate_t, link);
        if (ws->writer != NULL) {
            ws->writer->ws = NULL;
            ws->writer = NULL;
        }
        ws->registered = 0;
        ws->stream = NULL;
        wstate_maybe_free(ws);
    }
}
