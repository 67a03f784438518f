/* The native half of fabric.client.messages: a BatchGetResponse's rows as psycopg values.
 *
 * Decoding a hundred rows message by message in Python cost the client more than the call that
 * fetched them. Here one pass over the serialized answer gives each result's status, message,
 * found flag, row (a dict of column name to value, in column order) and freshness. Integers,
 * booleans, doubles, text and bytes become Python values here; every other kind goes to the
 * Python decoder of its kind (fabric/rpc/values.py, passed in by field number), which decides
 * its value and its errors exactly as the Python path does. tests/unit/test_rows_native.py
 * holds the two to each other.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include "../rpc/protowire.h"

#define VALUE_KINDS 16 /* Value's oneof fields are numbered 1..15 */
#define MAX_COLUMNS 64 /* column names remembered from one row to the next */

enum {
    KIND_NULL = 1,
    KIND_BOOLEAN = 2,
    KIND_INT = 3,
    KIND_DECIMAL = 4,
    KIND_DOUBLE = 5,
    KIND_TEXT = 6,
    KIND_BYTES = 7,
    KIND_INTERVAL = 13,
    KIND_ARRAY = 15,
};

static PyObject *malformed(void) {
    PyErr_SetString(PyExc_ValueError, "the answer is not a serialized BatchGetResponse");
    return NULL;
}

static PyObject *text_of(WireSpan s) {
    return PyUnicode_DecodeUTF8((const char *)s.p, s.end - s.p, NULL);
}

/* The wire type of each Value kind: 0 varint, 1 eight bytes, 2 length-delimited. */
static const int KIND_WIRE_TYPE[VALUE_KINDS] = {-1, 0, 0, 0, 2, 1, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2};

/* A Value's psycopg value; decoders[kind] for the kinds decoded in Python. */
static PyObject *decode_value(WireSpan value, PyObject *decoders) {
    WireField f = {0}, kind = {0};
    while (value.p < value.end) {
        if (wire_next_field(&value, &f) < 0) {
            return malformed();
        }
        if (f.number >= 1 && f.number < VALUE_KINDS) {
            if (f.type != KIND_WIRE_TYPE[f.number]) {
                return malformed();
            }
            kind = f; /* a oneof: the last one set wins, as protobuf parses it */
        }
    }
    switch (kind.number) {
    case 0:
        PyErr_SetString(PyExc_ValueError, "the value has no kind set");
        return NULL;
    case KIND_NULL:
        Py_RETURN_NONE;
    case KIND_BOOLEAN:
        return PyBool_FromLong(kind.varint != 0);
    case KIND_INT:
        return PyLong_FromLongLong((long long)kind.varint);
    case KIND_DOUBLE: {
        double d;
        memcpy(&d, &kind.varint, sizeof d);
        return PyFloat_FromDouble(d);
    }
    case KIND_TEXT:
        return text_of(kind.bytes);
    case KIND_BYTES:
        return PyBytes_FromStringAndSize((const char *)kind.bytes.p,
                                         kind.bytes.end - kind.bytes.p);
    }
    PyObject *decode = PyTuple_GET_ITEM(decoders, kind.number);
    PyObject *raw;
    if (kind.number == KIND_INTERVAL || kind.number == KIND_ARRAY) {
        raw = PyBytes_FromStringAndSize((const char *)kind.bytes.p, kind.bytes.end - kind.bytes.p);
    } else if (kind.type == 2) { /* decimal, uuid, json: text */
        raw = text_of(kind.bytes);
    } else if (kind.number == 9) { /* date: int32 */
        raw = PyLong_FromLong((long)(int32_t)kind.varint);
    } else {
        raw = PyLong_FromLongLong((long long)kind.varint);
    }
    if (raw == NULL) {
        return NULL;
    }
    PyObject *decoded = PyObject_CallOneArg(decode, raw);
    Py_DECREF(raw);
    return decoded;
}

typedef struct {
    WireSpan name;
    PyObject *text; /* owned */
} Remembered;

/* A Row as {name: value}; names are remembered by position, as rows of one table repeat them. */
static PyObject *decode_row(WireSpan row, PyObject *decoders, Remembered *names) {
    PyObject *values = PyDict_New();
    if (values == NULL) {
        return NULL;
    }
    WireField field = {0}, f = {0};
    for (int position = 0; row.p < row.end; position++) {
        if (wire_next_field(&row, &field) < 0 || field.number != 1 || field.type != 2) {
            Py_DECREF(values);
            return malformed();
        }
        WireSpan name = {(const unsigned char *)"", (const unsigned char *)""}, value = name;
        while (field.bytes.p < field.bytes.end) {
            if (wire_next_field(&field.bytes, &f) < 0) {
                Py_DECREF(values);
                return malformed();
            }
            if (f.number == 1 && f.type == 2) {
                name = f.bytes;
            } else if (f.number == 2 && f.type == 2) {
                value = f.bytes;
            }
        }
        PyObject *key;
        Py_ssize_t n = name.end - name.p;
        Remembered *known = position < MAX_COLUMNS ? &names[position] : NULL;
        if (known && known->text && known->name.end - known->name.p == n &&
            memcmp(known->name.p, name.p, (size_t)n) == 0) {
            key = known->text;
            Py_INCREF(key);
        } else {
            key = text_of(name);
            if (key == NULL) {
                Py_DECREF(values);
                return NULL;
            }
            if (known) {
                Py_XSETREF(known->text, Py_NewRef(key));
                known->name = name;
            }
        }
        PyObject *decoded = decode_value(value, decoders);
        int failed = decoded == NULL || PyDict_SetItem(values, key, decoded) < 0;
        Py_DECREF(key);
        Py_XDECREF(decoded);
        if (failed) {
            Py_DECREF(values);
            return NULL;
        }
    }
    return values;
}

/* Freshness as (lsn, commit_time_ms, partition, offset, applied_offset, lag_records,
 * served_by); proto3 leaves zeros and "" out. */
static PyObject *decode_freshness(WireSpan s, PyObject **served_by_memo, WireSpan *served_by_seen) {
    uint64_t numbers[7] = {0};
    WireSpan served_by = {NULL, NULL};
    WireField f = {0};
    while (s.p < s.end) {
        if (wire_next_field(&s, &f) < 0) {
            return malformed();
        }
        if (f.number >= 1 && f.number <= 6 && f.type == 0) {
            numbers[f.number] = f.varint;
        } else if (f.number == 7 && f.type == 2) {
            served_by = f.bytes;
        }
    }
    PyObject *who;
    Py_ssize_t n = served_by.p ? served_by.end - served_by.p : 0;
    if (*served_by_memo && served_by_seen->end - served_by_seen->p == n &&
        (n == 0 || memcmp(served_by_seen->p, served_by.p, (size_t)n) == 0)) {
        who = Py_NewRef(*served_by_memo);
    } else {
        who = n ? text_of(served_by) : PyUnicode_FromStringAndSize("", 0);
        if (who == NULL) {
            return NULL;
        }
        Py_XSETREF(*served_by_memo, Py_NewRef(who));
        if (served_by.p) {
            *served_by_seen = served_by;
        } else {
            served_by_seen->p = served_by_seen->end = (const unsigned char *)"";
        }
    }
    return Py_BuildValue("(KLlLLLN)", (unsigned long long)numbers[1], (long long)numbers[2],
                         (long)(int32_t)numbers[3], (long long)numbers[4], (long long)numbers[5],
                         (long long)numbers[6], who);
}

/* decode_results(answer, decoders) -> [(status, message, found, row or None, freshness)] */
static PyObject *decode_results(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyTuple_Check(args[1]) ||
        PyTuple_GET_SIZE(args[1]) != VALUE_KINDS) {
        PyErr_SetString(PyExc_TypeError,
                        "decode_results(answer: bytes, decoders: tuple of 16 callables)");
        return NULL;
    }
    PyObject *decoders = args[1];
    WireSpan answer = {(const unsigned char *)PyBytes_AS_STRING(args[0]), NULL};
    answer.end = answer.p + PyBytes_GET_SIZE(args[0]);
    Remembered names[MAX_COLUMNS] = {{{NULL, NULL}, NULL}};
    PyObject *ok = PyUnicode_FromString("OK");
    PyObject *empty = PyUnicode_FromStringAndSize("", 0);
    PyObject *served_by = NULL;
    WireSpan served_by_seen = {NULL, NULL};
    PyObject *results = PyList_New(0);
    PyObject *done = NULL;
    if (ok == NULL || empty == NULL || results == NULL) {
        goto finally;
    }
    WireField field = {0}, f = {0};
    while (answer.p < answer.end) {
        if (wire_next_field(&answer, &field) < 0 || field.number != 1 || field.type != 2) {
            malformed();
            goto finally;
        }
        WireSpan status = {NULL, NULL}, message = {NULL, NULL}, row = {NULL, NULL};
        WireSpan freshness = {(const unsigned char *)"", (const unsigned char *)""};
        int found = 0;
        while (field.bytes.p < field.bytes.end) {
            if (wire_next_field(&field.bytes, &f) < 0) {
                malformed();
                goto finally;
            }
            if (f.type == 2 && f.number == 1) {
                status = f.bytes;
            } else if (f.type == 2 && f.number == 2) {
                message = f.bytes;
            } else if (f.type == 0 && f.number == 3) {
                found = f.varint != 0;
            } else if (f.type == 2 && f.number == 4) {
                row = f.bytes;
            } else if (f.type == 2 && f.number == 5) {
                freshness = f.bytes;
            }
        }
        PyObject *status_text, *message_text, *values = NULL, *fresh = NULL, *item = NULL;
        if (status.p && status.end - status.p == 2 && memcmp(status.p, "OK", 2) == 0) {
            status_text = Py_NewRef(ok);
        } else {
            status_text = status.p ? text_of(status) : Py_NewRef(empty);
        }
        message_text = NULL;
        if (status_text) {
            message_text = message.p ? text_of(message) : Py_NewRef(empty);
        }
        if (message_text) {
            if (found) {
                if (row.p == NULL) {
                    row.p = row.end = (const unsigned char *)"";
                }
                values = decode_row(row, decoders, names);
            } else {
                values = Py_NewRef(Py_None);
            }
        }
        if (values) {
            fresh = decode_freshness(freshness, &served_by, &served_by_seen);
        }
        if (fresh) {
            item = PyTuple_Pack(5, status_text, message_text, found ? Py_True : Py_False, values,
                                fresh);
        }
        Py_XDECREF(status_text);
        Py_XDECREF(message_text);
        Py_XDECREF(values);
        Py_XDECREF(fresh);
        if (item == NULL || PyList_Append(results, item) < 0) {
            Py_XDECREF(item);
            goto finally;
        }
        Py_DECREF(item);
    }
    done = Py_NewRef(results);
finally:
    for (int i = 0; i < MAX_COLUMNS; i++) {
        Py_XDECREF(names[i].text);
    }
    Py_XDECREF(ok);
    Py_XDECREF(empty);
    Py_XDECREF(served_by);
    Py_XDECREF(results);
    return done;
}

static PyMethodDef module_methods[] = {
    {"decode_results", (PyCFunction)(void (*)(void))decode_results, METH_FASTCALL,
     "A serialized BatchGetResponse's results, rows as psycopg values."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef rows_module = {
    PyModuleDef_HEAD_INIT, "_rows", "The native half of fabric.client.messages.", -1,
    module_methods,        NULL,    NULL,                                         NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__rows(void) { return PyModule_Create(&rows_module); }
