/* Full states: a Schema instance's block and encoder.encode_all's depth-first walk. */
#include "_speedups.h"

/* ---- a Schema instance's full-state block ------------------------------------------------- */

/* schema_block(node, type_ids) -> (bytes, children): encoder.full_block for a SCHEMA_NODE,
 * without the caching (the caller decides). */
PyObject *
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

PyObject *
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
PyObject *
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
