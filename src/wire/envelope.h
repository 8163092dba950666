/* envelope.h — codecs of the wire protocol that carry calls (docs/design/wire-protocol.md):
 * the message encoding (u32 nseg, u64 lengths, payload, segments), stream frame headers and the
 * error map (msgpack). Functions over buffers, no I/O; any thread. */
#ifndef PUL_WIRE_ENVELOPE_H
#define PUL_WIRE_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "pulsing/pulsing.h"

#define PUL__ENV_MAX_SEGS 1024
#define PUL__SFRAME_HDR 5 /* u8 kind, u32 len */
#define PUL__ENV_SMALL 256 /* a payload this small is decoded into the decoder itself */

enum { PUL__SFRAME_ITEM = 1, PUL__SFRAME_END = 2, PUL__SFRAME_ERROR = 3 };

/* Bytes of the header of msg's encoding: 4 + 8 * (1 + nsegments). */
size_t pul__env_header_size(const pul_msg_t *msg);
/* Write the header of msg's encoding into out (outsz >= pul__env_header_size). Returns the
 * bytes written or PUL_EINVAL (too many segments or out too small). */
long pul__env_header_encode(const pul_msg_t *msg, uint8_t *out, size_t outsz);

/* Incremental decoder of one message encoding. Feed bytes as they arrive; each part (payload,
 * segments) gets its own buffer that grows with the bytes actually received, never to the
 * length the peer merely announced. The announced total is checked against max first. */
typedef struct {
    size_t max;
    int state; /* 0 nseg, 1 lengths, 2 parts, 3 done */
    uint8_t hb[8];
    size_t hlen;
    uint32_t nseg;
    uint64_t *lens; /* nseg + 1 */
    size_t nlens;
    size_t part;
    uint8_t **bufs;
    size_t *have;
    size_t *cap;
    /* In-place storage for the common case (at most one segment, a small payload): such a
     * message is decoded without an allocation. So a decoder in use must not be moved. */
    uint64_t lens_in[2];
    uint8_t *bufs_in[2];
    size_t have_in[2];
    size_t cap_in[2];
    uint8_t small[PUL__ENV_SMALL];
} pul__env_rx_t;

void pul__env_rx_init(pul__env_rx_t *rx, size_t max);
/* Consume up to n bytes; stops at the end of the encoding. Returns the bytes consumed (>= 0),
 * PUL_ETOOBIG (total over max), PUL_EPROTO (too many segments), PUL_ENOMEM. */
long pul__env_rx_feed(pul__env_rx_t *rx, const uint8_t *p, size_t n);
/* Nonzero when a whole encoding was read. */
int pul__env_rx_done(const pul__env_rx_t *rx);
/* Build the message (type copied, payload copied, segments handed over without a copy; they
 * are freed with the message). The decoder is reset to empty. NULL on allocation failure. */
pul_msg_t *pul__env_rx_take(pul__env_rx_t *rx, const char *type);
void pul__env_rx_free(pul__env_rx_t *rx);
/* A system starts (1) or has shut down (0): freed large parts are kept for reuse while at least
 * one system runs, and unmapped when the last one shuts down (see envelope.c). */
void pul__env_cache_use(int on);

/* Stream frame header: kind then a big-endian u32 length. */
void pul__sframe_hdr(uint8_t out[PUL__SFRAME_HDR], unsigned kind, uint32_t len);

/* Incremental reader of stream frames (stream responses, "tells" request bodies): fed bytes as
 * they arrive, it stops at each event. An item's message goes into the caller's decoder `env`,
 * its type into the caller's `type` (256 bytes): both belong to the structure the reader is part
 * of, so calls that need no frames do not pay for them. Every length is checked against `max`
 * before anything is committed. */
typedef enum {
    PUL__SFR_NEED,  /* all given bytes consumed, no frame completed */
    PUL__SFR_ITEM,  /* an item is whole: pul__env_rx_take(env, type) gives its message */
    PUL__SFR_END,   /* an end frame */
    PUL__SFR_ERROR, /* bytes of an error frame's body in (chunk, chunk_len); `last` on its last */
} pul__sfr_ev_t;

typedef struct {
    int state;
    unsigned kinds; /* accepted kinds: bit 1 << kind */
    int ascii;      /* types must be visible ASCII */
    size_t max;
    pul__env_rx_t *env;
    char *type;
    uint8_t fh[PUL__SFRAME_HDR];
    size_t fhlen;
    unsigned kind;
    uint32_t len, got;
    size_t tlen, tgot;
    const uint8_t *chunk; /* PUL__SFR_ERROR */
    size_t chunk_len;
    int last;
} pul__sframe_rx_t;

void pul__sframe_rx_init(pul__sframe_rx_t *rx, size_t max, unsigned kinds, int ascii,
                         pul__env_rx_t *env, char type[256]);
/* Consume bytes of p[0..n) up to the next event (*ev). Returns the bytes consumed (>= 0), or
 * PUL_EPROTO (a kind not accepted, an empty item, a type too long or not ASCII, a non-empty end,
 * an empty error, bytes past an item's encoding), PUL_ETOOBIG (a frame over max), PUL_ENOMEM. */
long pul__sframe_rx_feed(pul__sframe_rx_t *rx, const uint8_t *p, size_t n, pul__sfr_ev_t *ev);
/* Nonzero between frames (none begun). */
int pul__sframe_rx_idle(const pul__sframe_rx_t *rx);

/* Encode an error map (msgpack). *out is allocated with pul__malloc (caller frees). Returns 0 or
 * PUL_ENOMEM. */
int pul__errmap_encode(const pul_error_t *e, uint8_t **out, size_t *outlen);
/* Decode an error map into e; its strings are allocated with pul__malloc and released with
 * pul__errmap_clear. Returns 0, PUL_EPROTO, PUL_ENOMEM. */
int pul__errmap_decode(const uint8_t *p, size_t n, pul_error_t *e);
void pul__errmap_clear(pul_error_t *e);

#endif
