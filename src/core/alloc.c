/* alloc.c — counted allocator wrappers; tests assert pul_mem_live() returns to baseline. */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "pulsing/pulsing.h"

static atomic_long alloc_live;
static atomic_long alloc_fail_countdown; /* 0 = disabled; n = the n-th next allocation fails */

static int
alloc_should_fail(void)
{
    long n = atomic_load_explicit(&alloc_fail_countdown, memory_order_relaxed);
    while (n > 0) {
        if (atomic_compare_exchange_weak(&alloc_fail_countdown, &n, n - 1)) {
            return n == 1;
        }
    }
    return 0;
}

void *
pul__malloc(size_t n)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    void *p = malloc(n ? n : 1);
    if (p != NULL) {
        atomic_fetch_add_explicit(&alloc_live, 1, memory_order_relaxed);
    }
    return p;
}

void *
pul__calloc(size_t n, size_t size)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p != NULL) {
        atomic_fetch_add_explicit(&alloc_live, 1, memory_order_relaxed);
    }
    return p;
}

void *
pul__realloc(void *p, size_t n)
{
    if (p == NULL) {
        return pul__malloc(n);
    }
    if (alloc_should_fail()) {
        return NULL;
    }
    return realloc(p, n ? n : 1);
}

void
pul__free(void *p)
{
    if (p != NULL) {
        atomic_fetch_sub_explicit(&alloc_live, 1, memory_order_relaxed);
        free(p);
    }
}

void *
pul__map(size_t n)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    atomic_fetch_add_explicit(&alloc_live, 1, memory_order_relaxed);
    return p;
}

void *
pul__remap(void *p, size_t old, size_t n)
{
    if (alloc_should_fail()) {
        return NULL;
    }
    void *q = mremap(p, old, n, MREMAP_MAYMOVE);
    return q == MAP_FAILED ? NULL : q;
}

void
pul__unmap(void *p, size_t n)
{
    if (p != NULL) {
        atomic_fetch_sub_explicit(&alloc_live, 1, memory_order_relaxed);
        (void)munmap(p, n);
    }
}

char *
pul__strndup(const char *s, size_t len)
{
    char *d = pul__malloc(len + 1);
    if (d != NULL) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

long
pul_mem_live(void)
{
    return atomic_load(&alloc_live);
}

void
pul_mem_fail_after(long n)
{
    atomic_store(&alloc_fail_countdown, n > 0 ? n : 0);
}
