/* frame.h — length-prefixed frames for stream items: a codec over buffers, no I/O.
 *
 * A frame is: u8 kind | u32 big-endian body length | body (the stream frames of
 * docs/design/wire-protocol.md; the transport decodes them incrementally with the reader of
 * wire/envelope.h, pul__sframe_rx_t, since a frame may be 64 MiB). The length is checked against the caller's maximum before anything is
 * committed, so a peer cannot make us allocate what it only claims to send. */
#ifndef PUL_WIRE_FRAME_H
#define PUL_WIRE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define PUL__FRAME_HEADER 5

typedef enum {
    PUL__FRAME_ITEM = 1,  /* one stream item (payload bytes) */
    PUL__FRAME_END = 2,   /* clean end; body empty */
    PUL__FRAME_ERROR = 3, /* structured error payload */
} pul__frame_kind_t;

typedef struct {
    pul__frame_kind_t kind;
    const uint8_t *body; /* points into the input buffer (no copy) */
    size_t len;
} pul__frame_t;

/* Decode one frame from buf[0..len). Returns the number of bytes consumed (> 0) and fills *out,
 * 0 when more bytes are needed, PUL_ETOOBIG when the announced length exceeds max_body, or
 * PUL_EPROTO on an unknown kind or a non-empty END. Pure; any thread. */
long pul__frame_decode(const uint8_t *buf, size_t len, size_t max_body, pul__frame_t *out);
/* Encode a frame into out (outsz bytes). Returns the bytes written, PUL_ETOOBIG (body over
 * max_body or out too small), or PUL_EINVAL. Pure; any thread. */
long pul__frame_encode(pul__frame_kind_t kind, const void *body, size_t len, size_t max_body,
                       uint8_t *out, size_t outsz);

#endif
