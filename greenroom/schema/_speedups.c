/* Compiled hot paths of greenroom.schema: the patch loop, a Schema's full-state block and the
 * primitive-field assignment.
 *
 * Why C: in pure Python the per-operation bookkeeping of a patch (iterating the pending ops of
 * the touched structures, reading the values, appending bytes) costs more than three times what
 * @colyseus/schema spends on the whole encode, so the pure-Python encoder cannot get within 2x of
 * it however it is arranged. Each function here does exactly what its Python twin in encoder.py
 * or schema.py does (the tests run both and compare bytes); anything unusual (maps and arrays,
 * structures introduced this tick, values that are not plain int/float, errors) is handed back to
 * those Python functions, so this file only has to be right for the common case.
 *
 * Node is a Python class with __slots__: configure() reads the slot offsets from its member
 * descriptors once, so a slot is read as a pointer, not through attribute lookup.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <float.h>
#include <math.h>
#include <string.h>

#if PY_VERSION_HEX < 0x030B0000      /* the float packers became public in 3.11 */
#define PyFloat_Pack4(x, p, le) _PyFloat_Pack4((x), (unsigned char *)(p), (le))
#define PyFloat_Pack8(x, p, le) _PyFloat_Pack8((x), (unsigned char *)(p), (le))
#endif

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static Py_ssize_t off_ref, off_kind, off_tracker, off_refid, off_rid, off_head, off_pending, off_new,
    off_full, off_cleared, off_len0;
static PyObject *write_pending_fn, *emit_new_fn, *type_id_suffix_fn, *node_type, *full_block_fn,
    *fast_string_fn;
static PyObject *no_children;      /* encoder._NO_CHILDREN, shared by leaf blocks */
static PyObject *s_gr, *s_gr_patch, *s_queue, *s_type_ids, *s_delete_op, *s_dna_op,
    *s_schema_cls, *s_state, *s_new_nodes, *s_next_refid;
static PyObject *absent_marker, *present_marker;
static int configured = 0;

/* ---- small helpers ---------------------------------------------------------------------- */

/* Make room for ``n`` more bytes of ``out`` (its size is unchanged) and return where they go.
 *
 * Why not PyByteArray_Resize on every write: it grows the buffer by an eighth, so a patch of a few
 * KB written a few bytes at a time reallocates dozens of times (it showed in the profile). Here
 * the capacity doubles. The size is then set back directly, which keeps bytearray's invariants
 * (ob_alloc > size, a NUL after the data); ``out`` is always a bytearray this module or encoder.py
 * created, never one with exported buffers (whose size must not change under a reader). */
static char *
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

static int
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

static int
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
static int
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
static void
set_slot(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    PyObject *old = SLOT(obj, off);
    Py_INCREF(value);
    SLOT(obj, off) = value;
    Py_XDECREF(old);
}

static PyObject *
get_slot(PyObject *obj, Py_ssize_t off, const char *name)
{
    PyObject *v = SLOT(obj, off);
    if (v == NULL)
        PyErr_Format(PyExc_AttributeError, "Node.%s is not set", name);
    return v;
}

static Py_ssize_t
slot_offset(PyObject *cls, const char *name)
{
    PyObject *d = PyObject_GetAttrString(cls, name);
    Py_ssize_t off = -1;
    if (d == NULL)
        return -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type)) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        if (m->type == T_OBJECT_EX)
            off = m->offset;
    }
    Py_DECREF(d);
    if (off < 0)
        PyErr_Format(PyExc_TypeError, "Node.%s is not an object slot", name);
    return off;
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
static int
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
static int
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

static int
put_encoded(PyObject *out, PyObject *encode, PyObject *value)
{
    PyObject *b = PyObject_CallOneArg(encode, value);
    if (b == NULL)
        return -1;
    int r = put_bytes(out, b);
    Py_DECREF(b);
    return r;
}

static int
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
static int
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
static PyObject *
field_value(PyObject *d, PyObject *name)
{
    PyObject *value = PyDict_GetItemWithError(d, name);
    if (value == NULL && !PyErr_Occurred())
        PyErr_SetObject(PyExc_KeyError, name);
    return value;
}

/* ``d5 <typeId>`` after a child reference whose class is not the declared one. */
static int
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

static int
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

static void
fields_dealloc(Fields *self)
{
    Py_XDECREF(self->table);
    PyObject_Free(self);
}

/* Only this module creates and reads them; holding no references but a tuple of str/bytes/
 * functions/Fields (a Field never points back at a Fields), they need no GC support. */
static PyTypeObject FieldsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "greenroom.schema._speedups.Fields",
    .tp_doc = "A Schema class's field table as the compiled loops read it.",
    .tp_basicsize = sizeof(Fields),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)fields_dealloc,
};

static Fields *
fields_new(PyObject *cls)
{
    PyObject *table = PyObject_GetAttr(cls, s_gr_patch);
    if (table == NULL)
        return NULL;
    int ok = PyTuple_CheckExact(table);
    for (Py_ssize_t i = 0; ok && i < PyTuple_GET_SIZE(table); i++) {
        PyObject *entry = PyTuple_GET_ITEM(table, i);
        ok = PyTuple_CheckExact(entry) && PyTuple_GET_SIZE(entry) == 5
             && PyBytes_CheckExact(PyTuple_GET_ITEM(entry, 1));
    }
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%.100s._gr_patch is not a tuple of 5-tuples",
                     ((PyTypeObject *)cls)->tp_name);
        Py_DECREF(table);
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(table);
    size_t size = sizeof(Fields) + (size_t)(n > 1 ? n - 1 : 0) * sizeof(FieldInfo);
    Fields *self = (Fields *)PyObject_Malloc(size);
    if (self == NULL) {
        Py_DECREF(table);
        PyErr_NoMemory();
        return NULL;
    }
    PyObject_Init((PyObject *)self, &FieldsType);
    self->table = table;
    self->n = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* (name, ADD byte, 1 number / 0 other primitive / None structure, encode, Field) */
        PyObject *entry = PyTuple_GET_ITEM(table, i);
        PyObject *number = PyTuple_GET_ITEM(entry, 2);
        FieldInfo *f = &self->fields[i];
        f->name = PyTuple_GET_ITEM(entry, 0);
        f->add_op = PyTuple_GET_ITEM(entry, 1);
        f->encode = PyTuple_GET_ITEM(entry, 3);
        f->fd = PyTuple_GET_ITEM(entry, 4);
        if (number == Py_None) {
            f->kind = FIELD_STRUCT;
        } else {
            int is_number = PyObject_IsTrue(number);   /* as encoder.schema_block reads it */
            if (is_number < 0) {
                Py_DECREF(self);
                return NULL;
            }
            f->kind = is_number ? FIELD_NUMBER
                      : f->encode == fast_string_fn ? FIELD_STRING : FIELD_PRIMITIVE;
        }
    }
    return self;
}

/* The Fields of the last few Schema classes (a state has a handful), each held with its class
 * so that the address cannot be reused by another class. Replaced round-robin when full. */
#define FIELDS_CACHE 16
static PyObject *fields_cls[FIELDS_CACHE];
static Fields *fields_cache[FIELDS_CACHE];
static int fields_next;

/* ``cls``'s Fields (new reference: a Python callback could evict it from the cache). */
static Fields *
class_fields(PyObject *cls)
{
    for (int i = 0; i < FIELDS_CACHE; i++) {
        if (fields_cls[i] == cls) {
            Py_INCREF(fields_cache[i]);
            return fields_cache[i];
        }
    }
    Fields *f = fields_new(cls);
    if (f == NULL)
        return NULL;
    int i = fields_next;
    fields_next = (fields_next + 1) % FIELDS_CACHE;
    Py_XSETREF(fields_cls[i], Py_NewRef(cls));
    Py_INCREF(f);
    Py_XSETREF(fields_cache[i], f);
    return f;
}

/* A child structure's Node, checked: a field holds a Schema/collection whose ``_gr`` is a Node. */
static PyObject *
child_node(PyObject *value)
{
    PyObject *child = PyObject_GetAttr(value, s_gr);
    if (child != NULL && !PyObject_TypeCheck(child, (PyTypeObject *)node_type)) {
        PyErr_Format(PyExc_TypeError, "%.100s._gr is not a Node", Py_TYPE(value)->tp_name);
        Py_CLEAR(child);
    }
    return child;
}

/* ---- the patch loop ---------------------------------------------------------------------- */

/* The ops of one Schema instance (encoder.schema_pending).
 * Returns 1 if something was written, 0 if not, -1 on error. */
static int
schema_pending(PyObject *node, PyObject *pending, PyObject *out, PyObject *children,
               PyObject *type_ids)
{
    PyObject *ref = get_slot(node, off_ref, "ref");
    if (ref == NULL)
        return -1;
    PyObject *d = PyObject_GenericGetDict(ref, NULL);
    if (d == NULL)
        return -1;
    Fields *table = class_fields((PyObject *)Py_TYPE(ref));
    int wrote = 0;
    Py_ssize_t pos = 0;
    PyObject *key, *marker_obj;
    if (table == NULL)
        goto fail;
    while (PyDict_Next(pending, &pos, &key, &marker_obj)) {
        Py_ssize_t index;
        long marker;
        if (small_int(key, &index) < 0 || small_long(marker_obj, &marker) < 0)
            goto fail;
        if (index < 0 || index >= table->n) {
            PyErr_Format(PyExc_IndexError, "no field with index %zd", index);
            goto fail;
        }
        const FieldInfo *f = &table->fields[index];
        PyObject *value = field_value(d, f->name);
        if (value == NULL)
            goto fail;
        if (value == Py_None) {
            if (marker != -1) {            /* ABSENT */
                PyObject *op = PyObject_GetAttr(f->fd, s_delete_op);
                int r = op == NULL ? -1 : put_bytes(out, op);
                Py_XDECREF(op);
                if (r < 0)
                    goto fail;
                wrote = 1;
            }
            continue;
        }
        if (f->kind != FIELD_STRUCT) {
            if (put_bytes(out, f->add_op) < 0)
                goto fail;
            wrote = 1;
            if (put_primitive(out, f, value) < 0)
                goto fail;
            continue;
        }
        /* a structure */
        PyObject *child = child_node(value);
        if (child == NULL)
            goto fail;
        PyObject *refid = SLOT(child, off_refid);
        long child_refid = -1;
        if (refid != NULL && small_long(refid, &child_refid) < 0) {
            Py_DECREF(child);
            goto fail;
        }
        if (marker == child_refid) {
            Py_DECREF(child);
            continue;
        }
        int r;
        if (marker == -1) {
            r = put_bytes(out, f->add_op);
        } else {
            PyObject *op = PyObject_GetAttr(f->fd, s_dna_op);
            r = op == NULL ? -1 : put_bytes(out, op);
            Py_XDECREF(op);
        }
        PyObject *rid = r < 0 ? NULL : get_slot(child, off_rid, "rid");
        if (rid == NULL || put_bytes(out, rid) < 0 || put_type_suffix(out, value, f->fd, type_ids) < 0
                || PyList_Append(children, child) < 0) {
            Py_DECREF(child);
            goto fail;
        }
        Py_DECREF(child);
        wrote = 1;
    }
    Py_DECREF(table);
    Py_DECREF(d);
    return wrote;
fail:
    Py_XDECREF(table);
    Py_DECREF(d);
    return -1;
}

/* ---- maps and arrays (encoder.write_pending for MAP_NODE / ARRAY_NODE) --------------------- */

static PyObject *entry_head_fn, *fast_number_fn;
static long ref_kind = -1;                    /* fields.REF */
static unsigned char op_add, op_replace, op_delete, op_dna, op_clear;
static int collections_configured = 0;
static PyObject *s_gr_spec, *s_child, *s_kind, *s_schema, *s_primitive, *s_encode, *s_gr_items,
    *s_gr_keys, *s_gr_heads;

/* What write_pending reads about a collection's child type. */
typedef struct {
    int is_ref;
    PyObject *declared;      /* spec.schema (None for primitives) */
    FieldInfo prim;          /* for primitives: the encoder and how it is written */
} ChildType;

/* ``ref._gr_spec.child`` unpacked; 0 if it is not there (the caller then lets the Python
 * writer run, which raises what it raises), -1 on error. ``ct`` holds new references. */
static int
child_type(PyObject *ref, ChildType *ct)
{
    memset(ct, 0, sizeof(*ct));
    PyObject *spec = PyObject_GetAttr(ref, s_gr_spec);
    if (spec == NULL)
        return -1;
    if (spec == Py_None) {
        Py_DECREF(spec);
        return 0;
    }
    PyObject *child = PyObject_GetAttr(spec, s_child);
    Py_DECREF(spec);
    if (child == NULL)
        return -1;
    PyObject *kind = PyObject_GetAttr(child, s_kind);
    long k;
    int r = kind == NULL || small_long(kind, &k) < 0 ? -1 : 1;
    Py_XDECREF(kind);
    if (r == 1) {
        ct->is_ref = k == ref_kind;
        ct->declared = PyObject_GetAttr(child, s_schema);
        if (ct->declared == NULL)
            r = -1;
    }
    if (r == 1 && !ct->is_ref) {
        PyObject *primitive = PyObject_GetAttr(child, s_primitive);
        ct->prim.encode = primitive == NULL ? NULL : PyObject_GetAttr(primitive, s_encode);
        Py_XDECREF(primitive);
        if (ct->prim.encode == NULL)
            r = -1;
        else
            ct->prim.kind = ct->prim.encode == fast_number_fn ? FIELD_NUMBER
                            : ct->prim.encode == fast_string_fn ? FIELD_STRING : FIELD_PRIMITIVE;
    }
    Py_DECREF(child);
    if (r < 0) {
        Py_CLEAR(ct->declared);
        Py_CLEAR(ct->prim.encode);
    }
    return r;
}

static void
child_type_clear(ChildType *ct)
{
    Py_CLEAR(ct->declared);
    Py_CLEAR(ct->prim.encode);
}

/* One op byte and an integer (an index), as ``out += op; out += num(i)``. */
static int
put_op_index(PyObject *out, unsigned char op, Py_ssize_t i)
{
    char *dst = reserve(out, 10);
    if (dst == NULL)
        return -1;
    if (i < 0 || i > 2147483647) {            /* encode_number would not give an int here */
        PyErr_SetString(PyExc_OverflowError, "collection index beyond int32");
        return -1;
    }
    dst[0] = (char)op;
    commit(out, 1 + int_bytes((long)i, dst + 1));
    return 0;
}

/* A child structure's reference: its refId bytes, the type suffix if it is not of the declared
 * class, and the node in ``children``. ``value`` is the child Schema/collection. */
static int
put_child_ref(PyObject *out, PyObject *value, PyObject *child, PyObject *declared,
              PyObject *type_ids, PyObject *children)
{
    PyObject *rid = get_slot(child, off_rid, "rid");
    if (rid == NULL || put_bytes(out, rid) < 0)
        return -1;
    if ((PyObject *)Py_TYPE(value) != declared) {
        PyObject *b = PyObject_CallFunctionObjArgs(type_id_suffix_fn, value, declared, type_ids, NULL);
        int r = b == NULL ? -1 : put_bytes(out, b);
        Py_XDECREF(b);
        if (r < 0)
            return -1;
    }
    return PyList_Append(children, child);
}

/* The map entry's cached head (index + key), or encoder._entry_head's. */
static int
put_entry_head(PyObject *out, PyObject *ref, PyObject *heads, PyObject *key)
{
    PyObject *head = PyDict_GetItemWithError(heads, key);     /* borrowed */
    if (head == NULL && PyErr_Occurred())
        return -1;
    if (head != NULL && PyBytes_CheckExact(head) && PyBytes_GET_SIZE(head))
        return put_bytes(out, head);
    /* ``heads.get(key) or _entry_head(ref, key)`` */
    PyObject *fresh = PyObject_CallFunctionObjArgs(entry_head_fn, ref, key, NULL);
    int r = fresh == NULL ? -1 : put_bytes(out, fresh);
    Py_XDECREF(fresh);
    return r;
}

/* child_node(value) and ``marker == child.refid``: 1 (same), 0 (not; *child set), -1. */
static int
same_child(PyObject *value, long marker, PyObject **child)
{
    *child = child_node(value);
    if (*child == NULL)
        return -1;
    PyObject *refid = SLOT(*child, off_refid);
    long c = -1;
    if (refid != NULL && small_long(refid, &c) < 0) {
        Py_CLEAR(*child);
        return -1;
    }
    if (marker == c) {
        Py_CLEAR(*child);
        return 1;
    }
    return 0;
}

static int
map_pending(PyObject *ref, const ChildType *ct, PyObject *pending, PyObject *out,
            PyObject *type_ids, PyObject *children)
{
    PyObject *keys = PyObject_GetAttr(ref, s_gr_keys);
    PyObject *items = keys == NULL ? NULL : PyObject_GetAttr(ref, s_gr_items);
    PyObject *heads = items == NULL ? NULL : PyObject_GetAttr(ref, s_gr_heads);
    int r = heads == NULL ? -1 : 0;
    if (r == 0 && (!PyDict_CheckExact(keys) || !PyDict_CheckExact(items) || !PyDict_CheckExact(heads))) {
        PyErr_SetString(PyExc_TypeError, "a MapSchema's tables are not dicts");
        r = -1;
    }
    Py_ssize_t pos = 0;
    PyObject *idx_obj, *marker_obj;
    while (r == 0 && PyDict_Next(pending, &pos, &idx_obj, &marker_obj)) {
        long idx, marker;
        if (small_long(idx_obj, &idx) < 0 || small_long(marker_obj, &marker) < 0) {
            r = -1;
            break;
        }
        PyObject *key = PyDict_GetItemWithError(keys, idx_obj);      /* borrowed */
        if (key == NULL) {
            if (PyErr_Occurred())
                r = -1;
            else if (marker != -1)                                   /* not ABSENT */
                r = put_op_index(out, op_delete, idx);
            continue;
        }
        PyObject *value = PyDict_GetItemWithError(items, key);       /* borrowed */
        if (value == NULL) {
            if (!PyErr_Occurred())
                PyErr_SetObject(PyExc_KeyError, key);
            r = -1;
            break;
        }
        Py_INCREF(key);           /* held across the Python calls below */
        Py_INCREF(value);
        if (ct->is_ref) {
            PyObject *child;
            int same = same_child(value, marker, &child);
            if (same < 0) {
                r = -1;
            } else if (!same) {
                char op = (char)(marker == -1 ? op_add : op_dna);
                if (put(out, &op, 1) < 0 || put_entry_head(out, ref, heads, key) < 0
                        || put_child_ref(out, value, child, ct->declared, type_ids, children) < 0)
                    r = -1;
                Py_DECREF(child);
            }
        } else if (marker == -1) {
            char op = (char)op_add;
            if (put(out, &op, 1) < 0 || put_entry_head(out, ref, heads, key) < 0
                    || put_primitive(out, &ct->prim, value) < 0)
                r = -1;
        } else {
            if (put_op_index(out, op_replace, idx) < 0 || put_primitive(out, &ct->prim, value) < 0)
                r = -1;
        }
        Py_DECREF(key);
        Py_DECREF(value);
    }
    Py_XDECREF(keys);
    Py_XDECREF(items);
    Py_XDECREF(heads);
    return r;
}

/* encoder._write_array_adds: ADD of every item from ``start``. */
static int
array_adds(PyObject *items, Py_ssize_t start, const ChildType *ct, PyObject *out,
           PyObject *type_ids, PyObject *children)
{
    Py_ssize_t n = PyList_GET_SIZE(items);        /* range(start, len(items)) is fixed */
    for (Py_ssize_t i = start; i < n; i++) {
        if (i >= PyList_GET_SIZE(items)) {
            PyErr_SetString(PyExc_IndexError, "list index out of range");
            return -1;
        }
        PyObject *value = PyList_GET_ITEM(items, i);
        Py_INCREF(value);
        int r = put_op_index(out, op_add, i);
        if (r == 0) {
            if (ct->is_ref) {
                PyObject *child = child_node(value);
                r = child == NULL ? -1
                    : put_child_ref(out, value, child, ct->declared, type_ids, children);
                Py_XDECREF(child);
            } else {
                r = put_primitive(out, &ct->prim, value);
            }
        }
        Py_DECREF(value);
        if (r < 0)
            return -1;
    }
    return 0;
}

static int
array_pending(PyObject *node, PyObject *ref, const ChildType *ct, PyObject *pending,
              PyObject *out, PyObject *type_ids, PyObject *children)
{
    PyObject *items = PyObject_GetAttr(ref, s_gr_items);
    if (items == NULL)
        return -1;
    int r = 0;
    if (!PyList_CheckExact(items)) {
        PyErr_SetString(PyExc_TypeError, "an ArraySchema's items are not a list");
        r = -1;
        goto done;
    }
    int cleared = is_true_slot(node, off_cleared, "cleared");
    if (cleared < 0) {
        r = -1;
        goto done;
    }
    if (cleared) {
        char op = (char)op_clear;
        r = put(out, &op, 1) < 0 ? -1 : array_adds(items, 0, ct, out, type_ids, children);
        goto done;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    Py_ssize_t pos = 0;
    PyObject *i_obj, *marker_obj;
    while (r == 0 && PyDict_Next(pending, &pos, &i_obj, &marker_obj)) {
        long i, marker;
        if (small_long(i_obj, &i) < 0 || small_long(marker_obj, &marker) < 0) {
            r = -1;
            break;
        }
        if (i >= n) {
            r = put_op_index(out, op_delete, i);
            continue;
        }
        if (i < 0 || i >= PyList_GET_SIZE(items)) {      /* items[i] as Python would index */
            PyErr_SetString(PyExc_IndexError, "list index out of range");
            r = -1;
            break;
        }
        PyObject *value = PyList_GET_ITEM(items, i);
        Py_INCREF(value);
        if (ct->is_ref) {
            PyObject *child;
            int same = same_child(value, marker, &child);
            if (same < 0) {
                r = -1;
            } else if (!same) {
                if (put_op_index(out, op_dna, i) < 0
                        || put_child_ref(out, value, child, ct->declared, type_ids, children) < 0)
                    r = -1;
                Py_DECREF(child);
            }
        } else if (put_op_index(out, op_replace, i) < 0 || put_primitive(out, &ct->prim, value) < 0) {
            r = -1;
        }
        Py_DECREF(value);
    }
    if (r == 0) {
        PyObject *len0_obj = get_slot(node, off_len0, "len0");
        long len0;
        if (len0_obj == NULL || small_long(len0_obj, &len0) < 0)
            r = -1;
        else if (n > len0)
            r = array_adds(items, len0 < 0 ? 0 : len0, ct, out, type_ids, children);
    }
done:
    Py_DECREF(items);
    return r;
}

/* write_pending for a MapSchema (kind 1) or ArraySchema (kind 2); the Python writer when this
 * module was not given what it needs, or when the collection has no child type. */
static int
collection_pending(PyObject *node, long kind, PyObject *pending, PyObject *out,
                   PyObject *type_ids, PyObject *children)
{
    if (collections_configured) {
        PyObject *ref = get_slot(node, off_ref, "ref");
        if (ref == NULL)
            return -1;
        Py_INCREF(ref);
        ChildType ct;
        int have = child_type(ref, &ct);
        int r = have;
        if (have > 0) {
            r = kind == 1 ? map_pending(ref, &ct, pending, out, type_ids, children)
                          : array_pending(node, ref, &ct, pending, out, type_ids, children);
            child_type_clear(&ct);
        }
        Py_DECREF(ref);
        if (have != 0)
            return r < 0 ? -1 : 0;
    }
    PyObject *res = PyObject_CallFunctionObjArgs(write_pending_fn, node, pending, out, type_ids,
                                                 children, NULL);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* configure_collections(entry_head, fast_number, REF, OP_ADD, OP_REPLACE, OP_DELETE,
 * OP_DELETE_AND_ADD, OP_CLEAR) */
static PyObject *
configure_collections(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "configure_collections(entry_head, fast_number, REF, "
                                         "OP_ADD, OP_REPLACE, OP_DELETE, OP_DELETE_AND_ADD, OP_CLEAR)");
        return NULL;
    }
    long values[6];
    for (int i = 0; i < 6; i++) {
        values[i] = PyLong_AsLong(args[2 + i]);
        if (values[i] == -1 && PyErr_Occurred())
            return NULL;
        if (i > 0 && (values[i] < 0 || values[i] > 255)) {
            PyErr_SetString(PyExc_ValueError, "an op code is a byte");
            return NULL;
        }
    }
    Py_XSETREF(entry_head_fn, Py_NewRef(args[0]));
    Py_XSETREF(fast_number_fn, Py_NewRef(args[1]));
    ref_kind = values[0];
    op_add = (unsigned char)values[1];
    op_replace = (unsigned char)values[2];
    op_delete = (unsigned char)values[3];
    op_dna = (unsigned char)values[4];
    op_clear = (unsigned char)values[5];
    collections_configured = 1;
    Py_RETURN_NONE;
}

/* Structures attached this tick that a block introduced: written whole, in order. */
static int
emit_children(PyObject *children, PyObject *out, PyObject *type_ids)
{
    Py_ssize_t n = PyList_GET_SIZE(children);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *child = PyList_GET_ITEM(children, i);
        int is_new = is_true_slot(child, off_new, "new");
        if (is_new < 0)
            return -1;
        if (is_new) {
            PyObject *r = PyObject_CallFunctionObjArgs(emit_new_fn, child, out, type_ids, NULL);
            if (r == NULL)
                return -1;
            Py_DECREF(r);
        }
    }
    return PyList_SetSlice(children, 0, n, NULL);
}

/* The loop over tracker.queue (encoder.patch_loop). On an error, ``*failed`` is the node being
 * written (a new reference, for the message), or NULL if the error is not about one node. */
static int
run_loop(PyObject *tracker, PyObject *queue, PyObject *type_ids, PyObject *out,
         PyObject **failed)
{
    *failed = NULL;
    PyObject *children = PyList_New(0);
    if (children == NULL)
        return -1;
    PyObject *node = NULL;
    /* the queue only grows while we run (a Python helper never touches it), but index it
     * afresh on every turn all the same */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(queue); i++) {
        node = PyList_GET_ITEM(queue, i);
        if (!PyObject_TypeCheck(node, (PyTypeObject *)node_type)) {
            node = NULL;
            PyErr_SetString(PyExc_TypeError, "tracker.queue holds a non-Node");
            goto fail;
        }
        Py_INCREF(node);                        /* held while Python code may run */
        PyObject *pending = SLOT(node, off_pending);
        PyObject *owner = SLOT(node, off_tracker);
        int is_new = is_true_slot(node, off_new, "new");
        if (is_new < 0)
            goto fail;
        if (pending == NULL || pending == Py_None || is_new || owner != tracker) {
            Py_CLEAR(node);
            continue;
        }
        if (!PyDict_CheckExact(pending)) {
            PyErr_SetString(PyExc_TypeError, "Node.pending is not a dict");
            goto fail;
        }
        Py_INCREF(pending);
        set_slot(node, off_pending, Py_None);
        set_slot(node, off_full, Py_None);     /* its full-state block changed (changes.py) */
        Py_ssize_t start = PyByteArray_GET_SIZE(out);
        PyObject *refid = get_slot(node, off_refid, "refid");
        PyObject *kind = get_slot(node, off_kind, "kind");
        long refid_value = -1;
        int r = (refid == NULL || kind == NULL || small_long(refid, &refid_value) < 0) ? -1 : 0;
        /* the SWITCH header, unless this is the root's block at the very start */
        if (r == 0 && (start != 0 || refid_value != 0)) {
            if (refid_value >= 0 && refid_value <= 2147483647L) {
                /* node.head is b"\xff" + encode_number(refid) (changes.attach): written from the
                 * refId we hold, rather than read from the bytes object (a cache miss per
                 * node, in the profile) */
                char *dst = reserve(out, 10);
                if (dst == NULL) {
                    r = -1;
                } else {
                    dst[0] = (char)0xff;
                    commit(out, 1 + int_bytes(refid_value, dst + 1));
                }
            } else {
                PyObject *head = get_slot(node, off_head, "head");
                r = head == NULL ? -1 : put_bytes(out, head);
            }
        }
        if (r == 0) {
            long k;
            if (small_long(kind, &k) < 0) {
                r = -1;
            } else if (k) {                     /* MAP_NODE / ARRAY_NODE */
                Py_ssize_t mark = PyByteArray_GET_SIZE(out);
                if (collection_pending(node, k, pending, out, type_ids, children) < 0) {
                    r = -1;
                } else {
                    set_slot(node, off_cleared, Py_False);
                    if (PyByteArray_GET_SIZE(out) == mark)
                        r = trim(out, start);
                }
            } else {                            /* SCHEMA_NODE */
                int wrote = schema_pending(node, pending, out, children, type_ids);
                if (wrote < 0)
                    r = -1;
                else if (!wrote)
                    r = trim(out, start);
            }
        }
        Py_DECREF(pending);
        if (r < 0)
            goto fail;
        if (PyList_GET_SIZE(children) && emit_children(children, out, type_ids) < 0)
            goto fail;
        Py_CLEAR(node);
    }
    Py_DECREF(children);
    return 0;
fail:
    *failed = node;                             /* our reference passes to the caller */
    Py_DECREF(children);
    return -1;
}

static int
check_configured(void)
{
    if (!configured)
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() was not called");
    return configured;
}

/* Put ``failed`` (a new reference or NULL) in where[0], keeping the error being raised. */
static void
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

/* patch_loop(tracker, out, where): encoder.patch_loop. On an error ``where[0]`` is the node
 * being written, so that the message can name it. */
static PyObject *
patch_loop(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_configured())
        return NULL;
    if (nargs != 3 || !PyByteArray_CheckExact(args[1]) || !PyList_CheckExact(args[2])
            || PyList_GET_SIZE(args[2]) < 1) {
        PyErr_SetString(PyExc_TypeError, "patch_loop(tracker, out: bytearray, where: non-empty list)");
        return NULL;
    }
    PyObject *tracker = args[0], *out = args[1], *where = args[2];
    PyObject *queue = PyObject_GetAttr(tracker, s_queue);
    PyObject *type_ids = PyObject_GetAttr(tracker, s_type_ids);
    PyObject *failed = NULL;
    int r = -1;
    if (queue != NULL && type_ids != NULL) {
        if (!PyList_CheckExact(queue))
            PyErr_SetString(PyExc_TypeError, "tracker.queue must be a list");
        else
            r = run_loop(tracker, queue, type_ids, out, &failed);
    }
    Py_XDECREF(queue);
    Py_XDECREF(type_ids);
    if (r < 0) {
        report_where(where, failed);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* A hint for the first allocation of a patch: the size of the last one (a room's patches are
 * much alike), so that most patches are written without growing the buffer at all. Only a
 * hint: a wrong value costs a reallocation or some unused bytes. */
static Py_ssize_t last_patch_size = 0;

/* encode_patch(tracker, where) -> bytes: encoder.encode_patch's body for the success path, the
 * end of the tick included (tracker.end_tick(reset_pending=False): the loop reset what it
 * encoded). On an error nothing of the tick's end is done, where[0] names the node if there is
 * one, and the Python caller resets the rest (end_tick(reset_pending=True)) and raises
 * EncodeError, as the Python version does. */
static PyObject *
encode_patch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_configured())
        return NULL;
    if (nargs != 2 || !PyList_CheckExact(args[1]) || PyList_GET_SIZE(args[1]) < 1) {
        PyErr_SetString(PyExc_TypeError, "encode_patch(tracker, where: non-empty list)");
        return NULL;
    }
    PyObject *tracker = args[0], *where = args[1];
    PyObject *queue = NULL, *type_ids = NULL, *new_nodes = NULL, *state = NULL, *root = NULL;
    PyObject *out = NULL, *result = NULL, *failed = NULL;
    if ((state = PyObject_GetAttr(tracker, s_state)) == NULL
            || (root = child_node(state)) == NULL
            || (type_ids = PyObject_GetAttr(tracker, s_type_ids)) == NULL)
        goto done;
    out = PyByteArray_FromStringAndSize(NULL, 0);
    if (out == NULL || reserve(out, last_patch_size > 0 ? last_patch_size + 64 : 256) == NULL)
        goto done;
    int root_new = is_true_slot(root, off_new, "new");
    if (root_new < 0)
        goto done;
    if (root_new) {        /* the whole state was attached this tick (written by encoder.py) */
        PyObject *r = PyObject_CallFunctionObjArgs(emit_new_fn, root, out, type_ids, NULL);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    /* read after _emit_new: Python code may have run */
    if ((queue = PyObject_GetAttr(tracker, s_queue)) == NULL)
        goto done;
    if (!PyList_CheckExact(queue)) {
        PyErr_SetString(PyExc_TypeError, "tracker.queue must be a list");
        goto done;
    }
    if (run_loop(tracker, queue, type_ids, out, &failed) < 0)
        goto done;
    /* tracker.end_tick(reset_pending=False) */
    if ((new_nodes = PyObject_GetAttr(tracker, s_new_nodes)) == NULL)
        goto done;
    if (!PyList_CheckExact(new_nodes)) {
        PyErr_SetString(PyExc_TypeError, "tracker.new_nodes must be a list");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(new_nodes); i++) {
        PyObject *node = PyList_GET_ITEM(new_nodes, i);
        if (!PyObject_TypeCheck(node, (PyTypeObject *)node_type)) {
            PyErr_SetString(PyExc_TypeError, "tracker.new_nodes holds a non-Node");
            goto done;
        }
        set_slot(node, off_new, Py_False);
    }
    {
        PyObject *fresh_queue = PyList_New(0), *fresh_new = PyList_New(0);
        int r = (fresh_queue == NULL || fresh_new == NULL
                 || PyObject_SetAttr(tracker, s_queue, fresh_queue) < 0
                 || PyObject_SetAttr(tracker, s_new_nodes, fresh_new) < 0) ? -1 : 0;
        Py_XDECREF(fresh_queue);
        Py_XDECREF(fresh_new);
        if (r < 0)
            goto done;
    }
    last_patch_size = PyByteArray_GET_SIZE(out);
    result = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(out), PyByteArray_GET_SIZE(out));
done:
    if (result == NULL)
        report_where(where, failed);
    Py_XDECREF(queue);
    Py_XDECREF(type_ids);
    Py_XDECREF(new_nodes);
    Py_XDECREF(state);
    Py_XDECREF(root);
    Py_XDECREF(out);
    return result;
}

/* schema_pending(node, pending, out, type_ids, children): write_pending for a Schema instance
 * (the filtered encoders write shared structures with it). */
static PyObject *
write_schema_pending(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() was not called");
        return NULL;
    }
    if (nargs != 5 || !PyObject_TypeCheck(args[0], (PyTypeObject *)node_type)
            || !PyDict_CheckExact(args[1]) || !PyByteArray_CheckExact(args[2])
            || !PyList_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "schema_pending(node, pending: dict, out: bytearray, type_ids, children: list)");
        return NULL;
    }
    if (schema_pending(args[0], args[1], args[2], args[4], args[3]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- a Schema instance's full-state block ------------------------------------------------- */

/* schema_block(node, type_ids) -> (bytes, children): encoder.full_block for a SCHEMA_NODE,
 * without the caching (the caller decides). */
static PyObject *
schema_block_of(PyObject *node, PyObject *type_ids)
{
    PyObject *ref = get_slot(node, off_ref, "ref");
    if (ref == NULL)
        return NULL;
    PyObject *d = PyObject_GenericGetDict(ref, NULL);
    if (d == NULL)
        return NULL;
    Fields *table = class_fields((PyObject *)Py_TYPE(ref));
    PyObject *out = PyByteArray_FromStringAndSize(NULL, 0);
    PyObject *children = NULL, *block = NULL, *result = NULL;
    if (table == NULL || out == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < table->n; i++) {
        const FieldInfo *f = &table->fields[i];
        PyObject *value = field_value(d, f->name);
        if (value == NULL)
            goto done;
        if (value == Py_None)
            continue;
        if (put_bytes(out, f->add_op) < 0)
            goto done;
        if (f->kind != FIELD_STRUCT) {
            if (put_primitive(out, f, value) < 0)
                goto done;
            continue;
        }
        PyObject *child = child_node(value);
        if (child == NULL)
            goto done;
        PyObject *rid = get_slot(child, off_rid, "rid");
        if (rid == NULL || put_bytes(out, rid) < 0
                || put_type_suffix(out, value, f->fd, type_ids) < 0
                || (children == NULL && (children = PyList_New(0)) == NULL)
                || PyList_Append(children, child) < 0) {
            Py_DECREF(child);
            goto done;
        }
        Py_DECREF(child);
    }
    block = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(out), PyByteArray_GET_SIZE(out));
    if (block != NULL)
        result = PyTuple_Pack(2, block, children != NULL ? children : no_children);
done:
    Py_XDECREF(block);
    Py_XDECREF(children);
    Py_XDECREF(out);
    Py_XDECREF(table);
    Py_DECREF(d);
    return result;
}

static PyObject *
schema_block(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_configured())
        return NULL;
    if (nargs != 2 || !PyObject_TypeCheck(args[0], (PyTypeObject *)node_type)) {
        PyErr_SetString(PyExc_TypeError, "schema_block(node, type_ids)");
        return NULL;
    }
    return schema_block_of(args[0], args[1]);
}

/* ---- the full state ------------------------------------------------------------------------ */

/* encoder.full_block: a node's (block, children), from its cache when that is current. Maps and
 * arrays go to the Python full_block (which caches them itself). New reference. */
static PyObject *
node_full(PyObject *node, PyObject *type_ids)
{
    PyObject *full = SLOT(node, off_full);
    PyObject *pending = SLOT(node, off_pending);
    if (full != NULL && full != Py_None && (pending == NULL || pending == Py_None)) {
        Py_INCREF(full);
        return full;
    }
    PyObject *kind = get_slot(node, off_kind, "kind");
    long k;
    if (kind == NULL || small_long(kind, &k) < 0)
        return NULL;
    if (k)                                      /* MAP_NODE / ARRAY_NODE */
        return PyObject_CallFunctionObjArgs(full_block_fn, node, type_ids, NULL);
    full = schema_block_of(node, type_ids);
    if (full == NULL)
        return NULL;
    pending = SLOT(node, off_pending);          /* (read again: no Python code ran, but cheap) */
    int is_new = is_true_slot(node, off_new, "new");
    if (is_new < 0) {
        Py_DECREF(full);
        return NULL;
    }
    if ((pending == NULL || pending == Py_None) && !is_new)
        set_slot(node, off_full, full);
    return full;
}

/* encode_all_v5(tracker, where) -> bytes: encoder.encode_all in the V5 (depth-first) order.
 * ``where[0]`` is the node being written when an error is raised. */
static PyObject *
encode_all_v5(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!check_configured())
        return NULL;
    if (nargs != 2 || !PyList_CheckExact(args[1]) || PyList_GET_SIZE(args[1]) < 1) {
        PyErr_SetString(PyExc_TypeError, "encode_all_v5(tracker, where: non-empty list)");
        return NULL;
    }
    PyObject *tracker = args[0], *where = args[1];
    PyObject *state = NULL, *root = NULL, *type_ids = NULL, *next = NULL, *stack = NULL;
    PyObject *out = NULL, *result = NULL, *node = NULL, *seen_set = NULL;
    unsigned char *seen = NULL;       /* one flag per refId below tracker.next_refid */
    Py_ssize_t nseen = 0;
    if ((state = PyObject_GetAttr(tracker, s_state)) == NULL
            || (root = child_node(state)) == NULL
            || (type_ids = PyObject_GetAttr(tracker, s_type_ids)) == NULL
            || (next = PyObject_GetAttr(tracker, s_next_refid)) == NULL)
        goto done;
    nseen = PyLong_AsSsize_t(next);
    if (nseen == -1 && PyErr_Occurred())
        goto done;
    if (nseen < 1)
        nseen = 1;
    seen = PyMem_Calloc((size_t)nseen, 1);
    stack = PyList_New(0);
    out = PyByteArray_FromStringAndSize(NULL, 0);
    if (seen == NULL || stack == NULL || out == NULL) {
        if (seen == NULL)
            PyErr_NoMemory();
        goto done;
    }
    long refid;
    PyObject *rid_obj = get_slot(root, off_refid, "refid");
    if (rid_obj == NULL || small_long(rid_obj, &refid) < 0 || PyList_Append(stack, root) < 0)
        goto done;
    if (refid >= 0 && refid < nseen)
        seen[refid] = 1;
    while (PyList_GET_SIZE(stack)) {
        Py_ssize_t top = PyList_GET_SIZE(stack) - 1;
        Py_XSETREF(node, Py_NewRef(PyList_GET_ITEM(stack, top)));
        if (PyList_SetSlice(stack, top, top + 1, NULL) < 0)
            goto done;
        PyObject *full = node_full(node, type_ids);
        if (full == NULL)
            goto done;
        if (!PyTuple_CheckExact(full) || PyTuple_GET_SIZE(full) != 2
                || !PyBytes_CheckExact(PyTuple_GET_ITEM(full, 0))
                || !PyList_CheckExact(PyTuple_GET_ITEM(full, 1))) {
            Py_DECREF(full);
            PyErr_SetString(PyExc_TypeError, "a full block is not (bytes, list)");
            goto done;
        }
        PyObject *block = PyTuple_GET_ITEM(full, 0), *children = PyTuple_GET_ITEM(full, 1);
        int r = 0;
        if (PyBytes_GET_SIZE(block)) {
            int header = PyByteArray_GET_SIZE(out) != 0;
            if (!header) {
                PyObject *nid = get_slot(node, off_refid, "refid");
                header = nid == NULL ? -1 : PyObject_IsTrue(nid);
            }
            if (header < 0) {
                r = -1;
            } else if (header) {
                PyObject *head = get_slot(node, off_head, "head");
                r = head == NULL ? -1 : put_bytes(out, head);
            }
            if (r == 0)
                r = put_bytes(out, block);
        }
        /* children pushed in reverse, so that they are written in order */
        for (Py_ssize_t i = PyList_GET_SIZE(children) - 1; r == 0 && i >= 0; i--) {
            PyObject *child = PyList_GET_ITEM(children, i);
            if (!PyObject_TypeCheck(child, (PyTypeObject *)node_type)) {
                PyErr_SetString(PyExc_TypeError, "a full block's children are not Nodes");
                r = -1;
                break;
            }
            PyObject *cid = get_slot(child, off_refid, "refid");
            long c;
            if (cid == NULL || small_long(cid, &c) < 0) {
                r = -1;
                break;
            }
            int was_seen;
            if (c >= 0 && c < nseen) {      /* every attached node: refIds are below next_refid */
                was_seen = seen[c];
                seen[c] = 1;
            } else {                        /* not expected; kept correct all the same */
                if (seen_set == NULL && (seen_set = PySet_New(NULL)) == NULL) {
                    r = -1;
                    break;
                }
                was_seen = PySet_Contains(seen_set, cid);
                if (was_seen < 0 || (!was_seen && PySet_Add(seen_set, cid) < 0)) {
                    r = -1;
                    break;
                }
            }
            if (!was_seen && PyList_Append(stack, child) < 0)
                r = -1;
        }
        Py_DECREF(full);
        if (r < 0)
            goto done;
    }
    result = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(out), PyByteArray_GET_SIZE(out));
done:
    if (result == NULL && PyErr_Occurred()) {
        PyObject *failed = node != NULL ? node : root;
        Py_XINCREF(failed);
        report_where(where, failed);
    }
    PyMem_Free(seen);
    Py_XDECREF(node);
    Py_XDECREF(seen_set);
    Py_XDECREF(stack);
    Py_XDECREF(out);
    Py_XDECREF(next);
    Py_XDECREF(type_ids);
    Py_XDECREF(root);
    Py_XDECREF(state);
    return result;
}

/* ---- primitive-field assignment ----------------------------------------------------------- */

/* One Schema class's generated __setattr__ (schema._fast_setattr's job). It is a method
 * descriptor, so type slots call it with the instance as first argument and no bound method is
 * made; whatever is not "a primitive field given a value of a class that needs no check" goes to
 * the generic Python __setattr__, which also raises the errors. */
typedef struct {
    PyObject_HEAD
    PyObject *table;     /* field name -> (index, classes that need no check) */
    PyObject *generic;   /* Schema.__setattr__ */
    PyObject *qualname;
    vectorcallfunc vectorcall;
} FastSetattr;

static int
call_generic(FastSetattr *self, PyObject *obj, PyObject *name, PyObject *value)
{
    PyObject *r = PyObject_CallFunctionObjArgs(self->generic, obj, name, value, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int
record(PyObject *obj_dict, PyObject *index, PyObject *old)
{
    PyObject *node = PyDict_GetItemWithError(obj_dict, s_gr);
    if (node == NULL || !PyObject_TypeCheck(node, (PyTypeObject *)node_type)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "the instance has no tracking Node (_gr)");
        return -1;
    }
    PyObject *marker = old == Py_None ? absent_marker : present_marker;
    PyObject *pending = SLOT(node, off_pending);
    if (pending != NULL && pending != Py_None) {   /* already touched this tick */
        if (!PyDict_CheckExact(pending)) {
            PyErr_SetString(PyExc_TypeError, "Node.pending is not a dict");
            return -1;
        }
        /* setdefault: one lookup instead of a lookup and an insertion */
        PyObject *r = PyDict_SetDefault(pending, index, marker);
        return r == NULL ? -1 : 0;
    }
    PyObject *tracker = SLOT(node, off_tracker);
    if (tracker == NULL || tracker == Py_None)
        return 0;
    int is_new = is_true_slot(node, off_new, "new");
    if (is_new != 0)
        return is_new;                             /* 1: sent whole anyway; -1: error */
    PyObject *queue = PyObject_GetAttr(tracker, s_queue);
    if (queue == NULL)
        return -1;
    PyObject *fresh = PyDict_New();
    int r = (fresh == NULL || PyDict_SetItem(fresh, index, marker) < 0) ? -1 : 0;
    if (r == 0) {
        set_slot(node, off_pending, fresh);
        r = PyList_Append(queue, node);
    }
    Py_XDECREF(fresh);
    Py_DECREF(queue);
    return r;
}

/* ``old`` and ``value`` (same class) hold the same value, as Schema.__setattr__ decides it:
 * ``old == value``, where a float NaN is never equal (so it is always sent). 1, 0 or -1. */
static inline int
same_value(PyObject *old, PyObject *value)
{
    if (PyFloat_CheckExact(value))
        return PyFloat_AS_DOUBLE(old) == PyFloat_AS_DOUBLE(value);
    if (old == value)
        return 1;
    long a, b;
    if (compact_long(old, &a) && compact_long(value, &b))
        return a == b;
    /* no identity shortcut needed here: the classes of ``fast`` are str/int/bool, whose
     * equality is reflexive */
    return PyObject_RichCompareBool(old, value, Py_EQ);
}

/* An integer field's check passes an exact int within its bounds unchanged (types._int_checker),
 * so such a value needs no call to it. ``bounds`` is None or (lo, hi); a bound beyond long long
 * (uint64's top) counts as unbounded on that side, and a value beyond it goes to the check.
 * 1 (in bounds), 0 (ask the check) or -1. */
static int
int_in_bounds(PyObject *value, PyObject *bounds)
{
    if (bounds == Py_None || !PyLong_CheckExact(value))   /* bool is not an exact int */
        return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow)
        return 0;
    long long lo = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(bounds, 0), &overflow);
    if (lo == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0 || (overflow == 0 && v < lo))
        return 0;
    long long hi = PyLong_AsLongLongAndOverflow(PyTuple_GET_ITEM(bounds, 1), &overflow);
    if (hi == -1 && PyErr_Occurred())
        return -1;
    if (overflow < 0 || (overflow == 0 && v > hi))
        return 0;
    return 1;
}

/* Schema.__setattr__'s primitive-field path; anything else goes to ``generic``. 0 or -1. */
static int
fast_setattr_core(FastSetattr *self, PyObject *obj, PyObject *name, PyObject *value)
{
    PyObject *entry = PyUnicode_CheckExact(name) ? PyDict_GetItemWithError(self->table, name) : NULL;
    if (entry == NULL) {
        if (PyErr_Occurred())
            return -1;
        return call_generic(self, obj, name, value);
    }
    PyObject *index = PyTuple_GET_ITEM(entry, 0);
    PyObject *fast = PyTuple_GET_ITEM(entry, 1);
    if (value != Py_None) {
        int ok = 0;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fast); i++) {
            if ((PyObject *)Py_TYPE(value) == PyTuple_GET_ITEM(fast, i)) {
                ok = 1;
                break;
            }
        }
        if (!ok) {
            ok = int_in_bounds(value, PyTuple_GET_ITEM(entry, 2));
            if (ok < 0)
                return -1;
        }
        if (!ok)                 /* needs a check (and maybe a conversion or an error) */
            return call_generic(self, obj, name, value);
    }
    PyObject *d = PyObject_GenericGetDict(obj, NULL);
    if (d == NULL)
        return -1;
    PyObject *old = PyDict_GetItemWithError(d, name);
    if (old == NULL) {
        Py_DECREF(d);
        if (PyErr_Occurred())
            return -1;
        return call_generic(self, obj, name, value);
    }
    Py_INCREF(old);
    /* unchanged: same class and equal */
    if (Py_TYPE(old) == Py_TYPE(value)) {
        int same = same_value(old, value);
        if (same != 0) {
            Py_DECREF(old);
            Py_DECREF(d);
            return same < 0 ? -1 : 0;
        }
    }
    int r = PyDict_SetItem(d, name, value);
    if (r == 0)
        r = record(d, index, old);
    Py_DECREF(old);
    Py_DECREF(d);
    return r < 0 ? -1 : 0;                  /* record() returns 1 for "nothing to record" */
}

static PyObject *
fast_setattr_call(FastSetattr *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 3 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "__setattr__(self, name, value)");
        return NULL;
    }
    if (fast_setattr_core(self, args[0], args[1], args[2]) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
fast_setattr_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *table, *generic, *qualname;
    static char *kwlist[] = {"table", "generic", "qualname", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OU", kwlist, &PyDict_Type, &table, &generic,
                                     &qualname))
        return NULL;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(table, &pos, &key, &value)) {
        PyObject *bounds = PyTuple_CheckExact(value) && PyTuple_GET_SIZE(value) == 3
                           ? PyTuple_GET_ITEM(value, 2) : NULL;
        if (!PyUnicode_CheckExact(key) || bounds == NULL
                || !PyLong_CheckExact(PyTuple_GET_ITEM(value, 0))
                || !PyTuple_CheckExact(PyTuple_GET_ITEM(value, 1))
                || (bounds != Py_None && !(PyTuple_CheckExact(bounds) && PyTuple_GET_SIZE(bounds) == 2
                                           && PyLong_CheckExact(PyTuple_GET_ITEM(bounds, 0))
                                           && PyLong_CheckExact(PyTuple_GET_ITEM(bounds, 1))))) {
            PyErr_SetString(PyExc_TypeError,
                            "table maps field names to (index, (classes...), None or (lo, hi))");
            return NULL;
        }
    }
    FastSetattr *self = (FastSetattr *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(table);
    self->table = table;
    Py_INCREF(generic);
    self->generic = generic;
    Py_INCREF(qualname);
    self->qualname = qualname;
    self->vectorcall = (vectorcallfunc)fast_setattr_call;
    return (PyObject *)self;
}

static PyObject *
fast_setattr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static int
fast_setattr_traverse(FastSetattr *self, visitproc visit, void *arg)
{
    Py_VISIT(self->table);
    Py_VISIT(self->generic);
    return 0;
}

static int
fast_setattr_clear(FastSetattr *self)
{
    Py_CLEAR(self->table);
    Py_CLEAR(self->generic);
    Py_CLEAR(self->qualname);
    return 0;
}

static void
fast_setattr_dealloc(FastSetattr *self)
{
    PyObject_GC_UnTrack(self);
    fast_setattr_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
fast_setattr_repr(FastSetattr *self)
{
    return PyUnicode_FromFormat("<compiled method %U>", self->qualname);
}

static PyMemberDef fast_setattr_members[] = {
    {"__qualname__", T_OBJECT, offsetof(FastSetattr, qualname), READONLY, NULL},
    {NULL},
};

static PyTypeObject FastSetattrType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "greenroom.schema._speedups.FastSetattr",
    .tp_doc = "A Schema class's compiled __setattr__ for primitive fields.",
    .tp_basicsize = sizeof(FastSetattr),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR
                | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = fast_setattr_new,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(FastSetattr, vectorcall),
    .tp_descr_get = fast_setattr_get,
    .tp_traverse = (traverseproc)fast_setattr_traverse,
    .tp_clear = (inquiry)fast_setattr_clear,
    .tp_dealloc = (destructor)fast_setattr_dealloc,
    .tp_repr = (reprfunc)fast_setattr_repr,
    .tp_members = fast_setattr_members,
};

/* ---- configuration ------------------------------------------------------------------------ */

/* configure(Node, write_pending, emit_new, type_id_suffix, no_children, ABSENT, PRESENT,
 *           full_block, fast_string) */
static PyObject *
configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9 || !PyType_Check(args[0]) || !PyList_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "configure(Node, write_pending, emit_new, type_id_suffix, "
                                         "no_children, ABSENT, PRESENT, full_block, fast_string)");
        return NULL;
    }
    PyObject *cls = args[0];
    struct { Py_ssize_t *off; const char *name; } slots[] = {
        {&off_ref, "ref"}, {&off_kind, "kind"}, {&off_tracker, "tracker"}, {&off_refid, "refid"},
        {&off_rid, "rid"}, {&off_head, "head"}, {&off_pending, "pending"}, {&off_new, "new"},
        {&off_full, "full"}, {&off_cleared, "cleared"}, {&off_len0, "len0"},
    };
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        if ((*slots[i].off = slot_offset(cls, slots[i].name)) < 0)
            return NULL;
    }
    Py_XSETREF(node_type, Py_NewRef(cls));
    Py_XSETREF(write_pending_fn, Py_NewRef(args[1]));
    Py_XSETREF(emit_new_fn, Py_NewRef(args[2]));
    Py_XSETREF(type_id_suffix_fn, Py_NewRef(args[3]));
    Py_XSETREF(no_children, Py_NewRef(args[4]));
    Py_XSETREF(absent_marker, Py_NewRef(args[5]));
    Py_XSETREF(present_marker, Py_NewRef(args[6]));
    Py_XSETREF(full_block_fn, Py_NewRef(args[7]));
    Py_XSETREF(fast_string_fn, Py_NewRef(args[8]));
    configured = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "Give the module the Python pieces it works with (encoder.py calls it once)."},
    {"patch_loop", (PyCFunction)(void (*)(void))patch_loop, METH_FASTCALL,
     "encode_patch's loop over the touched structures."},
    {"configure_collections", (PyCFunction)(void (*)(void))configure_collections, METH_FASTCALL,
     "Give the module what it needs to write maps and arrays (encoder.py calls it once)."},
    {"encode_all_v5", (PyCFunction)(void (*)(void))encode_all_v5, METH_FASTCALL,
     "encode_all in the depth-first (V5) order."},
    {"encode_patch", (PyCFunction)(void (*)(void))encode_patch, METH_FASTCALL,
     "encode_patch's body: the patch as bytes, and the end of the tick."},
    {"schema_pending", (PyCFunction)(void (*)(void))write_schema_pending, METH_FASTCALL,
     "write_pending for a Schema instance."},
    {"schema_block", (PyCFunction)(void (*)(void))schema_block, METH_FASTCALL,
     "A Schema instance's full-state block and child nodes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "greenroom.schema._speedups",
    "Compiled hot paths of greenroom.schema (optional; the pure-Python code is the reference).",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&FastSetattrType) < 0 || PyType_Ready(&FieldsType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    if (!(s_gr = PyUnicode_InternFromString("_gr")) ||
        !(s_gr_patch = PyUnicode_InternFromString("_gr_patch")) ||
        !(s_queue = PyUnicode_InternFromString("queue")) ||
        !(s_type_ids = PyUnicode_InternFromString("type_ids")) ||
        !(s_delete_op = PyUnicode_InternFromString("delete_op")) ||
        !(s_dna_op = PyUnicode_InternFromString("dna_op")) ||
        !(s_schema_cls = PyUnicode_InternFromString("schema_cls")) ||
        !(s_state = PyUnicode_InternFromString("state")) ||
        !(s_new_nodes = PyUnicode_InternFromString("new_nodes")) ||
        !(s_next_refid = PyUnicode_InternFromString("next_refid")) ||
        !(s_gr_spec = PyUnicode_InternFromString("_gr_spec")) ||
        !(s_child = PyUnicode_InternFromString("child")) ||
        !(s_kind = PyUnicode_InternFromString("kind")) ||
        !(s_schema = PyUnicode_InternFromString("schema")) ||
        !(s_primitive = PyUnicode_InternFromString("primitive")) ||
        !(s_encode = PyUnicode_InternFromString("encode")) ||
        !(s_gr_items = PyUnicode_InternFromString("_gr_items")) ||
        !(s_gr_keys = PyUnicode_InternFromString("_gr_keys")) ||
        !(s_gr_heads = PyUnicode_InternFromString("_gr_heads"))) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&FastSetattrType);
    if (PyModule_AddObject(m, "FastSetattr", (PyObject *)&FastSetattrType) < 0) {
        Py_DECREF(&FastSetattrType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
