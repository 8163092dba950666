/* envelope.c — message encoding, stream frame headers and error maps (see envelope.h). */
#include "wire/envelope.h"

#include <msgpack.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "core/alloc.h"

#define ENV_GROW_MIN (64u * 1024u)
#define ENV_MAP_MIN (8u << 20) /* parts this large get their own mapping (see env_map_grow) */
#define ENV_MAP_HDR 64

static void
put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void
put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)(v >> 32));
    put_u32(p + 4, (uint32_t)v);
}

static uint64_t
get_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

size_t
pul__env_header_size(const pul_msg_t *msg)
{
    return 4 + 8 * (1 + pul_msg_nsegments(msg));
}

long
pul__env_header_encode(const pul_msg_t *msg, uint8_t *out, size_t outsz)
{
    size_t nseg = pul_msg_nsegments(msg);
    size_t need = 4 + 8 * (1 + nseg);
    if (nseg > PUL__ENV_MAX_SEGS || outsz < need) {
        return PUL_EINVAL;
    }
    size_t len;
    (void)pul_msg_data(msg, &len);
    put_u32(out, (uint32_t)nseg);
    put_u64(out + 4, len);
    for (size_t i = 0; i < nseg; i++) {
        (void)pul_msg_segment(msg, i, &len);
        put_u64(out + 12 + 8 * i, len);
    }
    return (long)need;
}

void
pul__env_rx_init(pul__env_rx_t *rx, size_t max)
{
    memset(rx, 0, sizeof *rx);
    rx->max = max;
}

static void env_map_free(void *data);

void
pul__env_rx_free(pul__env_rx_t *rx)
{
    if (rx->bufs != NULL) {
        for (size_t i = 0; i <= rx->nseg; i++) {
            if (rx->bufs[i] == rx->small) {
                continue;
            }
            if (rx->lens[i] >= ENV_MAP_MIN) {
                env_map_free(rx->bufs[i]);
            } else {
                pul__free(rx->bufs[i]);
            }
        }
    }
    if (rx->bufs != rx->bufs_in) {
        pul__free(rx->bufs);
        pul__free(rx->have);
        pul__free(rx->cap);
    }
    if (rx->lens != rx->lens_in) {
        pul__free(rx->lens);
    }
    size_t max = rx->max;
    pul__env_rx_init(rx, max);
}

int
pul__env_rx_done(const pul__env_rx_t *rx)
{
    return rx->state == 3;
}

/* The header is complete: check the announced total, set up the part buffers (empty). */
static int
env_rx_parts(pul__env_rx_t *rx)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= rx->nseg; i++) {
        if (rx->lens[i] > rx->max || total + rx->lens[i] > rx->max) {
            return PUL_ETOOBIG;
        }
        total += rx->lens[i];
    }
    size_t n = rx->nseg + 1;
    if (n <= 2) {
        rx->bufs = rx->bufs_in; /* zeroed by init */
        rx->have = rx->have_in;
        rx->cap = rx->cap_in;
    } else {
        rx->bufs = pul__calloc(n, sizeof *rx->bufs);
        rx->have = pul__calloc(n, sizeof *rx->have);
        rx->cap = pul__calloc(n, sizeof *rx->cap);
        if (rx->bufs == NULL || rx->have == NULL || rx->cap == NULL) {
            /* free() must see either nothing or a whole set */
            pul__free(rx->bufs);
            pul__free(rx->have);
            pul__free(rx->cap);
            rx->bufs = NULL;
            rx->have = rx->cap = NULL;
            return PUL_ENOMEM;
        }
    }
    if (rx->lens[0] > 0 && rx->lens[0] <= sizeof rx->small) {
        rx->bufs[0] = rx->small; /* a small payload: no allocation */
        rx->cap[0] = (size_t)rx->lens[0];
    }
    rx->state = 2;
    rx->part = 0;
    while (rx->part <= rx->nseg && rx->lens[rx->part] == 0) {
        rx->part++;
    }
    if (rx->part > rx->nseg) {
        rx->state = 3;
    }
    return 0;
}

/* A large part (>= ENV_MAP_MIN announced) is received into its own mapping: growing it as bytes
 * arrive moves pages instead of copying them (realloc copied 64 KiB + 128 KiB + ... on the way to
 * 64 MiB: as many bytes again as the part), and it asks for transparent huge pages (the kernel's
 * default here is "madvise"): with 4 KiB pages a 64 MiB part costs 16384 page faults. The
 * mapping starts with a small header holding its length; the part's bytes follow it. */

/* The whole mapping, not only its 2 MiB-aligned interior: a hint on part of it would split it in
 * several VMAs, and mremap cannot grow a range that spans more than one. */
static void
env_hugepages(uint8_t *base, size_t len)
{
#ifdef MADV_HUGEPAGE
    if (len >= ((size_t)2 << 20)) {
        (void)madvise(base, len, MADV_HUGEPAGE); /* a hint: failure changes nothing */
    }
#else
    (void)base;
    (void)len;
#endif
}

static uint8_t *
env_map_grow(uint8_t *data, size_t oldcap, size_t newcap)
{
    size_t newlen = newcap + ENV_MAP_HDR;
    uint8_t *base = data == NULL ? pul__map(newlen)
                                 : pul__remap(data - ENV_MAP_HDR, oldcap + ENV_MAP_HDR, newlen);
    if (base == NULL) {
        return NULL;
    }
    memcpy(base, &newlen, sizeof newlen);
    env_hugepages(base, newlen);
    return base + ENV_MAP_HDR;
}

/* Mappings of freed parts kept for the next large part, while a system runs: a fresh mapping
 * costs a page fault and the zeroing of every page on its first write (~20 % of the receiving
 * side's CPU for 64 MiB parts), a reused one neither. At most ENV_CACHE_SLOTS mappings of at most
 * ENV_CACHE_MAX bytes each stay resident; the last system to shut down unmaps them. */
#define ENV_CACHE_SLOTS 2
#define ENV_CACHE_MAX ((size_t)128 << 20)

static pthread_mutex_t env_cache_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *env_cache[ENV_CACHE_SLOTS]; /* mapping bases; the header holds the length */
static int env_cache_users;                 /* systems running (under env_cache_mu) */

static size_t
env_map_len(const uint8_t *base)
{
    size_t len;
    memcpy(&len, base, sizeof len);
    return len;
}

/* A cached mapping of at least `need` bytes (the smallest), or NULL. */
static uint8_t *
env_cache_take(size_t need)
{
    uint8_t *best = NULL;
    int at = -1;
    pthread_mutex_lock(&env_cache_mu);
    for (int i = 0; i < ENV_CACHE_SLOTS; i++) {
        uint8_t *b = env_cache[i];
        if (b != NULL && env_map_len(b) >= need &&
            (best == NULL || env_map_len(b) < env_map_len(best))) {
            best = b;
            at = i;
        }
    }
    if (at >= 0) {
        env_cache[at] = NULL;
    }
    pthread_mutex_unlock(&env_cache_mu);
    return best;
}

void
pul__env_cache_use(int on)
{
    uint8_t *drop[ENV_CACHE_SLOTS] = {NULL};
    pthread_mutex_lock(&env_cache_mu);
    env_cache_users += on ? 1 : -1;
    if (env_cache_users == 0) {
        memcpy(drop, env_cache, sizeof drop);
        memset(env_cache, 0, sizeof env_cache);
    }
    pthread_mutex_unlock(&env_cache_mu);
    for (int i = 0; i < ENV_CACHE_SLOTS; i++) {
        if (drop[i] != NULL) {
            pul__unmap(drop[i], env_map_len(drop[i]));
        }
    }
}

/* Frees a mapped part (its pul_free_fn as a segment, too): into the cache when a system runs
 * and a slot is free, else unmapped. */
static void
env_map_free(void *data)
{
    if (data == NULL) {
        return;
    }
    uint8_t *base = (uint8_t *)data - ENV_MAP_HDR;
    size_t len = env_map_len(base);
    if (len <= ENV_CACHE_MAX) {
        pthread_mutex_lock(&env_cache_mu);
        for (int i = 0; env_cache_users > 0 && i < ENV_CACHE_SLOTS; i++) {
            if (env_cache[i] == NULL) {
                env_cache[i] = base;
                base = NULL;
                break;
            }
        }
        pthread_mutex_unlock(&env_cache_mu);
    }
    if (base != NULL) {
        pul__unmap(base, len);
    }
}

long
pul__env_rx_feed(pul__env_rx_t *rx, const uint8_t *p, size_t n)
{
    size_t used = 0;
    while (used < n && rx->state != 3) {
        if (rx->state == 0 || rx->state == 1) {
            size_t want = rx->state == 0 ? 4 : 8;
            size_t k = want - rx->hlen;
            if (k > n - used) {
                k = n - used;
            }
            memcpy(rx->hb + rx->hlen, p + used, k);
            rx->hlen += k;
            used += k;
            if (rx->hlen < want) {
                break;
            }
            rx->hlen = 0;
            if (rx->state == 0) {
                uint64_t ns = get_be(rx->hb, 4);
                if (ns > PUL__ENV_MAX_SEGS) {
                    return PUL_EPROTO;
                }
                rx->nseg = (uint32_t)ns;
                rx->lens = rx->nseg < 2 ? rx->lens_in
                                        : pul__calloc(rx->nseg + 1, sizeof *rx->lens);
                if (rx->lens == NULL) {
                    return PUL_ENOMEM;
                }
                rx->nlens = 0;
                rx->state = 1;
            } else {
                rx->lens[rx->nlens++] = get_be(rx->hb, 8);
                if (rx->nlens == rx->nseg + 1) {
                    int rc = env_rx_parts(rx);
                    if (rc != 0) {
                        return rc;
                    }
                }
            }
            continue;
        }
        /* state 2: bytes of the current part. */
        size_t i = rx->part;
        size_t left = (size_t)rx->lens[i] - rx->have[i];
        size_t k = n - used < left ? n - used : left;
        if (rx->have[i] + k > rx->cap[i]) {
            /* Grow with what arrived: double, at least 64 KiB, never past the part's length. */
            size_t nc = rx->cap[i] * 2;
            if (nc < ENV_GROW_MIN) {
                nc = ENV_GROW_MIN;
            }
            if (nc < rx->have[i] + k) {
                nc = rx->have[i] + k;
            }
            if (nc > rx->lens[i]) {
                nc = (size_t)rx->lens[i];
            }
            uint8_t *nb = NULL;
            if (rx->lens[i] < ENV_MAP_MIN) {
                nb = pul__realloc(rx->bufs[i], nc);
            } else if (rx->bufs[i] == NULL &&
                       (nb = env_cache_take((size_t)rx->lens[i] + ENV_MAP_HDR)) != NULL) {
                nb += ENV_MAP_HDR; /* a cached mapping holds the whole part: no more growing */
                nc = (size_t)rx->lens[i];
            } else {
                nb = env_map_grow(rx->bufs[i], rx->cap[i], nc);
            }
            if (nb == NULL) {
                return PUL_ENOMEM;
            }
            rx->bufs[i] = nb;
            rx->cap[i] = nc;
        }
        memcpy(rx->bufs[i] + rx->have[i], p + used, k);
        rx->have[i] += k;
        used += k;
        if (rx->have[i] == rx->lens[i]) {
            do {
                rx->part++;
            } while (rx->part <= rx->nseg && rx->lens[rx->part] == 0);
            if (rx->part > rx->nseg) {
                rx->state = 3;
            }
        }
    }
    return (long)used;
}

static void
env_seg_free(void *p)
{
    pul__free(p);
}

pul_msg_t *
pul__env_rx_take(pul__env_rx_t *rx, const char *type)
{
    if (rx->state != 3) {
        return NULL;
    }
    pul_msg_t *m = pul_msg_new(type, rx->bufs[0], rx->have[0]);
    if (m == NULL) {
        return NULL;
    }
    for (size_t i = 1; i <= rx->nseg; i++) {
        uint8_t *b = rx->bufs[i];
        if (b == NULL) {
            /* An empty segment: a valid, static empty region. */
            if (pul_msg_add_segment(m, "", 0, NULL, NULL) != 0) {
                pul_msg_unref(m);
                return NULL;
            }
            continue;
        }
        if (pul_msg_add_segment(m, b, rx->have[i],
                                rx->lens[i] >= ENV_MAP_MIN ? env_map_free : env_seg_free,
                                b) != 0) {
            pul_msg_unref(m);
            return NULL;
        }
        rx->bufs[i] = NULL; /* the message owns it now */
    }
    pul__env_rx_free(rx);
    return m;
}

void
pul__sframe_hdr(uint8_t out[PUL__SFRAME_HDR], unsigned kind, uint32_t len)
{
    out[0] = (uint8_t)kind;
    put_u32(out + 1, len);
}

/* ---- stream frames, incrementally ---------------------------------------------------------- */

enum { SFR_HDR, SFR_TLEN, SFR_TYPE, SFR_MSG, SFR_BODY };

void
pul__sframe_rx_init(pul__sframe_rx_t *rx, size_t max, unsigned kinds, int ascii,
                    pul__env_rx_t *env, char type[256])
{
    memset(rx, 0, sizeof *rx);
    rx->state = SFR_HDR;
    rx->kinds = kinds;
    rx->ascii = ascii;
    rx->max = max;
    rx->env = env;
    rx->type = type;
}

int
pul__sframe_rx_idle(const pul__sframe_rx_t *rx)
{
    return rx->state == SFR_HDR && rx->fhlen == 0;
}

static void
sfr_next(pul__sframe_rx_t *rx)
{
    rx->state = SFR_HDR;
    rx->fhlen = 0;
}

long
pul__sframe_rx_feed(pul__sframe_rx_t *rx, const uint8_t *p, size_t n, pul__sfr_ev_t *ev)
{
    size_t used = 0;
    *ev = PUL__SFR_NEED;
    while (used < n) {
        size_t left = n - used;
        switch (rx->state) {
        case SFR_HDR: {
            size_t k = PUL__SFRAME_HDR - rx->fhlen;
            k = k < left ? k : left;
            memcpy(rx->fh + rx->fhlen, p + used, k);
            rx->fhlen += k;
            used += k;
            if (rx->fhlen < PUL__SFRAME_HDR) {
                return (long)used;
            }
            rx->kind = rx->fh[0];
            rx->len = (uint32_t)get_be(rx->fh + 1, 4);
            rx->got = 0;
            if (rx->kind > 31 || !(rx->kinds & (1u << rx->kind))) {
                return PUL_EPROTO;
            }
            if (rx->len > rx->max) {
                return PUL_ETOOBIG;
            }
            if (rx->kind == PUL__SFRAME_ITEM) {
                if (rx->len < 1) {
                    return PUL_EPROTO;
                }
                rx->state = SFR_TLEN;
            } else if (rx->kind == PUL__SFRAME_END) {
                if (rx->len != 0) {
                    return PUL_EPROTO;
                }
                sfr_next(rx);
                *ev = PUL__SFR_END;
                return (long)used;
            } else if (rx->kind == PUL__SFRAME_ERROR) {
                if (rx->len == 0) {
                    return PUL_EPROTO;
                }
                rx->state = SFR_BODY;
            } else {
                return PUL_EPROTO;
            }
            break;
        }
        case SFR_TLEN:
            rx->tlen = p[used++];
            rx->tgot = 0;
            rx->got = 1;
            if (1 + rx->tlen > rx->len) {
                return PUL_EPROTO;
            }
            rx->type[0] = '\0';
            pul__env_rx_free(rx->env);
            pul__env_rx_init(rx->env, rx->max);
            rx->state = rx->tlen > 0 ? SFR_TYPE : SFR_MSG;
            if (rx->got == rx->len) {
                return PUL_EPROTO; /* no room left for the message encoding */
            }
            break;
        case SFR_TYPE: {
            size_t k = rx->tlen - rx->tgot;
            k = k < left ? k : left;
            for (size_t i = 0; rx->ascii && i < k; i++) {
                if (p[used + i] < 0x20 || p[used + i] > 0x7e) {
                    return PUL_EPROTO;
                }
            }
            memcpy(rx->type + rx->tgot, p + used, k);
            rx->tgot += k;
            rx->got += (uint32_t)k;
            used += k;
            if (rx->tgot == rx->tlen) {
                rx->type[rx->tlen] = '\0';
                rx->state = SFR_MSG;
                if (rx->got == rx->len) {
                    return PUL_EPROTO;
                }
            }
            break;
        }
        case SFR_MSG: {
            size_t k = rx->len - rx->got;
            k = k < left ? k : left;
            long r = pul__env_rx_feed(rx->env, p + used, k);
            if (r < 0) {
                return r;
            }
            if ((size_t)r != k) {
                return PUL_EPROTO; /* bytes past the encoding inside the frame */
            }
            used += k;
            rx->got += (uint32_t)k;
            if (rx->got < rx->len) {
                return (long)used; /* k == left: all consumed */
            }
            if (!pul__env_rx_done(rx->env)) {
                return PUL_EPROTO;
            }
            sfr_next(rx);
            *ev = PUL__SFR_ITEM;
            return (long)used;
        }
        case SFR_BODY: {
            size_t k = rx->len - rx->got;
            k = k < left ? k : left;
            rx->chunk = p + used;
            rx->chunk_len = k;
            used += k;
            rx->got += (uint32_t)k;
            rx->last = rx->got == rx->len;
            if (rx->last) {
                sfr_next(rx);
            }
            *ev = PUL__SFR_ERROR;
            return (long)used;
        }
        default:
            return PUL_EPROTO;
        }
    }
    return (long)used;
}

/* ---- error map ---------------------------------------------------------------------------- */

static void
pk_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

int
pul__errmap_encode(const pul_error_t *e, uint8_t **out, size_t *outlen)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    pk_str(&pk, "kind");
    msgpack_pack_int(&pk, (int)e->kind);
    pk_str(&pk, "code");
    msgpack_pack_int64(&pk, e->code);
    pk_str(&pk, "message");
    pk_str(&pk, e->message ? e->message : "");
    pk_str(&pk, "details");
    if (e->details != NULL) {
        pk_str(&pk, e->details);
    } else {
        msgpack_pack_nil(&pk);
    }
    pk_str(&pk, "recoverable");
    if (e->recoverable) {
        msgpack_pack_true(&pk);
    } else {
        msgpack_pack_false(&pk);
    }
    pk_str(&pk, "duration_ms");
    msgpack_pack_uint64(&pk, e->duration_ms);
    pk_str(&pk, "type_name");
    if (e->type_name != NULL) {
        pk_str(&pk, e->type_name);
    } else {
        msgpack_pack_nil(&pk);
    }
    int rc = 0;
    *out = pul__malloc(sb.size ? sb.size : 1);
    if (*out == NULL || sb.data == NULL) {
        pul__free(*out);
        *out = NULL;
        rc = PUL_ENOMEM;
    } else {
        memcpy(*out, sb.data, sb.size);
        *outlen = sb.size;
    }
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int
key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

static int
obj_str(const msgpack_object *v, const char **dst)
{
    if (v->type == MSGPACK_OBJECT_NIL) {
        *dst = NULL;
        return 0;
    }
    if (v->type != MSGPACK_OBJECT_STR) {
        return PUL_EPROTO;
    }
    char *s = pul__strndup(v->via.str.ptr, v->via.str.size);
    if (s == NULL) {
        return PUL_ENOMEM;
    }
    pul__free((void *)*dst);
    *dst = s;
    return 0;
}

static int
obj_int(const msgpack_object *v, int64_t *dst)
{
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *dst = (int64_t)v->via.u64;
    } else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *dst = v->via.i64;
    } else {
        return PUL_EPROTO;
    }
    return 0;
}

void
pul__errmap_clear(pul_error_t *e)
{
    pul__free((void *)e->message);
    pul__free((void *)e->details);
    pul__free((void *)e->type_name);
    memset(e, 0, sizeof *e);
}

int
pul__errmap_decode(const uint8_t *p, size_t n, pul_error_t *e)
{
    memset(e, 0, sizeof *e);
    e->kind = PUL_ERRKIND_RUNTIME;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = PUL_EPROTO;
    if (msgpack_unpack_next(&u, (const char *)p, n, &off) != MSGPACK_UNPACK_SUCCESS ||
        u.data.type != MSGPACK_OBJECT_MAP) {
        goto out;
    }
    rc = 0;
    const msgpack_object_map *m = &u.data.via.map;
    for (uint32_t i = 0; i < m->size && rc == 0; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        int64_t x = 0;
        if (key_is(k, "kind")) {
            rc = obj_int(v, &x);
            e->kind = (pul_errkind_t)x;
        } else if (key_is(k, "code")) {
            rc = obj_int(v, &e->code);
        } else if (key_is(k, "message")) {
            rc = obj_str(v, &e->message);
        } else if (key_is(k, "details")) {
            rc = obj_str(v, &e->details);
        } else if (key_is(k, "type_name")) {
            rc = obj_str(v, &e->type_name);
        } else if (key_is(k, "recoverable")) {
            if (v->type == MSGPACK_OBJECT_BOOLEAN) {
                e->recoverable = v->via.boolean;
            } else {
                rc = PUL_EPROTO;
            }
        } else if (key_is(k, "duration_ms")) {
            rc = obj_int(v, &x);
            e->duration_ms = (uint64_t)x;
        }
    }
    if (rc == 0 && (e->kind < PUL_ERRKIND_RUNTIME || e->kind > PUL_ERRKIND_UNSUPPORTED)) {
        rc = PUL_EPROTO;
    }
out:
    msgpack_unpacked_destroy(&u);
    if (rc != 0) {
        pul__errmap_clear(e);
    }
    return rc;
}
