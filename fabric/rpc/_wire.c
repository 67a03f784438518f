/* The native half of fabric.rpc.wire: stored rows written as answers in protobuf's wire format.
 *
 * A lookup on a partition's owner spends most of its own time turning a stored Debezium image
 * into the bytes of a Row, and on a busy two-core machine every Python step of that is paid
 * again in cold caches. Here the whole answer (stored header, image, row, freshness, framing)
 * is written in one call.
 *
 * This code only ever writes what fabric/rpc/wire.py's Python writers would write: for any
 * value it does not handle exactly as they do, it calls the column's Python writer, and for
 * anything that may raise (an unknown column, a TOAST placeholder, a misfit value, a stored
 * value it cannot read) it declines, returning None, and the caller takes the Python path,
 * which raises the right error. tests/unit/test_wire_native.py holds the two to each other.
 *
 * Wire format: a field is a varint tag (number << 3 | wire type) then a varint (type 0), eight
 * little-endian bytes (type 1) or a varint length and the bytes (type 2).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* Column kinds; fabric/rpc/wire.py names the same numbers. */
enum {
    KIND_PYTHON = 0,      /* always the column's Python writer */
    KIND_INTEGER = 1,     /* a JSON integer within [low, high]: tag + varint */
    KIND_TEXT = 2,        /* a string: tag + length + UTF-8 */
    KIND_BOOLEAN = 3,     /* true / false */
    KIND_DECIMAL = 4,     /* Debezium's plain decimal text -?digits(.digits)? */
    KIND_DOUBLE = 5,      /* a JSON float: tag + 8 bytes */
    KIND_TIMESTAMPTZ = 6, /* ISO text YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z: tag + varint micros */
    KIND_JSON = 7,        /* a string the JSON parser accepts */
    KIND_UUID = 8,        /* canonical lower-case text */
    KIND_LAST = KIND_UUID
};

/* The stored value's header: fabric/state/row.py, "<BBqqq". */
#define STORED_VERSION 1
#define STORED_HEADER 26
#define STORED_NO_LSN 0x01
#define STORED_NO_COMMIT_TS 0x02

static const char NULL_VALUE[2] = {0x08, 0x00};

/* -- an output buffer ----------------------------------------------------------------------- */

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    char inline_data[1024];
} Buffer;

static void buffer_init(Buffer *b) {
    b->data = b->inline_data;
    b->len = 0;
    b->cap = (Py_ssize_t)sizeof(b->inline_data);
}

static void buffer_free(Buffer *b) {
    if (b->data != b->inline_data) {
        PyMem_Free(b->data);
    }
}

static int buffer_reserve(Buffer *b, Py_ssize_t more) {
    if (b->len + more <= b->cap) {
        return 0;
    }
    Py_ssize_t cap = b->cap * 2;
    while (cap < b->len + more) {
        cap *= 2;
    }
    char *grown = PyMem_Malloc((size_t)cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(grown, b->data, (size_t)b->len);
    buffer_free(b);
    b->data = grown;
    b->cap = cap;
    return 0;
}

static int buffer_put(Buffer *b, const char *data, Py_ssize_t n) {
    if (buffer_reserve(b, n) < 0) {
        return -1;
    }
    memcpy(b->data + b->len, data, (size_t)n);
    b->len += n;
    return 0;
}

/* `n` as a varint into `out` (at least 10 bytes); returns its length. */
static int put_varint(unsigned char *out, uint64_t n) {
    int i = 0;
    while (n >= 0x80) {
        out[i++] = (unsigned char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    out[i++] = (unsigned char)n;
    return i;
}

static int varint_size(uint64_t n) {
    int size = 1;
    while (n >= 0x80) {
        n >>= 7;
        size++;
    }
    return size;
}

static int buffer_varint(Buffer *b, uint64_t n) {
    unsigned char tmp[10];
    return buffer_put(b, (const char *)tmp, put_varint(tmp, n));
}

/* -- one value ------------------------------------------------------------------------------ */

/* A value written as the head (its Value tag and any varint or fixed bytes) then `data`. */
typedef struct {
    unsigned char head[16];
    int head_len;
    const char *data;
    Py_ssize_t data_len;
    PyObject *owned; /* what `data` points into, when this call made it */
} Encoded;

typedef struct {
    PyObject *name;    /* str */
    PyObject *prefix;  /* bytes: Field.name and the Field.value tag */
    int kind;
    unsigned char tag; /* the Value field's tag byte */
    long long low, high;
    PyObject *write;   /* the column's Python writer: value -> bytes, raising on a misfit */
    PyObject *toasted; /* tuple: Debezium's TOAST placeholder spellings for the column */
    PyObject *missing; /* bytes: the Value of a column the image lacks */
} Column;

typedef struct {
    PyObject_HEAD
    Py_ssize_t ncolumns;
    Column *columns;
    PyObject *loads; /* the JSON parser of images and json values (orjson.loads) */
} RowPlan;

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int plain_decimal(const char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    if (i < n && s[i] == '-') {
        i++;
    }
    Py_ssize_t start = i;
    while (i < n && is_digit(s[i])) {
        i++;
    }
    if (i == start) {
        return 0;
    }
    if (i == n) {
        return 1;
    }
    if (s[i] != '.') {
        return 0;
    }
    start = ++i;
    while (i < n && is_digit(s[i])) {
        i++;
    }
    return i > start && i == n;
}

static int digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(s[i])) {
            return 0;
        }
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static long long days_from_civil(int y, int m, int d) {
    y -= m <= 2;
    const long long era = (y >= 0 ? y : y - 399) / 400;
    const long long yoe = y - era * 400;
    const long long doy = (153LL * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Microseconds since the epoch of Debezium's UTC text, or 0 in *ok when it is not exactly
 * YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z with a date and time Python's datetime holds. */
static long long utc_micros(const char *s, Py_ssize_t n, int *ok) {
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year, month, day, hour, minute, second, fraction = 0;
    *ok = 0;
    if (n < 20 || s[n - 1] != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
        s[13] != ':' || s[16] != ':') {
        return 0;
    }
    if (!digits(s, 4, &year) || !digits(s + 5, 2, &month) || !digits(s + 8, 2, &day) ||
        !digits(s + 11, 2, &hour) || !digits(s + 14, 2, &minute) ||
        !digits(s + 17, 2, &second)) {
        return 0;
    }
    Py_ssize_t rest = n - 20; /* between the seconds and the 'Z' */
    if (rest > 0) {
        int places = (int)rest - 1;
        if (s[19] != '.' || places < 1 || places > 6 || !digits(s + 20, places, &fraction)) {
            return 0;
        }
        for (int i = places; i < 6; i++) {
            fraction *= 10;
        }
    }
    if (year < 1 || month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) {
        return 0;
    }
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    int last = month_days[month - 1] + (month == 2 && leap);
    if (day < 1 || day > last) {
        return 0;
    }
    *ok = 1;
    long long days = days_from_civil(year, month, day);
    return ((days * 86400 + hour * 3600 + minute * 60 + second) * 1000000LL) + fraction;
}

static int canonical_uuid(const char *s, Py_ssize_t n) {
    if (n != 36) {
        return 0;
    }
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') {
                return 0;
            }
        } else if (!is_digit(c) && !(c >= 'a' && c <= 'f')) {
            return 0;
        }
    }
    return 1;
}

static void head_tag_varint(Encoded *e, unsigned char tag, uint64_t n) {
    e->head[0] = tag;
    e->head_len = 1 + put_varint(e->head + 1, n);
}

/* 1: written into `e`; 0: the Python writer must write it; -1: an error is set. */
static int encode_native(const Column *c, PyObject *plan_loads, PyObject *v, Encoded *e) {
    switch (c->kind) {
    case KIND_INTEGER: {
        if (!PyLong_CheckExact(v)) {
            return 0;
        }
        int overflow = 0;
        long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (n == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (overflow || n < c->low || n > c->high) {
            return 0;
        }
        head_tag_varint(e, c->tag, (uint64_t)n);
        return 1;
    }
    case KIND_BOOLEAN:
        if (v != Py_True && v != Py_False) {
            return 0;
        }
        e->head[0] = c->tag;
        e->head[1] = v == Py_True;
        e->head_len = 2;
        return 1;
    case KIND_DOUBLE: {
        if (!PyFloat_CheckExact(v)) {
            return 0;
        }
        e->head[0] = c->tag;
        if (PyFloat_Pack8(PyFloat_AS_DOUBLE(v), (char *)e->head + 1, 1) < 0) {
            return -1;
        }
        e->head_len = 9;
        return 1;
    }
    case KIND_TEXT:
    case KIND_DECIMAL:
    case KIND_TIMESTAMPTZ:
    case KIND_JSON:
    case KIND_UUID: {
        if (!PyUnicode_CheckExact(v)) {
            return 0;
        }
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(v, &n);
        if (s == NULL) {
            PyErr_Clear(); /* lone surrogates: the Python writer says so */
            return 0;
        }
        if (c->kind == KIND_TIMESTAMPTZ) {
            int ok;
            long long micros = utc_micros(s, n, &ok);
            if (!ok) {
                return 0;
            }
            head_tag_varint(e, c->tag, (uint64_t)micros);
            return 1;
        }
        if (c->kind == KIND_DECIMAL && !plain_decimal(s, n)) {
            return 0;
        }
        if (c->kind == KIND_UUID && !canonical_uuid(s, n)) {
            return 0;
        }
        if (c->kind == KIND_JSON) {
            PyObject *parsed = PyObject_CallOneArg(plan_loads, v);
            if (parsed == NULL) {
                PyErr_Clear(); /* beyond the parser: the Python writer judges it */
                return 0;
            }
            Py_DECREF(parsed);
        }
        head_tag_varint(e, c->tag, (uint64_t)n);
        e->data = s;
        e->data_len = n;
        return 1;
    }
    default:
        return 0;
    }
}

/* -- a row ---------------------------------------------------------------------------------- */

/* 1: the Row's fields appended to `out`; 0: declined (the Python path must answer, and may
 * raise); -1: an error is set. */
static int write_row(RowPlan *plan, PyObject *document, int ignore_unknown, Buffer *out) {
    if (!PyDict_CheckExact(document)) {
        return 0;
    }
    Py_ssize_t present = 0;
    for (Py_ssize_t i = 0; i < plan->ncolumns; i++) {
        const Column *c = &plan->columns[i];
        Encoded e = {.head_len = 0, .data = NULL, .data_len = 0, .owned = NULL};
        PyObject *v = PyDict_GetItemWithError(document, c->name);
        if (v == NULL) {
            if (PyErr_Occurred()) {
                return -1;
            }
            e.data = PyBytes_AS_STRING(c->missing);
            e.data_len = PyBytes_GET_SIZE(c->missing);
        } else {
            present++;
            if (v == Py_None) {
                e.data = NULL_VALUE;
                e.data_len = 2;
            } else {
                if ((PyUnicode_Check(v) || PyList_Check(v)) && PyTuple_GET_SIZE(c->toasted)) {
                    int toasted = PySequence_Contains(c->toasted, v);
                    if (toasted != 0) {
                        return toasted < 0 ? -1 : 0;
                    }
                }
                int done = encode_native(c, plan->loads, v, &e);
                if (done < 0) {
                    return -1;
                }
                if (!done) {
                    e.owned = PyObject_CallOneArg(c->write, v);
                    if (e.owned == NULL || !PyBytes_Check(e.owned)) {
                        /* A misfit: the Python path raises it, after its own checks. */
                        Py_XDECREF(e.owned);
                        PyErr_Clear();
                        return 0;
                    }
                    e.data = PyBytes_AS_STRING(e.owned);
                    e.data_len = PyBytes_GET_SIZE(e.owned);
                }
            }
        }
        Py_ssize_t size = e.head_len + e.data_len;
        Py_ssize_t prefix_len = PyBytes_GET_SIZE(c->prefix);
        Py_ssize_t field = prefix_len + varint_size((uint64_t)size) + size;
        int failed = buffer_reserve(out, 1 + 10 + field) < 0;
        if (!failed) {
            char *p = out->data + out->len;
            *p++ = 0x0a;
            p += put_varint((unsigned char *)p, (uint64_t)field);
            memcpy(p, PyBytes_AS_STRING(c->prefix), (size_t)prefix_len);
            p += prefix_len;
            p += put_varint((unsigned char *)p, (uint64_t)size);
            memcpy(p, e.head, (size_t)e.head_len);
            p += e.head_len;
            if (e.data_len) {
                memcpy(p, e.data, (size_t)e.data_len);
                p += e.data_len;
            }
            out->len = p - out->data;
        }
        Py_XDECREF(e.owned);
        if (failed) {
            return -1;
        }
    }
    if (!ignore_unknown && present != PyDict_GET_SIZE(document)) {
        return 0; /* columns the definition lacks */
    }
    return 1;
}

/* -- freshness and the answers around a row ------------------------------------------------- */

typedef struct {
    long long lsn, commit_time_ms, partition, offset, applied_offset, lag_records;
    const char *served_by;
    Py_ssize_t served_by_len;
} Freshness;

static int write_freshness(const Freshness *f, Buffer *out) {
    /* Field order and proto3's omitted zeros, as protobuf serializes a Freshness. */
    const long long numbers[6] = {f->lsn,    f->commit_time_ms, f->partition,
                                  f->offset, f->applied_offset, f->lag_records};
    for (int i = 0; i < 6; i++) {
        if (numbers[i] != 0) {
            char tag = (char)((i + 1) << 3);
            if (buffer_put(out, &tag, 1) < 0 || buffer_varint(out, (uint64_t)numbers[i]) < 0) {
                return -1;
            }
        }
    }
    if (f->served_by_len) {
        char tag = (7 << 3) | 2;
        if (buffer_put(out, &tag, 1) < 0 || buffer_varint(out, (uint64_t)f->served_by_len) < 0 ||
            buffer_put(out, f->served_by, f->served_by_len) < 0) {
            return -1;
        }
    }
    return 0;
}

/* One answer to `out`: a GetResponse, or a LookupResult with status OK when `lookup`.
 * 1 written, 0 declined, -1 error. */
static int write_answer(RowPlan *plan, PyObject *stored, Freshness *f, int lookup, Buffer *out) {
    Buffer row, fresh;
    buffer_init(&row);
    buffer_init(&fresh);
    int found = stored != Py_None;
    int result = 1;
    if (found) {
        if (!PyBytes_Check(stored)) {
            PyErr_SetString(PyExc_TypeError, "a stored value is bytes or None");
            result = -1;
            goto done;
        }
        const unsigned char *v = (const unsigned char *)PyBytes_AS_STRING(stored);
        Py_ssize_t n = PyBytes_GET_SIZE(stored);
        if (n < STORED_HEADER || v[0] != STORED_VERSION ||
            (v[1] & ~(STORED_NO_LSN | STORED_NO_COMMIT_TS))) {
            result = 0; /* the Python path reports the damage */
            goto done;
        }
        int64_t lsn, commit_ts_ms, offset;
        memcpy(&lsn, v + 2, 8);
        memcpy(&commit_ts_ms, v + 10, 8);
        memcpy(&offset, v + 18, 8);
        f->lsn = (v[1] & STORED_NO_LSN) ? 0 : lsn;
        f->commit_time_ms = (v[1] & STORED_NO_COMMIT_TS) ? 0 : commit_ts_ms;
        f->offset = offset;
        PyObject *image = PyMemoryView_FromMemory((char *)v + STORED_HEADER,
                                                  n - STORED_HEADER, PyBUF_READ);
        if (image == NULL) {
            result = -1;
            goto done;
        }
        PyObject *document = PyObject_CallOneArg(plan->loads, image);
        Py_DECREF(image);
        if (document == NULL) {
            PyErr_Clear();
            result = 0;
            goto done;
        }
        result = write_row(plan, document, 0, &row);
        Py_DECREF(document);
        if (result <= 0) {
            goto done;
        }
    } else {
        f->lsn = 0;
        f->commit_time_ms = 0;
        f->offset = -1;
    }
    if (write_freshness(f, &fresh) < 0) {
        result = -1;
        goto done;
    }
    if (lookup) {
        static const char ok[4] = {0x0a, 0x02, 'O', 'K'};
        if (buffer_put(out, ok, 4) < 0) {
            result = -1;
            goto done;
        }
    }
    if (found) {
        const char found_true[2] = {lookup ? 0x18 : 0x08, 0x01};
        char row_tag = lookup ? 0x22 : 0x12;
        if (buffer_put(out, found_true, 2) < 0 || buffer_put(out, &row_tag, 1) < 0 ||
            buffer_varint(out, (uint64_t)row.len) < 0 || buffer_put(out, row.data, row.len) < 0) {
            result = -1;
            goto done;
        }
    }
    char fresh_tag = lookup ? 0x2a : 0x1a;
    if (buffer_put(out, &fresh_tag, 1) < 0 || buffer_varint(out, (uint64_t)fresh.len) < 0 ||
        buffer_put(out, fresh.data, fresh.len) < 0) {
        result = -1;
    }
done:
    buffer_free(&row);
    buffer_free(&fresh);
    return result;
}

/* -- RowPlan -------------------------------------------------------------------------------- */

static void plan_clear_columns(RowPlan *self) {
    for (Py_ssize_t i = 0; i < self->ncolumns; i++) {
        Column *c = &self->columns[i];
        Py_XDECREF(c->name);
        Py_XDECREF(c->prefix);
        Py_XDECREF(c->write);
        Py_XDECREF(c->toasted);
        Py_XDECREF(c->missing);
    }
    PyMem_Free(self->columns);
    self->columns = NULL;
    self->ncolumns = 0;
}

static void plan_dealloc(RowPlan *self) {
    plan_clear_columns(self);
    Py_XDECREF(self->loads);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int plan_init(RowPlan *self, PyObject *args, PyObject *kwds) {
    PyObject *columns, *loads;
    static char *keywords[] = {"columns", "loads", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O:RowPlan", keywords, &PyTuple_Type,
                                     &columns, &loads)) {
        return -1;
    }
    plan_clear_columns(self);
    Py_ssize_t n = PyTuple_GET_SIZE(columns);
    self->columns = PyMem_Calloc((size_t)(n ? n : 1), sizeof(Column));
    if (self->columns == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Column *c = &self->columns[i];
        int kind, tag;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(columns, i), "O!O!iiLLOO!O!:RowPlan column",
                              &PyUnicode_Type, &c->name, &PyBytes_Type, &c->prefix, &kind, &tag,
                              &c->low, &c->high, &c->write, &PyTuple_Type, &c->toasted,
                              &PyBytes_Type, &c->missing)) {
            c->name = c->prefix = c->write = c->toasted = c->missing = NULL;
            self->ncolumns = i;
            return -1;
        }
        self->ncolumns = i + 1;
        Py_INCREF(c->name);
        Py_INCREF(c->prefix);
        Py_INCREF(c->write);
        Py_INCREF(c->toasted);
        Py_INCREF(c->missing);
        if (kind < KIND_PYTHON || kind > KIND_LAST || tag < 0 || tag > 0x7f ||
            !PyCallable_Check(c->write)) {
            PyErr_Format(PyExc_ValueError, "column %zd: kind %d, tag %d or writer is not valid",
                         i, kind, tag);
            return -1;
        }
        c->kind = kind;
        c->tag = (unsigned char)tag;
    }
    Py_INCREF(loads);
    Py_XSETREF(self->loads, loads);
    return 0;
}

static PyObject *plan_row(RowPlan *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "row(document, ignore_unknown)");
        return NULL;
    }
    int ignore_unknown = PyObject_IsTrue(args[1]);
    if (ignore_unknown < 0) {
        return NULL;
    }
    Buffer out;
    buffer_init(&out);
    int written = write_row(self, args[0], ignore_unknown, &out);
    PyObject *result = NULL;
    if (written > 0) {
        result = PyBytes_FromStringAndSize(out.data, out.len);
    } else if (written == 0) {
        result = Py_NewRef(Py_None);
    }
    buffer_free(&out);
    return result;
}

static int parse_freshness(PyObject *const *args, Freshness *f) {
    /* args: partition, applied_offset, lag_records, served_by (bytes) */
    f->partition = PyLong_AsLongLong(args[0]);
    f->applied_offset = PyLong_AsLongLong(args[1]);
    f->lag_records = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred()) {
        return -1;
    }
    if (!PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "served_by is bytes");
        return -1;
    }
    f->served_by = PyBytes_AS_STRING(args[3]);
    f->served_by_len = PyBytes_GET_SIZE(args[3]);
    return 0;
}

static PyObject *plan_answer(RowPlan *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "answer(stored, partition, applied_offset, lag_records, served_by, lookup)");
        return NULL;
    }
    Freshness f;
    if (parse_freshness(args + 1, &f) < 0) {
        return NULL;
    }
    int lookup = PyObject_IsTrue(args[5]);
    if (lookup < 0) {
        return NULL;
    }
    Buffer out;
    buffer_init(&out);
    int written = write_answer(self, args[0], &f, lookup, &out);
    PyObject *result = NULL;
    if (written > 0) {
        result = PyBytes_FromStringAndSize(out.data, out.len);
    } else if (written == 0) {
        result = Py_NewRef(Py_None);
    }
    buffer_free(&out);
    return result;
}

static PyObject *plan_lookup_results(RowPlan *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "lookup_results(stored: list, partition, applied_offset, lag_records, "
                        "served_by)");
        return NULL;
    }
    Freshness f;
    if (parse_freshness(args + 1, &f) < 0) {
        return NULL;
    }
    PyObject *stored = args[0];
    Py_ssize_t n = PyList_GET_SIZE(stored);
    PyObject *results = PyList_New(n);
    if (results == NULL) {
        return NULL;
    }
    Buffer out;
    buffer_init(&out);
    for (Py_ssize_t i = 0; i < n; i++) {
        out.len = 0;
        int written = write_answer(self, PyList_GET_ITEM(stored, i), &f, 1, &out);
        PyObject *item;
        if (written > 0) {
            item = PyBytes_FromStringAndSize(out.data, out.len);
        } else if (written == 0) {
            item = Py_NewRef(Py_None);
        } else {
            item = NULL;
        }
        if (item == NULL) {
            buffer_free(&out);
            Py_DECREF(results);
            return NULL;
        }
        PyList_SET_ITEM(results, i, item);
    }
    buffer_free(&out);
    return results;
}

static PyMethodDef plan_methods[] = {
    {"row", (PyCFunction)(void (*)(void))plan_row, METH_FASTCALL,
     "row(document, ignore_unknown) -> bytes | None: the serialized Row, or None when the "
     "Python writer must answer."},
    {"answer", (PyCFunction)(void (*)(void))plan_answer, METH_FASTCALL,
     "answer(stored, partition, applied_offset, lag_records, served_by, lookup) -> bytes | None: "
     "a serialized GetResponse (LookupResult when lookup) of a stored value or None (not found)."},
    {"lookup_results", (PyCFunction)(void (*)(void))plan_lookup_results, METH_FASTCALL,
     "lookup_results(stored, partition, applied_offset, lag_records, served_by) -> list: "
     "answer(..., lookup=True) of each stored value of one partition."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RowPlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fabric.rpc._wire.RowPlan",
    .tp_doc = "One table definition's columns, compiled for writing rows and answers.",
    .tp_basicsize = sizeof(RowPlan),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)plan_init,
    .tp_dealloc = (destructor)plan_dealloc,
    .tp_methods = plan_methods,
};

static struct PyModuleDef wire_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fabric.rpc._wire",
    .m_doc = "The native half of fabric.rpc.wire.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__wire(void) {
    if (PyType_Ready(&RowPlanType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&wire_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "RowPlan", (PyObject *)&RowPlanType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
