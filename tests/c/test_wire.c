/* test_wire.c — name rules (valid/invalid table) and the frame codec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pul_test.h"
#include "core/alloc.h"
#include "wire/envelope.h"
#include "wire/frame.h"

static void
test_names(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int allow_system;
        int rc;
        const char *out;
    } cases[] = {
        {"counter", 0, 0, "actors/counter"},
        {"services/counter", 0, 0, "services/counter"},
        {"a/b/c-d_E9", 0, 0, "a/b/c-d_E9"},
        {"system/registry", 0, PUL_ENAME, NULL},
        {"system/registry", 1, 0, "system/registry"},
        {"system", 0, 0, "actors/system"},
        {"", 0, PUL_ENAME, NULL},
        {"/x", 0, PUL_ENAME, NULL},
        {"x/", 0, PUL_ENAME, NULL},
        {"a//b", 0, PUL_ENAME, NULL},
        {"a b", 0, PUL_ENAME, NULL},
        {"a.b", 0, PUL_ENAME, NULL},
        {"caf\xc3\xa9", 0, PUL_ENAME, NULL},
    };
    char out[PUL_NAME_MAX + 1];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = pul_name_normalize(cases[i].in, strlen(cases[i].in), cases[i].allow_system, out,
                                    sizeof out);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0) {
            assert_string_equal(out, cases[i].out);
        }
    }
    char longname[PUL_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname);
    longname[1] = '/';
    assert_int_equal(pul_name_normalize(longname, PUL_NAME_MAX, 0, out, sizeof out), 0);
    assert_int_equal(pul_name_normalize(longname, PUL_NAME_MAX + 1, 0, out, sizeof out),
                     PUL_ENAME);
    /* "x" grows by "actors/": the normalized form must fit too. */
    memset(longname, 'a', sizeof longname);
    assert_int_equal(pul_name_normalize(longname, PUL_NAME_MAX - 7, 0, out, sizeof out), 0);
    assert_int_equal(pul_name_normalize(longname, PUL_NAME_MAX - 6, 0, out, sizeof out),
                     PUL_ENAME);
    assert_int_equal(pul_name_normalize("ab", 2, 0, out, 4), PUL_EINVAL);
    assert_int_equal(pul_name_normalize(NULL, 2, 0, out, sizeof out), PUL_EINVAL);
}

static void
test_frames(void **state)
{
    (void)state;
    uint8_t buf[64];
    long n = pul__frame_encode(PUL__FRAME_ITEM, "hello", 5, 1024, buf, sizeof buf);
    assert_int_equal(n, PUL__FRAME_HEADER + 5);
    long m = pul__frame_encode(PUL__FRAME_END, NULL, 0, 1024, buf + n, sizeof buf - (size_t)n);
    assert_int_equal(m, PUL__FRAME_HEADER);
    /* Every prefix shorter than a frame asks for more. */
    pul__frame_t f;
    for (long i = 0; i < n; i++) {
        assert_int_equal(pul__frame_decode(buf, (size_t)i, 1024, &f), 0);
    }
    assert_int_equal(pul__frame_decode(buf, (size_t)(n + m), 1024, &f), n);
    assert_int_equal(f.kind, PUL__FRAME_ITEM);
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.body, "hello", 5);
    assert_int_equal(pul__frame_decode(buf + n, (size_t)m, 1024, &f), m);
    assert_int_equal(f.kind, PUL__FRAME_END);
    /* Oversize: rejected from the header alone, before any body arrives. */
    uint8_t big[5] = {PUL__FRAME_ITEM, 0x7f, 0xff, 0xff, 0xff};
    assert_int_equal(pul__frame_decode(big, sizeof big, 1024, &f), PUL_ETOOBIG);
    assert_int_equal(pul__frame_encode(PUL__FRAME_ITEM, buf, 10, 4, big, sizeof big),
                     PUL_ETOOBIG);
    assert_int_equal(pul__frame_encode(PUL__FRAME_ITEM, "x", 1, 4, big, 5), PUL_ETOOBIG);
    /* Protocol errors. */
    uint8_t bad[5] = {9, 0, 0, 0, 0};
    assert_int_equal(pul__frame_decode(bad, sizeof bad, 1024, &f), PUL_EPROTO);
    uint8_t badend[6] = {PUL__FRAME_END, 0, 0, 0, 1, 0};
    assert_int_equal(pul__frame_decode(badend, sizeof badend, 1024, &f), PUL_EPROTO);
    assert_int_equal(pul__frame_encode(9, NULL, 0, 4, buf, sizeof buf), PUL_EINVAL);
}

static void
test_envelope(void **state)
{
    (void)state;
    long base = pul_mem_live();
    pul_msg_t *m = pul_msg_new("t", "payload", 7);
    static const char seg1[] = "segment-one", seg2[] = "";
    assert_int_equal(pul_msg_add_segment(m, seg1, 11, NULL, NULL), 0);
    assert_int_equal(pul_msg_add_segment(m, seg2, 0, NULL, NULL), 0);
    uint8_t buf[256];
    long h = pul__env_header_encode(m, buf, sizeof buf);
    assert_int_equal(h, 4 + 8 * 3);
    assert_int_equal((size_t)h, pul__env_header_size(m));
    memcpy(buf + h, "payload", 7);
    memcpy(buf + h + 7, seg1, 11);
    size_t total = (size_t)h + 18;
    /* Byte by byte: each part lands in its own buffer. */
    pul__env_rx_t rx;
    pul__env_rx_init(&rx, 1024);
    for (size_t i = 0; i < total; i++) {
        assert_false(pul__env_rx_done(&rx));
        assert_int_equal(pul__env_rx_feed(&rx, buf + i, 1), 1);
    }
    assert_true(pul__env_rx_done(&rx));
    assert_int_equal(pul__env_rx_feed(&rx, buf, 1), 0); /* nothing past the end */
    pul_msg_t *d = pul__env_rx_take(&rx, "t2");
    assert_non_null(d);
    size_t len;
    assert_memory_equal(pul_msg_data(d, &len), "payload", 7);
    assert_int_equal(pul_msg_nsegments(d), 2);
    assert_memory_equal(pul_msg_segment(d, 0, &len), seg1, 11);
    assert_int_equal(len, 11);
    (void)pul_msg_segment(d, 1, &len);
    assert_int_equal(len, 0);
    assert_string_equal(pul_msg_type(d), "t2");
    pul_msg_unref(d);
    pul_msg_unref(m);
    /* A claimed size over the maximum is refused from the header, before any allocation of
     * the parts; too many segments likewise. */
    uint8_t big[12] = {0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0};
    pul__env_rx_init(&rx, 1024);
    assert_int_equal(pul__env_rx_feed(&rx, big, sizeof big), PUL_ETOOBIG);
    pul__env_rx_free(&rx);
    uint8_t many[4] = {0, 0, 0x10, 0x01};
    pul__env_rx_init(&rx, 1024);
    assert_int_equal(pul__env_rx_feed(&rx, many, sizeof many), PUL_EPROTO);
    pul__env_rx_free(&rx);
    /* Error maps keep every field. */
    pul_error_t e = {.kind = PUL_ERRKIND_BUSINESS, .code = -42, .recoverable = 1,
                     .duration_ms = 77, .message = "m", .details = NULL, .type_name = "T"};
    uint8_t *out = NULL;
    size_t olen = 0;
    assert_int_equal(pul__errmap_encode(&e, &out, &olen), 0);
    pul_error_t g;
    assert_int_equal(pul__errmap_decode(out, olen, &g), 0);
    assert_int_equal(g.kind, e.kind);
    assert_int_equal(g.code, -42);
    assert_int_equal(g.recoverable, 1);
    assert_int_equal(g.duration_ms, 77);
    assert_string_equal(g.message, "m");
    assert_null(g.details);
    assert_string_equal(g.type_name, "T");
    pul__errmap_clear(&g);
    assert_int_equal(pul__errmap_decode(out, olen - 1, &g), PUL_EPROTO);
    pul__free(out);
    assert_int_equal(pul_mem_live(), base);
}

/* Decode one message whose single segment is `n` bytes of `fill`; returns it. */
static pul_msg_t *
decode_big(size_t n, int fill)
{
    pul_msg_t *m = pul_msg_new("t", NULL, 0);
    uint8_t *data = malloc(n);
    assert_non_null(data);
    memset(data, fill, n);
    assert_int_equal(pul_msg_add_segment(m, data, n, NULL, NULL), 0);
    uint8_t hdr[64];
    long h = pul__env_header_encode(m, hdr, sizeof hdr);
    assert_true(h > 0);
    pul__env_rx_t rx;
    pul__env_rx_init(&rx, (size_t)1 << 30);
    assert_int_equal(pul__env_rx_feed(&rx, hdr, (size_t)h), h);
    for (size_t off = 0; off < n; off += 256 * 1024) { /* as the read buffer hands it over */
        size_t k = n - off < 256 * 1024 ? n - off : 256 * 1024;
        assert_int_equal(pul__env_rx_feed(&rx, data + off, k), (long)k);
    }
    assert_true(pul__env_rx_done(&rx));
    pul_msg_t *d = pul__env_rx_take(&rx, "t");
    assert_non_null(d);
    pul_msg_unref(m);
    free(data);
    return d;
}

/* A large part's mapping, freed while a system runs, is reused whole by the next large part
 * (no growing, no fresh pages); a larger part than the cached mapping gets its own; the last
 * user gone, nothing stays mapped. */
/* One item frame of type t and payload pl (no segments) at out; returns its length. */
static size_t
sfr_item(uint8_t *out, const char *t, const char *pl)
{
    size_t tl = strlen(t), n = strlen(pl);
    pul__sframe_hdr(out, PUL__SFRAME_ITEM, (uint32_t)(1 + tl + 12 + n));
    out[5] = (uint8_t)tl;
    memcpy(out + 6, t, tl);
    memset(out + 6 + tl, 0, 12);
    out[6 + tl + 11] = (uint8_t)n;
    memcpy(out + 6 + tl + 12, pl, n);
    return 6 + tl + 12 + n;
}

typedef struct {
    int items, ends, errors;
    char last_type[256], last_payload[64], err[64];
    size_t errlen;
} sfr_seen_t;

/* Feed buf in pieces of `step` bytes; record the events. Returns 0 or the first error. */
static int
sfr_run(const uint8_t *buf, size_t n, size_t step, unsigned kinds, int ascii, sfr_seen_t *seen)
{
    pul__env_rx_t env;
    char type[256];
    pul__sframe_rx_t rx;
    pul__env_rx_init(&env, 1024);
    pul__sframe_rx_init(&rx, 1024, kinds, ascii, &env, type);
    memset(seen, 0, sizeof *seen);
    int rc = 0;
    for (size_t off = 0; off < n && rc == 0;) {
        size_t k = n - off < step ? n - off : step;
        size_t used = 0;
        while (used < k) {
            pul__sfr_ev_t ev;
            long r = pul__sframe_rx_feed(&rx, buf + off + used, k - used, &ev);
            if (r < 0) {
                rc = (int)r;
                break;
            }
            assert_true(r > 0 || ev != PUL__SFR_NEED);
            used += (size_t)r;
            if (ev == PUL__SFR_ITEM) {
                pul_msg_t *m = pul__env_rx_take(&env, type);
                assert_non_null(m);
                size_t len;
                const void *d = pul_msg_data(m, &len);
                snprintf(seen->last_type, sizeof seen->last_type, "%s", pul_msg_type(m));
                snprintf(seen->last_payload, sizeof seen->last_payload, "%.*s", (int)len,
                         (const char *)d);
                pul_msg_unref(m);
                seen->items++;
            } else if (ev == PUL__SFR_END) {
                seen->ends++;
            } else if (ev == PUL__SFR_ERROR) {
                memcpy(seen->err + seen->errlen, rx.chunk, rx.chunk_len);
                seen->errlen += rx.chunk_len;
                seen->errors += rx.last;
            }
        }
        off += k;
    }
    if (rc == 0 && !pul__sframe_rx_idle(&rx)) {
        rc = 1; /* ended inside a frame */
    }
    pul__env_rx_free(&env);
    return rc;
}

/* The incremental stream-frame reader: the same events whatever the pieces the bytes come in;
 * kinds not accepted, bad lengths and types refused before anything is committed. */
static void
test_sframe_reader(void **state)
{
    (void)state;
    long base = pul_mem_live();
    const unsigned all = 1u << PUL__SFRAME_ITEM | 1u << PUL__SFRAME_END | 1u << PUL__SFRAME_ERROR;
    uint8_t buf[512];
    size_t n = 0;
    n += sfr_item(buf + n, "a", "one");
    n += sfr_item(buf + n, "", "two");
    n += sfr_item(buf + n, "type-c", "");
    pul__sframe_hdr(buf + n, PUL__SFRAME_ERROR, 5);
    memcpy(buf + n + 5, "oops!", 5);
    n += 10;
    pul__sframe_hdr(buf + n, PUL__SFRAME_END, 0);
    n += 5;
    for (size_t step = 1; step <= n; step++) {
        sfr_seen_t seen;
        assert_int_equal(sfr_run(buf, n, step, all, 1, &seen), 0);
        assert_int_equal(seen.items, 3);
        assert_string_equal(seen.last_type, "type-c");
        assert_int_equal(seen.errors, 1);
        assert_int_equal(seen.errlen, 5);
        assert_memory_equal(seen.err, "oops!", 5);
        assert_int_equal(seen.ends, 1);
    }
    sfr_seen_t seen;
    /* Items only: an end frame is refused. */
    assert_int_equal(sfr_run(buf, n, 7, 1u << PUL__SFRAME_ITEM, 1, &seen), PUL_EPROTO);
    assert_int_equal(seen.items, 3);
    /* Cut inside a frame: not idle. */
    assert_int_equal(sfr_run(buf, 9, 4, all, 1, &seen), 1);
    /* A type with a control character: refused when types must be ASCII, else taken. */
    size_t k = sfr_item(buf, "x\x01y", "p");
    assert_int_equal(sfr_run(buf, k, 3, all, 1, &seen), PUL_EPROTO);
    assert_int_equal(sfr_run(buf, k, 3, all, 0, &seen), 0);
    assert_int_equal(seen.items, 1);
    /* A frame over the maximum: refused from its header. */
    pul__sframe_hdr(buf, PUL__SFRAME_ITEM, 4096);
    assert_int_equal(sfr_run(buf, 5, 5, all, 1, &seen), PUL_ETOOBIG);
    /* An empty item, a non-empty end, an empty error, an unknown kind, an item whose type
     * leaves no room for its message, bytes past an item's encoding. */
    pul__sframe_hdr(buf, PUL__SFRAME_ITEM, 0);
    assert_int_equal(sfr_run(buf, 5, 5, all, 1, &seen), PUL_EPROTO);
    pul__sframe_hdr(buf, PUL__SFRAME_END, 1);
    assert_int_equal(sfr_run(buf, 6, 6, all, 1, &seen), PUL_EPROTO);
    pul__sframe_hdr(buf, PUL__SFRAME_ERROR, 0);
    assert_int_equal(sfr_run(buf, 5, 5, all, 1, &seen), PUL_EPROTO);
    pul__sframe_hdr(buf, 9, 0);
    assert_int_equal(sfr_run(buf, 5, 5, all, 1, &seen), PUL_EPROTO);
    pul__sframe_hdr(buf, PUL__SFRAME_ITEM, 3);
    buf[5] = 2;
    memcpy(buf + 6, "ab", 2);
    assert_int_equal(sfr_run(buf, 8, 8, all, 1, &seen), PUL_EPROTO);
    k = sfr_item(buf, "t", "xy");
    pul__sframe_hdr(buf, PUL__SFRAME_ITEM, (uint32_t)(k - 5 + 1)); /* one byte too long */
    buf[k] = 0;
    assert_int_equal(sfr_run(buf, k + 1, 4, all, 1, &seen), PUL_EPROTO);
    assert_int_equal(pul_mem_live(), base);
}

static void
test_large_part_mappings_reused(void **state)
{
    (void)state;
    long base = pul_mem_live();
    pul__env_cache_use(1);
    size_t n = (size_t)9 << 20, len;
    pul_msg_t *a = decode_big(n, 'a');
    const uint8_t *pa = pul_msg_segment(a, 0, &len);
    assert_int_equal(len, n);
    assert_int_equal(pa[0], 'a');
    assert_int_equal(pa[n - 1], 'a');
    pul_msg_unref(a); /* the mapping goes to the cache */
    pul_msg_t *b = decode_big(n - 4096, 'b');
    const uint8_t *pb = pul_msg_segment(b, 0, &len);
    assert_ptr_equal(pb, pa); /* the same mapping */
    assert_int_equal(len, n - 4096);
    assert_int_equal(pb[0], 'b');
    assert_int_equal(pb[len - 1], 'b');
    pul_msg_t *c = decode_big(n * 2, 'c'); /* none cached large enough: a mapping of its own */
    const uint8_t *pc = pul_msg_segment(c, 0, &len);
    assert_int_equal(len, n * 2);
    assert_int_equal(pc[len - 1], 'c');
    pul_msg_unref(b);
    pul_msg_unref(c);
    pul__env_cache_use(0); /* the last user: cached mappings are unmapped */
    assert_int_equal(pul_mem_live(), base);
    /* With no system running, a freed mapping is unmapped at once. */
    pul_msg_unref(decode_big(n, 'd'));
    assert_int_equal(pul_mem_live(), base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_frames),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_sframe_reader),
        cmocka_unit_test(test_large_part_mappings_reused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
