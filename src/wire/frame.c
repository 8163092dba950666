/* frame.c — length-prefixed frame codec (see frame.h). */
#include "wire/frame.h"

#include <string.h>

#include "pulsing/pulsing.h"

static int
frame_kind_ok(unsigned k)
{
    return k == PUL__FRAME_ITEM || k == PUL__FRAME_END || k == PUL__FRAME_ERROR;
}

long
pul__frame_decode(const uint8_t *buf, size_t len, size_t max_body, pul__frame_t *out)
{
    if (buf == NULL && len > 0) {
        return PUL_EINVAL;
    }
    if (len < PUL__FRAME_HEADER) {
        return 0;
    }
    unsigned kind = buf[0];
    uint32_t blen = ((uint32_t)buf[1] << 24) | ((uint32_t)buf[2] << 16) |
                    ((uint32_t)buf[3] << 8) | (uint32_t)buf[4];
    if (!frame_kind_ok(kind)) {
        return PUL_EPROTO;
    }
    if (blen > max_body) {
        return PUL_ETOOBIG;
    }
    if (kind == PUL__FRAME_END && blen != 0) {
        return PUL_EPROTO;
    }
    if (len - PUL__FRAME_HEADER < blen) {
        return 0;
    }
    if (out != NULL) {
        out->kind = (pul__frame_kind_t)kind;
        out->body = buf + PUL__FRAME_HEADER;
        out->len = blen;
    }
    return (long)(PUL__FRAME_HEADER + blen);
}

long
pul__frame_encode(pul__frame_kind_t kind, const void *body, size_t len, size_t max_body,
                  uint8_t *out, size_t outsz)
{
    if (!frame_kind_ok((unsigned)kind) || out == NULL || (body == NULL && len > 0) ||
        (kind == PUL__FRAME_END && len != 0)) {
        return PUL_EINVAL;
    }
    if (len > max_body || len > UINT32_MAX || outsz < PUL__FRAME_HEADER + len) {
        return PUL_ETOOBIG;
    }
    out[0] = (uint8_t)kind;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    if (len > 0) {
        memcpy(out + PUL__FRAME_HEADER, body, len);
    }
    return (long)(PUL__FRAME_HEADER + len);
}
