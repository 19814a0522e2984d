/* Pending: a Schema instance's pending operations (changes.py's ``Node.pending``) as the compiled
 * __setattr__ records them.
 *
 * Why: a tick creates one pending record per touched structure and the patch frees it. As a
 * dict that was a dict plus its keys table allocated and freed per structure per tick, the
 * largest single cost left in the compiled patch (benchmarks/results/schema_issue15.md). A
 * Schema instance has at most 63 fields (fields.MAX_FIELDS), so its record fits a fixed array:
 * indices in recording order and one marker per index, allocated from a free list.
 *
 * Python code reads and extends it with the dict operations it uses on ``pending`` (``in``,
 * ``p[i]``, ``p[i] = marker`` for a new index, ``len``, iteration over the indices, ``items()``,
 * ``keys()``, ``values()``, ``get()``), with dict semantics: insertion order, an assignment to a
 * recorded index replaces its marker and keeps its place. Maps and arrays keep plain dicts.
 */
#include "_speedups.h"

/* Objects kept for reuse: a tick frees about as many records as the next one makes. */
#define PENDING_FREE_MAX 1024
static Pending *free_list[PENDING_FREE_MAX];
static int free_count;

Pending *
pending_new(void)
{
    Pending *p;
    if (free_count > 0) {
        p = free_list[--free_count];
        PyObject_Init((PyObject *)p, &PendingType);   /* a fresh reference on kept memory */
    } else {
        p = PyObject_New(Pending, &PendingType);
        if (p == NULL)
            return NULL;
    }
    p->n = 0;
    p->present = 0;
    return p;
}

static void
pending_dealloc(Pending *p)
{
    /* no references held (indices and markers are C integers); the memory is reused */
    if (free_count < PENDING_FREE_MAX && Py_IS_TYPE(p, &PendingType))
        free_list[free_count++] = p;
    else
        PyObject_Free(p);
}

/* An index given by Python code: an int within the record's range (a field index). */
static int
index_of(PyObject *key, int *index)
{
    long i;
    if (!PyLong_Check(key)) {
        PyErr_Format(PyExc_TypeError, "pending operations are keyed by field index, not %.100s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    if (small_long(key, &i) < 0)
        return -1;
    if (i < 0 || i >= PENDING_MAX) {
        PyErr_Format(PyExc_KeyError, "field index %ld is beyond a Schema's fields", i);
        return -1;
    }
    *index = (int)i;
    return 0;
}

static Py_ssize_t
pending_length(Pending *p)
{
    return p->n;
}

static PyObject *
pending_subscript(Pending *p, PyObject *key)
{
    int i;
    if (index_of(key, &i) < 0)
        return NULL;
    if (!pending_has(p, i)) {
        PyErr_SetObject(PyExc_KeyError, key);
        return NULL;
    }
    return PyLong_FromLongLong(p->markers[i]);
}

static int
pending_ass_subscript(Pending *p, PyObject *key, PyObject *value)
{
    int i;
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "pending operations cannot be deleted one by one");
        return -1;
    }
    if (index_of(key, &i) < 0)
        return -1;
    int overflow;
    long long marker = PyLong_Check(value) ? PyLong_AsLongLongAndOverflow(value, &overflow) : 0;
    if (!PyLong_Check(value) || overflow) {
        PyErr_SetString(PyExc_TypeError, "a pending marker is an int (ABSENT, PRESENT or a refId)");
        return -1;
    }
    if (marker == -1 && PyErr_Occurred())
        return -1;
    pending_set(p, i, marker);
    return 0;
}

static int
pending_contains(Pending *p, PyObject *key)
{
    long i;
    if (!PyLong_Check(key))
        return 0;
    if (small_long(key, &i) < 0) {       /* a huge int: not an index */
        PyErr_Clear();
        return 0;
    }
    return i >= 0 && i < PENDING_MAX && pending_has(p, (int)i);
}

/* items() / keys() / values(): lists, in recording order. */
static PyObject *
pending_list(Pending *p, int what)
{
    PyObject *list = PyList_New(p->n);
    if (list == NULL)
        return NULL;
    for (int k = 0; k < p->n; k++) {
        int i = p->order[k];
        PyObject *item;
        if (what == 0)
            item = PyLong_FromLong(i);
        else if (what == 1)
            item = PyLong_FromLongLong(p->markers[i]);
        else
            item = Py_BuildValue("(iL)", i, p->markers[i]);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, item);
    }
    return list;
}

static PyObject *
pending_keys(Pending *p, PyObject *unused)
{
    return pending_list(p, 0);
}

static PyObject *
pending_values(Pending *p, PyObject *unused)
{
    return pending_list(p, 1);
}

static PyObject *
pending_items(Pending *p, PyObject *unused)
{
    return pending_list(p, 2);
}

static PyObject *
pending_get(Pending *p, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(index, default=None)");
        return NULL;
    }
    int has = pending_contains(p, args[0]);
    if (has)
        return pending_subscript(p, args[0]);
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

static PyObject *
pending_iter(Pending *p)
{
    PyObject *keys = pending_list(p, 0);
    if (keys == NULL)
        return NULL;
    PyObject *it = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return it;
}

static PyObject *
pending_repr(Pending *p)
{
    PyObject *items = pending_list(p, 2);
    if (items == NULL)
        return NULL;
    PyObject *d = PyDict_New();
    for (Py_ssize_t k = 0; d != NULL && k < PyList_GET_SIZE(items); k++) {
        PyObject *pair = PyList_GET_ITEM(items, k);
        if (PyDict_SetItem(d, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1)) < 0)
            Py_CLEAR(d);
    }
    Py_DECREF(items);
    if (d == NULL)
        return NULL;
    PyObject *r = PyUnicode_FromFormat("Pending(%R)", d);
    Py_DECREF(d);
    return r;
}

static PyMappingMethods pending_as_mapping = {
    .mp_length = (lenfunc)pending_length,
    .mp_subscript = (binaryfunc)pending_subscript,
    .mp_ass_subscript = (objobjargproc)pending_ass_subscript,
};

static PySequenceMethods pending_as_sequence = {
    .sq_contains = (objobjproc)pending_contains,
};

static PyMethodDef pending_methods[] = {
    {"keys", (PyCFunction)pending_keys, METH_NOARGS, "The indices, in recording order."},
    {"values", (PyCFunction)pending_values, METH_NOARGS, "The markers, in recording order."},
    {"items", (PyCFunction)pending_items, METH_NOARGS, "(index, marker) pairs, in recording order."},
    {"get", (PyCFunction)(void (*)(void))pending_get, METH_FASTCALL, "The marker of an index, or a default."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject PendingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "greenroom.schema._speedups.Pending",
    .tp_doc = "A Schema instance's pending operations: field index -> marker (changes.py).",
    .tp_basicsize = sizeof(Pending),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)pending_dealloc,
    .tp_repr = (reprfunc)pending_repr,
    .tp_as_mapping = &pending_as_mapping,
    .tp_as_sequence = &pending_as_sequence,
    .tp_iter = (getiterfunc)pending_iter,
    .tp_methods = pending_methods,
};
