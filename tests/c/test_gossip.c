/* test_gossip.c — membership codecs: round trips of every message and of sync bodies; truncated,
 * garbage and oversized input is rejected without a crash or a leak; unknown keys are skipped. */
#include <msgpack.h>
#include <stdlib.h>

#include "pul_test.h"
#include "wire/gossip.h"

static pul_id_t
mkid(uint64_t hi, uint64_t lo)
{
    pul_id_t id = {hi, lo};
    return id;
}

static void
sample_msgs(pul__gmsg_t *m, size_t *n)
{
    memset(m, 0, 8 * sizeof *m);
    m[0] = (pul__gmsg_t){.t = PUL__G_PING, .seq = 7, .node = mkid(1, 2)};
    m[1] = (pul__gmsg_t){.t = PUL__G_ACK, .seq = 0xffffffffu};
    m[2] = (pul__gmsg_t){.t = PUL__G_NACK, .seq = 9};
    m[3] = (pul__gmsg_t){.t = PUL__G_PREQ, .seq = 10, .node = mkid(3, 4)};
    strcpy(m[3].addr, "127.0.0.1:9000");
    m[4] = (pul__gmsg_t){.t = PUL__G_ALIVE, .node = mkid(5, 6), .inc = 1ull << 40};
    strcpy(m[4].addr, "[::1]:65535");
    m[5] = (pul__gmsg_t){.t = PUL__G_SUSPECT, .node = mkid(7, 8), .inc = 3, .by = mkid(9, 10)};
    m[6] = (pul__gmsg_t){.t = PUL__G_DEAD, .node = mkid(7, 8), .inc = 4, .by = mkid(7, 8)};
    m[7] = (pul__gmsg_t){.t = PUL__G_NAME, .node = mkid(11, 12), .by = mkid(11, 13), .inc = 2,
                         .live = 1};
    strcpy(m[7].name, "services/counter");
    *n = 8;
}

static void
encode_packet(pul__gbuf_t *b, const pul__gmsg_t *m, size_t n)
{
    pul__gbuf_init(b, PUL__GOSSIP_MAX_PACKET);
    assert_int_equal(pul__gpacket_begin(b, mkid(0xabc, 0xdef), "10.0.0.1:7000", n), 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(pul__gmsg_encode(b, &m[i]), 0);
    }
}

static void
test_packet_round_trip(void **state)
{
    (void)state;
    pul__gmsg_t m[8];
    size_t n;
    sample_msgs(m, &n);
    pul__gbuf_t b;
    encode_packet(&b, m, n);
    pul__gpacket_t p;
    assert_int_equal(pul__gpacket_decode(b.p, b.len, &p), 0);
    assert_true(pul_id_eq(p.from, mkid(0xabc, 0xdef)));
    assert_string_equal(p.addr, "10.0.0.1:7000");
    assert_int_equal(p.nmsgs, n);
    for (size_t i = 0; i < n; i++) {
        assert_memory_equal(&p.msgs[i], &m[i], sizeof m[i]);
    }
    pul__gpacket_clear(&p);
    pul__gbuf_free(&b);
}

static void
test_sync_round_trip(void **state)
{
    (void)state;
    pul__gmember_t mem[3] = {
        {.node = mkid(1, 1), .addr = "a:1", .inc = 0, .status = PUL_MEMBER_ALIVE},
        {.node = mkid(2, 2), .addr = "b:2", .inc = 5, .status = PUL_MEMBER_SUSPECT},
        {.node = mkid(3, 3), .addr = "c:3", .inc = 9, .status = PUL_MEMBER_LEFT},
    };
    pul__gmsg_t names[2] = {
        {.t = PUL__G_NAME, .node = mkid(1, 1), .by = mkid(1, 5), .inc = 1, .live = 1,
         .name = "actors/x"},
        {.t = PUL__G_NAME, .node = mkid(2, 2), .by = mkid(2, 6), .inc = 3, .live = 0,
         .name = "actors/y"},
    };
    pul__gsync_t s = {.from = mkid(1, 1), .addr = "a:1", .join = 1, .members = mem,
                      .nmembers = 3, .names = names, .nnames = 2};
    pul__gbuf_t b;
    pul__gbuf_init(&b, 1 << 20);
    assert_int_equal(pul__gsync_encode(&b, &s), 0);
    pul__gsync_t d;
    assert_int_equal(pul__gsync_decode(b.p, b.len, 1 << 20, &d), 0);
    assert_true(pul_id_eq(d.from, s.from));
    assert_string_equal(d.addr, "a:1");
    assert_int_equal(d.join, 1);
    assert_int_equal(d.nmembers, 3);
    assert_int_equal(d.nnames, 2);
    for (int i = 0; i < 3; i++) {
        assert_true(pul_id_eq(d.members[i].node, mem[i].node));
        assert_string_equal(d.members[i].addr, mem[i].addr);
        assert_int_equal(d.members[i].inc, mem[i].inc);
        assert_int_equal(d.members[i].status, mem[i].status);
    }
    for (int i = 0; i < 2; i++) {
        assert_memory_equal(&d.names[i], &names[i], sizeof names[i]);
    }
    pul__gsync_clear(&d);
    /* A limit below the body's size is refused before decoding. */
    assert_int_equal(pul__gsync_decode(b.p, b.len, b.len - 1, &d), PUL_ETOOBIG);
    /* The encoder honours its own maximum. */
    pul__gbuf_t small;
    pul__gbuf_init(&small, 16);
    assert_int_equal(pul__gsync_encode(&small, &s), PUL_ETOOBIG);
    pul__gbuf_free(&small);
    pul__gbuf_free(&b);
}

static void
test_truncated(void **state)
{
    (void)state;
    pul__gmsg_t m[8];
    size_t n;
    sample_msgs(m, &n);
    pul__gbuf_t b;
    encode_packet(&b, m, n);
    for (size_t cut = 0; cut < b.len; cut++) {
        pul__gpacket_t p;
        assert_int_equal(pul__gpacket_decode(b.p, cut, &p), PUL_EPROTO);
        assert_int_equal(p.nmsgs, 0);
        assert_null(p.msgs);
    }
    /* Trailing bytes are malformed too. */
    uint8_t *longer = malloc(b.len + 1);
    memcpy(longer, b.p, b.len);
    longer[b.len] = 0xc0;
    pul__gpacket_t p;
    assert_int_equal(pul__gpacket_decode(longer, b.len + 1, &p), PUL_EPROTO);
    free(longer);
    pul__gbuf_free(&b);

    pul__gmember_t mem = {.node = mkid(1, 1), .addr = "a:1", .inc = 2, .status = 0};
    pul__gsync_t s = {.from = mkid(1, 1), .addr = "a:1", .members = &mem, .nmembers = 1,
                      .names = &m[7], .nnames = 1};
    pul__gbuf_init(&b, 0);
    assert_int_equal(pul__gsync_encode(&b, &s), 0);
    for (size_t cut = 0; cut < b.len; cut++) {
        pul__gsync_t d;
        assert_int_equal(pul__gsync_decode(b.p, cut, 1 << 20, &d), PUL_EPROTO);
        assert_null(d.members);
        assert_null(d.names);
    }
    pul__gbuf_free(&b);
}

static void
test_garbage(void **state)
{
    (void)state;
    srand(1234);
    uint8_t buf[512];
    pul__gmsg_t m[8];
    size_t n;
    sample_msgs(m, &n);
    pul__gbuf_t good;
    encode_packet(&good, m, n);
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = (size_t)(rand() % (int)sizeof buf) + 1;
        if (iter % 2 == 0 && good.len <= sizeof buf) {
            /* Mutations of a valid packet reach deeper into the decoder. */
            memcpy(buf, good.p, good.len);
            len = good.len;
            for (int k = 0; k < 1 + rand() % 4; k++) {
                buf[rand() % (int)len] = (uint8_t)rand();
            }
        } else {
            for (size_t i = 0; i < len; i++) {
                buf[i] = (uint8_t)rand();
            }
        }
        pul__gpacket_t p;
        if (pul__gpacket_decode(buf, len, &p) == 0) {
            assert_true(p.nmsgs <= PUL__GOSSIP_MAX_MSGS);
            pul__gpacket_clear(&p);
        }
        pul__gsync_t s;
        if (pul__gsync_decode(buf, len, 1 << 20, &s) == 0) {
            pul__gsync_clear(&s);
        }
    }
    pul__gbuf_free(&good);
    pul__gpacket_t p;
    assert_int_equal(pul__gpacket_decode(NULL, 0, &p), PUL_EPROTO);
}

/* Pack a packet header by hand with an arbitrary msgs array header. */
static void
raw_header(msgpack_sbuffer *sb, msgpack_packer *pk)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(pk, 4);
    msgpack_pack_str_with_body(pk, "v", 1);
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_str_with_body(pk, "from", 4);
    uint8_t id[16] = {1};
    msgpack_pack_bin_with_body(pk, id, 16);
    msgpack_pack_str_with_body(pk, "addr", 4);
    msgpack_pack_str_with_body(pk, "x:1", 3);
    msgpack_pack_str_with_body(pk, "msgs", 4);
}

enum { W_U8, W_U16, W_U32, W_U64, W_I8, W_I16, W_I32, W_I64, W_DOUBLE };

/* An ack whose seq is v packed in msgpack width w; the decode status and, on success, the seq. */
static int
ack_with_seq(int w, int64_t v, uint32_t *seq)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    raw_header(&sb, &pk);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "ack", 3);
    msgpack_pack_str_with_body(&pk, "seq", 3);
    switch (w) {
    case W_U8:
        msgpack_pack_fix_uint8(&pk, (uint8_t)v);
        break;
    case W_U16:
        msgpack_pack_fix_uint16(&pk, (uint16_t)v);
        break;
    case W_U32:
        msgpack_pack_fix_uint32(&pk, (uint32_t)v);
        break;
    case W_U64:
        msgpack_pack_fix_uint64(&pk, (uint64_t)v);
        break;
    case W_I8:
        msgpack_pack_fix_int8(&pk, (int8_t)v);
        break;
    case W_I16:
        msgpack_pack_fix_int16(&pk, (int16_t)v);
        break;
    case W_I32:
        msgpack_pack_fix_int32(&pk, (int32_t)v);
        break;
    case W_I64:
        msgpack_pack_fix_int64(&pk, v);
        break;
    default:
        msgpack_pack_double(&pk, (double)v);
        break;
    }
    pul__gpacket_t p;
    int rc = pul__gpacket_decode((uint8_t *)sb.data, sb.size, &p);
    if (rc == 0) {
        assert_int_equal(p.nmsgs, 1);
        *seq = p.msgs[0].seq;
        pul__gpacket_clear(&p);
    }
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* Integers in every msgpack width decode; negative ones and other types do not. */
static void
test_integer_widths(void **state)
{
    (void)state;
    struct {
        int w;
        int64_t v;
    } ok[] = {{W_U8, 200},    {W_U16, 300},    {W_U32, 70000},    {W_U64, 80000},
              {W_I8, 100},    {W_I16, 30000},  {W_I32, 2000000},  {W_I64, 3000000}},
      bad[] = {{W_I8, -1}, {W_I16, -300}, {W_I32, -70000}, {W_I64, -1}, {W_DOUBLE, 1}};
    uint32_t seq = 0;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(ack_with_seq(ok[i].w, ok[i].v, &seq), 0);
        assert_int_equal(seq, (uint32_t)ok[i].v);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ack_with_seq(bad[i].w, bad[i].v, &seq), PUL_EPROTO);
    }
}

static void
test_oversized(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    pul__gpacket_t p;
    /* An array header claiming 4 billion elements in a tiny packet. */
    raw_header(&sb, &pk);
    msgpack_pack_array(&pk, 0xffffffffu);
    assert_int_equal(pul__gpacket_decode((uint8_t *)sb.data, sb.size, &p), PUL_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* More messages than a packet may carry, each real. */
    raw_header(&sb, &pk);
    msgpack_pack_array(&pk, PUL__GOSSIP_MAX_MSGS + 1);
    for (int i = 0; i < PUL__GOSSIP_MAX_MSGS + 1; i++) {
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "t", 1);
        msgpack_pack_str_with_body(&pk, "ack", 3);
        msgpack_pack_str_with_body(&pk, "seq", 3);
        msgpack_pack_uint32(&pk, (uint32_t)i);
    }
    assert_int_equal(pul__gpacket_decode((uint8_t *)sb.data, sb.size, &p), PUL_ETOOBIG);
    msgpack_sbuffer_destroy(&sb);
    /* A packet over 64 KiB is refused before decoding. */
    uint8_t *big = calloc(1, PUL__GOSSIP_MAX_PACKET + 1);
    assert_int_equal(pul__gpacket_decode(big, PUL__GOSSIP_MAX_PACKET + 1, &p), PUL_ETOOBIG);
    free(big);
    /* A string claiming more bytes than remain. */
    raw_header(&sb, &pk);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "preq", 4);
    msgpack_pack_str_with_body(&pk, "taddr", 5);
    msgpack_pack_str(&pk, 1000);
    assert_int_equal(pul__gpacket_decode((uint8_t *)sb.data, sb.size, &p), PUL_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* An address longer than PUL_ADDR_MAX. */
    raw_header(&sb, &pk);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "alive", 5);
    msgpack_pack_str_with_body(&pk, "node", 4);
    uint8_t id[16] = {2};
    msgpack_pack_bin_with_body(&pk, id, 16);
    msgpack_pack_str_with_body(&pk, "inc", 3);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_str_with_body(&pk, "addr", 4);
    char longaddr[100];
    memset(longaddr, 'a', sizeof longaddr);
    msgpack_pack_str_with_body(&pk, longaddr, sizeof longaddr);
    assert_int_equal(pul__gpacket_decode((uint8_t *)sb.data, sb.size, &p), PUL_EPROTO);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_unknown_and_nested(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    pul__gpacket_t p;
    /* Unknown keys and an unknown message type are skipped; known ones decode. */
    raw_header(&sb, &pk);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "future", 6);
    msgpack_pack_str_with_body(&pk, "x", 1);
    msgpack_pack_double(&pk, 1.5);
    msgpack_pack_str_with_body(&pk, "y", 1);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_nil(&pk);
    msgpack_pack_int8(&pk, -3);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "ack", 3);
    msgpack_pack_str_with_body(&pk, "extra", 5);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "k", 1);
    msgpack_pack_bin_with_body(&pk, "zz", 2);
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_uint16(&pk, 300);
    assert_int_equal(pul__gpacket_decode((uint8_t *)sb.data, sb.size, &p), 0);
    assert_int_equal(p.nmsgs, 1);
    assert_int_equal(p.msgs[0].t, PUL__G_ACK);
    assert_int_equal(p.msgs[0].seq, 300);
    pul__gpacket_clear(&p);
    msgpack_sbuffer_destroy(&sb);
    /* A message missing a required field is malformed. */
    raw_header(&sb, &pk);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "ping", 4);
    assert_int_equal(pul__gpacket_decode((uint8_t *)sb.data, sb.size, &p), PUL_EPROTO);
    msgpack_sbuffer_destroy(&sb);
    /* Deep nesting in an unknown value is refused, not recursed into without bound. */
    raw_header(&sb, &pk);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "nack", 4);
    msgpack_pack_str_with_body(&pk, "deep", 4);
    for (int i = 0; i < 1000; i++) {
        msgpack_pack_array(&pk, 1);
    }
    msgpack_pack_nil(&pk);
    assert_int_equal(pul__gpacket_decode((uint8_t *)sb.data, sb.size, &p), PUL_EPROTO);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_alloc_failure(void **state)
{
    (void)state;
    pul__gmsg_t m[8];
    size_t n;
    sample_msgs(m, &n);
    pul__gbuf_t b;
    encode_packet(&b, m, n);
    for (long k = 1; k < 4; k++) {
        pul_mem_fail_after(k);
        pul__gpacket_t p;
        int rc = pul__gpacket_decode(b.p, b.len, &p);
        pul_mem_fail_after(0);
        if (rc == 0) {
            pul__gpacket_clear(&p);
        } else {
            assert_int_equal(rc, PUL_ENOMEM);
        }
    }
    pul__gbuf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_packet_round_trip, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_sync_round_trip, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_truncated, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_garbage, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_oversized, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_integer_widths, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_nested, pul_test_setup, pul_test_teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failure, pul_test_setup, pul_test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
