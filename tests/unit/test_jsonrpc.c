/*
 * test_jsonrpc.c — Content-Length framing: messages split at every byte,
 * several per read, unknown headers, bad JSON (reported, stream kept),
 * framing errors (missing/garbage/oversized length, huge header blocks).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "jsonrpc.h"
#include "lode_base.h"

static const char *two = "Content-Length: 13\r\n\r\n{\"a\": [1, 2]}Content-Type: x\r\ncontent-length:2\r\n\r\n{}";

Test(jsonrpc, split_at_every_byte) {
    size_t n = strlen(two);
    for (size_t cut = 0; cut <= n; cut++) {
        lode_rpc_reader r;
        lode_rpc_reader_init(&r, 1 << 20);
        json_t *m;
        int got = 0;
        lode_rpc_reader_feed(&r, two, cut);
        while (lode_rpc_reader_next(&r, &m) == LODE_RPC_MESSAGE) got++, json_decref(m);
        lode_rpc_reader_feed(&r, two + cut, n - cut);
        while (lode_rpc_reader_next(&r, &m) == LODE_RPC_MESSAGE) got++, json_decref(m);
        cr_assert_eq(got, 2, "cut at %zu", cut);
        cr_assert_eq(r.len, 0);
        lode_rpc_reader_free(&r);
    }
}

Test(jsonrpc, bad_json_keeps_stream) {
    lode_rpc_reader r;
    lode_rpc_reader_init(&r, 1 << 20);
    const char *s = "Content-Length: 3\r\n\r\n{x}Content-Length: 2\r\n\r\n[]";
    lode_rpc_reader_feed(&r, s, strlen(s));
    json_t *m;
    cr_assert_eq(lode_rpc_reader_next(&r, &m), LODE_RPC_BAD_JSON);
    cr_assert_eq(lode_rpc_reader_next(&r, &m), LODE_RPC_MESSAGE);
    cr_assert(json_is_array(m));
    json_decref(m);
    cr_assert_eq(lode_rpc_reader_next(&r, &m), LODE_RPC_NONE);
    lode_rpc_reader_free(&r);
}

Test(jsonrpc, framing_errors) {
    const char *bad[] = {"Content-Length: abc\r\n\r\n{}", "Content-Type: x\r\n\r\n{}", "Content-Length: 99999999999\r\n\r\n",
                         "garbage line\r\n\r\n", "Content-Length:\r\n\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lode_rpc_reader r;
        lode_rpc_reader_init(&r, 1 << 20);
        lode_rpc_reader_feed(&r, bad[i], strlen(bad[i]));
        json_t *m;
        cr_assert_eq(lode_rpc_reader_next(&r, &m), LODE_RPC_BROKEN, "case %zu", i);
        cr_assert(r.error[0]);
        lode_rpc_reader_free(&r);
    }
    lode_rpc_reader r;
    lode_rpc_reader_init(&r, 1 << 20);
    char big[9000];
    memset(big, 'a', sizeof big);
    lode_rpc_reader_feed(&r, big, sizeof big);
    json_t *m;
    cr_assert_eq(lode_rpc_reader_next(&r, &m), LODE_RPC_BROKEN, "header block without end");
    lode_rpc_reader_free(&r);
}

Test(jsonrpc, frame_roundtrip) {
    json_t *v = lode_rpc_result_msg(json_integer(7), json_pack("{s:s}", "text", "héllo"));
    size_t n;
    char *f = lode_rpc_frame(v, &n);
    lode_rpc_reader r;
    lode_rpc_reader_init(&r, 1 << 20);
    lode_rpc_reader_feed(&r, f, n);
    json_t *m;
    cr_assert_eq(lode_rpc_reader_next(&r, &m), LODE_RPC_MESSAGE);
    cr_assert(json_equal(m, v));
    json_decref(m);
    json_decref(v);
    lode_free(f);
    lode_rpc_reader_free(&r);
}
