/* msg.c — messages: a type string and payload bytes in one block, refcounted, with out-of-band
 * segments that are referenced, not copied. */
#include <stdatomic.h>
#include <string.h>

#include "core/alloc.h"
#include "pulsing/pulsing.h"

typedef struct {
    const void *data;
    size_t len;
    pul_free_fn free_fn;
    void *opaque;
} msg_segment_t;

struct pul_msg_s {
    atomic_long refs;
    char *type;
    unsigned char *data;
    size_t len;
    msg_segment_t *segs;
    size_t nsegs;
    size_t segcap;
};

pul_msg_t *
pul_msg_new(const char *type, const void *data, size_t len)
{
    if (type == NULL) {
        type = "";
    }
    if (data == NULL && len > 0) {
        return NULL;
    }
    size_t tlen = strlen(type);
    pul_msg_t *m = pul__malloc(sizeof *m + tlen + 1 + len);
    if (m == NULL) {
        return NULL;
    }
    atomic_init(&m->refs, 1);
    m->data = (unsigned char *)(m + 1);
    m->len = len;
    if (len > 0) {
        memcpy(m->data, data, len);
    }
    m->type = (char *)m->data + len;
    memcpy(m->type, type, tlen + 1);
    m->segs = NULL;
    m->nsegs = m->segcap = 0;
    return m;
}

int
pul_msg_add_segment(pul_msg_t *msg, const void *data, size_t len, pul_free_fn free_fn,
                    void *opaque)
{
    if (msg == NULL || (data == NULL && len > 0)) {
        return PUL_EINVAL;
    }
    if (msg->nsegs == msg->segcap) {
        size_t ncap = msg->segcap ? msg->segcap * 2 : 2;
        msg_segment_t *ns = pul__realloc(msg->segs, ncap * sizeof *ns);
        if (ns == NULL) {
            return PUL_ENOMEM;
        }
        msg->segs = ns;
        msg->segcap = ncap;
    }
    msg->segs[msg->nsegs++] = (msg_segment_t){data, len, free_fn, opaque};
    return 0;
}

pul_msg_t *
pul_msg_ref(pul_msg_t *msg)
{
    if (msg != NULL) {
        atomic_fetch_add_explicit(&msg->refs, 1, memory_order_relaxed);
    }
    return msg;
}

void
pul_msg_unref(pul_msg_t *msg)
{
    if (msg == NULL || atomic_fetch_sub_explicit(&msg->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    for (size_t i = 0; i < msg->nsegs; i++) {
        if (msg->segs[i].free_fn != NULL) {
            msg->segs[i].free_fn(msg->segs[i].opaque);
        }
    }
    pul__free(msg->segs);
    pul__free(msg);
}

const char *
pul_msg_type(const pul_msg_t *msg)
{
    return msg != NULL ? msg->type : NULL;
}

const void *
pul_msg_data(const pul_msg_t *msg, size_t *len)
{
    if (msg == NULL) {
        if (len != NULL) {
            *len = 0;
        }
        return NULL;
    }
    if (len != NULL) {
        *len = msg->len;
    }
    return msg->data;
}

size_t
pul_msg_nsegments(const pul_msg_t *msg)
{
    return msg != NULL ? msg->nsegs : 0;
}

const void *
pul_msg_segment(const pul_msg_t *msg, size_t i, size_t *len)
{
    if (msg == NULL || i >= msg->nsegs) {
        if (len != NULL) {
            *len = 0;
        }
        return NULL;
    }
    if (len != NULL) {
        *len = msg->segs[i].len;
    }
    return msg->segs[i].data;
}

size_t
pul_msg_size(const pul_msg_t *msg)
{
    if (msg == NULL) {
        return 0;
    }
    size_t n = msg->len;
    for (size_t i = 0; i < msg->nsegs; i++) {
        n += msg->segs[i].len;
    }
    return n;
}
