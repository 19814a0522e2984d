/* A Schema class's compiled __setattr__ for primitive fields. */
#include "_speedups.h"

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
    long i, m;
    if (small_long(index, &i) < 0 || small_long(marker, &m) < 0)
        return -1;
    if (i < 0 || i >= PENDING_MAX) {
        PyErr_Format(PyExc_ValueError, "field index %ld is beyond a Schema's fields", i);
        return -1;
    }
    PyObject *pending = SLOT(node, off_pending);
    if (pending != NULL && pending != Py_None) {   /* already touched this tick */
        if (Py_IS_TYPE(pending, &PendingType)) {
            if (!pending_has((Pending *)pending, (int)i))
                pending_set((Pending *)pending, (int)i, m);
            return 0;
        }
        if (!PyDict_CheckExact(pending)) {         /* a dict when Python code recorded first */
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
    Pending *fresh = pending_new();
    int r = fresh == NULL ? -1 : 0;
    if (r == 0) {
        pending_set(fresh, (int)i, m);
        set_slot(node, off_pending, (PyObject *)fresh);
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

PyTypeObject FastSetattrType = {
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
