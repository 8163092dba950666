/* module.c — pulsing._core: module state, constants, CoreError and the small functions. */
#include "pulsing/pulsing.h"
#include "pulpy.h"

#include <string.h>

/* ---- ids ------------------------------------------------------------------------------------ */

PyObject *
pulpy_id_to_py(pul_id_t id)
{
    if (id.hi == 0) {
        return PyLong_FromUnsignedLongLong(id.lo);
    }
    unsigned char buf[16];
    for (int i = 0; i < 8; i++) {
        buf[i] = (unsigned char)(id.lo >> (8 * i));
        buf[8 + i] = (unsigned char)(id.hi >> (8 * i));
    }
    return _PyLong_FromByteArray(buf, sizeof(buf), 1 /* little endian */, 0 /* unsigned */);
}

int
pulpy_id_from_py(PyObject *obj, pul_id_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "actor id must be an int, not %.100s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long small = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow == 0) {
        if (small == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (small <= 0) {
            PyErr_SetString(PyExc_ValueError, "actor id must be a positive 128-bit int");
            return -1;
        }
        out->hi = 0;
        out->lo = (uint64_t)small;
        return 0;
    }
    if (overflow < 0) {
        PyErr_SetString(PyExc_ValueError, "actor id must be a positive 128-bit int");
        return -1;
    }
    unsigned char buf[16];
#if PY_VERSION_HEX >= 0x030D0000
    int conv = _PyLong_AsByteArray((PyLongObject *)obj, buf, sizeof(buf), 1, 0, 1);
#else
    int conv = _PyLong_AsByteArray((PyLongObject *)obj, buf, sizeof(buf), 1, 0);
#endif
    if (conv < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "actor id must be a positive 128-bit int");
        return -1;
    }
    out->hi = out->lo = 0;
    for (int i = 0; i < 8; i++) {
        out->lo |= (uint64_t)buf[i] << (8 * i);
        out->hi |= (uint64_t)buf[8 + i] << (8 * i);
    }
    return 0;
}

/* ---- CoreError ------------------------------------------------------------------------------ */

static int
set_attr_str(PyObject *o, const char *name, const char *v)
{
    if (v == NULL) {
        return PyObject_SetAttrString(o, name, Py_None);
    }
    PyObject *s = PyUnicode_DecodeUTF8(v, (Py_ssize_t)strlen(v), "replace");
    if (s == NULL) {
        return -1;
    }
    int r = PyObject_SetAttrString(o, name, s);
    Py_DECREF(s);
    return r;
}

static int
set_attr_ll(PyObject *o, const char *name, long long v)
{
    PyObject *i = PyLong_FromLongLong(v);
    if (i == NULL) {
        return -1;
    }
    int r = PyObject_SetAttrString(o, name, i);
    Py_DECREF(i);
    return r;
}

PyObject *
pulpy_error_new(pulpy_state *st, int code, const pul_error_t *err, const char *context)
{
    const char *text;
    if (err != NULL && err->message != NULL && err->message[0] != '\0') {
        text = err->message;
    } else {
        text = pul_strerror(code);
    }
    PyObject *msg;
    if (context != NULL && err != NULL && err->type_name != NULL) {
        msg = PyUnicode_FromFormat("%s: %s: %s", context, err->type_name, text);
    } else if (context != NULL) {
        msg = PyUnicode_FromFormat("%s: %s", context, text);
    } else if (err != NULL && err->type_name != NULL) {
        msg = PyUnicode_FromFormat("%s: %s", err->type_name, text);
    } else {
        msg = PyUnicode_FromString(text);
    }
    if (msg == NULL) {
        return NULL;
    }
    PyObject *exc = PyObject_CallOneArg(st->CoreError, msg);
    Py_DECREF(msg);
    if (exc == NULL) {
        return NULL;
    }
    int kind = err != NULL ? (int)err->kind : PUL_ERRKIND_RUNTIME;
    if (kind == PUL_ERRKIND_NONE) {
        kind = PUL_ERRKIND_RUNTIME;
    }
    if (set_attr_ll(exc, "code", code) < 0 || set_attr_ll(exc, "kind", kind) < 0 ||
        set_attr_str(exc, "message", err != NULL && err->message ? err->message : text) < 0 ||
        set_attr_ll(exc, "biz_code", err != NULL ? err->code : 0) < 0 ||
        set_attr_str(exc, "details", err != NULL ? err->details : NULL) < 0 ||
        PyObject_SetAttrString(exc, "recoverable",
                               (err == NULL || err->recoverable) ? Py_True : Py_False) < 0 ||
        set_attr_ll(exc, "duration_ms", err != NULL ? (long long)err->duration_ms : 0) < 0 ||
        set_attr_str(exc, "type_name", err != NULL ? err->type_name : NULL) < 0) {
        Py_DECREF(exc);
        return NULL;
    }
    return exc;
}

PyObject *
pulpy_raise(pulpy_state *st, int code, const char *context)
{
    PyObject *exc = pulpy_error_new(st, code, NULL, context);
    if (exc != NULL) {
        PyErr_SetObject(st->CoreError, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* ---- module functions ---------------------------------------------------------------------- */

static PyObject *
mod_strerror(PyObject *mod, PyObject *arg)
{
    int overflow = 0;
    long code = PyLong_AsLongAndOverflow(arg, &overflow);
    if (code == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow || code < INT32_MIN || code > INT32_MAX) {
        code = INT32_MIN;
    }
    return PyUnicode_FromString(pul_strerror((int)code));
}

/* Why pul_name_normalize refused `name`, for the ValueError message (the core only says
 * PUL_ENAME). Mirrors the rules of ARCHITECTURE §3; the core stays the authority. */
static const char *
name_rule_broken(const char *name, size_t len, int allow_system, char *buf, size_t bufsz)
{
    if (len == 0) {
        return "name is empty";
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-' || c == '/';
        if (!ok) {
            if (c >= 0x20 && c < 0x7f) {
                snprintf(buf, bufsz,
                         "character '%c' at offset %zu is not allowed (segments are "
                         "[A-Za-z0-9_-])",
                         c, i);
            } else {
                snprintf(buf, bufsz,
                         "byte 0x%02x at offset %zu is not allowed (segments are [A-Za-z0-9_-])",
                         c, i);
            }
            return buf;
        }
    }
    if (name[0] == '/' || name[len - 1] == '/' || memmem(name, len, "//", 2) != NULL) {
        return "empty path segment (leading, trailing or doubled '/')";
    }
    size_t full = memchr(name, '/', len) == NULL ? len + 7 : len;
    if (full > PUL_NAME_MAX) {
        snprintf(buf, bufsz, "name longer than %d bytes", PUL_NAME_MAX);
        return buf;
    }
    if (!allow_system && len >= 7 && memcmp(name, "system/", 7) == 0) {
        return "the 'system/' prefix is reserved";
    }
    return "name refused by the core";
}

static int
normalize(PyObject *name, int allow_system, char *out, size_t outsz)
{
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(name, &len);
    if (s == NULL) {
        return -1;
    }
    int rc = pul_name_normalize(s, (size_t)len, allow_system, out, outsz);
    if (rc == 0) {
        return 0;
    }
    char buf[128];
    PyErr_Format(PyExc_ValueError, "invalid actor name %R: %s", name,
                 name_rule_broken(s, (size_t)len, allow_system, buf, sizeof(buf)));
    return -1;
}

int
pulpy_normalize_name(PyObject *name, int allow_system, char *out, size_t outsz)
{
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "actor name must be str, not %.100s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    return normalize(name, allow_system, out, outsz);
}

static PyObject *
mod_normalize_name(PyObject *mod, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "allow_system", NULL};
    PyObject *name;
    int allow_system = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "U|p:normalize_name", kwlist, &name,
                                     &allow_system)) {
        return NULL;
    }
    char out[PUL_NAME_MAX + 1];
    if (normalize(name, allow_system, out, sizeof(out)) < 0) {
        return NULL;
    }
    return PyUnicode_FromString(out);
}

static PyObject *
mod_random_id(PyObject *mod, PyObject *unused)
{
    return pulpy_id_to_py(pul_id_random());
}

static PyObject *
mod_mem_live(PyObject *mod, PyObject *unused)
{
    return PyLong_FromLong(pul_mem_live());
}

static PyObject *
mod_copy_value(PyObject *mod, PyObject *obj)
{
    return pulpy_copy_value(mod, obj);
}

static PyMethodDef mod_methods[] = {
    {"strerror", mod_strerror, METH_O, "strerror(code) -> str: the core's name for a code."},
    {"normalize_name", (PyCFunction)(void (*)(void))mod_normalize_name,
     METH_VARARGS | METH_KEYWORDS,
     "normalize_name(name, allow_system=False) -> str: 'x' -> 'actors/x'; ValueError naming "
     "the rule broken."},
    {"random_id", mod_random_id, METH_NOARGS, "random_id() -> int: a fresh random 128-bit id."},
    {"mem_live", mod_mem_live, METH_NOARGS,
     "mem_live() -> int: live allocations inside libpulsing."},
    {"copy_value", mod_copy_value, METH_O,
     "copy_value(obj): obj itself when immutable, else a pickle protocol-5 copy."},
    {NULL, NULL, 0, NULL},
};

/* ---- init ------------------------------------------------------------------------------------ */

static PyObject *
add_type(PyObject *m, PyType_Spec *spec, int public)
{
    PyObject *t = PyType_FromModuleAndSpec(m, spec, NULL);
    if (t == NULL) {
        return NULL;
    }
    if (public) {
        if (PyModule_AddObjectRef(m, strrchr(spec->name, '.') + 1, t) < 0) {
            Py_DECREF(t);
            return NULL;
        }
    }
    return t;
}

static int
mod_exec(PyObject *m)
{
    pulpy_state *st = PyModule_GetState(m);

#define ADD_CODE(name, val, str)                                                              \
    if (PyModule_AddIntConstant(m, #name, (val)) < 0) {                                      \
        return -1;                                                                            \
    }
    PUL_ERRNO_MAP(ADD_CODE)
#undef ADD_CODE
    if (PyModule_AddIntConstant(m, "ERRKIND_NONE", PUL_ERRKIND_NONE) < 0 ||
        PyModule_AddIntConstant(m, "ERRKIND_RUNTIME", PUL_ERRKIND_RUNTIME) < 0 ||
        PyModule_AddIntConstant(m, "ERRKIND_BUSINESS", PUL_ERRKIND_BUSINESS) < 0 ||
        PyModule_AddIntConstant(m, "ERRKIND_SYSTEM", PUL_ERRKIND_SYSTEM) < 0 ||
        PyModule_AddIntConstant(m, "ERRKIND_TIMEOUT", PUL_ERRKIND_TIMEOUT) < 0 ||
        PyModule_AddIntConstant(m, "ERRKIND_UNSUPPORTED", PUL_ERRKIND_UNSUPPORTED) < 0) {
        return -1;
    }

    st->CoreError = PyErr_NewExceptionWithDoc(
        "pulsing._core.CoreError",
        "A failed core operation. code is the PUL_E* code; when code == EACTOR the other "
        "fields carry the structured error the actor replied with.",
        PyExc_Exception, NULL);
    if (st->CoreError == NULL || PyModule_AddObjectRef(m, "CoreError", st->CoreError) < 0) {
        return -1;
    }
    /* Class-level defaults so a CoreError built by Python code has every field. */
    static const struct {
        const char *name;
        long v;
    } defaults[] = {{"code", 0}, {"kind", PUL_ERRKIND_RUNTIME}, {"biz_code", 0},
                    {"duration_ms", 0}};
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        PyObject *v = PyLong_FromLong(defaults[i].v);
        if (v == NULL || PyObject_SetAttrString(st->CoreError, defaults[i].name, v) < 0) {
            Py_XDECREF(v);
            return -1;
        }
        Py_DECREF(v);
    }
    if (PyObject_SetAttrString(st->CoreError, "message", Py_None) < 0 ||
        PyObject_SetAttrString(st->CoreError, "details", Py_None) < 0 ||
        PyObject_SetAttrString(st->CoreError, "type_name", Py_None) < 0 ||
        PyObject_SetAttrString(st->CoreError, "recoverable", Py_True) < 0) {
        return -1;
    }

    if ((st->CoreSystemType = (PyTypeObject *)add_type(m, &pulpy_coresystem_spec, 1)) == NULL ||
        (st->ReplyType = (PyTypeObject *)add_type(m, &pulpy_reply_spec, 1)) == NULL ||
        (st->StreamWriterType = (PyTypeObject *)add_type(m, &pulpy_streamwriter_spec, 1)) ==
            NULL ||
        (st->StreamCallType = (PyTypeObject *)add_type(m, &pulpy_streamcall_spec, 1)) == NULL ||
        (st->AskType = (PyTypeObject *)add_type(m, &pulpy_ask_spec, 0)) == NULL ||
        (st->MsgBufferType = (PyTypeObject *)add_type(m, &pulpy_msgbuffer_spec, 0)) == NULL) {
        return -1;
    }

#define INTERN(field, s)                                                                      \
    if ((st->field = PyUnicode_InternFromString(s)) == NULL) {                                \
        return -1;                                                                            \
    }
    INTERN(str_done, "done");
    INTERN(str_set_result, "set_result");
    INTERN(str_set_exception, "set_exception");
    INTERN(str_add_done_callback, "add_done_callback");
    INTERN(str_remove_done_callback, "remove_done_callback");
    INTERN(str_protocol, "protocol");
    INTERN(str_buffer_callback, "buffer_callback");
    INTERN(str_buffers, "buffers");
    INTERN(str_raw, "raw");
#undef INTERN
    return 0;
}

static int
mod_traverse(PyObject *m, visitproc visit, void *arg)
{
    pulpy_state *st = PyModule_GetState(m);
    if (st == NULL) {
        return 0;
    }
    Py_VISIT(st->CoreError);
    Py_VISIT(st->CoreSystemType);
    Py_VISIT(st->ReplyType);
    Py_VISIT(st->StreamWriterType);
    Py_VISIT(st->StreamCallType);
    Py_VISIT(st->AskType);
    Py_VISIT(st->MsgBufferType);
    Py_VISIT(st->pickle_dumps);
    Py_VISIT(st->pickle_loads);
    return 0;
}

static int
mod_clear(PyObject *m)
{
    pulpy_state *st = PyModule_GetState(m);
    if (st == NULL) {
        return 0;
    }
    Py_CLEAR(st->CoreError);
    Py_CLEAR(st->CoreSystemType);
    Py_CLEAR(st->ReplyType);
    Py_CLEAR(st->StreamWriterType);
    Py_CLEAR(st->StreamCallType);
    Py_CLEAR(st->AskType);
    Py_CLEAR(st->MsgBufferType);
    Py_CLEAR(st->pickle_dumps);
    Py_CLEAR(st->pickle_loads);
    Py_CLEAR(st->str_done);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_set_exception);
    Py_CLEAR(st->str_add_done_callback);
    Py_CLEAR(st->str_remove_done_callback);
    Py_CLEAR(st->str_protocol);
    Py_CLEAR(st->str_buffer_callback);
    Py_CLEAR(st->str_buffers);
    Py_CLEAR(st->str_raw);
    return 0;
}

static void
mod_free(void *m)
{
    (void)mod_clear((PyObject *)m);
}

static PyModuleDef_Slot mod_slots[] = {
    {Py_mod_exec, mod_exec},
    {0, NULL},
};

PyModuleDef pulpy_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pulsing._core",
    .m_doc = "The CPython extension over libpulsing: the bridge between a system's core thread "
             "and its home asyncio loop, and thin wrappers over the C core.",
    .m_size = sizeof(pulpy_state),
    .m_methods = mod_methods,
    .m_slots = mod_slots,
    .m_traverse = mod_traverse,
    .m_clear = mod_clear,
    .m_free = mod_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&pulpy_module_def);
}
