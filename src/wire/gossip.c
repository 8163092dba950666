/* gossip.c — msgpack codecs for membership packets and sync bodies (see gossip.h). */
#include "wire/gossip.h"

#include <msgpack.h>
#include <string.h>

#include "core/alloc.h"

/* ---- output buffer ------------------------------------------------------------------------ */

void
pul__gbuf_init(pul__gbuf_t *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

void
pul__gbuf_free(pul__gbuf_t *b)
{
    if (b != NULL) {
        pul__free(b->p);
        memset(b, 0, sizeof *b);
    }
}

int
pul__gbuf_put(pul__gbuf_t *b, const void *p, size_t n)
{
    if (b->err != 0) {
        return b->err;
    }
    if (b->max != 0 && n > b->max - b->len) {
        b->err = PUL_ETOOBIG;
        return b->err;
    }
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            cap *= 2;
        }
        uint8_t *np = pul__realloc(b->p, cap);
        if (np == NULL) {
            b->err = PUL_ENOMEM;
            return b->err;
        }
        b->p = np;
        b->cap = cap;
    }
    if (n > 0) {
        memcpy(b->p + b->len, p, n);
    }
    b->len += n;
    return 0;
}

static int
gbuf_write(void *data, const char *buf, size_t len)
{
    return pul__gbuf_put(data, buf, len) == 0 ? 0 : -1;
}

/* ---- encoding ----------------------------------------------------------------------------- */

static void
pk_key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, k, n);
}

static void
pk_str(msgpack_packer *pk, const char *k, const char *v)
{
    pk_key(pk, k);
    size_t n = strlen(v);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, v, n);
}

static void
pk_id(msgpack_packer *pk, const char *k, pul_id_t id)
{
    uint8_t b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(id.hi >> (56 - 8 * i));
        b[8 + i] = (uint8_t)(id.lo >> (56 - 8 * i));
    }
    pk_key(pk, k);
    msgpack_pack_bin(pk, 16);
    msgpack_pack_bin_body(pk, b, 16);
}

static void
pk_uint(msgpack_packer *pk, const char *k, uint64_t v)
{
    pk_key(pk, k);
    msgpack_pack_uint64(pk, v);
}

static void
pk_bool(msgpack_packer *pk, const char *k, int v)
{
    pk_key(pk, k);
    if (v) {
        msgpack_pack_true(pk);
    } else {
        msgpack_pack_false(pk);
    }
}

static const char *const gtype_names[] = {
    [PUL__G_PING] = "ping",       [PUL__G_ACK] = "ack",    [PUL__G_NACK] = "nack",
    [PUL__G_PREQ] = "preq",       [PUL__G_ALIVE] = "alive", [PUL__G_SUSPECT] = "suspect",
    [PUL__G_DEAD] = "dead",       [PUL__G_NAME] = "name",
};

/* A name entry's fields; with_t adds the `t` key (gossip) or not (sync). */
static void
pk_name_entry(msgpack_packer *pk, const pul__gmsg_t *m, int with_t)
{
    msgpack_pack_map(pk, with_t ? 6 : 5);
    if (with_t) {
        pk_str(pk, "t", "name");
    }
    pk_id(pk, "node", m->node);
    pk_str(pk, "name", m->name);
    pk_id(pk, "actor", m->by);
    pk_uint(pk, "ver", m->inc);
    pk_bool(pk, "live", m->live);
}

int
pul__gmsg_encode(pul__gbuf_t *b, const pul__gmsg_t *m)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, gbuf_write);
    switch (m->t) {
    case PUL__G_PING:
        msgpack_pack_map(&pk, 3);
        pk_str(&pk, "t", "ping");
        pk_uint(&pk, "seq", m->seq);
        pk_id(&pk, "target", m->node);
        break;
    case PUL__G_ACK:
    case PUL__G_NACK:
        msgpack_pack_map(&pk, 2);
        pk_str(&pk, "t", gtype_names[m->t]);
        pk_uint(&pk, "seq", m->seq);
        break;
    case PUL__G_PREQ:
        msgpack_pack_map(&pk, 4);
        pk_str(&pk, "t", "preq");
        pk_uint(&pk, "seq", m->seq);
        pk_id(&pk, "target", m->node);
        pk_str(&pk, "taddr", m->addr);
        break;
    case PUL__G_ALIVE:
        msgpack_pack_map(&pk, 4);
        pk_str(&pk, "t", "alive");
        pk_id(&pk, "node", m->node);
        pk_str(&pk, "addr", m->addr);
        pk_uint(&pk, "inc", m->inc);
        break;
    case PUL__G_SUSPECT:
    case PUL__G_DEAD:
        msgpack_pack_map(&pk, 4);
        pk_str(&pk, "t", gtype_names[m->t]);
        pk_id(&pk, "node", m->node);
        pk_uint(&pk, "inc", m->inc);
        pk_id(&pk, "by", m->by);
        break;
    case PUL__G_NAME:
        pk_name_entry(&pk, m, 1);
        break;
    default:
        return PUL_EINVAL;
    }
    return b->err;
}

int
pul__gpacket_begin(pul__gbuf_t *b, pul_id_t from, const char *addr, size_t nmsgs)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, gbuf_write);
    msgpack_pack_map(&pk, 4);
    pk_uint(&pk, "v", PUL__GOSSIP_VERSION);
    pk_id(&pk, "from", from);
    pk_str(&pk, "addr", addr);
    pk_key(&pk, "msgs");
    msgpack_pack_array(&pk, nmsgs);
    return b->err;
}

int
pul__gsync_encode(pul__gbuf_t *b, const pul__gsync_t *s)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, gbuf_write);
    msgpack_pack_map(&pk, 6);
    pk_uint(&pk, "v", PUL__GOSSIP_VERSION);
    pk_id(&pk, "from", s->from);
    pk_str(&pk, "addr", s->addr);
    pk_bool(&pk, "join", s->join);
    pk_key(&pk, "members");
    msgpack_pack_array(&pk, s->nmembers);
    for (size_t i = 0; i < s->nmembers; i++) {
        const pul__gmember_t *m = &s->members[i];
        msgpack_pack_map(&pk, 4);
        pk_id(&pk, "node", m->node);
        pk_str(&pk, "addr", m->addr);
        pk_uint(&pk, "inc", m->inc);
        pk_uint(&pk, "status", (uint64_t)m->status);
    }
    pk_key(&pk, "names");
    msgpack_pack_array(&pk, s->nnames);
    for (size_t i = 0; i < s->nnames; i++) {
        pk_name_entry(&pk, &s->names[i], 0);
    }
    return b->err;
}

/* ---- decoding: a bounds-checked cursor ---------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} rd_t;

static size_t
rd_left(const rd_t *r)
{
    return (size_t)(r->end - r->p);
}

static int
rd_be(rd_t *r, size_t n, uint64_t *out)
{
    if (rd_left(r) < n) {
        return -1;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | r->p[i];
    }
    r->p += n;
    *out = v;
    return 0;
}

static int
rd_byte(rd_t *r, uint8_t *out)
{
    if (rd_left(r) < 1) {
        return -1;
    }
    *out = *r->p++;
    return 0;
}

/* A non-negative integer of any msgpack width. */
static int
rd_uint(rd_t *r, uint64_t *out)
{
    uint8_t c;
    if (rd_byte(r, &c) != 0) {
        return -1;
    }
    if (c <= 0x7f) {
        *out = c;
        return 0;
    }
    /* uint 8/16/32/64 (0xcc..0xcf) or int 8/16/32/64 (0xd0..0xd3) holding a value >= 0. */
    int is_signed = c >= 0xd0 && c <= 0xd3;
    if (!is_signed && (c < 0xcc || c > 0xcf)) {
        return -1;
    }
    size_t width = (size_t)1 << (c - (is_signed ? 0xd0 : 0xcc));
    uint64_t v;
    if (rd_be(r, width, &v) != 0 || (is_signed && (v >> (8 * width - 1)) != 0)) {
        return -1;
    }
    *out = v;
    return 0;
}

static int
rd_bool(rd_t *r, int *out)
{
    uint8_t c;
    if (rd_byte(r, &c) != 0 || (c != 0xc2 && c != 0xc3)) {
        return -1;
    }
    *out = c == 0xc3;
    return 0;
}

/* str (fixstr, str8/16/32) when want_bin == 0; bin8/16/32 otherwise. */
static int
rd_bytes(rd_t *r, int want_bin, const uint8_t **s, size_t *n)
{
    uint8_t c;
    if (rd_byte(r, &c) != 0) {
        return -1;
    }
    uint64_t len;
    if (!want_bin && (c & 0xe0) == 0xa0) {
        len = c & 0x1f;
    } else if (c == (want_bin ? 0xc4 : 0xd9)) {
        if (rd_be(r, 1, &len) != 0) {
            return -1;
        }
    } else if (c == (want_bin ? 0xc5 : 0xda)) {
        if (rd_be(r, 2, &len) != 0) {
            return -1;
        }
    } else if (c == (want_bin ? 0xc6 : 0xdb)) {
        if (rd_be(r, 4, &len) != 0) {
            return -1;
        }
    } else {
        return -1;
    }
    if (len > rd_left(r)) {
        return -1;
    }
    *s = r->p;
    *n = (size_t)len;
    r->p += len;
    return 0;
}

/* A container header: map (is_map) or array; the count is checked against the bytes left
 * (every element takes at least one byte, two for a map entry). */
static int
rd_container(rd_t *r, int is_map, uint32_t *out)
{
    uint8_t c;
    if (rd_byte(r, &c) != 0) {
        return -1;
    }
    uint64_t n;
    if (is_map && (c & 0xf0) == 0x80) {
        n = c & 0x0f;
    } else if (!is_map && (c & 0xf0) == 0x90) {
        n = c & 0x0f;
    } else if (c == (is_map ? 0xde : 0xdc)) {
        if (rd_be(r, 2, &n) != 0) {
            return -1;
        }
    } else if (c == (is_map ? 0xdf : 0xdd)) {
        if (rd_be(r, 4, &n) != 0) {
            return -1;
        }
    } else {
        return -1;
    }
    if (n > rd_left(r) / (is_map ? 2 : 1)) {
        return -1;
    }
    *out = (uint32_t)n;
    return 0;
}

/* Skip any one value (unknown keys). Bounded recursion. */
static int
rd_skip(rd_t *r, int depth)
{
    if (depth > PUL__GOSSIP_MAX_DEPTH) {
        return -1;
    }
    uint8_t c;
    if (rd_left(r) < 1) {
        return -1;
    }
    c = *r->p;
    uint64_t n;
    size_t skip;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
        r->p++;
        return 0;
    }
    if ((c & 0xf0) == 0x80 || (c & 0xf0) == 0x90 || c == 0xdc || c == 0xdd || c == 0xde ||
        c == 0xdf) {
        int is_map = (c & 0xf0) == 0x80 || c == 0xde || c == 0xdf;
        uint32_t cnt;
        if (rd_container(r, is_map, &cnt) != 0) {
            return -1;
        }
        uint64_t items = (uint64_t)cnt * (is_map ? 2 : 1);
        for (uint64_t i = 0; i < items; i++) {
            if (rd_skip(r, depth + 1) != 0) {
                return -1;
            }
        }
        return 0;
    }
    if ((c & 0xe0) == 0xa0 || c == 0xd9 || c == 0xda || c == 0xdb) {
        const uint8_t *s;
        size_t len;
        return rd_bytes(r, 0, &s, &len);
    }
    if (c == 0xc4 || c == 0xc5 || c == 0xc6) {
        const uint8_t *s;
        size_t len;
        return rd_bytes(r, 1, &s, &len);
    }
    r->p++;
    switch (c) {
    case 0xcc: case 0xd0: skip = 1; break;
    case 0xcd: case 0xd1: skip = 2; break;
    case 0xce: case 0xd2: case 0xca: skip = 4; break;
    case 0xcf: case 0xd3: case 0xcb: skip = 8; break;
    case 0xd4: skip = 2; break;
    case 0xd5: skip = 3; break;
    case 0xd6: skip = 5; break;
    case 0xd7: skip = 9; break;
    case 0xd8: skip = 17; break;
    case 0xc7: case 0xc8: case 0xc9: {
        size_t w = c == 0xc7 ? 1 : c == 0xc8 ? 2 : 4;
        if (rd_be(r, w, &n) != 0 || n > SIZE_MAX - 1) {
            return -1;
        }
        skip = (size_t)n + 1;
        break;
    }
    default:
        return -1; /* 0xc1: never used */
    }
    if (skip > rd_left(r)) {
        return -1;
    }
    r->p += skip;
    return 0;
}

static int
rd_key_is(const uint8_t *k, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(k, want, n) == 0;
}

static int
rd_id(rd_t *r, pul_id_t *out)
{
    const uint8_t *s;
    size_t n;
    if (rd_bytes(r, 1, &s, &n) != 0 || n != 16) {
        return -1;
    }
    out->hi = out->lo = 0;
    for (int i = 0; i < 8; i++) {
        out->hi = (out->hi << 8) | s[i];
        out->lo = (out->lo << 8) | s[8 + i];
    }
    return 0;
}

/* A string into a fixed buffer; too long or containing NUL is malformed. */
static int
rd_cstr(rd_t *r, char *out, size_t outsz)
{
    const uint8_t *s;
    size_t n;
    if (rd_bytes(r, 0, &s, &n) != 0 || n >= outsz || memchr(s, 0, n) != NULL) {
        return -1;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

enum { F_T = 1, F_SEQ = 2, F_NODE = 4, F_BY = 8, F_INC = 16, F_LIVE = 32, F_ADDR = 64,
       F_NAME = 128, F_STATUS = 256 };

enum { RD_GOSSIP, RD_SYNC_NAME, RD_SYNC_MEMBER };

/* Decode one map of message fields: a gossip message (mode RD_GOSSIP), a sync name entry (no
 * `t`) or a sync member entry (status into *status). Returns 0 (*known set to 0 for an unknown
 * `t`), -1 when malformed. */
static int
rd_msg(rd_t *r, pul__gmsg_t *m, uint64_t *status, int mode, int *known)
{
    uint32_t nk;
    if (rd_container(r, 1, &nk) != 0) {
        return -1;
    }
    memset(m, 0, sizeof *m);
    unsigned have = 0;
    int in_sync = mode != RD_GOSSIP;
    int t = mode == RD_SYNC_NAME ? PUL__G_NAME : 0;
    for (uint32_t i = 0; i < nk; i++) {
        const uint8_t *k;
        size_t kl;
        if (rd_bytes(r, 0, &k, &kl) != 0) {
            return -1;
        }
        uint64_t v;
        int rc = 0;
        if (rd_key_is(k, kl, "t") && !in_sync) {
            const uint8_t *s;
            size_t n;
            rc = rd_bytes(r, 0, &s, &n);
            t = 0;
            for (int j = PUL__G_PING; rc == 0 && j <= PUL__G_NAME; j++) {
                if (rd_key_is(s, n, gtype_names[j])) {
                    t = j;
                }
            }
            have |= F_T;
        } else if (rd_key_is(k, kl, "seq")) {
            rc = rd_uint(r, &v);
            if (rc == 0 && v > UINT32_MAX) {
                rc = -1;
            }
            m->seq = (uint32_t)v;
            have |= F_SEQ;
        } else if (rd_key_is(k, kl, "target") || rd_key_is(k, kl, "node")) {
            rc = rd_id(r, &m->node);
            have |= F_NODE;
        } else if (rd_key_is(k, kl, "by") || rd_key_is(k, kl, "actor")) {
            rc = rd_id(r, &m->by);
            have |= F_BY;
        } else if (rd_key_is(k, kl, "inc") || rd_key_is(k, kl, "ver")) {
            rc = rd_uint(r, &m->inc);
            have |= F_INC;
        } else if (rd_key_is(k, kl, "live")) {
            rc = rd_bool(r, &m->live);
            have |= F_LIVE;
        } else if (rd_key_is(k, kl, "addr") || rd_key_is(k, kl, "taddr")) {
            rc = rd_cstr(r, m->addr, sizeof m->addr);
            have |= F_ADDR;
        } else if (rd_key_is(k, kl, "name")) {
            rc = rd_cstr(r, m->name, sizeof m->name);
            have |= F_NAME;
        } else if (rd_key_is(k, kl, "status") && status != NULL) {
            rc = rd_uint(r, status);
            have |= F_STATUS;
        } else {
            rc = rd_skip(r, 1);
        }
        if (rc != 0) {
            return -1;
        }
    }
    unsigned need;
    if (mode == RD_SYNC_MEMBER) {
        need = F_NODE | F_ADDR | F_INC | F_STATUS;
        *known = (have & need) == need;
        return *known ? 0 : -1;
    }
    switch (t) {
    case PUL__G_PING: need = F_SEQ | F_NODE; break;
    case PUL__G_ACK:
    case PUL__G_NACK: need = F_SEQ; break;
    case PUL__G_PREQ: need = F_SEQ | F_NODE | F_ADDR; break;
    case PUL__G_ALIVE: need = F_NODE | F_ADDR | F_INC; break;
    case PUL__G_SUSPECT:
    case PUL__G_DEAD: need = F_NODE | F_INC | F_BY; break;
    case PUL__G_NAME: need = F_NODE | F_NAME | F_BY | F_INC | F_LIVE; break;
    default:
        if (!(have & F_T)) {
            return -1;
        }
        *known = 0;
        return 0;
    }
    if ((have & need) != need) {
        return -1;
    }
    m->t = (pul__gtype_t)t;
    *known = 1;
    return 0;
}

/* Grow *arr (elements of size esz) to hold one more than *n, doubling. */
static int
grow(void **arr, size_t *cap, size_t n, size_t esz)
{
    if (n < *cap) {
        return 0;
    }
    size_t nc = *cap ? *cap * 2 : 8;
    void *p = pul__realloc(*arr, nc * esz);
    if (p == NULL) {
        return PUL_ENOMEM;
    }
    *arr = p;
    *cap = nc;
    return 0;
}

/* The keys a gossip packet and a sync body share: `v` (checked), `from` (have |= 1) and `addr`
 * (have |= 2). Returns 1 when k was one of them (its value consumed), 0 when it was not (nothing
 * consumed), -1 on a malformed value. */
static int
rd_common_key(rd_t *r, const uint8_t *k, size_t kl, pul_id_t *from, char *addr, size_t addrsz,
              unsigned *have)
{
    if (rd_key_is(k, kl, "v")) {
        uint64_t v;
        return rd_uint(r, &v) != 0 || v != PUL__GOSSIP_VERSION ? -1 : 1;
    }
    if (rd_key_is(k, kl, "from")) {
        *have |= 1;
        return rd_id(r, from) != 0 ? -1 : 1;
    }
    if (rd_key_is(k, kl, "addr")) {
        *have |= 2;
        return rd_cstr(r, addr, addrsz) != 0 ? -1 : 1;
    }
    return 0;
}

void
pul__gpacket_clear(pul__gpacket_t *p)
{
    if (p != NULL) {
        pul__free(p->msgs);
        memset(p, 0, sizeof *p);
    }
}

int
pul__gpacket_decode(const uint8_t *buf, size_t len, pul__gpacket_t *out)
{
    memset(out, 0, sizeof *out);
    if (buf == NULL || len == 0) {
        return PUL_EPROTO;
    }
    if (len > PUL__GOSSIP_MAX_PACKET) {
        return PUL_ETOOBIG;
    }
    rd_t r = {buf, buf + len};
    uint32_t nk;
    int rc = PUL_EPROTO;
    size_t cap = 0;
    unsigned have = 0;
    if (rd_container(&r, 1, &nk) != 0) {
        goto fail;
    }
    for (uint32_t i = 0; i < nk; i++) {
        const uint8_t *k;
        size_t kl;
        if (rd_bytes(&r, 0, &k, &kl) != 0) {
            goto fail;
        }
        int common = rd_common_key(&r, k, kl, &out->from, out->addr, sizeof out->addr, &have);
        if (common < 0) {
            goto fail;
        } else if (common > 0) {
            continue;
        } else if (rd_key_is(k, kl, "msgs")) {
            uint32_t n;
            if ((have & 4) || rd_container(&r, 0, &n) != 0) {
                goto fail;
            }
            if (n > PUL__GOSSIP_MAX_MSGS) {
                rc = PUL_ETOOBIG;
                goto fail;
            }
            have |= 4;
            for (uint32_t j = 0; j < n; j++) {
                if (grow((void **)&out->msgs, &cap, out->nmsgs, sizeof *out->msgs) != 0) {
                    rc = PUL_ENOMEM;
                    goto fail;
                }
                int known;
                if (rd_msg(&r, &out->msgs[out->nmsgs], NULL, RD_GOSSIP, &known) != 0) {
                    goto fail;
                }
                out->nmsgs += known ? 1 : 0;
            }
        } else if (rd_skip(&r, 1) != 0) {
            goto fail;
        }
    }
    if (have != 7 || r.p != r.end) {
        goto fail;
    }
    return 0;

fail:
    pul__gpacket_clear(out);
    return rc;
}

void
pul__gsync_clear(pul__gsync_t *s)
{
    if (s != NULL) {
        pul__free(s->members);
        pul__free(s->names);
        memset(s, 0, sizeof *s);
    }
}

int
pul__gsync_decode(const uint8_t *buf, size_t len, size_t max, pul__gsync_t *out)
{
    memset(out, 0, sizeof *out);
    if (buf == NULL || len == 0) {
        return PUL_EPROTO;
    }
    if (len > max) {
        return PUL_ETOOBIG;
    }
    rd_t r = {buf, buf + len};
    uint32_t nk;
    int rc = PUL_EPROTO;
    size_t mcap = 0, ncap = 0;
    unsigned have = 0;
    if (rd_container(&r, 1, &nk) != 0) {
        goto fail;
    }
    for (uint32_t i = 0; i < nk; i++) {
        const uint8_t *k;
        size_t kl;
        uint32_t n;
        if (rd_bytes(&r, 0, &k, &kl) != 0) {
            goto fail;
        }
        int common = rd_common_key(&r, k, kl, &out->from, out->addr, sizeof out->addr, &have);
        if (common < 0) {
            goto fail;
        } else if (common > 0) {
            continue;
        } else if (rd_key_is(k, kl, "join")) {
            if (rd_bool(&r, &out->join) != 0) {
                goto fail;
            }
        } else if (rd_key_is(k, kl, "members")) {
            if ((have & 4) || rd_container(&r, 0, &n) != 0) {
                goto fail;
            }
            have |= 4;
            for (uint32_t j = 0; j < n; j++) {
                pul__gmsg_t m;
                uint64_t st = UINT64_MAX;
                int known;
                if (rd_msg(&r, &m, &st, RD_SYNC_MEMBER, &known) != 0 || pul_id_is_zero(m.node) ||
                    st > PUL_MEMBER_LEFT) {
                    goto fail;
                }
                if (grow((void **)&out->members, &mcap, out->nmembers, sizeof *out->members) !=
                    0) {
                    rc = PUL_ENOMEM;
                    goto fail;
                }
                pul__gmember_t *gm = &out->members[out->nmembers++];
                gm->node = m.node;
                memcpy(gm->addr, m.addr, sizeof gm->addr);
                gm->inc = m.inc;
                gm->status = (pul_member_status_t)st;
            }
        } else if (rd_key_is(k, kl, "names")) {
            if ((have & 8) || rd_container(&r, 0, &n) != 0) {
                goto fail;
            }
            have |= 8;
            for (uint32_t j = 0; j < n; j++) {
                if (grow((void **)&out->names, &ncap, out->nnames, sizeof *out->names) != 0) {
                    rc = PUL_ENOMEM;
                    goto fail;
                }
                int known;
                if (rd_msg(&r, &out->names[out->nnames], NULL, RD_SYNC_NAME, &known) != 0) {
                    goto fail;
                }
                out->nnames++;
            }
        } else if (rd_skip(&r, 1) != 0) {
            goto fail;
        }
    }
    if ((have & 3) != 3 || r.p != r.end) {
        goto fail;
    }
    return 0;

fail:
    pul__gsync_clear(out);
    return rc;
}
