/* The patch: encoder.encode_patch and the loop over the structures touched this tick. */
#include "_speedups.h"

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
    int k = 0;
    /* a Pending (what the compiled __setattr__ records) or a dict (Python code recorded first) */
    Pending *rec = Py_IS_TYPE(pending, &PendingType) ? (Pending *)pending : NULL;
    if (table == NULL)
        goto fail;
    for (;;) {
        Py_ssize_t index;
        long marker;
        if (rec != NULL) {
            if (k >= rec->n)
                break;
            index = rec->order[k++];
            marker = (long)rec->markers[index];
        } else {
            PyObject *key, *marker_obj;
            if (!PyDict_Next(pending, &pos, &key, &marker_obj))
                break;
            if (small_int(key, &index) < 0 || small_long(marker_obj, &marker) < 0)
                goto fail;
        }
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
        if (!PyDict_CheckExact(pending) && !Py_IS_TYPE(pending, &PendingType)) {
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

/* patch_loop(tracker, out, where): encoder.patch_loop. On an error ``where[0]`` is the node
 * being written, so that the message can name it. */
PyObject *
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
PyObject *
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
PyObject *
write_schema_pending(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (!configured) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.configure() was not called");
        return NULL;
    }
    if (nargs != 5 || !PyObject_TypeCheck(args[0], (PyTypeObject *)node_type)
            || !(PyDict_CheckExact(args[1]) || Py_IS_TYPE(args[1], &PendingType))
            || !PyByteArray_CheckExact(args[2])
            || !PyList_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "schema_pending(node, pending: dict, out: bytearray, type_ids, children: list)");
        return NULL;
    }
    if (schema_pending(args[0], args[1], args[2], args[4], args[3]) < 0)
        return NULL;
    Py_RETURN_NONE;
}
