/* The native half of fabric.rpc.wire: stored rows written as answers in protobuf's wire format.
 *
 * A lookup on a partition's owner spends most of its own time turning a stored Debezium image
 * into the bytes of a Row, and on a busy two-core machine every Python step of that is paid
 * again in cold caches. Here the whole answer (stored header, image, row, freshness, framing)
 * is written in one call; a BatchGet's results are framed, and a peer's split, here too.
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

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protowire.h"

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
#define MAX_TOASTED 4

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
    /* The UTF-8 of the name and of the string TOAST spellings, for reading stored JSON. */
    const char *name_utf8;
    Py_ssize_t name_len;
    int ntoasted;
    const char *toasted_utf8[MAX_TOASTED];
    Py_ssize_t toasted_len[MAX_TOASTED];
} Column;

typedef struct {
    PyObject_HEAD
    Py_ssize_t ncolumns;
    Column *columns;
    PyObject *loads; /* the JSON parser of images and json values (orjson.loads) */
    /* Rows already written: stored value (bytes) -> its serialized Row. A Row is a function of
     * the plan and the stored value alone, so nothing ever invalidates an entry; the memo is
     * emptied when it reaches RENDERED_MAX_BYTES. */
    PyObject *rendered;
    Py_ssize_t rendered_bytes;
} RowPlan;

#define RENDERED_MAX_BYTES (16 * 1024 * 1024)
#define RENDERED_ENTRY_OVERHEAD 150 /* a dict slot and the Row's bytes object */

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

static void head_boolean(Encoded *e, unsigned char tag, int value) {
    e->head[0] = tag;
    e->head[1] = (unsigned char)(value != 0);
    e->head_len = 2;
}

static int head_double(Encoded *e, unsigned char tag, double d) {
    e->head[0] = tag;
    if (PyFloat_Pack8(d, (char *)e->head + 1, 1) < 0) {
        return -1;
    }
    e->head_len = 9;
    return 0;
}

/* The UTF-8 text of a string kind's value (a JSON column's text already checked by the
 * caller): 1 written into `e`, pointing at `s`; 0 declined. */
static int encode_text(const Column *c, const char *s, Py_ssize_t n, Encoded *e) {
    if (c->kind == KIND_TIMESTAMPTZ) {
        int ok;
        long long micros = utc_micros(s, n, &ok);
        if (!ok) {
            return 0;
        }
        head_tag_varint(e, c->tag, (uint64_t)micros);
        return 1;
    }
    if ((c->kind == KIND_DECIMAL && !plain_decimal(s, n)) ||
        (c->kind == KIND_UUID && !canonical_uuid(s, n))) {
        return 0;
    }
    head_tag_varint(e, c->tag, (uint64_t)n);
    e->data = s;
    e->data_len = n;
    return 1;
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
        head_boolean(e, c->tag, v == Py_True);
        return 1;
    case KIND_DOUBLE:
        if (!PyFloat_CheckExact(v)) {
            return 0;
        }
        return head_double(e, c->tag, PyFloat_AS_DOUBLE(v)) < 0 ? -1 : 1;
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
        if (c->kind == KIND_JSON) {
            PyObject *parsed = PyObject_CallOneArg(plan_loads, v);
            if (parsed == NULL) {
                PyErr_Clear(); /* beyond the parser: the Python writer judges it */
                return 0;
            }
            Py_DECREF(parsed);
        }
        return encode_text(c, s, n, e);
    }
    default:
        return 0;
    }
}

static int append_field(const Column *c, const Encoded *e, Buffer *out) {
    Py_ssize_t size = e->head_len + e->data_len;
    Py_ssize_t prefix_len = PyBytes_GET_SIZE(c->prefix);
    Py_ssize_t field = prefix_len + varint_size((uint64_t)size) + size;
    if (buffer_reserve(out, 1 + 10 + field) < 0) {
        return -1;
    }
    char *p = out->data + out->len;
    *p++ = 0x0a;
    p += put_varint((unsigned char *)p, (uint64_t)field);
    memcpy(p, PyBytes_AS_STRING(c->prefix), (size_t)prefix_len);
    p += prefix_len;
    p += put_varint((unsigned char *)p, (uint64_t)size);
    memcpy(p, e->head, (size_t)e->head_len);
    p += e->head_len;
    if (e->data_len) {
        memcpy(p, e->data, (size_t)e->data_len);
        p += e->data_len;
    }
    out->len = p - out->data;
    return 0;
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
        int failed = append_field(c, &e, out) < 0;
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

/* -- a row straight from the stored JSON ---------------------------------------------------- */

/* Most stored images are flat JSON objects of strings, numbers, booleans and nulls; those are
 * written here straight from their text, without building Python objects. Anything else
 * (nested values, a column of a Python-written kind, an unknown or repeated column, text that is
 * not strict JSON or UTF-8, a TOAST placeholder) declines to write_row above. */

#define SCAN_MAX_DEPTH 128

typedef struct {
    const char *p;
    const char *end;
} Cursor;

enum { TOKEN_STRING, TOKEN_NUMBER, TOKEN_TRUE, TOKEN_FALSE, TOKEN_NULL, TOKEN_NESTED };

typedef struct {
    int present;
    int token;
    const char *start; /* a string's content between its quotes; a number's text */
    Py_ssize_t len;
    int escaped;       /* a string holding backslash escapes */
    int fraction;      /* a number with a fraction or an exponent */
} Span;

static void skip_space(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) {
        c->p++;
    }
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int valid_utf8(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        int more;
        unsigned int cp;
        if (b >= 0xC2 && b <= 0xDF) {
            more = 1;
            cp = b & 0x1F;
        } else if (b >= 0xE0 && b <= 0xEF) {
            more = 2;
            cp = b & 0x0F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            more = 3;
            cp = b & 0x07;
        } else {
            return 0;
        }
        if (n - i <= more) {
            return 0;
        }
        for (int k = 1; k <= more; k++) {
            if ((s[i + k] & 0xC0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((more == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (more == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
            return 0;
        }
        i += more + 1;
    }
    return 1;
}

static int hex4(const char *s, unsigned int *out) {
    unsigned int v = 0;
    for (int i = 0; i < 4; i++) {
        char h = s[i];
        v <<= 4;
        if (h >= '0' && h <= '9') {
            v |= (unsigned int)(h - '0');
        } else if (h >= 'a' && h <= 'f') {
            v |= (unsigned int)(h - 'a' + 10);
        } else if (h >= 'A' && h <= 'F') {
            v |= (unsigned int)(h - 'A' + 10);
        } else {
            return 0;
        }
    }
    *out = v;
    return 1;
}

/* A string token at the cursor (on its opening quote): its content span, checked for control
 * characters and escape syntax (not yet for UTF-8). */
static int scan_string(Cursor *c, Span *span) {
    c->p++;
    span->start = c->p;
    span->escaped = 0;
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            span->len = c->p - span->start;
            c->p++;
            return 1;
        }
        if (ch < 0x20) {
            return 0;
        }
        if (ch == '\\') {
            span->escaped = 1;
            if (c->p + 1 >= c->end) {
                return 0;
            }
            char e = c->p[1];
            if (e == 'u') {
                unsigned int ignored;
                if (c->p + 6 > c->end || !hex4(c->p + 2, &ignored)) {
                    return 0;
                }
                c->p += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return 0;
            }
            c->p += 2;
            continue;
        }
        c->p++;
    }
    return 0;
}

static int scan_number(Cursor *c, Span *span) {
    const char *p = c->p;
    span->start = p;
    span->fraction = 0;
    if (p < c->end && *p == '-') {
        p++;
    }
    if (p >= c->end || !is_digit(*p)) {
        return 0;
    }
    if (*p == '0') {
        p++;
    } else {
        while (p < c->end && is_digit(*p)) {
            p++;
        }
    }
    if (p < c->end && *p == '.') {
        span->fraction = 1;
        p++;
        if (p >= c->end || !is_digit(*p)) {
            return 0;
        }
        while (p < c->end && is_digit(*p)) {
            p++;
        }
    }
    if (p < c->end && (*p == 'e' || *p == 'E')) {
        span->fraction = 1;
        p++;
        if (p < c->end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (p >= c->end || !is_digit(*p)) {
            return 0;
        }
        while (p < c->end && is_digit(*p)) {
            p++;
        }
    }
    span->len = p - span->start;
    c->p = p;
    return 1;
}

static int scan_literal(Cursor *c, const char *word, Py_ssize_t n) {
    if (c->end - c->p < n || memcmp(c->p, word, (size_t)n) != 0) {
        return 0;
    }
    c->p += n;
    return 1;
}

/* Any JSON value at the cursor, strictly (RFC 8259), at most SCAN_MAX_DEPTH deep. */
static int skip_value(Cursor *c, int depth) {
    Span ignored;
    skip_space(c);
    if (c->p >= c->end) {
        return 0;
    }
    switch (*c->p) {
    case '"':
        return scan_string(c, &ignored);
    case 't':
        return scan_literal(c, "true", 4);
    case 'f':
        return scan_literal(c, "false", 5);
    case 'n':
        return scan_literal(c, "null", 4);
    case '[':
    case '{': {
        char close = *c->p == '[' ? ']' : '}';
        int object = close == '}';
        if (depth >= SCAN_MAX_DEPTH) {
            return 0;
        }
        c->p++;
        skip_space(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 1;
        }
        for (;;) {
            if (object) {
                skip_space(c);
                if (c->p >= c->end || *c->p != '"' || !scan_string(c, &ignored)) {
                    return 0;
                }
                skip_space(c);
                if (c->p >= c->end || *c->p != ':') {
                    return 0;
                }
                c->p++;
            }
            if (!skip_value(c, depth + 1)) {
                return 0;
            }
            skip_space(c);
            if (c->p >= c->end) {
                return 0;
            }
            if (*c->p == ',') {
                c->p++;
                continue;
            }
            if (*c->p == close) {
                c->p++;
                return 1;
            }
            return 0;
        }
    }
    default:
        return scan_number(c, &ignored);
    }
}

/* A string's content unescaped into `out` (appended): 1, or 0 for a lone surrogate. */
static int unescape(const char *s, Py_ssize_t n, Buffer *out) {
    if (buffer_reserve(out, n) < 0) {
        return -1;
    }
    char *w = out->data + out->len;
    Py_ssize_t i = 0;
    while (i < n) {
        if (s[i] != '\\') {
            *w++ = s[i++];
            continue;
        }
        char e = s[i + 1];
        i += 2;
        if (e != 'u') {
            *w++ = e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n' : e == 'r' ? '\r'
                 : e == 't' ? '\t' : e;
            continue;
        }
        unsigned int cp;
        hex4(s + i, &cp);
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned int low;
            if (i + 6 > n || s[i] != '\\' || s[i + 1] != 'u' || !hex4(s + i + 2, &low) ||
                low < 0xDC00 || low > 0xDFFF) {
                return 0;
            }
            i += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return 0;
        }
        /* A \u escape never writes more bytes than its six characters took. */
        if (cp < 0x80) {
            *w++ = (char)cp;
        } else if (cp < 0x800) {
            *w++ = (char)(0xC0 | (cp >> 6));
            *w++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *w++ = (char)(0xE0 | (cp >> 12));
            *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
            *w++ = (char)(0x80 | (cp & 0x3F));
        } else {
            *w++ = (char)(0xF0 | (cp >> 18));
            *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
            *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
            *w++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    out->len = w - out->data;
    return 1;
}

static int parse_int64(const char *s, Py_ssize_t n, long long *out) {
    int negative = s[0] == '-';
    unsigned long long v = 0;
    Py_ssize_t i = negative;
    if (n - i > 19) {
        return 0;
    }
    for (; i < n; i++) {
        v = v * 10 + (unsigned long long)(s[i] - '0');
    }
    if (negative ? v > 9223372036854775808ULL : v > 9223372036854775807ULL) {
        return 0;
    }
    *out = negative ? (long long)(0 - v) : (long long)v;
    return 1;
}

/* One column's Value from its span: 1 written into `e` (text into `scratch`), 0 declined,
 * -1 error. */
static int encode_span(const Column *c, const Span *span, Encoded *e, Buffer *scratch) {
    switch (c->kind) {
    case KIND_INTEGER: {
        long long n;
        if (span->token != TOKEN_NUMBER || span->fraction ||
            !parse_int64(span->start, span->len, &n) || n < c->low || n > c->high) {
            return 0;
        }
        head_tag_varint(e, c->tag, (uint64_t)n);
        return 1;
    }
    case KIND_BOOLEAN:
        if (span->token != TOKEN_TRUE && span->token != TOKEN_FALSE) {
            return 0;
        }
        head_boolean(e, c->tag, span->token == TOKEN_TRUE);
        return 1;
    case KIND_DOUBLE: {
        char text[64];
        if (span->token != TOKEN_NUMBER || !span->fraction || span->len >= (Py_ssize_t)sizeof(text)) {
            return 0;
        }
        memcpy(text, span->start, (size_t)span->len);
        text[span->len] = '\0';
        char *end;
        errno = 0;
        double d = strtod(text, &end);
        if (errno || end != text + span->len || !isfinite(d)) {
            return 0; /* out of range or subnormal: the Python way */
        }
        return head_double(e, c->tag, d) < 0 ? -1 : 1;
    }
    case KIND_TEXT:
    case KIND_DECIMAL:
    case KIND_TIMESTAMPTZ:
    case KIND_JSON:
    case KIND_UUID: {
        if (span->token != TOKEN_STRING) {
            return 0;
        }
        const char *s = span->start;
        Py_ssize_t n = span->len;
        if (span->escaped) {
            scratch->len = 0;
            int done = unescape(span->start, span->len, scratch);
            if (done <= 0) {
                return done;
            }
            s = scratch->data;
            n = scratch->len;
        }
        if (!valid_utf8((const unsigned char *)s, n)) {
            return 0;
        }
        for (int t = 0; t < c->ntoasted; t++) {
            if (n == c->toasted_len[t] && memcmp(s, c->toasted_utf8[t], (size_t)n) == 0) {
                return 0;
            }
        }
        if (c->kind == KIND_JSON) {
            Cursor inner = {s, s + n};
            if (!skip_value(&inner, 0)) {
                return 0;
            }
            skip_space(&inner);
            if (inner.p != inner.end) {
                return 0;
            }
        }
        return encode_text(c, s, n, e);
    }
    default:
        return 0;
    }
}

/* 1: the Row's fields appended to `out`; 0: declined; -1: an error is set. */
static int scan_row(RowPlan *plan, const char *json, Py_ssize_t n, Buffer *out) {
    Span spans_inline[32];
    Span *spans = spans_inline;
    if (plan->ncolumns > 32) {
        spans = PyMem_Calloc((size_t)plan->ncolumns, sizeof(Span));
        if (spans == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    } else {
        memset(spans, 0, sizeof(Span) * (size_t)plan->ncolumns);
    }
    Buffer scratch;
    buffer_init(&scratch);
    int result = 0;
    Cursor c = {json, json + n};
    skip_space(&c);
    if (c.p >= c.end || *c.p != '{') {
        goto done;
    }
    c.p++;
    skip_space(&c);
    if (c.p < c.end && *c.p == '}') {
        c.p++;
    } else {
        for (;;) {
            Span key;
            skip_space(&c);
            if (c.p >= c.end || *c.p != '"' || !scan_string(&c, &key) || key.escaped) {
                goto done;
            }
            Py_ssize_t column = -1;
            for (Py_ssize_t i = 0; i < plan->ncolumns; i++) {
                const Column *col = &plan->columns[i];
                if (col->name_len == key.len && memcmp(col->name_utf8, key.start, (size_t)key.len) == 0) {
                    column = i;
                    break;
                }
            }
            if (column < 0 || spans[column].present || plan->columns[column].kind == KIND_PYTHON) {
                goto done; /* unknown, repeated, or written in Python */
            }
            skip_space(&c);
            if (c.p >= c.end || *c.p != ':') {
                goto done;
            }
            c.p++;
            skip_space(&c);
            if (c.p >= c.end) {
                goto done;
            }
            Span *span = &spans[column];
            span->present = 1;
            int ok;
            switch (*c.p) {
            case '"':
                span->token = TOKEN_STRING;
                ok = scan_string(&c, span);
                break;
            case 't':
                span->token = TOKEN_TRUE;
                ok = scan_literal(&c, "true", 4);
                break;
            case 'f':
                span->token = TOKEN_FALSE;
                ok = scan_literal(&c, "false", 5);
                break;
            case 'n':
                span->token = TOKEN_NULL;
                ok = scan_literal(&c, "null", 4);
                break;
            case '[':
            case '{':
                ok = 0; /* nested: the Python values path */
                break;
            default:
                span->token = TOKEN_NUMBER;
                ok = scan_number(&c, span);
            }
            if (!ok) {
                goto done;
            }
            skip_space(&c);
            if (c.p < c.end && *c.p == ',') {
                c.p++;
                continue;
            }
            if (c.p < c.end && *c.p == '}') {
                c.p++;
                break;
            }
            goto done;
        }
    }
    skip_space(&c);
    if (c.p != c.end) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < plan->ncolumns; i++) {
        const Column *col = &plan->columns[i];
        Encoded e = {.head_len = 0, .data = NULL, .data_len = 0, .owned = NULL};
        if (!spans[i].present) {
            e.data = PyBytes_AS_STRING(col->missing);
            e.data_len = PyBytes_GET_SIZE(col->missing);
        } else if (spans[i].token == TOKEN_NULL) {
            e.data = NULL_VALUE;
            e.data_len = 2;
        } else {
            int done = encode_span(col, &spans[i], &e, &scratch);
            if (done <= 0) {
                result = done;
                goto done;
            }
        }
        if (append_field(col, &e, out) < 0) {
            result = -1;
            goto done;
        }
    }
    result = 1;
done:
    buffer_free(&scratch);
    if (spans != spans_inline) {
        PyMem_Free(spans);
    }
    return result;
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

/* Keep the Row written for `stored`; 0, or -1 on an error. */
static int remember_row(RowPlan *plan, PyObject *stored, const Buffer *row) {
    Py_ssize_t size = PyBytes_GET_SIZE(stored) + row->len + RENDERED_ENTRY_OVERHEAD;
    if (plan->rendered_bytes + size > RENDERED_MAX_BYTES) {
        PyDict_Clear(plan->rendered);
        plan->rendered_bytes = 0;
    }
    PyObject *written = PyBytes_FromStringAndSize(row->data, row->len);
    if (written == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(plan->rendered, stored, written);
    Py_DECREF(written);
    if (rc == 0) {
        plan->rendered_bytes += size;
    }
    return rc;
}

/* One answer to `out`: a GetResponse, or a LookupResult with status OK when `lookup`.
 * 1 written, 0 declined, -1 error. */
static int write_answer(RowPlan *plan, PyObject *stored, Freshness *f, int lookup, Buffer *out) {
    Buffer row, fresh;
    buffer_init(&row);
    buffer_init(&fresh);
    int found = stored != Py_None;
    int result = 1;
    const char *row_data = NULL; /* the Row: in `row`, or in `known` from the memo */
    Py_ssize_t row_len = 0;
    PyObject *known = NULL;
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
        if (plan->rendered == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "RowPlan was not initialised");
            result = -1;
            goto done;
        }
        known = PyDict_GetItemWithError(plan->rendered, stored);
        if (known != NULL) {
            Py_INCREF(known);
            row_data = PyBytes_AS_STRING(known);
            row_len = PyBytes_GET_SIZE(known);
            goto framed;
        }
        if (PyErr_Occurred()) {
            result = -1;
            goto done;
        }
        result = scan_row(plan, (const char *)v + STORED_HEADER, n - STORED_HEADER, &row);
        if (result < 0) {
            goto done;
        }
        if (result == 0) {
            /* Through Python values: nested values, Python-written columns, anything odd. */
            row.len = 0;
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
        }
        if (remember_row(plan, stored, &row) < 0) {
            result = -1;
            goto done;
        }
        row_data = row.data;
        row_len = row.len;
    } else {
        f->lsn = 0;
        f->commit_time_ms = 0;
        f->offset = -1;
    }
framed:
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
            buffer_varint(out, (uint64_t)row_len) < 0 || buffer_put(out, row_data, row_len) < 0) {
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
    Py_XDECREF(known);
    buffer_free(&row);
    buffer_free(&fresh);
    return result;
}

/* -- RowPlan -------------------------------------------------------------------------------- */

/* What a write returned, as Python: its bytes (1), None when declined (0), NULL on an error
 * (-1); frees the buffer. */
static PyObject *written_or_none(int written, Buffer *out) {
    PyObject *result = NULL;
    if (written > 0) {
        result = PyBytes_FromStringAndSize(out->data, out->len);
    } else if (written == 0) {
        result = Py_NewRef(Py_None);
    }
    buffer_free(out);
    return result;
}

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
    Py_XDECREF(self->rendered);
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
        c->name_utf8 = PyUnicode_AsUTF8AndSize(c->name, &c->name_len);
        if (c->name_utf8 == NULL) {
            return -1;
        }
        c->ntoasted = 0;
        for (Py_ssize_t t = 0; t < PyTuple_GET_SIZE(c->toasted); t++) {
            PyObject *spelling = PyTuple_GET_ITEM(c->toasted, t);
            if (!PyUnicode_Check(spelling)) {
                continue;
            }
            if (c->ntoasted == MAX_TOASTED) {
                PyErr_Format(PyExc_ValueError, "column %zd: more than %d TOAST spellings", i,
                             MAX_TOASTED);
                return -1;
            }
            c->toasted_utf8[c->ntoasted] =
                PyUnicode_AsUTF8AndSize(spelling, &c->toasted_len[c->ntoasted]);
            if (c->toasted_utf8[c->ntoasted] == NULL) {
                return -1;
            }
            c->ntoasted++;
        }
    }
    Py_INCREF(loads);
    Py_XSETREF(self->loads, loads);
    Py_XSETREF(self->rendered, PyDict_New());
    self->rendered_bytes = 0;
    return self->rendered == NULL ? -1 : 0;
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
    return written_or_none(written, &out);
}

static PyObject *plan_scan(RowPlan *self, PyObject *image) {
    if (!PyBytes_Check(image)) {
        PyErr_SetString(PyExc_TypeError, "scan(image: bytes)");
        return NULL;
    }
    Buffer out;
    buffer_init(&out);
    int written = scan_row(self, PyBytes_AS_STRING(image), PyBytes_GET_SIZE(image), &out);
    return written_or_none(written, &out);
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
    return written_or_none(written, &out);
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
    for (Py_ssize_t i = 0; i < n; i++) {
        Buffer out;
        buffer_init(&out);
        PyObject *item = written_or_none(
            write_answer(self, PyList_GET_ITEM(stored, i), &f, 1, &out), &out);
        if (item == NULL) {
            Py_DECREF(results);
            return NULL;
        }
        PyList_SET_ITEM(results, i, item);
    }
    return results;
}

static PyMethodDef plan_methods[] = {
    {"row", (PyCFunction)(void (*)(void))plan_row, METH_FASTCALL,
     "row(document, ignore_unknown) -> bytes | None: the serialized Row, or None when the "
     "Python writer must answer."},
    {"scan", (PyCFunction)plan_scan, METH_O,
     "scan(image: bytes) -> bytes | None: the serialized Row of a stored JSON image read "
     "straight from its text, or None when it must go through Python values."},
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

/* -- repeated message fields ---------------------------------------------------------------- */

static int field_number(PyObject *arg, int *out) {
    long number = PyLong_AsLong(arg);
    if (number == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (number < 1 || number > 15) {
        PyErr_SetString(PyExc_ValueError, "a field number from 1 to 15 (one-byte tags)");
        return -1;
    }
    *out = (int)number;
    return 0;
}

static PyObject *frame_repeated(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int number;
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "frame_repeated(messages: list[bytes], field: int)");
        return NULL;
    }
    if (field_number(args[1], &number) < 0) {
        return NULL;
    }
    PyObject *messages = args[0];
    Py_ssize_t n = PyList_GET_SIZE(messages);
    Py_ssize_t size = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyList_GET_ITEM(messages, i);
        if (!PyBytes_Check(m)) {
            PyErr_SetString(PyExc_TypeError, "every message is bytes");
            return NULL;
        }
        size += 1 + varint_size((uint64_t)PyBytes_GET_SIZE(m)) + PyBytes_GET_SIZE(m);
    }
    PyObject *framed = PyBytes_FromStringAndSize(NULL, size);
    if (framed == NULL) {
        return NULL;
    }
    char *p = PyBytes_AS_STRING(framed);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyList_GET_ITEM(messages, i);
        *p++ = (char)((number << 3) | 2);
        p += put_varint((unsigned char *)p, (uint64_t)PyBytes_GET_SIZE(m));
        memcpy(p, PyBytes_AS_STRING(m), (size_t)PyBytes_GET_SIZE(m));
        p += PyBytes_GET_SIZE(m);
    }
    return framed;
}

static PyObject *split_repeated(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int number;
    if (nargs != 2 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "split_repeated(message: bytes, field: int)");
        return NULL;
    }
    if (field_number(args[1], &number) < 0) {
        return NULL;
    }
    WireSpan message = {(const unsigned char *)PyBytes_AS_STRING(args[0]), NULL};
    message.end = message.p + PyBytes_GET_SIZE(args[0]);
    PyObject *parts = PyList_New(0);
    if (parts == NULL) {
        return NULL;
    }
    while (message.p < message.end) {
        WireField f;
        if (wire_next_field(&message, &f) < 0 || f.number != number || f.type != 2) {
            Py_DECREF(parts);
            Py_RETURN_NONE; /* another field, or not a message: the caller parses it */
        }
        PyObject *part =
            PyBytes_FromStringAndSize((const char *)f.bytes.p, f.bytes.end - f.bytes.p);
        if (part == NULL || PyList_Append(parts, part) < 0) {
            Py_XDECREF(part);
            Py_DECREF(parts);
            return NULL;
        }
        Py_DECREF(part);
    }
    return parts;
}

static PyMethodDef module_methods[] = {
    {"frame_repeated", (PyCFunction)(void (*)(void))frame_repeated, METH_FASTCALL,
     "frame_repeated(messages, field) -> bytes: serialized messages as one message whose "
     "repeated field `field` holds them, in order."},
    {"split_repeated", (PyCFunction)(void (*)(void))split_repeated, METH_FASTCALL,
     "split_repeated(message, field) -> list[bytes] | None: the serialized messages of a "
     "message holding only the repeated field `field`; None for anything else."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef wire_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fabric.rpc._wire",
    .m_doc = "The native half of fabric.rpc.wire.",
    .m_size = -1,
    .m_methods = module_methods,
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
