/* Shared by the translation units of greenroom.schema._speedups (see _speedups.c for what the
 * module is and why it is C). Small helpers used on the hot paths are ``static inline`` here so
 * that every unit can inline them; state and larger functions live in one unit each and are
 * declared here. */
#ifndef GREENROOM_SPEEDUPS_H
#define GREENROOM_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if PY_VERSION_HEX < 0x030B0000      /* the float packers became public in 3.11 */
#define PyFloat_Pack4(x, p, le) _PyFloat_Pack4((x), (unsigned char *)(p), (le))
#define PyFloat_Pack8(x, p, le) _PyFloat_Pack8((x), (unsigned char *)(p), (le))
#endif

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

/* the units share these names inside the shared object only */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* ---- what configure() and the module's init set (defined in _speedups.c) ------------------ */

extern Py_ssize_t off_ref, off_kind, off_tracker, off_refid, off_rid, off_head, off_pending, off_new,
    off_full, off_cleared, off_len0;
extern PyObject *write_pending_fn, *emit_new_fn, *type_id_suffix_fn, *node_type, *full_block_fn,
    *fast_string_fn;
extern PyObject *no_children;      /* encoder._NO_CHILDREN, shared by leaf blocks */
extern PyObject *s_gr, *s_gr_patch, *s_queue, *s_type_ids, *s_delete_op, *s_dna_op,
    *s_schema_cls, *s_state, *s_new_nodes, *s_next_refid;
extern PyObject *absent_marker, *present_marker;
extern int configured;

/* ---- small helpers ---------------------------------------------------------------------- */

/* Make room for ``n`` more bytes of ``out`` (its size is unchanged) and return where they go.
 *
 * Why not PyByteArray_Resize on every write: it grows the buffer by an eighth, so a patch of a few
 * KB written a few bytes at a time reallocates dozens of times (it showed in the profile). Here
 * the capacity doubles. The size is then set back directly, which keeps bytearray's invariants
 * (ob_alloc > size, a NUL after the data); ``out`` is always a bytearray this module or encoder.py
 * created, never one with exported buffers (whose size must not change under a reader). */
static inline char *
reserve(PyObject *out, Py_ssize_t n)
{
    PyByteArrayObject *b = (PyByteArrayObject *)out;
    Py_ssize_t len = Py_SIZE(out);
    if ((b->ob_start - b->ob_bytes) + len + n + 1 > b->ob_alloc) {
        if (n > PY_SSIZE_T_MAX / 2 - len) {
            PyErr_NoMemory();
            return NULL;
        }
        Py_ssize_t cap = b->ob_alloc < PY_SSIZE_T_MAX / 4 ? 2 * b->ob_alloc : len + n;
        if (cap < len + n)
            cap = len + n;
        if (cap < 256)
            cap = 256;
        if (PyByteArray_Resize(out, cap) < 0)     /* moves the data to the buffer's start */
            return NULL;
        Py_SET_SIZE(out, len);
        b->ob_start[len] = '\0';
    }
    return b->ob_start + len;
}

/* Count ``n`` bytes written at reserve()'s pointer as part of ``out``. */
static inline void
commit(PyObject *out, Py_ssize_t n)
{
    PyByteArrayObject *b = (PyByteArrayObject *)out;
    Py_ssize_t len = Py_SIZE(out) + n;
    Py_SET_SIZE(out, len);
    b->ob_start[len] = '\0';
}

static inline int
put(PyObject *out, const char *data, Py_ssize_t n)
{
    char *dst = reserve(out, n);
    if (dst == NULL)
        return -1;
    if (n <= 8) {               /* op bytes and SWITCH headers: no call to memcpy */
        for (Py_ssize_t i = 0; i < n; i++)
            dst[i] = data[i];
    } else {
        memcpy(dst, data, n);
    }
    commit(out, n);
    return 0;
}

static inline int
put_bytes(PyObject *out, PyObject *b)
{
    if (!PyBytes_CheckExact(b)) {
        PyErr_Format(PyExc_TypeError, "an encoder returned %.100s, not bytes", Py_TYPE(b)->tp_name);
        return -1;
    }
    return put(out, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b));
}

/* Drop what was written after ``len`` (a block that turned out empty). The capacity is kept:
 * PyByteArray_Resize would give it back when shrinking below half, then grow again. */
static inline int
trim(PyObject *out, Py_ssize_t len)
{
    if (len < 0 || len > Py_SIZE(out)) {
        PyErr_SetString(PyExc_SystemError, "trim beyond the bytearray");
        return -1;
    }
    Py_SET_SIZE(out, len);
    ((PyByteArrayObject *)out)->ob_start[len] = '\0';
    return 0;
}

/* Replace a slot's value (the slot holds a strong reference). */
static inline void
set_slot(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    PyObject *old = SLOT(obj, off);
    Py_INCREF(value);
    SLOT(obj, off) = value;
    Py_XDECREF(old);
}

static inline PyObject *
get_slot(PyObject *obj, Py_ssize_t off, const char *name)
{
    PyObject *v = SLOT(obj, off);
    if (v == NULL)
        PyErr_Format(PyExc_AttributeError, "Node.%s is not set", name);
    return v;
}

/* ---- ints ---------------------------------------------------------------------------------- */

/* The value of an int that fits in a long, without a call for the small ones (slot indices,
 * markers and refIds are small). Anything else goes through PyLong_AsLong, errors included. */
/* 1 and the value in ``*out`` if ``obj`` is an exact int of at most one internal digit (30
 * bits: slot indices, markers, refIds and most game numbers), read without a call; else 0. */
static inline int
compact_long(PyObject *obj, long *out)
{
    if (!PyLong_CheckExact(obj))
        return 0;
#if PY_VERSION_HEX >= 0x030C0000
    if (!PyUnstable_Long_IsCompact((PyLongObject *)obj))
        return 0;
    *out = (long)PyUnstable_Long_CompactValue((PyLongObject *)obj);
    return 1;
#else
    /* 3.11's layout: the sign and digit count in ob_size, 30-bit digits in ob_digit */
    Py_ssize_t size = Py_SIZE(obj);
    if (size < -1 || size > 1)
        return 0;
    long v = size == 0 ? 0 : (long)((PyLongObject *)obj)->ob_digit[0];
    *out = size < 0 ? -v : v;
    return 1;
#endif
}

/* The value of an int that fits in a long (PyLong_AsLong, with compact_long's shortcut). */
static inline int
small_long(PyObject *obj, long *out)
{
    if (compact_long(obj, out))
        return 0;
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static inline int
small_int(PyObject *obj, Py_ssize_t *out)
{
    long v;
    if (small_long(obj, &v) < 0)
        return -1;
    *out = (Py_ssize_t)v;
    return 0;
}

/* ---- number encoding (PROTOCOL §5.1), byte for byte protocol.primitives.encode_number ----- */

/* Integers in int32 range. Returns the number of bytes written to buf (at least 9 long). */
static inline int
int_bytes(long v, char *buf)
{
    unsigned char *b = (unsigned char *)buf;
    if (v >= 0) {
        if (v < 0x80) { b[0] = (unsigned char)v; return 1; }
        if (v < 0x100) { b[0] = 0xcc; b[1] = (unsigned char)v; return 2; }
        if (v < 0x10000) { b[0] = 0xcd; b[1] = v & 0xff; b[2] = (v >> 8) & 0xff; return 3; }
        b[0] = 0xce;
        for (int i = 0; i < 4; i++) b[1 + i] = (v >> (8 * i)) & 0xff;
        return 5;
    }
    if (v >= -0x20) { b[0] = (unsigned char)(0xe0 | (v + 0x20)); return 1; }
    if (v >= -0x80) { b[0] = 0xd0; b[1] = (unsigned char)(v & 0xff); return 2; }
    if (v >= -0x8000) { b[0] = 0xd1; b[1] = v & 0xff; b[2] = (v >> 8) & 0xff; return 3; }
    unsigned long u = (unsigned long)v;
    b[0] = 0xd2;
    for (int i = 0; i < 4; i++) b[1 + i] = (u >> (8 * i)) & 0xff;
    return 5;
}

/* A plain int or float: its bytes in buf, the count returned; 0 means "not a common case, ask
 * the Python encoder" (big ints, NaN, infinities, subclasses); -1 is an error. */
static inline int
number_bytes(PyObject *value, char *buf)
{
    if (PyLong_CheckExact(value)) {
        long small;
        if (compact_long(value, &small))      /* 30 bits at most: in int32 range */
            return int_bytes(small, buf);
        int overflow = 0;
        long v = PyLong_AsLongAndOverflow(value, &overflow);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (overflow || v < -2147483648L || v > 2147483647L)
            return 0;
        return int_bytes(v, buf);
    }
    if (PyFloat_CheckExact(value)) {
        double v = PyFloat_AS_DOUBLE(value);
        if (!isfinite(v))
            return 0;
        if (v >= -2147483648.0 && v <= 2147483647.0) {
            /* in range, so the conversion is defined; it truncates, so it round-trips exactly
             * when v is integral (v == floor(v), without the libm call); -0.0 gives 0 */
            long iv = (long)v;
            if ((double)iv == v)
                return int_bytes(iv, buf);
        }
        if (fabs(v) < 3.5e38) {
            float f = (float)v;
            if (!isinf(f) && fabs((double)f - v) < 1e-4) {
                buf[0] = (char)0xca;
#if PY_LITTLE_ENDIAN && FLT_RADIX == 2 && FLT_MANT_DIG == 24 && FLT_MAX_EXP == 128
                /* IEEE single, little-endian: what PyFloat_Pack4(v, buf + 1, 1) does (f is
                 * finite, so there is no overflow to report) */
                memcpy(buf + 1, &f, 4);
#else
                if (PyFloat_Pack4(v, buf + 1, 1) < 0)
                    return -1;
#endif
                return 5;
            }
        }
        buf[0] = (char)0xcb;
        if (PyFloat_Pack8(v, buf + 1, 1) < 0)
            return -1;
        return 9;
    }
    return 0;
}

static inline int
put_encoded(PyObject *out, PyObject *encode, PyObject *value)
{
    PyObject *b = PyObject_CallOneArg(encode, value);
    if (b == NULL)
        return -1;
    int r = put_bytes(out, b);
    Py_DECREF(b);
    return r;
}

static inline int
put_number(PyObject *out, PyObject *encode, PyObject *value)
{
    char *dst = reserve(out, 9);              /* number_bytes writes at most 9 */
    if (dst == NULL)
        return -1;
    int n = number_bytes(value, dst);
    if (n < 0)
        return -1;
    if (n == 0)
        return put_encoded(out, encode, value);
    commit(out, n);
    return 0;
}

/* ``cls._gr_patch`` unpacked into C once per class: what the loops read per field, without
 * tuple indexing and int conversions on every operation (they showed in the profile). */
enum { FIELD_STRUCT, FIELD_PRIMITIVE, FIELD_NUMBER, FIELD_STRING };

typedef struct {
    PyObject *name, *add_op, *encode, *fd;   /* borrowed from ``table``, which the object holds */
    int kind;
} FieldInfo;

/* types.fast_string for the common case, an ASCII str shorter than 32 bytes: its length byte and
 * its characters (which are its UTF-8 bytes). Anything else goes to the Python encoder. */
static inline int
put_string(PyObject *out, PyObject *encode, PyObject *value)
{
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value)
            || PyUnicode_GET_LENGTH(value) >= 32)
        return put_encoded(out, encode, value);
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    char *dst = reserve(out, 1 + n);
    if (dst == NULL)
        return -1;
    dst[0] = (char)(0xa0 | n);
    memcpy(dst + 1, PyUnicode_DATA(value), n);
    commit(out, 1 + n);
    return 0;
}

/* A primitive field's value: numbers and short ASCII strings are encoded here, the rest by
 * their Python encoder. */
static inline int
put_primitive(PyObject *out, const FieldInfo *f, PyObject *value)
{
    switch (f->kind) {
    case FIELD_NUMBER:
        return put_number(out, f->encode, value);
    case FIELD_STRING:
        return put_string(out, f->encode, value);
    default:
        return put_encoded(out, f->encode, value);
    }
}

/* ``d[name]`` (borrowed); a missing key is a KeyError (a field is always in the __dict__). */
static inline PyObject *
field_value(PyObject *d, PyObject *name)
{
    PyObject *value = PyDict_GetItemWithError(d, name);
    if (value == NULL && !PyErr_Occurred())
        PyErr_SetObject(PyExc_KeyError, name);
    return value;
}

/* ``d5 <typeId>`` after a child reference whose class is not the declared one. */
static inline int
put_type_suffix(PyObject *out, PyObject *value, PyObject *fd, PyObject *type_ids)
{
    PyObject *declared = PyObject_GetAttr(fd, s_schema_cls);
    if (declared == NULL)
        return -1;
    int r = 0;
    if (declared != Py_None && (PyObject *)Py_TYPE(value) != declared) {
        PyObject *b = PyObject_CallFunctionObjArgs(type_id_suffix_fn, value, declared, type_ids, NULL);
        r = b == NULL ? -1 : put_bytes(out, b);
        Py_XDECREF(b);
    }
    Py_DECREF(declared);
    return r;
}

static inline int
is_true_slot(PyObject *node, Py_ssize_t off, const char *name)
{
    PyObject *v = get_slot(node, off, name);
    if (v == NULL)
        return -1;
    if (v == Py_True) return 1;
    if (v == Py_False) return 0;
    return PyObject_IsTrue(v);
}

typedef struct {
    PyObject_HEAD
    PyObject *table;
    Py_ssize_t n;
    FieldInfo fields[1];                      /* n of them (n >= 1: see fields_new) */
} Fields;

/* ``cls``'s Fields, cached (sp_fields.c); a new reference. */
Fields *class_fields(PyObject *cls);
extern PyTypeObject FieldsType;

/* A child structure's Node, checked: a field holds a Schema/collection whose ``_gr`` is a Node. */
static inline PyObject *
child_node(PyObject *value)
{
    PyObject *child = PyObject_GetAttr(value, s_gr);
    if (child != NULL && !PyObject_TypeCheck(child, (PyTypeObject *)node_type)) {
        PyErr_Format(PyExc_TypeError, "%.100s._gr is not a Node", Py_TYPE(value)->tp_name);
        Py_CLEAR(child);
    }
    return child;
}

static inline int
check_configured(void)
{
    if (!configured)
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() was not called");
    return configured;
}

/* Put ``failed`` (a new reference or NULL) in where[0], keeping the error being raised. */
static inline void
report_where(PyObject *where, PyObject *failed)
{
    if (failed == NULL)
        return;
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    if (PyList_SetItem(where, 0, failed) < 0)   /* steals ``failed`` even when it fails */
        PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
}

/* ---- a Schema instance's pending operations (sp_pending.c) ------------------------------- */

#define PENDING_MAX 64                /* > fields.MAX_FIELDS: one slot per field index */

typedef struct {
    PyObject_HEAD
    int n;                            /* recorded indices */
    uint64_t present;                 /* bit i: index i is recorded */
    unsigned char order[PENDING_MAX]; /* the indices in recording order */
    long long markers[PENDING_MAX];   /* by index: ABSENT, PRESENT or a refId (changes.py) */
} Pending;

extern PyTypeObject PendingType;
Pending *pending_new(void);

static inline int
pending_has(const Pending *p, int i)
{
    return (p->present >> i) & 1;
}

/* ``p[i] = marker``, dict-like: a new index goes last, a recorded one keeps its place. */
static inline void
pending_set(Pending *p, int i, long long marker)
{
    if (!pending_has(p, i)) {
        p->present |= (uint64_t)1 << i;
        p->order[p->n++] = (unsigned char)i;
    }
    p->markers[i] = marker;
}

/* ---- defined in the other units --------------------------------------------------------- */

/* sp_collections.c */
int collection_pending(PyObject *node, long kind, PyObject *pending, PyObject *out,
                       PyObject *type_ids, PyObject *children);
PyObject *configure_collections(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
int collections_init(void);
/* sp_patch.c */
PyObject *patch_loop(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *encode_patch(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *write_schema_pending(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* sp_full.c */
PyObject *schema_block_of(PyObject *node, PyObject *type_ids);
PyObject *schema_block(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *encode_all_v5(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* sp_setattr.c */
extern PyTypeObject FastSetattrType;

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif /* GREENROOM_SPEEDUPS_H */
