/* alloc.h — the one allocation hook: counted wrappers with fail-nth injection for tests. */
#ifndef PUL_CORE_ALLOC_H
#define PUL_CORE_ALLOC_H

#include <stddef.h>

/* Counted malloc/calloc/realloc/free. Any thread. Return NULL on failure (real or injected by
 * pul_mem_fail_after). pul__free accepts NULL. pul__realloc(p, 0) is not used by the library. */
void *pul__malloc(size_t n);
void *pul__calloc(size_t n, size_t size);
void *pul__realloc(void *p, size_t n);
void pul__free(void *p);
/* Large buffers straight from the kernel: pages mapped on demand, grown without a copy
 * (mremap may move them), given back at once on unmap. Counted and failure-injected like
 * pul__malloc. n and old are the lengths passed to pul__map/pul__remap. Any thread. NULL on
 * failure (pul__remap: p is still valid then). */
void *pul__map(size_t n);
void *pul__remap(void *p, size_t old, size_t n);
void pul__unmap(void *p, size_t n);
/* Counted strdup of len bytes (+NUL). NULL on failure. */
char *pul__strndup(const char *s, size_t len);

#endif
