/* The native half of fabric.serve.owned: where each lookup of a BatchGet lives, read from the
 * request's bytes.
 *
 * Routing a hundred lookups in Python (each lookup's table, key field and value read from the
 * parsed message, the record key written, murmur2, a KeyQueryMetadata built, then grouped by
 * partition) cost a BatchGet about as much as reading and answering them. Here one pass over
 * the serialized BatchGetRequest does it for the commonest shape: one integer key field, by the
 * key column's name or unnamed, within the column's type. Every other lookup is left to the
 * general path, which answers it or says what is wrong; a lookup with a bound marks the whole
 * batch, which then goes that way too.
 *
 * The record key is the one fabric.core.keys.KeyCodec.encode_integer writes (the route's fixed
 * head, the number in decimal, "}"), and the partition is Kafka's
 * toPositive(murmur2(key)) % partitions (fabric/core/partitioner.py holds the reference);
 * tests/unit/test_locate_native.py holds this code to both.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../rpc/protowire.h"

#define MAX_KEY 160 /* a route's head is a short JSON prefix; the number at most 20 digits */

static uint32_t murmur2(const unsigned char *data, Py_ssize_t length) {
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28c ^ (uint32_t)length;
    Py_ssize_t blocks = length / 4;
    for (Py_ssize_t i = 0; i < blocks; i++) {
        const unsigned char *b = data + 4 * i;
        uint32_t k = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const unsigned char *tail = data + 4 * blocks;
    switch (length & 3) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t)tail[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/* A table's route as fabric.serve.owned gives it: (head, low, high, column, partitions,
 * its own route object). */
typedef struct {
    PyObject *spec; /* borrowed from the memo; NULL: no route, the general path */
    const char *head;
    Py_ssize_t head_len;
    long long low;
    long long high;
    const char *column;
    Py_ssize_t column_len;
    long partitions;
} Route;

static int route_from(PyObject *spec, Route *r) {
    r->spec = NULL;
    if (spec == Py_None) {
        return 0;
    }
    PyObject *head, *column;
    PyObject *owner;
    if (!PyArg_ParseTuple(spec, "SLLSlO", &head, &r->low, &r->high, &column, &r->partitions,
                          &owner)) {
        return -1;
    }
    if (r->partitions < 1 || PyBytes_GET_SIZE(head) > MAX_KEY - 24) {
        PyErr_SetString(PyExc_ValueError, "a route has at least one partition and a short head");
        return -1;
    }
    r->spec = spec;
    r->head = PyBytes_AS_STRING(head);
    r->head_len = PyBytes_GET_SIZE(head);
    r->column = PyBytes_AS_STRING(column);
    r->column_len = PyBytes_GET_SIZE(column);
    return 0;
}

/* The key of one GetRequest, when it is one integer field this route takes: 1, else 0. */
static int integer_key(WireSpan key, const Route *r, long long *value) {
    int fields = 0, found = 0;
    WireField field, f;
    while (key.p < key.end) {
        if (wire_next_field(&key, &field) < 0 || field.number != 1 || field.type != 2 ||
            ++fields > 1) {
            return 0;
        }
        WireSpan name = {NULL, NULL};
        int has_value = 0;
        while (field.bytes.p < field.bytes.end) {
            if (wire_next_field(&field.bytes, &f) < 0 || f.type != 2) {
                return 0;
            }
            if (f.number == 1) {
                name = f.bytes;
            } else if (f.number == 2) {
                /* The Value: its int (field 3, a varint) and nothing else. */
                WireField kind;
                if (wire_next_field(&f.bytes, &kind) < 0 || kind.number != 3 || kind.type != 0 ||
                    f.bytes.p != f.bytes.end) {
                    return 0;
                }
                *value = (long long)kind.varint;
                has_value = 1;
            } else {
                return 0;
            }
        }
        Py_ssize_t name_len = name.p ? (Py_ssize_t)(name.end - name.p) : 0;
        if (!has_value ||
            (name_len && (name_len != r->column_len || memcmp(name.p, r->column, name_len)))) {
            return 0;
        }
        found = 1;
    }
    return found && *value >= r->low && *value <= r->high;
}

/* locate(request, route_of) -> (groups, unlocated, bounded)
 *
 * request: a serialized BatchGetRequest. route_of(table: str) -> route tuple or None, asked
 * once per distinct table name. groups: {route: {partition: ([lookup index], [record key])}};
 * unlocated: the indexes of the other lookups; bounded: whether any lookup has a bound. None
 * when the request does not parse: the general path answers it. */
static PyObject *locate(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "locate(request: bytes, route_of: callable)");
        return NULL;
    }
    PyObject *route_of = args[1];
    WireSpan request = {(const unsigned char *)PyBytes_AS_STRING(args[0]), NULL};
    request.end = request.p + PyBytes_GET_SIZE(args[0]);
    PyObject *groups = PyDict_New();
    PyObject *unlocated = PyList_New(0);
    PyObject *memo = PyDict_New(); /* table name bytes -> route spec */
    PyObject *result = NULL;
    if (!groups || !unlocated || !memo) {
        goto done;
    }
    WireSpan last_table = {NULL, NULL};
    Route route = {0};
    PyObject *route_groups = NULL; /* borrowed: groups[route.spec] */
    int bounded = 0;
    char key[MAX_KEY];
    for (Py_ssize_t index = 0; request.p < request.end; index++) {
        WireField lookup, f;
        if (wire_next_field(&request, &lookup) < 0 || lookup.number != 1 || lookup.type != 2) {
            result = Py_None;
            Py_INCREF(result);
            goto done;
        }
        WireSpan table = {NULL, NULL}, key_span = {NULL, NULL};
        int other = 0;
        while (lookup.bytes.p < lookup.bytes.end) {
            if (wire_next_field(&lookup.bytes, &f) < 0) {
                result = Py_None;
                Py_INCREF(result);
                goto done;
            }
            if (f.number == 1 && f.type == 2) {
                table = f.bytes;
            } else if (f.number == 2 && f.type == 2) {
                key_span = f.bytes;
            } else if (f.number == 3 && f.type == 2) {
                bounded = 1;
            } else {
                other = 1;
            }
        }
        if (table.p == NULL) {
            table.p = table.end = (const unsigned char *)""; /* proto3 leaves "" out */
        }
        Py_ssize_t table_len = (Py_ssize_t)(table.end - table.p);
        if (!(last_table.p && table_len == (Py_ssize_t)(last_table.end - last_table.p) &&
              memcmp(table.p, last_table.p, table_len) == 0)) {
            PyObject *name = PyBytes_FromStringAndSize((const char *)table.p, table_len);
            if (name == NULL) {
                goto done;
            }
            PyObject *spec = PyDict_GetItemWithError(memo, name);
            if (spec == NULL) {
                if (PyErr_Occurred()) {
                    Py_DECREF(name);
                    goto done;
                }
                PyObject *text = PyUnicode_DecodeUTF8((const char *)table.p, table_len, NULL);
                if (text == NULL) {
                    PyErr_Clear(); /* not UTF-8: the general path says so */
                    spec = Py_None;
                    Py_INCREF(spec);
                } else {
                    spec = PyObject_CallOneArg(route_of, text);
                    Py_DECREF(text);
                }
                if (spec == NULL || PyDict_SetItem(memo, name, spec) < 0) {
                    Py_XDECREF(spec);
                    Py_DECREF(name);
                    goto done;
                }
                Py_DECREF(spec); /* the memo holds it */
            }
            Py_DECREF(name);
            if (route_from(spec, &route) < 0) {
                goto done;
            }
            route_groups = NULL;
            if (route.spec != NULL) {
                route_groups = PyDict_GetItemWithError(groups, spec);
                if (route_groups == NULL) {
                    if (PyErr_Occurred() || (route_groups = PyDict_New()) == NULL) {
                        goto done;
                    }
                    int failed = PyDict_SetItem(groups, spec, route_groups) < 0;
                    Py_DECREF(route_groups); /* the dict holds it */
                    if (failed) {
                        goto done;
                    }
                }
            }
            last_table = table;
        }
        long long value = 0;
        if (other || route.spec == NULL || !key_span.p || !integer_key(key_span, &route, &value)) {
            PyObject *i = PyLong_FromSsize_t(index);
            if (i == NULL || PyList_Append(unlocated, i) < 0) {
                Py_XDECREF(i);
                goto done;
            }
            Py_DECREF(i);
            continue;
        }
        memcpy(key, route.head, (size_t)route.head_len);
        int digits = snprintf(key + route.head_len, 24, "%lld", value);
        Py_ssize_t key_len = route.head_len + digits;
        key[key_len++] = '}';
        long partition = (long)((murmur2((const unsigned char *)key, key_len) & 0x7fffffff) %
                                (uint32_t)route.partitions);
        PyObject *where = PyLong_FromLong(partition);
        if (where == NULL) {
            goto done;
        }
        PyObject *group = PyDict_GetItemWithError(route_groups, where);
        if (group == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(where);
                goto done;
            }
            group = Py_BuildValue("([][])");
            if (group == NULL || PyDict_SetItem(route_groups, where, group) < 0) {
                Py_XDECREF(group);
                Py_DECREF(where);
                goto done;
            }
            Py_DECREF(group); /* the dict holds it */
        }
        Py_DECREF(where);
        PyObject *i = PyLong_FromSsize_t(index);
        PyObject *k = PyBytes_FromStringAndSize(key, key_len);
        int failed = i == NULL || k == NULL || PyList_Append(PyTuple_GET_ITEM(group, 0), i) < 0 ||
                     PyList_Append(PyTuple_GET_ITEM(group, 1), k) < 0;
        Py_XDECREF(i);
        Py_XDECREF(k);
        if (failed) {
            goto done;
        }
    }
    result = Py_BuildValue("(OOO)", groups, unlocated, bounded ? Py_True : Py_False);
done:
    Py_XDECREF(groups);
    Py_XDECREF(unlocated);
    Py_XDECREF(memo);
    return result;
}

/* -- GetPath: a Get of one integer key answered on its owner, from the request's bytes ---------
 *
 * What fabric.serve.owned.OwnedGets.answer does for a parsed GetRequest, in one native call:
 * the table's route from a dict the Python side publishes (table name as sent -> (route,
 * RowPlan, check_at), the route's own object being (table, topic); a route is used until the
 * monotonic clock reaches check_at, then the general path checks it against the catalog and
 * publishes it again); the record key and partition as locate() computes them;
 * serving(topic, partition) -> (store, next offset to apply, end offset) or None;
 * store.get_stored(key); and the whole GetResponse from the RowPlan. Whatever else the request
 * holds (a bound, another key shape, a table with no published route, a partition not served
 * here, a store that fails, a row the plan declines) is left to the general path, which answers
 * it or says what is wrong.
 *
 * As a gRPC handler (handling()), the path also stands in for the handler's Python wrapper:
 * once the server's refusal is on, or whenever it declines, it calls the general handler with
 * the request's bytes. A lookup the fast path answers runs no Python code at all but the
 * store's get_stored and the materializer's serving.
 */

static PyObject *str_on, *str_get_stored, *str_answer;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *routes;    /* dict: table name bytes -> (route spec, RowPlan, check_at) */
    PyObject *serving;   /* (topic, partition) -> (store, position, end offset) | None */
    PyObject *served_by; /* bytes: Freshness.served_by */
    PyObject *refusal;   /* as a handler: an object whose .on refuses new calls; else NULL */
    PyObject *general;   /* as a handler: general(request, context); else NULL */
} GetPath;

static double monotonic_s(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now); /* time.monotonic()'s clock on Linux */
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static PyObject *answer_routed(GetPath *self, PyObject *entry, WireSpan key_span);

/* The GetResponse of a serialized GetRequest this path answers: a new reference; NULL with no
 * error set when the general path must answer; NULL with an error on a bad published route. */
static PyObject *get_answer(GetPath *self, PyObject *request) {
    if (!PyBytes_Check(request)) {
        return NULL;
    }
    WireSpan body = {(const unsigned char *)PyBytes_AS_STRING(request), NULL};
    body.end = body.p + PyBytes_GET_SIZE(request);
    WireSpan table = {NULL, NULL}, key_span = {NULL, NULL};
    while (body.p < body.end) {
        WireField f;
        if (wire_next_field(&body, &f) < 0) {
            return NULL;
        }
        if (f.number == 1 && f.type == 2) {
            table = f.bytes;
        } else if (f.number == 2 && f.type == 2) {
            key_span = f.bytes;
        } else {
            return NULL; /* a bound, or a field this path does not read */
        }
    }
    if (table.p == NULL || key_span.p == NULL) {
        return NULL;
    }
    PyObject *name = PyBytes_FromStringAndSize((const char *)table.p, table.end - table.p);
    if (name == NULL) {
        return NULL;
    }
    PyObject *entry = PyDict_GetItemWithError(self->routes, name); /* borrowed */
    Py_DECREF(name);
    if (entry == NULL) {
        return NULL;
    }
    /* Held: the Python calls below may let another thread publish the route again. */
    Py_INCREF(entry);
    PyObject *answer = answer_routed(self, entry, key_span);
    Py_DECREF(entry);
    return answer;
}

/* get_answer's part from the table's published route on. */
static PyObject *answer_routed(GetPath *self, PyObject *entry, WireSpan key_span) {
    PyObject *spec, *plan;
    double check_at;
    if (!PyArg_ParseTuple(entry, "OOd", &spec, &plan, &check_at)) {
        return NULL;
    }
    Route route;
    if (monotonic_s() >= check_at || route_from(spec, &route) < 0 || route.spec == NULL) {
        return NULL;
    }
    long long value = 0;
    if (!integer_key(key_span, &route, &value)) {
        return NULL;
    }
    char key[MAX_KEY];
    memcpy(key, route.head, (size_t)route.head_len);
    int digits = snprintf(key + route.head_len, 24, "%lld", value);
    Py_ssize_t key_len = route.head_len + digits;
    key[key_len++] = '}';
    long partition =
        (long)((murmur2((const unsigned char *)key, key_len) & 0x7fffffff) %
               (uint32_t)route.partitions);
    PyObject *where = PyTuple_GET_ITEM(spec, 5); /* (table, topic) */
    if (!PyTuple_Check(where) || PyTuple_GET_SIZE(where) != 2) {
        PyErr_SetString(PyExc_TypeError, "a published route names its (table, topic)");
        return NULL;
    }
    PyObject *answer = NULL, *record_key = NULL, *stored = NULL;
    PyObject *number = PyLong_FromLong(partition);
    PyObject *served = number == NULL ? NULL
                                      : PyObject_CallFunctionObjArgs(
                                            self->serving, PyTuple_GET_ITEM(where, 1), number, NULL);
    if (served == NULL || served == Py_None) {
        goto done;
    }
    long long position, end_offset;
    if (!PyTuple_Check(served) || PyTuple_GET_SIZE(served) != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "serving() answers (store, position, end offset) or None");
        goto done;
    }
    position = PyLong_AsLongLong(PyTuple_GET_ITEM(served, 1));
    end_offset = PyLong_AsLongLong(PyTuple_GET_ITEM(served, 2));
    if (PyErr_Occurred()) {
        goto done;
    }
    record_key = PyBytes_FromStringAndSize(key, key_len);
    if (record_key == NULL) {
        goto done;
    }
    stored = PyObject_CallMethodOneArg(PyTuple_GET_ITEM(served, 0), str_get_stored, record_key);
    if (stored == NULL) {
        PyErr_Clear(); /* closed as the partition moves away: the general path retries */
        goto done;
    }
    long long lag = end_offset > position ? end_offset - position : 0;
    PyObject *applied = PyLong_FromLongLong(position - 1);
    PyObject *behind = PyLong_FromLongLong(lag);
    if (applied != NULL && behind != NULL) {
        /* args[0] is free for the call to use (PY_VECTORCALL_ARGUMENTS_OFFSET). */
        PyObject *args[] = {NULL, plan, stored, number, applied, behind, self->served_by,
                            Py_False};
        answer = PyObject_VectorcallMethod(str_answer, args + 1,
                                           7 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    Py_XDECREF(applied);
    Py_XDECREF(behind);
    if (answer == Py_None) {
        Py_CLEAR(answer); /* the plan declines the row: the general path says why */
    }
done:
    Py_XDECREF(number);
    Py_XDECREF(served);
    Py_XDECREF(record_key);
    Py_XDECREF(stored);
    return answer;
}

/* GetPath.answer(request) -> bytes | None */
static PyObject *get_path_answer(GetPath *self, PyObject *request) {
    PyObject *answer = get_answer(self, request);
    if (answer == NULL && !PyErr_Occurred()) {
        Py_RETURN_NONE;
    }
    return answer;
}

static PyObject *get_path_call(PyObject *callable, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames) {
    GetPath *self = (GetPath *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (self->general == NULL || nargs != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "a GetPath made by handling() is called as handler(request, context)");
        return NULL;
    }
    PyObject *on = PyObject_GetAttr(self->refusal, str_on);
    if (on == NULL) {
        return NULL;
    }
    int refusing = PyObject_IsTrue(on);
    Py_DECREF(on);
    if (refusing < 0) {
        return NULL;
    }
    if (!refusing) {
        PyObject *answer = get_answer(self, args[0]);
        if (answer != NULL || PyErr_Occurred()) {
            return answer;
        }
    }
    return PyObject_Vectorcall(self->general, args, nargs, NULL);
}

static PyObject *make_path(PyTypeObject *type, PyObject *routes, PyObject *serving,
                           PyObject *served_by, PyObject *refusal, PyObject *general) {
    GetPath *self = (GetPath *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = get_path_call;
    Py_INCREF(routes);
    self->routes = routes;
    Py_INCREF(serving);
    self->serving = serving;
    Py_INCREF(served_by);
    self->served_by = served_by;
    Py_XINCREF(refusal);
    self->refusal = refusal;
    Py_XINCREF(general);
    self->general = general;
    return (PyObject *)self;
}

static PyObject *get_path_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *routes, *serving, *served_by;
    if ((kwargs && PyDict_GET_SIZE(kwargs)) ||
        !PyArg_ParseTuple(args, "O!OS:GetPath", &PyDict_Type, &routes, &serving, &served_by)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "GetPath(routes, serving, served_by)");
        }
        return NULL;
    }
    return make_path(type, routes, serving, served_by, NULL, NULL);
}

/* GetPath.handling(refusal, general) -> the same path as a gRPC handler. */
static PyObject *get_path_handling(GetPath *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "handling(refusal, general: callable)");
        return NULL;
    }
    return make_path(Py_TYPE(self), self->routes, self->serving, self->served_by, args[0],
                     args[1]);
}

static int get_path_traverse(GetPath *self, visitproc visit, void *arg) {
    Py_VISIT(self->routes);
    Py_VISIT(self->serving);
    Py_VISIT(self->served_by);
    Py_VISIT(self->refusal);
    Py_VISIT(self->general);
    return 0;
}

static int get_path_clear(GetPath *self) {
    Py_CLEAR(self->routes);
    Py_CLEAR(self->serving);
    Py_CLEAR(self->served_by);
    Py_CLEAR(self->refusal);
    Py_CLEAR(self->general);
    return 0;
}

static void get_path_dealloc(GetPath *self) {
    PyObject_GC_UnTrack(self);
    get_path_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef get_path_methods[] = {
    {"answer", (PyCFunction)get_path_answer, METH_O,
     "answer(request: bytes) -> bytes | None: the serialized GetResponse, or None for the "
     "general path."},
    {"handling", (PyCFunction)(void (*)(void))get_path_handling, METH_FASTCALL,
     "handling(refusal, general) -> this path as a gRPC handler(request, context)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GetPathType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "fabric.serve._locate.GetPath",
    .tp_basicsize = sizeof(GetPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "GetPath(routes, serving, served_by): a Get of one integer key answered on its "
              "owner from the request's bytes.",
    .tp_new = get_path_new,
    .tp_dealloc = (destructor)get_path_dealloc,
    .tp_traverse = (traverseproc)get_path_traverse,
    .tp_clear = (inquiry)get_path_clear,
    .tp_vectorcall_offset = offsetof(GetPath, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_methods = get_path_methods,
};

static PyMethodDef module_methods[] = {
    {"locate", (PyCFunction)(void (*)(void))locate, METH_FASTCALL,
     "Where the lookups of a serialized BatchGetRequest live."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef locate_module = {
    PyModuleDef_HEAD_INIT, "_locate", "The native half of fabric.serve.owned.", -1,
    module_methods,        NULL,      NULL,                                    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__locate(void) {
    if ((str_on = PyUnicode_InternFromString("on")) == NULL ||
        (str_get_stored = PyUnicode_InternFromString("get_stored")) == NULL ||
        (str_answer = PyUnicode_InternFromString("answer")) == NULL ||
        PyType_Ready(&GetPathType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&locate_module);
    if (module != NULL && PyModule_AddObjectRef(module, "GetPath", (PyObject *)&GetPathType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
