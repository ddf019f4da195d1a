/*
 * test_daemon_jsonrpc.c — the JSON-RPC framing reader and envelopes
 * (daemon/jsonrpc.c): messages split at every byte, pipelined bursts, bad
 * JSON and invalid UTF-8 reported per message without losing the stream,
 * framing errors (missing/invalid/oversized/conflicting Content-Length,
 * endless headers) that break the connection, and request/notification/
 * response classification. The oracle is the frame the test builds by hand.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonrpc.h"

static size_t frame(char *out, size_t cap, const char *body) {
    return (size_t)snprintf(out, cap, "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
}

/* Feed `data` in pieces of `step` bytes and collect every result. */
static int pull_all(lode_rpc_reader *r, const char *data, size_t n, size_t step, json_t **msgs, int max,
                    int *bad_json, bool *brk) {
    int got = 0;
    *bad_json = 0;
    *brk = false;
    for (size_t off = 0; off < n; off += step) {
        lode_rpc_reader_feed(r, data + off, off + step <= n ? step : n - off);
        for (;;) {
            json_t *m;
            lode_rpc_result res = lode_rpc_reader_next(r, &m);
            if (res == LODE_RPC_NONE) break;
            if (res == LODE_RPC_BROKEN) {
                *brk = true;
                return got;
            }
            if (res == LODE_RPC_BAD_JSON) {
                (*bad_json)++;
                continue;
            }
            cr_assert_lt(got, max);
            msgs[got++] = m;
        }
    }
    return got;
}

Test(daemon_jsonrpc, every_split_point_gives_the_same_messages) {
    char buf[1024];
    size_t n = frame(buf, sizeof buf, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}");
    n += frame(buf + n, sizeof buf - n, "{\"jsonrpc\":\"2.0\",\"method\":\"b\",\"params\":{\"x\":\"\xc3\xa9\"}}");
    for (size_t step = 1; step <= n; step++) {
        lode_rpc_reader r;
        lode_rpc_reader_init(&r, 1 << 20);
        json_t *m[4];
        int bad;
        bool brk;
        int got = pull_all(&r, buf, n, step, m, 4, &bad, &brk);
        cr_assert_eq(got, 2, "step %zu", step);
        cr_assert(!brk && !bad);
        cr_assert_str_eq(json_string_value(json_object_get(m[0], "method")), "a");
        cr_assert_str_eq(json_string_value(json_object_get(json_object_get(m[1], "params"), "x")), "\xc3\xa9");
        json_decref(m[0]);
        json_decref(m[1]);
        lode_rpc_reader_free(&r);
    }
}

Test(daemon_jsonrpc, pipelined_burst_and_extra_headers) {
    enum { N = 500 };
    size_t cap = N * 128, n = 0;
    char *buf = malloc(cap);
    for (int i = 0; i < N; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"m\"}", i);
        if (i % 3 == 0) /* LSP allows Content-Type; header names are case-insensitive */
            n += (size_t)snprintf(buf + n, cap - n, "content-type: application/vscode-jsonrpc\r\ncontent-length:%zu \r\n\r\n%s",
                                  strlen(body), body);
        else
            n += frame(buf + n, cap - n, body);
    }
    lode_rpc_reader r;
    lode_rpc_reader_init(&r, 1 << 20);
    static json_t *m[N];
    int bad;
    bool brk;
    int got = pull_all(&r, buf, n, 4000, m, N, &bad, &brk);
    cr_assert_eq(got, N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(json_integer_value(json_object_get(m[i], "id")), i);
        json_decref(m[i]);
    }
    cr_assert_eq(r.len, 0, "everything consumed");
    lode_rpc_reader_free(&r);
    free(buf);
}

Test(daemon_jsonrpc, bad_json_and_bad_utf8_do_not_lose_the_stream) {
    char buf[512];
    size_t n = frame(buf, sizeof buf, "{oops");
    n += frame(buf + n, sizeof buf - n, "{\"s\":\"\xff\xfe\"}");       /* invalid UTF-8 */
    n += frame(buf + n, sizeof buf - n, "{\"s\":\"\xed\xa0\x80\"}");   /* a UTF-8 surrogate */
    n += frame(buf + n, sizeof buf - n, "{\"a\":1,\"a\":2}");          /* duplicate keys */
    n += frame(buf + n, sizeof buf - n, "{\"s\":\"a\\u0000b\"}");      /* NUL inside a string */
    n += frame(buf + n, sizeof buf - n, "{\"jsonrpc\":\"2.0\",\"method\":\"ok\"}");
    lode_rpc_reader r;
    lode_rpc_reader_init(&r, 1 << 20);
    json_t *m[4];
    int bad;
    bool brk;
    int got = pull_all(&r, buf, n, 7, m, 4, &bad, &brk);
    cr_assert_eq(bad, 5);
    cr_assert_eq(got, 1);
    cr_assert(!brk);
    json_decref(m[0]);
    lode_rpc_reader_free(&r);
}

static const char *broken_reason(const char *data, size_t max_body) {
    static char why[128];
    lode_rpc_reader r;
    lode_rpc_reader_init(&r, max_body);
    json_t *m[2];
    int bad;
    bool brk;
    int got = pull_all(&r, data, strlen(data), 3, m, 2, &bad, &brk);
    for (int i = 0; i < got; i++) json_decref(m[i]);
    snprintf(why, sizeof why, "%s", brk ? r.error : "");
    /* A broken reader stays broken and ignores further input. */
    if (brk) {
        lode_rpc_reader_feed(&r, "Content-Length: 2\r\n\r\n{}", 23);
        json_t *x;
        cr_assert_eq(lode_rpc_reader_next(&r, &x), LODE_RPC_BROKEN);
        cr_assert_null(x);
    }
    lode_rpc_reader_free(&r);
    return why;
}

Test(daemon_jsonrpc, framing_errors_break_the_connection) {
    cr_assert(strstr(broken_reason("Content-Type: x\r\n\r\n{}", 100), "missing"));
    cr_assert(strstr(broken_reason("Content-Length: 12a\r\n\r\n{}", 100), "not a number"));
    cr_assert(strstr(broken_reason("Content-Length: \r\n\r\n{}", 100), "empty"));
    cr_assert(strstr(broken_reason("Content-Length: 101\r\n\r\n{}", 100), "larger"));
    cr_assert(strstr(broken_reason("Content-Length: 99999999999999999999999\r\n\r\n", 100), "larger"));
    cr_assert(strstr(broken_reason("Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 100), "conflicting"));
    cr_assert(strstr(broken_reason("garbage without colon\r\n\r\n", 100), "malformed"));
    char *endless = malloc(20000);
    memset(endless, 'x', 19999);
    endless[19999] = 0;
    cr_assert(strstr(broken_reason(endless, 100), "8 KiB"));
    free(endless);
    /* At the limit is fine. */
    cr_assert_str_eq(broken_reason("Content-Length: 2\r\n\r\n{}", 2), "");
}

Test(daemon_jsonrpc, frame_round_trip_and_never_null) {
    json_t *id = json_integer(7); /* borrowed by the builder */
    json_t *v = lode_rpc_result_msg(id, json_pack("{s:s}", "text", "h\xc3\xa9llo"));
    json_decref(id);
    size_t n;
    char *f = lode_rpc_frame(v, &n);
    lode_rpc_reader r;
    lode_rpc_reader_init(&r, 1 << 20);
    lode_rpc_reader_feed(&r, f, n);
    json_t *m;
    cr_assert_eq(lode_rpc_reader_next(&r, &m), LODE_RPC_MESSAGE);
    cr_assert(json_equal(m, v));
    json_decref(m);
    lode_free(f);
    json_decref(v);
    f = lode_rpc_frame(NULL, &n); /* unserialisable: an internal error frame */
    lode_rpc_reader_feed(&r, f, n);
    cr_assert_eq(lode_rpc_reader_next(&r, &m), LODE_RPC_MESSAGE);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(m, "error"), "code")), LODE_RPC_INTERNAL_ERROR);
    json_decref(m);
    lode_free(f);
    lode_rpc_reader_free(&r);
}

static lode_rpc_kind kind_of(const char *text, int *code, lode_rpc_msg *out) {
    json_t *v = json_loads(text, 0, NULL);
    cr_assert(v, "%s", text);
    lode_error err = {0};
    lode_rpc_kind k = lode_rpc_parse(v, out, code, &err);
    if (k == LODE_RPC_KIND_INVALID) cr_assert(err.text[0], "an invalid message says why");
    static json_t *last; /* out's pointers are borrowed from v: keep it until the next call */
    json_decref(last);
    last = v;
    return k;
}

Test(daemon_jsonrpc, envelopes) {
    int code;
    lode_rpc_msg m;
    cr_assert_eq(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{}}", &code, &m), LODE_RPC_KIND_REQUEST);
    cr_assert_eq(kind_of("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"x\"}", &code, &m), LODE_RPC_KIND_REQUEST);
    cr_assert_eq(kind_of("{\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":[1]}", &code, &m), LODE_RPC_KIND_NOTIFICATION);
    cr_assert_eq(kind_of("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":null}", &code, &m), LODE_RPC_KIND_RESPONSE);
    cr_assert_eq(kind_of("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{}}", &code, &m), LODE_RPC_KIND_RESPONSE);
    static const char *bad[] = {
        "[]", "{\"id\":1,\"method\":\"x\"}", "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"x\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"x\"}", "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"x\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":5}", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\"}",
        "{\"jsonrpc\":\"2.0\"}", "{\"jsonrpc\":\"2.0\",\"id\":1}", "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"error\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(kind_of(bad[i], &code, &m), LODE_RPC_KIND_INVALID, "%s", bad[i]);
        cr_assert_eq(code, LODE_RPC_INVALID_REQUEST, "%s", bad[i]);
    }
    cr_assert_eq(kind_of("{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"x\",\"params\":5}", &code, &m), LODE_RPC_KIND_INVALID);
    cr_assert_eq(code, LODE_RPC_INVALID_PARAMS);
    cr_assert_eq(json_integer_value(m.id), 4, "the error can be addressed to the request");
}
