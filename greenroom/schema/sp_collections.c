/* Maps and arrays in a patch: encoder.write_pending for MAP_NODE and ARRAY_NODE. */
#include "_speedups.h"

/* ---- maps and arrays (encoder.write_pending for MAP_NODE / ARRAY_NODE) --------------------- */

static PyObject *entry_head_fn, *fast_number_fn;
static long ref_kind = -1;                    /* fields.REF */
static unsigned char op_add, op_replace, op_delete, op_dna, op_clear;
static int collections_configured = 0;
static PyObject *s_gr_spec, *s_child, *s_kind, *s_schema, *s_primitive, *s_encode, *s_gr_items,
    *s_gr_keys, *s_gr_heads;

/* The attribute names this unit reads (the module's init calls it once). */
int
collections_init(void)
{
    return (s_gr_spec = PyUnicode_InternFromString("_gr_spec")) &&
           (s_child = PyUnicode_InternFromString("child")) &&
           (s_kind = PyUnicode_InternFromString("kind")) &&
           (s_schema = PyUnicode_InternFromString("schema")) &&
           (s_primitive = PyUnicode_InternFromString("primitive")) &&
           (s_encode = PyUnicode_InternFromString("encode")) &&
           (s_gr_items = PyUnicode_InternFromString("_gr_items")) &&
           (s_gr_keys = PyUnicode_InternFromString("_gr_keys")) &&
           (s_gr_heads = PyUnicode_InternFromString("_gr_heads")) ? 0 : -1;
}

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
int
collection_pending(PyObject *node, long kind, PyObject *pending, PyObject *out,
                   PyObject *type_ids, PyObject *children)
{
    if (collections_configured && PyDict_CheckExact(pending)) {   /* (always, for collections) */
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
PyObject *
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
