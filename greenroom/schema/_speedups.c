/* Compiled hot paths of greenroom.schema: the patch (Schema instances, maps and arrays), the
 * full state's blocks and walk, and the primitive-field assignment.
 *
 * Why C: in pure Python the per-operation bookkeeping of a patch (iterating the pending ops of
 * the touched structures, reading the values, appending bytes) costs more than three times what
 * @colyseus/schema spends on the whole encode, so the pure-Python encoder cannot get within 2x of
 * it however it is arranged. Each function does exactly what its Python twin in encoder.py
 * or schema.py does (the tests run both and compare bytes); anything unusual (structures
 * introduced this tick, values other than plain numbers and short ASCII strings, the V3 order,
 * errors) is handed back to those Python functions, so this module only has to be right for the
 * common case.
 *
 * Node is a Python class with __slots__: configure() reads the slot offsets from its member
 * descriptors once, so a slot is read as a pointer, not through attribute lookup.
 *
 * The module is split by job: sp_patch.c (the patch loop), sp_collections.c (maps and arrays in a
 * patch), sp_full.c (full states), sp_setattr.c (assignment), sp_fields.c (per-class field
 * tables); _speedups.h holds the shared helpers. This unit holds the configuration and the
 * module's init.
 */
#include "_speedups.h"

Py_ssize_t off_ref, off_kind, off_tracker, off_refid, off_rid, off_head, off_pending, off_new,
    off_full, off_cleared, off_len0;
PyObject *write_pending_fn, *emit_new_fn, *type_id_suffix_fn, *node_type, *full_block_fn,
    *fast_string_fn;
PyObject *no_children;      /* encoder._NO_CHILDREN, shared by leaf blocks */
PyObject *s_gr, *s_gr_patch, *s_queue, *s_type_ids, *s_delete_op, *s_dna_op,
    *s_schema_cls, *s_state, *s_new_nodes, *s_next_refid;
PyObject *absent_marker, *present_marker;
int configured = 0;

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
    if (PyType_Ready(&FastSetattrType) < 0 || PyType_Ready(&FieldsType) < 0
            || PyType_Ready(&PendingType) < 0)
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
        collections_init() < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&FastSetattrType);
    if (PyModule_AddObject(m, "FastSetattr", (PyObject *)&FastSetattrType) < 0) {
        Py_DECREF(&FastSetattrType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&PendingType);
    if (PyModule_AddObject(m, "Pending", (PyObject *)&PendingType) < 0) {
        Py_DECREF(&PendingType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
