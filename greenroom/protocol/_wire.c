/* greenroom.protocol._wire: the echo path's frame parse and reply encode in C.
 *
 * Why: on a room that answers each message, reading ROOM_DATA (message type + msgpackr payload)
 * and writing the reply cost ~3.5 us of Python per round trip, a sixth of the server's CPU.
 * Why a subset: frames.py stays the reference. Each function here handles the usual frame
 * (string message type; payload of nil, bools, numbers, strings, lists and maps, or one msgpackr
 * record of those) and hands anything else -- other codes, binary, extensions, timestamps,
 * nested records, deep nesting, any malformed or truncated input -- to the Python function it
 * was configured with, so results and errors are the reference's by construction. It never
 * raises on its own for a client's bytes: what it cannot read it does not judge.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define ROOM_DATA 13
/* deeper values go to the reference, whose limit (protocol/depth.py, 64) is then checked there */
#define MAX_NEST 32

static PyObject *frame_cls, *undefined, *parse_ref, *room_data_ref;

/* ---- decoding ------------------------------------------------------------------------------ */

typedef struct {
    const unsigned char *p, *end;
} reader;

/* Sentinel for "not in the subset, or malformed": the caller asks the reference. */
#define FALLBACK NULL

static inline int
need(reader *r, Py_ssize_t n)
{
    return r->end - r->p >= n;
}

static inline uint64_t
be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static PyObject *decode(reader *r, int depth);

static PyObject *
decode_str(reader *r, Py_ssize_t n)
{
    if (!need(r, n))
        return FALLBACK;
    PyObject *s = PyUnicode_DecodeUTF8((const char *)r->p, n, NULL);
    if (s == NULL) {
        PyErr_Clear();
        return FALLBACK;
    }
    r->p += n;
    return s;
}

static PyObject *
decode_array(reader *r, Py_ssize_t n, int depth)
{
    if (depth >= MAX_NEST || n > r->end - r->p)   /* each item takes a byte at least */
        return FALLBACK;
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        PyErr_Clear();
        return FALLBACK;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = decode(r, depth + 1);
        if (item == NULL) {
            Py_DECREF(list);
            return FALLBACK;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *
decode_map(reader *r, Py_ssize_t n, int depth)
{
    if (depth >= MAX_NEST || n > (r->end - r->p) / 2)
        return FALLBACK;
    PyObject *dict = PyDict_New();
    if (dict == NULL) {
        PyErr_Clear();
        return FALLBACK;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = decode(r, depth + 1);
        if (key == NULL)
            goto fail;
        PyObject *value = decode(r, depth + 1);
        if (value == NULL) {
            Py_DECREF(key);
            goto fail;
        }
        int rc = PyDict_SetItem(dict, key, value);   /* an unhashable key fails here */
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0) {
            PyErr_Clear();
            goto fail;
        }
    }
    return dict;
fail:
    Py_DECREF(dict);
    return FALLBACK;
}

/* One MessagePack value as msgpack.unpackb(raw=False, strict_map_key=False) returns it, with
 * msgpackr's `undefined` (fixext1 type 0) as None like frames.py's ext hook; FALLBACK for the
 * rest. Never leaves a Python error set. */
static PyObject *
decode(reader *r, int depth)
{
    if (!need(r, 1))
        return FALLBACK;
    unsigned char b = *r->p++;
    if (b <= 0x7f)
        return PyLong_FromLong(b);
    if (b >= 0xe0)
        return PyLong_FromLong((long)(int8_t)b);
    if (b <= 0x8f)
        return decode_map(r, b & 0x0f, depth);
    if (b <= 0x9f)
        return decode_array(r, b & 0x0f, depth);
    if (b <= 0xbf)
        return decode_str(r, b & 0x1f);
    int width;
    uint64_t u;
    switch (b) {
    case 0xc0: Py_RETURN_NONE;
    case 0xc2: Py_RETURN_FALSE;
    case 0xc3: Py_RETURN_TRUE;
    case 0xca: {
        if (!need(r, 4))
            return FALLBACK;
        union { uint32_t i; float f; } m;
        m.i = (uint32_t)be(r->p, 4);
        r->p += 4;
        return PyFloat_FromDouble((double)m.f);
    }
    case 0xcb: {
        if (!need(r, 8))
            return FALLBACK;
        union { uint64_t i; double d; } m;
        m.i = be(r->p, 8);
        r->p += 8;
        return PyFloat_FromDouble(m.d);
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        width = 1 << (b - 0xcc);
        if (!need(r, width))
            return FALLBACK;
        u = be(r->p, width);
        r->p += width;
        return PyLong_FromUnsignedLongLong(u);
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        width = 1 << (b - 0xd0);
        if (!need(r, width))
            return FALLBACK;
        u = be(r->p, width);
        r->p += width;
        int64_t v = width == 1 ? (int8_t)u : width == 2 ? (int16_t)u
                  : width == 4 ? (int32_t)u : (int64_t)u;
        return PyLong_FromLongLong(v);
    }
    case 0xd4:   /* fixext1: only msgpackr's `undefined` (type 0) */
        if (!need(r, 2) || r->p[0] != 0)
            return FALLBACK;
        r->p += 2;
        Py_RETURN_NONE;
    case 0xd9: case 0xda: case 0xdb:
        width = 1 << (b - 0xd9);
        if (!need(r, width))
            return FALLBACK;
        u = be(r->p, width);
        r->p += width;
        return decode_str(r, (Py_ssize_t)u);
    case 0xdc: case 0xdd:
        width = b == 0xdc ? 2 : 4;
        if (!need(r, width))
            return FALLBACK;
        u = be(r->p, width);
        r->p += width;
        return decode_array(r, (Py_ssize_t)u, depth);
    case 0xde: case 0xdf:
        width = b == 0xde ? 2 : 4;
        if (!need(r, width))
            return FALLBACK;
        u = be(r->p, width);
        r->p += width;
        return decode_map(r, (Py_ssize_t)u, depth);
    default:     /* bin, ext, timestamps, 0xc1 */
        return FALLBACK;
    }
}

/* ``d4 72 <id> [k1..kn] v1..vn``, what the SDKs send for an object: the dict, as
 * msgpackr._unpack_top_record builds it (string keys, later duplicates win). */
static PyObject *
decode_top_record(reader *r)
{
    r->p += 3;
    if (!need(r, 1) || *r->p < 0x90 || *r->p > 0x9f)
        return FALLBACK;
    Py_ssize_t n = *r->p++ & 0x0f;
    PyObject *keys[15];
    Py_ssize_t got = 0;
    PyObject *dict = NULL;
    for (; got < n; got++) {
        if (!need(r, 1) || !((*r->p >= 0xa0 && *r->p <= 0xbf) || (*r->p >= 0xd9 && *r->p <= 0xdb)))
            goto done;
        if ((keys[got] = decode(r, 1)) == NULL)
            goto done;
    }
    if ((dict = PyDict_New()) == NULL) {
        PyErr_Clear();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = decode(r, 1);
        if (value == NULL || PyDict_SetItem(dict, keys[i], value) < 0) {
            Py_XDECREF(value);
            PyErr_Clear();
            Py_CLEAR(dict);
            goto done;
        }
        Py_DECREF(value);
    }
done:
    for (Py_ssize_t i = 0; i < got; i++)
        Py_DECREF(keys[i]);
    return dict;
}

/* The payload of a ROOM_DATA frame, all of it, or FALLBACK. */
static PyObject *
decode_payload(reader *r)
{
    PyObject *value;
    if (r->end - r->p > 3 && r->p[0] == 0xd4 && r->p[1] == 0x72)
        value = decode_top_record(r);
    else
        value = decode(r, 0);
    if (value != NULL && r->p != r->end)   /* bytes left: record references, or junk */
        Py_CLEAR(value);
    return value;
}

static PyObject *
parse_client_frame(PyObject *self, PyObject *frame)
{
    if (parse_ref == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_wire.configure() was not called");
        return NULL;
    }
    if (!PyBytes_CheckExact(frame) || PyBytes_GET_SIZE(frame) < 3)
        goto reference;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(frame);
    reader r = {p + 1, p + PyBytes_GET_SIZE(frame)};
    if ((p[0] & 0x1f) != ROOM_DATA)
        goto reference;
    Py_ssize_t n;
    unsigned char t = *r.p++;
    if (t >= 0xa1 && t <= 0xbf)
        n = t & 0x1f;
    else if (t == 0xd9 && need(&r, 1))
        n = *r.p++;
    else
        goto reference;
    PyObject *type = decode_str(&r, n);
    if (type == NULL)
        goto reference;
    PyObject *payload;
    if (r.p == r.end) {
        payload = Py_NewRef(undefined);
    } else if ((payload = decode_payload(&r)) == NULL) {
        Py_DECREF(type);
        goto reference;
    }
    PyObject *code = PyLong_FromLong(p[0] & 0x1f);
    if (code == NULL) {
        Py_DECREF(type);
        Py_DECREF(payload);
        return NULL;
    }
    PyObject *args[3] = {code, type, payload};
    PyObject *result = PyObject_Vectorcall(frame_cls, args, 3, NULL);
    Py_DECREF(code);
    Py_DECREF(type);
    Py_DECREF(payload);
    return result;
reference:
    PyErr_Clear();   /* only an allocation could have failed; the reference tries again */
    return PyObject_CallOneArg(parse_ref, frame);
}

/* ---- encoding ------------------------------------------------------------------------------ */

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    char small[256];
} writer;

static int
grow(writer *w, Py_ssize_t n)
{
    if (w->len + n <= w->cap)
        return 0;
    Py_ssize_t cap = w->cap * 2;
    if (cap < w->len + n)
        cap = w->len + n;
    char *buf = w->buf == w->small ? PyMem_Malloc(cap) : PyMem_Realloc(w->buf, cap);
    if (buf == NULL)
        return -1;
    if (w->buf == w->small)
        memcpy(buf, w->small, w->len);
    w->buf = buf;
    w->cap = cap;
    return 0;
}

static inline int
put_head(writer *w, unsigned char prefix, uint64_t v, int width)
{
    if (grow(w, 1 + width) < 0)
        return -1;
    unsigned char *q = (unsigned char *)w->buf + w->len;
    *q++ = prefix;
    for (int i = width - 1; i >= 0; i--)
        *q++ = (unsigned char)(v >> (8 * i));
    w->len += 1 + width;
    return 0;
}

static int
put_str(writer *w, PyObject *s)
{
    Py_ssize_t n;
    const char *data = PyUnicode_AsUTF8AndSize(s, &n);
    if (data == NULL) {
        PyErr_Clear();
        return -1;
    }
    int rc = n < 32 ? put_head(w, 0xa0 | (unsigned char)n, 0, 0)
           : n < 0x100 ? put_head(w, 0xd9, n, 1)
           : n < 0x10000 ? put_head(w, 0xda, n, 2)
           : (uint64_t)n <= 0xffffffffu ? put_head(w, 0xdb, n, 4) : -1;
    if (rc < 0 || grow(w, n) < 0)
        return -1;
    memcpy(w->buf + w->len, data, n);
    w->len += n;
    return 0;
}

static int
put_int(writer *w, PyObject *obj)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(obj);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
        return put_head(w, 0xcf, u, 8);
    }
    if (overflow < 0 || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    if (v < 0) {
        if (v >= -32)
            return put_head(w, (unsigned char)(int8_t)v, 0, 0);
        if (v >= -128)
            return put_head(w, 0xd0, (uint64_t)v, 1);
        if (v >= -32768)
            return put_head(w, 0xd1, (uint64_t)v, 2);
        if (v >= -2147483648LL)
            return put_head(w, 0xd2, (uint64_t)v, 4);
        return put_head(w, 0xd3, (uint64_t)v, 8);
    }
    if (v < 128)
        return put_head(w, (unsigned char)v, 0, 0);
    if (v < 0x100)
        return put_head(w, 0xcc, v, 1);
    if (v < 0x10000)
        return put_head(w, 0xcd, v, 2);
    if (v <= 0xffffffffLL)
        return put_head(w, 0xce, v, 4);
    return put_head(w, 0xcf, v, 8);
}

/* ``obj`` as frames.pack() writes it, for exact dicts, lists, tuples, str, int, float, bool and
 * None; -1 (no Python error set) for anything else, which the reference then packs or refuses. */
static int
put(writer *w, PyObject *obj, int depth)
{
    PyTypeObject *t = Py_TYPE(obj);
    if (obj == Py_None)
        return put_head(w, 0xc0, 0, 0);
    if (obj == Py_True)
        return put_head(w, 0xc3, 0, 0);
    if (obj == Py_False)
        return put_head(w, 0xc2, 0, 0);
    if (t == &PyUnicode_Type)
        return put_str(w, obj);
    if (t == &PyLong_Type)
        return put_int(w, obj);
    if (t == &PyFloat_Type) {
        union { double d; uint64_t i; } m;
        m.d = PyFloat_AS_DOUBLE(obj);
        return put_head(w, 0xcb, m.i, 8);
    }
    if (depth >= MAX_NEST)
        return -1;
    if (t == &PyDict_Type) {
        Py_ssize_t n = PyDict_GET_SIZE(obj), pos = 0;
        int rc = n < 16 ? put_head(w, 0x80 | (unsigned char)n, 0, 0)
               : n < 0x10000 ? put_head(w, 0xde, n, 2) : put_head(w, 0xdf, n, 4);
        PyObject *key, *value;
        while (rc == 0 && PyDict_Next(obj, &pos, &key, &value))
            rc = put(w, key, depth + 1) < 0 || put(w, value, depth + 1) < 0 ? -1 : 0;
        /* a dict that changed size while written: let the reference say so */
        return rc == 0 && PyDict_GET_SIZE(obj) != n ? -1 : rc;
    }
    if (t == &PyList_Type || t == &PyTuple_Type) {
        Py_ssize_t n = Py_SIZE(obj);
        PyObject **items = t == &PyList_Type ? ((PyListObject *)obj)->ob_item
                                             : ((PyTupleObject *)obj)->ob_item;
        int rc = n < 16 ? put_head(w, 0x90 | (unsigned char)n, 0, 0)
               : n < 0x10000 ? put_head(w, 0xdc, n, 2) : put_head(w, 0xdd, n, 4);
        for (Py_ssize_t i = 0; rc == 0 && i < n; i++)
            rc = put(w, items[i], depth + 1);
        return rc;
    }
    return -1;
}

static PyObject *
room_data(PyObject *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (room_data_ref == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_wire.configure() was not called");
        return NULL;
    }
    if (kwnames != NULL || nargs < 1 || nargs > 2 || !PyUnicode_CheckExact(args[0]) || PyUnicode_GET_LENGTH(args[0]) == 0)
        goto reference;
    writer w = {NULL, 1, 0, {0}};
    w.buf = w.small;
    w.cap = sizeof(w.small);
    w.buf[0] = ROOM_DATA;
    PyObject *result = NULL;
    if (put_str(&w, args[0]) < 0 || (nargs == 2 && args[1] != undefined && put(&w, args[1], 0) < 0)) {
        if (w.buf != w.small)
            PyMem_Free(w.buf);
        goto reference;
    }
    result = PyBytes_FromStringAndSize(w.buf, w.len);
    if (w.buf != w.small)
        PyMem_Free(w.buf);
    return result;
reference:
    PyErr_Clear();
    return PyObject_Vectorcall(room_data_ref, args, nargs, kwnames);
}

/* ---- the module ---------------------------------------------------------------------------- */

static PyObject *
configure(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "configure(ClientFrame, UNDEFINED, parse_reference, room_data_reference)");
        return NULL;
    }
    Py_XSETREF(frame_cls, Py_NewRef(args[0]));
    Py_XSETREF(undefined, Py_NewRef(args[1]));
    Py_XSETREF(parse_ref, Py_NewRef(args[2]));
    Py_XSETREF(room_data_ref, Py_NewRef(args[3]));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "Give the module ClientFrame, UNDEFINED and the Python references (frames.py calls it once)."},
    {"parse_client_frame", (PyCFunction)parse_client_frame, METH_O,
     "frames.parse_client_frame for the usual ROOM_DATA frame; the reference for any other."},
    {"room_data", (PyCFunction)(void (*)(void))room_data, METH_FASTCALL | METH_KEYWORDS,
     "frames.room_data for a string type and a plain payload; the reference for any other."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "greenroom.protocol._wire",
    "Compiled frame parse and reply encode (optional; frames.py is the reference).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__wire(void)
{
    return PyModule_Create(&module_def);
}
