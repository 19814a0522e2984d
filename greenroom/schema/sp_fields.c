/* A Schema class's field table (``cls._gr_patch``) unpacked into C, cached per class. */
#include "_speedups.h"

static void
fields_dealloc(Fields *self)
{
    Py_XDECREF(self->table);
    PyObject_Free(self);
}

/* Only this module creates and reads them; holding no references but a tuple of str/bytes/
 * functions/Fields (a Field never points back at a Fields), they need no GC support. */
PyTypeObject FieldsType = {
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
Fields *
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
