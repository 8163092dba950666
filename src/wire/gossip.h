/* gossip.h — msgpack codecs for the membership packets and /cluster/sync bodies of
 * docs/design/membership.md: functions over buffers, no I/O.
 *
 * Encoding uses msgpack-c's packer writing into a pul__gbuf_t (counted allocations). Decoding
 * is a cursor over the input that allocates nothing for the msgpack structure itself: every
 * length and count is checked against the bytes that remain before it is believed, and decoded
 * arrays grow as elements actually decode (msgpack-c's unpacker would allocate an array at the
 * size its header claims). A malformed packet returns PUL_EPROTO; nothing it contains is kept. */
#ifndef PUL_WIRE_GOSSIP_H
#define PUL_WIRE_GOSSIP_H

#include <stddef.h>
#include <stdint.h>

#include "pulsing/pulsing.h"

#define PUL__GOSSIP_VERSION 1
#define PUL__GOSSIP_MAX_PACKET (64u * 1024u) /* a gossip packet, encoded */
#define PUL__GOSSIP_MAX_MSGS 1024            /* messages in one gossip packet */
#define PUL__GOSSIP_MAX_DEPTH 16             /* nesting of skipped unknown values */

typedef enum {
    PUL__G_PING = 1,
    PUL__G_ACK,
    PUL__G_NACK,
    PUL__G_PREQ,
    PUL__G_ALIVE,
    PUL__G_SUSPECT,
    PUL__G_DEAD,
    PUL__G_NAME,
} pul__gtype_t;

/* One message of a packet. Fields not used by a type are zero. */
typedef struct {
    pul__gtype_t t;
    uint32_t seq;                   /* ping, ack, nack, preq */
    pul_id_t node;                  /* ping/preq: target; alive/suspect/dead/name: the node */
    pul_id_t by;                    /* suspect/dead: accuser; name: the actor id */
    uint64_t inc;                   /* alive/suspect/dead: incarnation; name: ver */
    int live;                       /* name */
    char addr[PUL_ADDR_MAX + 1];    /* alive: addr; preq: taddr */
    char name[PUL_NAME_MAX + 1];    /* name */
} pul__gmsg_t;

typedef struct {
    pul_id_t from;
    char addr[PUL_ADDR_MAX + 1];
    pul__gmsg_t *msgs; /* pul__malloc'd; pul__gpacket_clear releases */
    size_t nmsgs;
} pul__gpacket_t;

typedef struct {
    pul_id_t node;
    char addr[PUL_ADDR_MAX + 1];
    uint64_t inc;
    pul_member_status_t status;
} pul__gmember_t;

typedef struct {
    pul_id_t from;
    char addr[PUL_ADDR_MAX + 1];
    int join;
    pul__gmember_t *members; /* pul__malloc'd */
    size_t nmembers;
    pul__gmsg_t *names; /* t == PUL__G_NAME */
    size_t nnames;
} pul__gsync_t;

/* A growable output buffer (counted allocations). err sticks at PUL_ENOMEM/PUL_ETOOBIG once
 * an append failed; the bytes are then unusable. */
typedef struct {
    uint8_t *p;
    size_t len;
    size_t cap;
    size_t max; /* 0 = no limit */
    int err;
} pul__gbuf_t;

void pul__gbuf_init(pul__gbuf_t *b, size_t max);
void pul__gbuf_free(pul__gbuf_t *b);
/* Append raw bytes (already encoded msgpack). Returns 0 or the sticky error. */
int pul__gbuf_put(pul__gbuf_t *b, const void *p, size_t n);

/* Append one message map (the elements of a packet's `msgs`). Returns 0, PUL_EINVAL (unknown
 * type), PUL_ENOMEM, PUL_ETOOBIG. Pure; any thread. */
int pul__gmsg_encode(pul__gbuf_t *b, const pul__gmsg_t *m);
/* Append a packet header announcing nmsgs messages; the caller then appends exactly nmsgs
 * pul__gmsg_encode outputs. */
int pul__gpacket_begin(pul__gbuf_t *b, pul_id_t from, const char *addr, size_t nmsgs);
/* Decode a whole packet of len bytes (at most PUL__GOSSIP_MAX_PACKET). On success fills *out
 * (release with pul__gpacket_clear) and returns 0; PUL_EPROTO on anything malformed (out left
 * empty), PUL_ETOOBIG, PUL_ENOMEM. Messages of an unknown `t` are skipped (forward compatible). */
int pul__gpacket_decode(const uint8_t *buf, size_t len, pul__gpacket_t *out);
void pul__gpacket_clear(pul__gpacket_t *p);

/* Encode a whole sync body. Returns 0, PUL_ENOMEM, PUL_ETOOBIG (over b->max). */
int pul__gsync_encode(pul__gbuf_t *b, const pul__gsync_t *s);
/* Decode a sync body of at most max bytes. Same contract as pul__gpacket_decode. */
int pul__gsync_decode(const uint8_t *buf, size_t len, size_t max, pul__gsync_t *out);
void pul__gsync_clear(pul__gsync_t *s);

#endif
