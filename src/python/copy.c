/* copy.c — copy_value: copy semantics for in-process messages (identity for immutables). */
#include "pulpy.h"

/* Deeper immutable nests than this go through pickle (which has its own recursion guard). */
#define PULPY_IMMUTABLE_DEPTH 32

/* 1 when obj is (recursively) one of the exact immutable types, 0 otherwise, -1 on error. */
static int
is_immutable(PyObject *o, int depth)
{
    PyTypeObject *tp = Py_TYPE(o);
    if (o == Py_None || tp == &PyBool_Type || tp == &PyLong_Type || tp == &PyFloat_Type ||
        tp == &PyUnicode_Type || tp == &PyBytes_Type || tp == &PyComplex_Type) {
        return 1;
    }
    if (depth >= PULPY_IMMUTABLE_DEPTH) {
        return 0;
    }
    if (tp == &PyTuple_Type) {
        Py_ssize_t n = PyTuple_GET_SIZE(o);
        for (Py_ssize_t i = 0; i < n; i++) {
            int r = is_immutable(PyTuple_GET_ITEM(o, i), depth + 1);
            if (r != 1) {
                return r;
            }
        }
        return 1;
    }
    if (tp == &PyFrozenSet_Type) {
        PyObject *it = PyObject_GetIter(o);
        if (it == NULL) {
            return -1;
        }
        int r = 1;
        PyObject *x;
        while (r == 1 && (x = PyIter_Next(it)) != NULL) {
            r = is_immutable(x, depth + 1);
            Py_DECREF(x);
        }
        Py_DECREF(it);
        if (r == 1 && PyErr_Occurred()) {
            r = -1;
        }
        return r;
    }
    return 0;
}

static int
load_pickle(pulpy_state *st)
{
    if (st->pickle_dumps != NULL) {
        return 0;
    }
    PyObject *mod = PyImport_ImportModule("pickle");
    if (mod == NULL) {
        return -1;
    }
    PyObject *dumps = PyObject_GetAttrString(mod, "dumps");
    PyObject *loads = dumps ? PyObject_GetAttrString(mod, "loads") : NULL;
    Py_DECREF(mod);
    if (loads == NULL) {
        Py_XDECREF(dumps);
        return -1;
    }
    st->pickle_dumps = dumps;
    st->pickle_loads = loads;
    return 0;
}

/* Replace the pending exception by TypeError naming obj's type, chained to the original. */
static void
raise_unpicklable(PyObject *obj)
{
    PyObject *et, *ev, *etb;
    PyErr_Fetch(&et, &ev, &etb);
    PyErr_NormalizeException(&et, &ev, &etb);
    if (etb != NULL && ev != NULL) {
        PyException_SetTraceback(ev, etb);
    }
    PyObject *tname = PyType_GetQualName(Py_TYPE(obj));
    PyObject *mod = PyObject_GetAttrString((PyObject *)Py_TYPE(obj), "__module__");
    if (mod == NULL) {
        PyErr_Clear();
    }
    if (tname != NULL) {
        if (mod != NULL && PyUnicode_Check(mod) &&
            PyUnicode_CompareWithASCIIString(mod, "builtins") != 0) {
            PyErr_Format(PyExc_TypeError, "cannot copy a value of type '%U.%U' (not picklable): %S",
                         mod, tname, ev ? ev : Py_None);
        } else {
            PyErr_Format(PyExc_TypeError, "cannot copy a value of type '%U' (not picklable): %S",
                         tname, ev ? ev : Py_None);
        }
    }
    Py_XDECREF(tname);
    Py_XDECREF(mod);
    if (ev != NULL) {
        PyObject *nt, *nv, *ntb;
        PyErr_Fetch(&nt, &nv, &ntb);
        PyErr_NormalizeException(&nt, &nv, &ntb);
        if (nv != NULL) {
            PyException_SetCause(nv, Py_NewRef(ev));
            PyException_SetContext(nv, Py_NewRef(ev));
        }
        PyErr_Restore(nt, nv, ntb);
    }
    Py_XDECREF(et);
    Py_XDECREF(ev);
    Py_XDECREF(etb);
}

PyObject *
pulpy_copy_value(PyObject *module, PyObject *obj)
{
    int imm = is_immutable(obj, 0);
    if (imm < 0) {
        return NULL;
    }
    if (imm) {
        return Py_NewRef(obj);
    }
    pulpy_state *st = PyModule_GetState(module);
    if (load_pickle(st) < 0) {
        return NULL;
    }
    PyObject *result = NULL, *data = NULL, *append = NULL, *five = NULL;
    PyObject *buffers = PyList_New(0);
    if (buffers == NULL) {
        return NULL;
    }
    append = PyObject_GetAttrString(buffers, "append");
    five = PyLong_FromLong(5);
    if (append == NULL || five == NULL) {
        goto done;
    }
    {
        PyObject *kwnames = PyTuple_Pack(2, st->str_protocol, st->str_buffer_callback);
        if (kwnames == NULL) {
            goto done;
        }
        PyObject *args[3] = {obj, five, append};
        data = PyObject_Vectorcall(st->pickle_dumps, args, 1, kwnames);
        Py_DECREF(kwnames);
    }
    if (data == NULL) {
        if (PyErr_ExceptionMatches(PyExc_Exception)) {
            raise_unpicklable(obj);
        }
        goto done;
    }
    /* Out-of-band buffers still view the sender's memory: copy each once so the receiver's
     * value is independent (and writable, as the original was). */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(buffers); i++) {
        PyObject *raw = PyObject_CallMethodNoArgs(PyList_GET_ITEM(buffers, i), st->str_raw);
        if (raw == NULL) {
            goto done;
        }
        PyObject *copy = PyByteArray_FromObject(raw);
        Py_DECREF(raw);
        if (copy == NULL) {
            goto done;
        }
        if (PyList_SetItem(buffers, i, copy) < 0) {
            goto done;
        }
    }
    {
        PyObject *kwnames = PyTuple_Pack(1, st->str_buffers);
        if (kwnames == NULL) {
            goto done;
        }
        PyObject *args[2] = {data, buffers};
        result = PyObject_Vectorcall(st->pickle_loads, args, 1, kwnames);
        Py_DECREF(kwnames);
    }
done:
    Py_XDECREF(data);
    Py_XDECREF(append);
    Py_XDECREF(five);
    Py_DECREF(buffers);
    return result;
}
