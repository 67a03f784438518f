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

#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

PyMODINIT_FUNC PyInit__locate(void) { return PyModule_Create(&locate_module); }
