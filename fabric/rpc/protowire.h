/* Reading protobuf's wire format: shared by the native modules that read messages
 * (fabric/rpc/_wire.c, fabric/serve/_locate.c, fabric/client/_rows.c).
 *
 * A field is a varint tag (number << 3 | wire type) then a varint (type 0), eight little-endian
 * bytes (type 1), a varint length and the bytes (type 2) or four little-endian bytes (type 5).
 * Every read is bounded by its span's end: bytes that are not a message make these return -1,
 * never read past it.
 */

#ifndef FABRIC_PROTOWIRE_H
#define FABRIC_PROTOWIRE_H

#include <stdint.h>

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} WireSpan;

typedef struct {
    int number;
    int type;
    uint64_t varint; /* types 0, 1 and 5 (fixed-width values little-endian) */
    WireSpan bytes;  /* type 2 */
} WireField;

static int wire_read_varint(WireSpan *s, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (s->p >= s->end) {
            return -1;
        }
        unsigned char byte = *s->p++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 0;
        }
    }
    return -1;
}

/* The next field of a message, consumed from s; 0, or -1 when s holds no whole field. */
static int wire_next_field(WireSpan *s, WireField *f) {
    uint64_t tag, n;
    if (wire_read_varint(s, &tag) < 0) {
        return -1;
    }
    f->number = (int)(tag >> 3);
    f->type = (int)(tag & 7);
    switch (f->type) {
    case 0:
        return wire_read_varint(s, &f->varint);
    case 1:
    case 5:
        n = f->type == 1 ? 8 : 4;
        if ((uint64_t)(s->end - s->p) < n) {
            return -1;
        }
        f->varint = 0;
        for (uint64_t i = 0; i < n; i++) {
            f->varint |= (uint64_t)s->p[i] << (8 * i);
        }
        s->p += n;
        return 0;
    case 2:
        if (wire_read_varint(s, &n) < 0 || n > (uint64_t)(s->end - s->p)) {
            return -1;
        }
        f->bytes.p = s->p;
        f->bytes.end = s->p + n;
        s->p += n;
        return 0;
    default:
        return -1;
    }
}

#endif
