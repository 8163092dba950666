/* pool.c — a small-block cache for the transport's per-message allocations (nghttp2's streams,
 * frames and header buffers, call records, body pieces). Blocks are taken from and returned to
 * free lists by size class, so the hot path of a call does not go through malloc's slow paths
 * when a thousand calls are in flight. Core thread only; emptied when the transport is freed. */
#include <string.h>

#include "core/alloc.h"
#include "net/netint.h"

/* Every block starts with this header; the user's memory follows, 16-byte aligned. */
typedef union {
    struct {
        size_t cls; /* size class, or POOL_NCLASS for a block malloc'ed to measure */
        size_t cap; /* usable bytes */
    } h;
    max_align_t align;
    void *next; /* on a free list: the next free block */
} blk_t;

#define HDR sizeof(blk_t)

/* Under AddressSanitizer nothing is kept: every block goes back to malloc, so a use after free
 * of a call record or a piece is still reported. */
#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif
#ifdef POOL_ASAN
#define POOL_KEEP 0u
#else
#define POOL_KEEP POOL_KEEP_BYTES
#endif

static size_t
pool_class(size_t n)
{
    return (n + HDR + POOL_GRAIN - 1) / POOL_GRAIN - 1;
}

void *
pool_alloc(pool_t *p, size_t n)
{
    size_t c = pool_class(n);
    blk_t *b;
    if (c < POOL_NCLASS && p->head[c] != NULL) {
        b = p->head[c];
        p->head[c] = b->next;
        p->n[c]--;
        p->bytes -= (c + 1) * POOL_GRAIN;
    } else {
        size_t sz = c < POOL_NCLASS ? (c + 1) * POOL_GRAIN : n + HDR;
        if (sz < n) {
            return NULL; /* overflow */
        }
        b = pul__malloc(sz);
        if (b == NULL) {
            return NULL;
        }
        if (c >= POOL_NCLASS) {
            c = POOL_NCLASS;
        }
    }
    b->h.cls = c;
    b->h.cap = c < POOL_NCLASS ? (c + 1) * POOL_GRAIN - HDR : n;
    return (char *)b + HDR;
}

void *
pool_calloc(pool_t *p, size_t n)
{
    void *q = pool_alloc(p, n);
    if (q != NULL) {
        memset(q, 0, n);
    }
    return q;
}

void
pool_free(pool_t *p, void *ptr)
{
    if (ptr == NULL) {
        return;
    }
    blk_t *b = (blk_t *)((char *)ptr - HDR);
    size_t c = b->h.cls;
    if (c >= POOL_NCLASS || p->bytes + (c + 1) * POOL_GRAIN > POOL_KEEP) {
        pul__free(b);
        return;
    }
    b->next = p->head[c];
    p->head[c] = b;
    p->n[c]++;
    p->bytes += (c + 1) * POOL_GRAIN;
}

void *
pool_realloc(pool_t *p, void *ptr, size_t n)
{
    if (ptr == NULL) {
        return pool_alloc(p, n);
    }
    blk_t *b = (blk_t *)((char *)ptr - HDR);
    if (n <= b->h.cap) {
        return ptr;
    }
    void *q = pool_alloc(p, n);
    if (q == NULL) {
        return NULL;
    }
    memcpy(q, ptr, b->h.cap);
    pool_free(p, ptr);
    return q;
}

void
pool_drain(pool_t *p)
{
    for (size_t c = 0; c < POOL_NCLASS; c++) {
        while (p->head[c] != NULL) {
            blk_t *b = p->head[c];
            p->head[c] = b->next;
            pul__free(b);
        }
        p->n[c] = 0;
    }
    p->bytes = 0;
}

/* ---- nghttp2's allocator ------------------------------------------------------------------ */

static void *
mem_malloc(size_t size, void *ud)
{
    return pool_alloc(ud, size);
}

static void
mem_free(void *ptr, void *ud)
{
    pool_free(ud, ptr);
}

static void *
mem_calloc(size_t nmemb, size_t size, void *ud)
{
    if (size != 0 && nmemb > SIZE_MAX / size) {
        return NULL;
    }
    return pool_calloc(ud, nmemb * size);
}

static void *
mem_realloc(void *ptr, size_t size, void *ud)
{
    return pool_realloc(ud, ptr, size);
}

nghttp2_mem
pool_nghttp2_mem(pool_t *p)
{
    nghttp2_mem m = {p, mem_malloc, mem_free, mem_calloc, mem_realloc};
    return m;
}
