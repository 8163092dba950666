/* system.c — CoreSystem: one libpulsing system, its bridge, foreign actors, asks and close. */
#include "pulpy.h"

#include <errno.h>
#include <structmember.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pulpy_state *
sys_state(CoreSystemObject *self)
{
    return pulpy_state_of_type(Py_TYPE(self));
}

int
pulpy_system_check(CoreSystemObject *self)
{
    if (self->closed || self->closing || self->sys == NULL) {
        pulpy_raise(sys_state(self), PUL_ECLOSED, "system closed");
        return -1;
    }
    return 0;
}

static PyObject *
raise_code(CoreSystemObject *self, int rc, const char *context)
{
    if (rc == PUL_ENOMEM) {
        return PyErr_NoMemory();
    }
    return pulpy_raise(sys_state(self), rc, context);
}

/* ---- foreign (Python) actors: the vtable runs on the core thread ---------------------------- */

/* pul_ctx_on_end of a deferred ask (core thread): a call that ended unanswered (the caller
 * cancelled, e.g. by resetting its HTTP/2 stream, or its deadline passed) tells the Reply, so
 * the Python side can cancel the work. */
static void
foreign_ask_end(int status, void *arg)
{
    pulpy_rtoken_t *tok = arg;
    if (status == PUL_ECANCELED || status == PUL_ETIMEDOUT) {
        pulpy_entry_t e = {.kind = PULPY_E_REPLY_CANCEL, .obj = tok};
        if (pulpy_bridge_push(tok->bridge, &e) == 0) {
            return;
        }
    }
    free(tok);
}

static int
foreign_receive(pul_ctx_t *ctx, pul_msg_t *msg, void *state)
{
    pulpy_foreign_t *fa = state;
    pul_reply_t *r = pul_ctx_is_ask(ctx) ? pul_ctx_defer(ctx) : NULL;
    if (r != NULL) {
        pulpy_rtoken_t *tok = malloc(sizeof *tok);
        if (tok != NULL) {
            tok->bridge = fa->bridge;
            tok->reply = r;
            if (pul_ctx_on_end(ctx, foreign_ask_end, tok) != 0) {
                free(tok);
            }
        }
    }
    pulpy_entry_t e = {
        .kind = PULPY_E_DELIVER, .obj = fa, .msg = pul_msg_ref(msg), .reply = r};
    if (pulpy_bridge_push(fa->bridge, &e) != 0) {
        pul_msg_unref(msg);
        if (r != NULL) {
            pul_reply_abandon(r);
        }
        return PUL_ENOMEM;
    }
    return 0;
}

static void
foreign_free_state(void *state)
{
    pulpy_foreign_t *fa = state;
    pulpy_entry_t e = {.kind = PULPY_E_FOREIGN_FREE, .obj = fa};
    /* FIFO with the deliveries pushed before it (same core thread), so every message of this
     * actor has been handed to the handler when the handler's reference is dropped. On OOM the
     * struct stays in sys->foreigns and close() releases it. */
    (void)pulpy_bridge_push(fa->bridge, &e);
}

static void
foreign_release(pulpy_foreign_t *fa)
{
    pulpy_list_del(&fa->link);
    Py_CLEAR(fa->handler);
    Py_CLEAR(fa->on_stop);
    PyMem_RawFree(fa);
}

/* The core is done with a foreign actor: tell Python (on_stop) unless the system is closing,
 * then drop the references. */
static int
foreign_gone(CoreSystemObject *self, pulpy_foreign_t *fa)
{
    int ret = 0;
    PyObject *cb = fa->on_stop;
    fa->on_stop = NULL;
    if (cb != NULL && !self->closing) {
        PyObject *id = pulpy_id_to_py(fa->id);
        PyObject *r = id ? PyObject_CallOneArg(cb, id) : NULL;
        if (r == NULL) {
            ret = -1;
        }
        Py_XDECREF(r);
        Py_XDECREF(id);
    }
    Py_XDECREF(cb);
    foreign_release(fa);
    return ret;
}

/* ---- Ask: a pending call, and the done callback of its future ------------------------------- */

void
pulpy_ask_core_cb(int status, pul_msg_t *reply, const pul_error_t *err, void *arg)
{
    /* Core thread: no PyObject API is used and no refcount touched; `arg` only travels back to
     * the home thread. a->bridge is immutable while the core holds its reference. */
    AskObject *a = arg;
    pulpy_entry_t e = {.kind = PULPY_E_ASK_DONE, .status = status, .obj = a};
    if (status == 0 && reply != NULL) {
        e.msg = pul_msg_ref(reply);
    } else if (err != NULL) {
        e.err = pulpy_err_copy(err);
    }
    if (pulpy_bridge_push(a->bridge, &e) != 0) {
        /* Leave it pending: close() fails what never completed. */
        pul_msg_unref(e.msg);
        free(e.err);
    }
}

/* future.add_done_callback(ask): a cancelled future cancels the core call. Home thread. */
static PyObject *
ask_call(PyObject *self, PyObject *args, PyObject *kw)
{
    AskObject *a = (AskObject *)self;
    if (!a->completed && a->call != NULL && a->sys->sys != NULL && !a->sys->closed) {
        pul_call_t *c = a->call;
        a->call = NULL;
        pul_call_cancel(a->sys->sys, c);
    }
    Py_RETURN_NONE;
}

static int
ask_traverse(PyObject *self, visitproc visit, void *arg)
{
    AskObject *a = (AskObject *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(a->sys);
    Py_VISIT(a->future);
    Py_VISIT(a->complete);
    return 0;
}

static int
ask_clear(PyObject *self)
{
    AskObject *a = (AskObject *)self;
    Py_CLEAR(a->future);
    Py_CLEAR(a->complete);
    return 0;
}

static void
ask_dealloc(PyObject *self)
{
    AskObject *a = (AskObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_CLEAR(a->future);
    Py_CLEAR(a->complete);
    Py_CLEAR(a->sys);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot ask_slots[] = {
    {Py_tp_call, ask_call},
    {Py_tp_traverse, ask_traverse},
    {Py_tp_clear, ask_clear},
    {Py_tp_dealloc, ask_dealloc},
    {0, NULL},
};

PyType_Spec pulpy_ask_spec = {
    .name = "pulsing._core._Ask",
    .basicsize = sizeof(AskObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = ask_slots,
};

/* Resolve an ask's future (unless already resolved or done, e.g. cancelled). Returns -1 when
 * set_result/set_exception raised. GIL held. */
static int
ask_resolve(pulpy_state *st, AskObject *a, int status, pul_msg_t *msg, const pul_error_t *err)
{
    PyObject *fut = a->future;
    if (fut == NULL) {
        return 0;
    }
    a->future = NULL;
    int ret = 0;
    PyObject *done = PyObject_CallMethodNoArgs(fut, st->str_done);
    int is_done = done == NULL ? -1 : PyObject_IsTrue(done);
    Py_XDECREF(done);
    PyObject *r = NULL;
    if (is_done == 0) {
        /* Our done callback has nothing left to do: unhooking it is cheaper than letting the
         * loop schedule and run it. */
        PyObject *rm = PyObject_CallMethodOneArg(fut, st->str_remove_done_callback, (PyObject *)a);
        if (rm == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(rm);
        if (status == 0) {
            PyObject *t = pulpy_msg_type(msg);
            PyObject *tup = NULL;
            if (a->segments) {
                PyObject *b = t ? pulpy_msg_head_bytes(msg) : NULL;
                PyObject *segs = b ? pulpy_msg_segments(st, msg) : NULL;
                tup = segs ? PyTuple_Pack(3, t, b, segs) : NULL;
                Py_XDECREF(b);
                Py_XDECREF(segs);
            } else {
                PyObject *b = t ? pulpy_msg_bytes(msg) : NULL;
                tup = b ? PyTuple_Pack(2, t, b) : NULL;
                Py_XDECREF(b);
            }
            Py_XDECREF(t);
            if (tup != NULL) {
                if (a->complete != NULL) {
                    PyObject *cargs[3] = {fut, Py_True, tup};
                    r = PyObject_Vectorcall(a->complete, cargs, 3, NULL);
                } else {
                    r = PyObject_CallMethodOneArg(fut, st->str_set_result, tup);
                }
                Py_DECREF(tup);
            }
        } else {
            PyObject *exc = pulpy_error_new(st, status, err, NULL);
            if (exc != NULL) {
                if (a->complete != NULL) {
                    PyObject *cargs[3] = {fut, Py_False, exc};
                    r = PyObject_Vectorcall(a->complete, cargs, 3, NULL);
                } else {
                    r = PyObject_CallMethodOneArg(fut, st->str_set_exception, exc);
                }
                Py_DECREF(exc);
            }
        }
        if (r == NULL) {
            ret = -1;
        }
        Py_XDECREF(r);
    } else if (is_done < 0) {
        ret = -1;
    }
    Py_DECREF(fut);
    return ret;
}

/* The core's completion of an ask drained: resolve the future and drop the core's reference.
 * Consumes e->msg and e->err. */
static int
ask_finish(pulpy_state *st, AskObject *a, pulpy_entry_t *e)
{
    CoreSystemObject *self = a->sys;
    pulpy_list_del(&a->link);
    a->completed = 1;
    if (a->call != NULL) {
        pul_call_t *c = a->call;
        a->call = NULL;
        if (self->sys != NULL) {
            pul_call_release(self->sys, c);
        }
    }
    int ret = ask_resolve(st, a, e->status, e->msg, e->err ? &e->err->e : NULL);
    pul_msg_unref(e->msg);
    e->msg = NULL;
    free(e->err);
    e->err = NULL;
    Py_DECREF(a); /* the core's reference */
    return ret;
}

/* ---- drain ----------------------------------------------------------------------------------*/

static int
deliver(pulpy_state *st, CoreSystemObject *self, pulpy_entry_t *e)
{
    pulpy_foreign_t *fa = e->obj;
    int ret = 0;
    PyObject *reply = NULL;
    if (e->reply != NULL) {
        reply = pulpy_reply_new(self, e->reply);
        if (reply == NULL) {
            /* pulpy_reply_new abandoned it */
            pul_msg_unref(e->msg);
            return -1;
        }
    }
    if (fa->handler == NULL || self->closing) {
        Py_XDECREF(reply); /* abandons: a closing system delivers nothing */
        pul_msg_unref(e->msg);
        return 0;
    }
    PyObject *t = pulpy_msg_type(e->msg);
    PyObject *mv = NULL, *segs = NULL;
    if (t != NULL && fa->segments) {
        mv = pulpy_msg_head_memoryview(st, e->msg);
        segs = mv ? pulpy_msg_segments(st, e->msg) : NULL;
        if (segs == NULL) {
            Py_CLEAR(mv);
        }
    } else if (t != NULL) {
        mv = pulpy_msg_memoryview(st, e->msg);
    }
    if (mv != NULL) {
        PyObject *args[4] = {t, mv, reply ? reply : Py_None, segs};
        PyObject *r = PyObject_Vectorcall(fa->handler, args, segs ? 4 : 3, NULL);
        if (r == NULL) {
            ret = -1;
            /* The traceback would keep the Reply alive: a handler that raised without
             * answering abandons the ask now (the caller gets ESTOPPED). */
            ReplyObject *ro = (ReplyObject *)reply;
            if (ro != NULL && ro->reply != NULL) {
                pul_reply_t *pr = ro->reply;
                ro->reply = NULL;
                pulpy_list_del(&ro->link);
                pul_reply_abandon(pr);
            }
        }
        Py_XDECREF(r);
    } else {
        ret = -1;
    }
    Py_XDECREF(t);
    Py_XDECREF(mv);
    Py_XDECREF(segs);
    Py_XDECREF(reply);
    pul_msg_unref(e->msg);
    return ret;
}

static int
run_entry(pulpy_state *st, CoreSystemObject *self, pulpy_entry_t *e)
{
    switch (e->kind) {
    case PULPY_E_ASK_DONE:
        return ask_finish(st, (AskObject *)e->obj, e);
    case PULPY_E_STREAM:
        return pulpy_streamcall_entry(st, e);
    case PULPY_E_DELIVER:
        return deliver(st, self, e);
    case PULPY_E_FOREIGN_FREE:
        return foreign_gone(self, e->obj);
    case PULPY_E_WRITABLE:
        return pulpy_wstate_entry(st, e);
    case PULPY_E_BUF_RELEASE:
        pulpy_segment_entry(e);
        return 0;
    case PULPY_E_REPLY_CANCEL:
        return pulpy_reply_cancel_entry(self, e);
    default:
        return 0;
    }
}

/* Longest a drain pass holds the door before letting what it posted wake the core thread. */
#define PULPY_HOLD_MAX_US 50.0

static double
mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int
pulpy_system_drain(CoreSystemObject *self)
{
    pulpy_bridge_t *b = self->bridge;
    if (b == NULL) {
        return 0;
    }
    pulpy_state *st = sys_state(self);
    PyObject *first_type = NULL, *first_val = NULL, *first_tb = NULL;
    pulpy_bridge_ack(b);
    pulpy_bridge_take(b);
    /* What the pass posts (replies of the actors it runs, calls they make) wakes the core thread
     * once per pass, not at the first post while the pass still runs; a long pass lets it go
     * every PULPY_HOLD_MAX_US, and the door itself never delays a post by more than that
     * (threads.md "Batching the door"). A pass of one entry is not held: there is nothing to
     * batch, and a hold that defers a post costs a timer (~10 us of CPU on these VMs). */
    pul_system_t *held =
        self->sys != NULL && !self->closing && b->cur.n - b->pos > 1 ? self->sys : NULL;
    pul_system_hold(held);
    double since = held != NULL ? mono_us() : 0;
    /* b->pos is shared: a callback that re-enters drain (or close) continues this batch. */
    while (self->bridge == b && b->pos < b->cur.n) {
        /* a callback that closes the system runs the rest of the batch and frees b */
        pulpy_entry_t e = b->cur.v[b->pos++];
        if (run_entry(st, self, &e) < 0) {
            if (first_type == NULL) {
                PyErr_Fetch(&first_type, &first_val, &first_tb);
            } else {
                PyErr_WriteUnraisable((PyObject *)self);
            }
        }
        if (held != NULL && self->sys == held && b->pos < b->cur.n) {
            double now = mono_us();
            if (now - since > PULPY_HOLD_MAX_US) {
                pul_system_release(held);
                pul_system_hold(held);
                since = now;
            }
        }
    }
    if (held != NULL && self->sys == held) {
        pul_system_release(held);
    } /* else closed by a callback: the shutdown dropped this thread's hold with the loop */
    if (first_type != NULL) {
        PyErr_Restore(first_type, first_val, first_tb);
        return -1;
    }
    return 0;
}

/* ---- close -------------------------------------------------------------------------------- */

static void
system_close(CoreSystemObject *self)
{
    if (self->closed || self->closing) {
        return;
    }
    self->closing = 1;
    pulpy_state *st = sys_state(self);
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);

    /* Pending asks fail now with ECLOSED (their completions, queued or still to come from the
     * shutdown, find the future already resolved), and no core handle survives the shutdown:
     * call handles are released, deferred replies abandoned, writers ended. */
    for (pulpy_link_t *l = self->asks.next; l != &self->asks; l = l->next) {
        AskObject *a = PULPY_CONTAINER(l, AskObject, link);
        if (ask_resolve(st, a, PUL_ECLOSED, NULL, NULL) < 0) {
            PyErr_Clear(); /* e.g. the future's loop is already closed */
        }
        if (a->call != NULL) {
            pul_call_t *c = a->call;
            a->call = NULL;
            pul_call_release(self->sys, c);
        }
    }
    pulpy_streams_fail_all(self);
    /* What is queued now is run while every core handle is still valid: deliveries are
     * abandoned (no handler runs in a closing system), completions find their futures done. */
    if (pulpy_system_drain(self) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    pulpy_reply_close_all(self);
    pul_system_t *sys = self->sys;
    Py_BEGIN_ALLOW_THREADS
    pul_system_shutdown(sys);
    Py_END_ALLOW_THREADS
    self->sys = NULL;

    /* The core thread is joined: run whatever it queued, until nothing is left. */
    while (pulpy_bridge_take(self->bridge) > 0) {
        if (pulpy_system_drain(self) < 0) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
    }
    /* Calls the core never completed (it should have): fail them here. */
    while (self->asks.next != &self->asks) {
        AskObject *a = PULPY_CONTAINER(self->asks.next, AskObject, link);
        pulpy_entry_t e = {.kind = PULPY_E_ASK_DONE, .status = PUL_ECLOSED, .obj = a};
        if (ask_finish(st, a, &e) < 0) {
            PyErr_Clear(); /* e.g. the future's loop is already closed */
        }
    }
    pulpy_streams_after_shutdown(self);
    pulpy_writers_after_shutdown(self);
    while (self->foreigns.next != &self->foreigns) {
        foreign_release(PULPY_CONTAINER(self->foreigns.next, pulpy_foreign_t, link));
    }
    pulpy_bridge_close(self->bridge);
    self->bridge = NULL;
    self->closed = 1;
    self->closing = 0;
    PyErr_Restore(et, ev, etb);
}

/* ---- type slots ------------------------------------------------------------------------------ */

static PyObject *
sys_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"mailbox_capacity", "max_message_size", "stream_window",
                             "default_deadline_ms", "listen_addr", "advertise_addr", "seeds",
                             "head_addr", "is_head_node", "timing", "remote_deadline_ms", NULL};
    pul_system_config_t cfg;
    pul_system_config_init(&cfg);
    Py_ssize_t mailbox = (Py_ssize_t)cfg.mailbox_capacity;
    Py_ssize_t maxmsg = (Py_ssize_t)cfg.max_message_size;
    Py_ssize_t window = (Py_ssize_t)cfg.stream_window;
    unsigned long long deadline = cfg.default_deadline_ms;
    const char *listen_addr = NULL, *advertise_addr = NULL, *head_addr = NULL;
    PyObject *seeds = Py_None, *timing = Py_None;
    int is_head = 0;
    unsigned long long remote_deadline = cfg.remote_deadline_ms;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|$nnnKzzOzpOK:CoreSystem", kwlist, &mailbox,
                                     &maxmsg, &window, &deadline, &listen_addr, &advertise_addr,
                                     &seeds, &head_addr, &is_head, &timing, &remote_deadline)) {
        return NULL;
    }
    if (is_head && head_addr != NULL) {
        PyErr_SetString(PyExc_ValueError, "Cannot set both is_head_node and head_addr");
        return NULL;
    }
    if (mailbox <= 0 || maxmsg <= 0 || window <= 0) {
        PyErr_SetString(PyExc_ValueError,
                        "mailbox_capacity, max_message_size and stream_window must be > 0");
        return NULL;
    }
    cfg.mailbox_capacity = (size_t)mailbox;
    cfg.max_message_size = (size_t)maxmsg;
    cfg.stream_window = (size_t)window;
    cfg.default_deadline_ms = deadline;
    cfg.remote_deadline_ms = remote_deadline;
    cfg.is_head_node = is_head;

    CoreSystemObject *self = (CoreSystemObject *)tp->tp_alloc(tp, 0);
    if (self == NULL) {
        return NULL;
    }
    self->addr = Py_NewRef(Py_None);
    cfg.listen_addr = listen_addr;
    cfg.advertise_addr = advertise_addr;
    cfg.head_addr = head_addr;
    /* Copies the strings into self->cfg_mem (they must outlive the system). */
    if (pulpy_config_from_kwargs(self, &cfg, seeds, timing) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    pulpy_list_init(&self->asks);
    pulpy_list_init(&self->streams);
    pulpy_list_init(&self->replies);
    pulpy_list_init(&self->writers);
    pulpy_list_init(&self->foreigns);
    self->closed = 1; /* until fully built */
    self->bridge = pulpy_bridge_new();
    if (self->bridge == NULL) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(self);
        return NULL;
    }
    int rc;
    pul_system_t *sys = NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = pul_system_new(&cfg, &sys);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        Py_DECREF(self);
        if (rc == PUL_EADDR) {
            PyObject *exc = pulpy_error_new(pulpy_state_of_type(tp), rc, NULL, NULL);
            if (exc != NULL) {
                PyObject *m = PyUnicode_FromFormat(
                    "cannot bind or resolve address %s%s%s", listen_addr ? listen_addr : "",
                    head_addr ? " / head " : "", head_addr ? head_addr : "");
                if (m != NULL) {
                    (void)PyObject_SetAttrString(exc, "message", m);
                    Py_SETREF(((PyBaseExceptionObject *)exc)->args, PyTuple_Pack(1, m));
                    Py_DECREF(m);
                }
                PyErr_SetObject(pulpy_state_of_type(tp)->CoreError, exc);
                Py_DECREF(exc);
            }
            return NULL;
        }
        return pulpy_raise(pulpy_state_of_type(tp), rc, "cannot create the system");
    }
    self->sys = sys;
    self->closed = 0;
    const char *bound = pul_system_addr(sys);
    if (bound != NULL) {
        Py_SETREF(self->addr, PyUnicode_FromString(bound));
        if (self->addr == NULL) {
            Py_DECREF(self);
            return NULL;
        }
    }
    self->node_id = pulpy_id_to_py(pul_system_node_id(sys));
    if (self->node_id == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
sys_traverse(PyObject *op, visitproc visit, void *arg)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    Py_VISIT(Py_TYPE(op));
    /* Handlers are owned by the system (released at unregister-drain or close). Pending asks,
     * streams and replies are not visited: the core holds them, they are not garbage. */
    for (pulpy_link_t *l = self->foreigns.next; l != NULL && l != &self->foreigns; l = l->next) {
        Py_VISIT(PULPY_CONTAINER(l, pulpy_foreign_t, link)->handler);
        Py_VISIT(PULPY_CONTAINER(l, pulpy_foreign_t, link)->on_stop);
    }
    return 0;
}

static void
sys_finalize(PyObject *op)
{
    system_close((CoreSystemObject *)op);
}

static int
sys_clear(PyObject *op)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    system_close(self);
    return 0;
}

static void
sys_dealloc(PyObject *op)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (PyObject_CallFinalizerFromDealloc(op) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(op);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs(op);
    }
    if (self->bridge != NULL) {
        /* Only a half-built system gets here with a bridge. */
        pulpy_bridge_close(self->bridge);
        self->bridge = NULL;
    }
    Py_CLEAR(self->node_id);
    Py_CLEAR(self->addr);
    free(self->cfg_mem);
    free(self->cfg_seeds);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* ---- methods ------------------------------------------------------------------------------- */

static PyObject *
sys_fileno(PyObject *op, PyObject *unused)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    if (pulpy_system_check(self) < 0) {
        return NULL;
    }
    return PyLong_FromLong(self->bridge->efd);
}

/* Pumping (pul_pump_fd, docs/design/threads.md "Pumping"): None, or (fd, token) for the home
 * loop to watch; the fd is the caller's to close. */
static PyObject *
sys_pump_fd(PyObject *op, PyObject *unused)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    if (self->closed || self->sys == NULL) {
        Py_RETURN_NONE;
    }
    uint64_t token = 0;
    int fd = pul_pump_fd(self->sys, &token);
    if (fd < 0) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(iK)", fd, (unsigned long long)token);
}

/* The system a pump token is for: 1 (go on), 0 (closed: nothing to do), -1 (bad token). */
static int
pump_args(CoreSystemObject *self, PyObject *arg, uint64_t *token)
{
    unsigned long long t = PyLong_AsUnsignedLongLong(arg);
    if (t == (unsigned long long)-1 && PyErr_Occurred()) {
        return -1;
    }
    *token = t;
    return !self->closed && self->sys != NULL;
}

/* pul_pump: 1, 0, or a negative PUL_E* code (EAGAIN: stop watching; ECLOSED: over). */
static PyObject *
sys_pump(PyObject *op, PyObject *arg)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    uint64_t token;
    int ok = pump_args(self, arg, &token);
    if (ok < 0) {
        return NULL;
    }
    return PyLong_FromLong(ok ? pul_pump(self->sys, token) : PUL_ECLOSED);
}

static PyObject *
sys_pump_stop(PyObject *op, PyObject *arg)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    uint64_t token;
    int ok = pump_args(self, arg, &token);
    if (ok < 0) {
        return NULL;
    }
    if (ok) {
        pul_pump_stop(self->sys, token);
    }
    Py_RETURN_NONE;
}

static PyObject *
sys_drain(PyObject *op, PyObject *unused)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    if (self->closed) {
        Py_RETURN_NONE; /* a reader left registered after close: nothing to do */
    }
    if (pulpy_system_drain(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
sys_close(PyObject *op, PyObject *unused)
{
    system_close((CoreSystemObject *)op);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
sys_get_closed(PyObject *op, void *unused)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    return PyBool_FromLong(self->closed || self->closing);
}

static PyObject *
sys_get_node_id(PyObject *op, void *unused)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    if (self->node_id == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef(self->node_id);
}

static PyObject *
sys_get_addr(PyObject *op, void *unused)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    return Py_NewRef(self->addr ? self->addr : Py_None);
}

static PyObject *
sys_bridge_stats(PyObject *op, PyObject *unused)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    if (pulpy_system_check(self) < 0) {
        return NULL;
    }
    return Py_BuildValue(
        "{sKsK}", "pushes",
        (unsigned long long)atomic_load_explicit(&self->bridge->pushes, memory_order_relaxed),
        "wakeups",
        (unsigned long long)atomic_load_explicit(&self->bridge->wakeups, memory_order_relaxed));
}

#if defined(__x86_64__) || defined(__i386__)
#define PULPY_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define PULPY_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define PULPY_CPU_RELAX() ((void)0)
#endif


/* spin(max_us) -> bool: busy-wait (GIL released) up to max_us for a completion to be queued.
 * A waiter that spins instead of sleeping in epoll_wait saves the ~30 us a wake-up of a halted
 * vCPU costs here (docs/design/threads.md); the runtime decides when that is worth a core. */
static PyObject *
sys_spin(PyObject *op, PyObject *arg)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    double max_us = PyFloat_AsDouble(arg);
    if (max_us == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (pulpy_system_check(self) < 0) {
        return NULL;
    }
    pulpy_bridge_t *b = self->bridge;
    if (pulpy_bridge_nonempty(b)) {
        Py_RETURN_TRUE;
    }
    int got = 0;
    Py_BEGIN_ALLOW_THREADS
    double until = mono_us() + max_us;
    do {
        for (int i = 0; i < 64 && !got; i++) {
            got = pulpy_bridge_nonempty(b);
            PULPY_CPU_RELAX();
        }
    } while (!got && mono_us() < until);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(got);
}

static PyObject *
sys_register(PyObject *op, PyObject *args, PyObject *kw)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    static char *kwlist[] = {"name", "handler", "mailbox_capacity", "allow_system", "on_stop",
                             "segments", NULL};
    PyObject *name, *handler, *on_stop = Py_None;
    Py_ssize_t mailbox = 0;
    int allow_system = 0;
    int segments = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$npOp:register", kwlist, &name, &handler,
                                     &mailbox, &allow_system, &on_stop, &segments)) {
        return NULL;
    }
    if (on_stop != Py_None && !PyCallable_Check(on_stop)) {
        PyErr_SetString(PyExc_TypeError, "on_stop must be callable or None");
        return NULL;
    }
    if (pulpy_system_check(self) < 0) {
        return NULL;
    }
    if (!PyCallable_Check(handler)) {
        PyErr_SetString(PyExc_TypeError, "handler must be callable");
        return NULL;
    }
    if (mailbox < 0) {
        PyErr_SetString(PyExc_ValueError, "mailbox_capacity must be >= 0");
        return NULL;
    }
    char norm[PUL_NAME_MAX + 1];
    pul_spawn_opts_t opts;
    pul_spawn_opts_init(&opts);
    if (name != Py_None) {
        if (pulpy_normalize_name(name, allow_system, norm, sizeof(norm)) < 0) {
            return NULL;
        }
        opts.name = norm;
    }
    opts.mailbox_capacity = (size_t)mailbox;
    opts.allow_system_name = allow_system;

    pulpy_foreign_t *fa = PyMem_RawCalloc(1, sizeof(*fa));
    if (fa == NULL) {
        return PyErr_NoMemory();
    }
    fa->owner = self;
    fa->bridge = self->bridge;
    fa->handler = Py_NewRef(handler);
    fa->on_stop = on_stop == Py_None ? NULL : Py_NewRef(on_stop);
    fa->segments = segments;
    pul_actor_vtable_t vt = {
        .receive = foreign_receive,
        .free_state = foreign_free_state,
    };
    /* Linked before spawn: once spawned, free_state may queue its release at any moment. */
    pulpy_list_add(&self->foreigns, &fa->link);
    pul_id_t id;
    int rc;
    pul_system_t *sys = self->sys;
    Py_BEGIN_ALLOW_THREADS
    rc = pul_spawn(sys, &vt, fa, &opts, &id);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        foreign_release(fa);
        if (rc == PUL_EEXIST) {
            return pulpy_raise(sys_state(self), rc, norm);
        }
        return raise_code(self, rc, "register");
    }
    fa->id = id;
    return pulpy_id_to_py(id);
}

static PyObject *
sys_stop(PyObject *op, PyObject *arg)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    pul_id_t id;
    if (pulpy_system_check(self) < 0 || pulpy_id_from_py(arg, &id) < 0) {
        return NULL;
    }
    int rc;
    pul_system_t *sys = self->sys;
    Py_BEGIN_ALLOW_THREADS
    rc = pul_stop(sys, id);
    Py_END_ALLOW_THREADS
    if (rc != 0 && rc != PUL_ENOTFOUND) {
        return raise_code(self, rc, "stop");
    }
    Py_RETURN_NONE;
}

static PyObject *
sys_lookup(PyObject *op, PyObject *name)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    if (pulpy_system_check(self) < 0) {
        return NULL;
    }
    char norm[PUL_NAME_MAX + 1];
    if (pulpy_normalize_name(name, 1, norm, sizeof(norm)) < 0) {
        return NULL;
    }
    pul_id_t id;
    int rc;
    pul_system_t *sys = self->sys;
    Py_BEGIN_ALLOW_THREADS
    rc = pul_lookup(sys, norm, &id);
    Py_END_ALLOW_THREADS
    if (rc == PUL_ENOTFOUND) {
        Py_RETURN_NONE;
    }
    if (rc != 0) {
        return raise_code(self, rc, "lookup");
    }
    return pulpy_id_to_py(id);
}

typedef struct {
    pul_id_t id;
    char *name;
} actor_row_t;

typedef struct {
    actor_row_t *v;
    size_t n, cap;
    int oom;
} actor_rows_t;

static void
actors_cb(pul_id_t id, const char *name, void *arg)
{
    actor_rows_t *rows = arg;
    if (rows->oom) {
        return;
    }
    if (rows->n == rows->cap) {
        size_t cap = rows->cap ? rows->cap * 2 : 32;
        actor_row_t *nv = realloc(rows->v, cap * sizeof(*nv));
        if (nv == NULL) {
            rows->oom = 1;
            return;
        }
        rows->v = nv;
        rows->cap = cap;
    }
    char *copy = NULL;
    if (name != NULL && (copy = strdup(name)) == NULL) {
        rows->oom = 1;
        return;
    }
    rows->v[rows->n].id = id;
    rows->v[rows->n].name = copy;
    rows->n++;
}

static PyObject *
sys_actors(PyObject *op, PyObject *unused)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    if (pulpy_system_check(self) < 0) {
        return NULL;
    }
    actor_rows_t rows = {0};
    pul_system_t *sys = self->sys;
    Py_BEGIN_ALLOW_THREADS
    pul_actors_foreach(sys, actors_cb, &rows);
    Py_END_ALLOW_THREADS
    PyObject *list = NULL;
    if (rows.oom) {
        PyErr_NoMemory();
        goto done;
    }
    list = PyList_New((Py_ssize_t)rows.n);
    for (size_t i = 0; list != NULL && i < rows.n; i++) {
        PyObject *id = pulpy_id_to_py(rows.v[i].id);
        PyObject *nm = rows.v[i].name ? PyUnicode_FromString(rows.v[i].name) : Py_NewRef(Py_None);
        PyObject *t = (id && nm) ? PyTuple_Pack(2, id, nm) : NULL;
        Py_XDECREF(id);
        Py_XDECREF(nm);
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

static PyObject *
sys_spawn_builtin(PyObject *op, PyObject *args, PyObject *kw)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    static char *kwlist[] = {"kind", "name", NULL};
    const char *kind;
    PyObject *name = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|O:spawn_builtin", kwlist, &kind, &name)) {
        return NULL;
    }
    if (pulpy_system_check(self) < 0) {
        return NULL;
    }
    char norm[PUL_NAME_MAX + 1];
    const char *nm = NULL;
    if (name != Py_None) {
        if (pulpy_normalize_name(name, 0, norm, sizeof(norm)) < 0) {
            return NULL;
        }
        nm = norm;
    }
    pul_id_t id;
    int rc;
    pul_system_t *sys = self->sys;
    Py_BEGIN_ALLOW_THREADS
    rc = pulpy_builtin_spawn(sys, kind, nm, &id);
    Py_END_ALLOW_THREADS
    if (rc == PUL_EINVAL) {
        PyErr_Format(PyExc_ValueError,
                     "unknown builtin actor kind %s (echo, counter, streamer, failer, forwarder)",
                     kind);
        return NULL;
    }
    if (rc != 0) {
        return raise_code(self, rc, "spawn_builtin");
    }
    return pulpy_id_to_py(id);
}

AskObject *
pulpy_ask_prepare(CoreSystemObject *self, PyObject *future, int segments, PyObject *complete)
{
    pulpy_state *st = sys_state(self);
    AskObject *a = PyObject_GC_New(AskObject, st->AskType);
    if (a == NULL) {
        return NULL;
    }
    a->link.next = a->link.prev = NULL;
    a->sys = (CoreSystemObject *)Py_NewRef(self);
    a->bridge = self->bridge;
    a->future = Py_NewRef(future);
    a->call = NULL;
    a->completed = 0;
    a->segments = segments;
    a->complete = complete == Py_None ? NULL : Py_XNewRef(complete);
    PyObject_GC_Track(a);
    /* The callback may be registered first: nothing completes before we return to the loop. */
    PyObject *r = PyObject_CallMethodOneArg(future, st->str_add_done_callback, (PyObject *)a);
    if (r == NULL) {
        Py_DECREF(a);
        return NULL;
    }
    Py_DECREF(r);
    /* The reference we hold becomes the core's: released when its completion drains. */
    pulpy_list_add(&self->asks, &a->link);
    return a;
}

PyObject *
pulpy_ask_abort(CoreSystemObject *self, AskObject *a, int rc, const char *what)
{
    pulpy_list_del(&a->link);
    a->call = NULL;
    a->completed = 1;
    Py_DECREF(a);
    return raise_code(self, rc, what);
}

/* ask(target, msg_type, payload, future, deadline_ms=0, segments=False, complete=None):
 * with `complete`, the drain calls complete(future, True, (type, bytes[, segments])) or
 * complete(future, False, CoreError) instead of set_result/set_exception, so the caller can
 * decode the reply and resolve its own future in the same pass (no second future, no extra loop
 * turn: threads.md "A remote call"). */
static PyObject *
sys_ask(PyObject *op, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    pulpy_state *st = sys_state(self);
    static const char *names[] = {"target",      "msg_type", "payload", "future",
                                  "deadline_ms", "segments", "complete"};
    enum { NARGS = 7 };
    PyObject *argv[NARGS] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > NARGS) {
        PyErr_SetString(PyExc_TypeError, "ask() takes at most 7 arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        argv[i] = args[i];
    }
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *kn = PyTuple_GET_ITEM(kwnames, k);
        int found = 0;
        for (int i = 0; i < NARGS; i++) {
            if (PyUnicode_CompareWithASCIIString(kn, names[i]) == 0) {
                if (argv[i] != NULL) {
                    PyErr_Format(PyExc_TypeError, "ask() got multiple values for %s", names[i]);
                    return NULL;
                }
                argv[i] = args[nargs + k];
                found = 1;
                break;
            }
        }
        if (!found) {
            PyErr_Format(PyExc_TypeError, "ask() got an unexpected keyword argument %R", kn);
            return NULL;
        }
    }
    for (int i = 0; i < 4; i++) {
        if (argv[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "ask() missing required argument %s", names[i]);
            return NULL;
        }
    }
    unsigned long long deadline = 0;
    if (argv[4] != NULL) {
        deadline = PyLong_AsUnsignedLongLong(argv[4]);
        if (deadline == (unsigned long long)-1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    int segments = 0;
    if (argv[5] != NULL && (segments = PyObject_IsTrue(argv[5])) < 0) {
        return NULL;
    }
    if (argv[6] != NULL && argv[6] != Py_None && !PyCallable_Check(argv[6])) {
        PyErr_SetString(PyExc_TypeError, "ask() complete must be callable or None");
        return NULL;
    }
    if (pulpy_system_check(self) < 0) {
        return NULL;
    }
    pul_id_t target;
    if (pulpy_id_from_py(argv[0], &target) < 0) {
        return NULL;
    }
    pul_msg_t *msg = pulpy_msg_from_py(st, self->bridge, argv[1], argv[2]);
    if (msg == NULL) {
        return NULL;
    }
    AskObject *a = pulpy_ask_prepare(self, argv[3], segments, argv[6]);
    if (a == NULL) {
        pul_msg_unref(msg);
        return NULL;
    }
    int rc = pul_ask(self->sys, target, msg, deadline, pulpy_ask_core_cb, a, &a->call);
    if (rc != 0) {
        pul_msg_unref(msg);
        return pulpy_ask_abort(self, a, rc, "ask");
    }
    Py_RETURN_NONE;
}

static PyObject *
sys_tell(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "tell(target, msg_type, payload)");
        return NULL;
    }
    if (pulpy_system_check(self) < 0) {
        return NULL;
    }
    pul_id_t target;
    if (pulpy_id_from_py(args[0], &target) < 0) {
        return NULL;
    }
    pul_msg_t *msg = pulpy_msg_from_py(sys_state(self), self->bridge, args[1], args[2]);
    if (msg == NULL) {
        return NULL;
    }
    int rc = pul_tell(self->sys, target, msg);
    if (rc != 0) {
        pul_msg_unref(msg);
        return raise_code(self, rc, "tell");
    }
    Py_RETURN_NONE;
}

static void
stream_core_cb(int status, pul_msg_t *item, const pul_error_t *err, void *arg)
{
    /* Core thread: only the opaque pointer travels. */
    StreamCallObject *s = arg;
    pulpy_entry_t e = {.kind = PULPY_E_STREAM, .status = status, .obj = s};
    if (status == 0 && item != NULL) {
        /* Counted here, not when Python sees it: a busy home loop must hold the producer too. */
        if (s->flow) {
            pthread_mutex_lock(&s->flow_mu);
            if (++s->pending >= PULPY_STREAM_HIGH && !s->paused && s->ccall != NULL) {
                s->paused = 1;
                (void)pul_call_pause(NULL, s->ccall, 1); /* alive inside its own callback */
            }
            pthread_mutex_unlock(&s->flow_mu);
        }
        e.msg = pul_msg_ref(item);
    } else if (err != NULL) {
        e.err = pulpy_err_copy(err);
    }
    if (pulpy_bridge_push(s->bridge, &e) != 0) {
        pul_msg_unref(e.msg);
        free(e.err);
    }
}

static PyObject *
sys_ask_stream(PyObject *op, PyObject *args, PyObject *kw)
{
    CoreSystemObject *self = (CoreSystemObject *)op;
    static char *kwlist[] = {"target",      "msg_type", "payload", "on_item",
                             "deadline_ms", "segments", "flow",    NULL};
    PyObject *target_o, *type, *payload, *on_item;
    unsigned long long deadline = 0;
    int segments = 0, flow = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOO|Kpp:ask_stream", kwlist, &target_o, &type,
                                     &payload, &on_item, &deadline, &segments, &flow)) {
        return NULL;
    }
    if (pulpy_system_check(self) < 0) {
        return NULL;
    }
    if (!PyCallable_Check(on_item)) {
        PyErr_SetString(PyExc_TypeError, "on_item must be callable");
        return NULL;
    }
    pul_id_t target;
    if (pulpy_id_from_py(target_o, &target) < 0) {
        return NULL;
    }
    pul_msg_t *msg = pulpy_msg_from_py(sys_state(self), self->bridge, type, payload);
    if (msg == NULL) {
        return NULL;
    }
    StreamCallObject *s = (StreamCallObject *)pulpy_streamcall_new(self, on_item);
    if (s == NULL) {
        pul_msg_unref(msg);
        return NULL;
    }
    Py_INCREF(s); /* the core's reference */
    s->bridge = self->bridge;
    s->segments = segments;
    s->flow = flow; /* before the post: the core callback reads it */
    s->core_ref = 1;
    pulpy_list_add(&self->streams, &s->link);
    int rc = pul_ask_stream(self->sys, target, msg, deadline, stream_core_cb, s, &s->ccall);
    s->call = s->ccall;
    if (rc != 0) {
        pulpy_list_del(&s->link);
        s->core_ref = 0;
        s->call = NULL;
        s->finished = 1;
        Py_CLEAR(s->on_item);
        pul_msg_unref(msg);
        Py_DECREF(s);
        Py_DECREF(s);
        return raise_code(self, rc, "ask_stream");
    }
    return (PyObject *)s;
}

static PyMethodDef sys_methods[] = {
    {"fileno", sys_fileno, METH_NOARGS, "The bridge's eventfd (for loop.add_reader)."},
    {"pump_fd", sys_pump_fd, METH_NOARGS,
     "None, or (fd, token): a connection whose replies this thread may read itself (pul_pump_fd)."},
    {"pump", sys_pump, METH_O, "Read and process a pumped connection (pul_pump): 1, 0 or -code."},
    {"pump_stop", sys_pump_stop, METH_O, "Stop pumping (pul_pump_stop)."},
    {"drain", sys_drain, METH_NOARGS, "Run every queued completion (the add_reader callback)."},
    {"close", sys_close, METH_NOARGS,
     "Fail pending calls, shut the core down, release everything. Idempotent."},
    {"spin", sys_spin, METH_O,
     "spin(max_us) -> bool: busy-wait (GIL released) up to max_us for a queued completion."},
    {"bridge_stats", sys_bridge_stats, METH_NOARGS,
     "{'pushes': n, 'wakeups': n}: entries queued by the core and eventfd writes."},
    {"register", (PyCFunction)(void (*)(void))sys_register, METH_VARARGS | METH_KEYWORDS,
     "register(name, handler, *, mailbox_capacity=0, allow_system=False, on_stop=None) -> "
     "actor id"},
    {"unregister", sys_stop, METH_O, "unregister(actor_id): stop a registered actor."},
    {"stop", sys_stop, METH_O, "stop(actor_id): stop an actor. Idempotent."},
    {"lookup", sys_lookup, METH_O, "lookup(name) -> actor id or None"},
    {"actors", sys_actors, METH_NOARGS, "actors() -> [(actor id, name or None)]"},
    {"spawn_builtin", (PyCFunction)(void (*)(void))sys_spawn_builtin,
     METH_VARARGS | METH_KEYWORDS, "spawn_builtin(kind, name=None) -> actor id"},
    {"ask", (PyCFunction)(void (*)(void))sys_ask, METH_FASTCALL | METH_KEYWORDS,
     "ask(target, msg_type, payload, future, deadline_ms=0)"},
    {"tell", (PyCFunction)(void (*)(void))sys_tell, METH_FASTCALL,
     "tell(target, msg_type, payload)"},
    {"ask_stream", (PyCFunction)(void (*)(void))sys_ask_stream, METH_VARARGS | METH_KEYWORDS,
     "ask_stream(target, msg_type, payload, on_item, deadline_ms=0, segments=False, flow=False) "
     "-> StreamCall (flow=True: bounded, the consumer calls StreamCall.taken() per item)"},
    {"ask_named", (PyCFunction)(void (*)(void))pulpy_sys_ask_named,
     METH_VARARGS | METH_KEYWORDS,
     "ask_named(node_id, name, msg_type, payload, future, deadline_ms=0, segments=False)"},
    {"http_get", (PyCFunction)(void (*)(void))pulpy_sys_http_get, METH_VARARGS | METH_KEYWORDS,
     "http_get(addr, path, future, timeout_ms=0): GET a node's REST endpoint; the future gets "
     "(status str, body bytes)"},
    {"gateway_route", pulpy_sys_gateway_route, METH_VARARGS,
     "gateway_route(node_id, addr): calls for node node_id's actors (0: every node without a "
     "route of its own) go to the gateway at addr, which forwards them; addr None drops it"},
    {"members", pulpy_sys_members, METH_NOARGS,
     "members() -> [(node_id, addr, status, incarnation)], this node first"},
    {"resolve_name", pulpy_sys_resolve_name, METH_O,
     "resolve_name(name) -> [(node_id, actor_id)] live instances cluster-wide"},
    {"named_actors", pulpy_sys_named_actors, METH_NOARGS,
     "named_actors() -> [(name, node_id, actor_id)] of the cluster view"},
    {"actor_node", pulpy_sys_actor_node, METH_O,
     "actor_node(actor_id) -> node id hosting it, or None when no known member has its prefix"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef sys_getset[] = {
    {"closed", sys_get_closed, NULL, "True once close() ran.", NULL},
    {"node_id", sys_get_node_id, NULL, "This system's 128-bit node id.", NULL},
    {"addr", sys_get_addr, NULL, "The advertised \"host:port\", or None without a listener.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef sys_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(CoreSystemObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot sys_slots[] = {
    {Py_tp_doc, "CoreSystem(*, mailbox_capacity=256, max_message_size=..., stream_window=32, "
                "default_deadline_ms=0): one libpulsing system and its bridge to the home loop."},
    {Py_tp_new, sys_new},
    {Py_tp_dealloc, sys_dealloc},
    {Py_tp_finalize, sys_finalize},
    {Py_tp_traverse, sys_traverse},
    {Py_tp_clear, sys_clear},
    {Py_tp_methods, sys_methods},
    {Py_tp_getset, sys_getset},
    {Py_tp_members, sys_members},
    {0, NULL},
};

PyType_Spec pulpy_coresystem_spec = {
    .name = "pulsing._core.CoreSystem",
    .basicsize = sizeof(CoreSystemObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = sys_slots,
};
