/*
 * jsonrpc.c — LSP-style framing and JSON-RPC 2.0 envelopes (see jsonrpc.h).
 *
 * The reader keeps unread bytes in buf[off..len) and compacts lazily, so a
 * burst of pipelined messages costs one pass, not one memmove per message;
 * the search for the blank line that ends a header block resumes where the
 * previous call stopped, so a body trickling in byte by byte is not
 * rescanned. No state is global: one reader per connection.
 */
#include "jsonrpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define MAX_HEADER 8192

void lode_rpc_reader_init(lode_rpc_reader *r, size_t max_body) {
    memset(r, 0, sizeof *r);
    r->max_body = max_body;
}

void lode_rpc_reader_free(lode_rpc_reader *r) {
    lode_free(r->buf);
    memset(r, 0, sizeof *r);
}

void lode_rpc_reader_feed(lode_rpc_reader *r, const char *data, size_t n) {
    if (r->broken || !n) return;
    if (r->off && r->len + n > r->cap) { /* compact before growing */
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->scan = r->scan > r->off ? r->scan - r->off : 0;
        r->off = 0;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n) cap *= 2;
        r->buf = lode_xrealloc(r->buf, cap);
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, n);
    r->len += n;
}

static lode_rpc_result broken(lode_rpc_reader *r, const char *why) {
    r->broken = true;
    snprintf(r->error, sizeof r->error, "%s", why);
    return LODE_RPC_BROKEN;
}

/* Parse the header block [h, end) into *clen. NULL or the framing error. */
static const char *parse_headers(const char *h, const char *end, size_t max_body, long long *clen) {
    *clen = -1;
    while (h < end) {
        const char *eol = h;
        while (eol < end && !(eol[0] == '\r' && eol + 1 < end && eol[1] == '\n')) eol++;
        size_t ll = (size_t)(eol - h);
        if (ll >= 15 && !strncasecmp(h, "Content-Length:", 15)) {
            const char *v = h + 15, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            if (v == ve) return "empty Content-Length";
            long long x = 0;
            for (; v < ve; v++) {
                if (*v < '0' || *v > '9') return "Content-Length is not a number";
                x = x * 10 + (*v - '0');
                if (x > (long long)max_body) return "message larger than the limit";
            }
            if (*clen >= 0 && *clen != x) return "conflicting Content-Length headers";
            *clen = x;
        } else if (ll && !memchr(h, ':', ll)) {
            return "malformed header line";
        }
        h = eol + 2;
    }
    return *clen < 0 ? "missing Content-Length header" : NULL;
}

lode_rpc_result lode_rpc_reader_next(lode_rpc_reader *r, json_t **msg) {
    *msg = NULL;
    if (r->broken) return LODE_RPC_BROKEN;
    const char *base = r->buf + r->off;
    size_t avail = r->len - r->off;
    /* The header block ends at the first "\r\n\r\n"; resume the search. */
    size_t i = r->scan >= r->off ? r->scan - r->off : 0;
    const char *end = NULL;
    for (; i + 3 < avail && i < MAX_HEADER; i++)
        if (base[i] == '\r' && base[i + 1] == '\n' && base[i + 2] == '\r' && base[i + 3] == '\n') {
            end = base + i;
            break;
        }
    if (!end) {
        if (avail >= MAX_HEADER + 4) return broken(r, "header block longer than 8 KiB");
        r->scan = r->off + (avail > 3 ? avail - 3 : 0);
        return LODE_RPC_NONE;
    }
    r->scan = r->off + i; /* found: stays valid until the body is complete */
    long long clen;
    const char *why = parse_headers(base, end, r->max_body, &clen);
    if (why) return broken(r, why);
    size_t hlen = (size_t)(end - base), total = hlen + 4 + (size_t)clen;
    if (avail < total) return LODE_RPC_NONE;
    json_error_t je;
    /* jansson rejects invalid UTF-8 and (without JSON_ALLOW_NUL) \u0000. */
    json_t *v = json_loadb(base + hlen + 4, (size_t)clen, JSON_REJECT_DUPLICATES, &je);
    r->off += total;
    r->scan = r->off;
    if (r->off == r->len) r->off = r->len = r->scan = 0;
    if (!v) return LODE_RPC_BAD_JSON;
    *msg = v;
    return LODE_RPC_MESSAGE;
}

char *lode_rpc_frame(json_t *v, size_t *len) {
    char *body = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    const char *b = body ? body
                         : "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,"
                           "\"message\":\"internal error: the reply could not be serialised\"}}";
    size_t bl = strlen(b);
    char hdr[64];
    int hl = snprintf(hdr, sizeof hdr, "Content-Length: %zu\r\n\r\n", bl);
    char *out = lode_xmalloc((size_t)hl + bl);
    memcpy(out, hdr, (size_t)hl);
    memcpy(out + hl, b, bl);
    free(body);
    *len = (size_t)hl + bl;
    return out;
}

json_t *lode_rpc_result_msg(json_t *id, json_t *result) {
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "result",
                     result ? result : json_null());
}

json_t *lode_rpc_error_msg(json_t *id, int code, const char *message) {
    return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error", "code", code,
                     "message", message ? message : "error");
}

json_t *lode_rpc_notification(const char *method, json_t *params) {
    return json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", method, "params", params ? params : json_object());
}

/* ---- envelopes -------------------------------------------------------------- */
static lode_rpc_kind invalid(int *code, lode_error *err, const char *why) {
    if (code) *code = LODE_RPC_INVALID_REQUEST;
    lode_error_set(err, LODE_ERR_FORMAT, "%s", why);
    return LODE_RPC_KIND_INVALID;
}

lode_rpc_kind lode_rpc_parse(json_t *msg, lode_rpc_msg *out, int *code, lode_error *err) {
    memset(out, 0, sizeof *out);
    if (code) *code = 0;
    if (!json_is_object(msg)) return invalid(code, err, "a message must be a JSON object (batches are not supported)");
    json_t *id = json_object_get(msg, "id");
    bool has_id = id != NULL;
    if (id && (json_is_string(id) || json_is_integer(id))) out->id = id;
    json_t *ver = json_object_get(msg, "jsonrpc");
    if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0)
        return invalid(code, err, "not a JSON-RPC 2.0 message (\"jsonrpc\": \"2.0\" missing)");
    json_t *method = json_object_get(msg, "method");
    if (!method) { /* a response; its id may be null (an error about an unreadable request) */
        if (!has_id || (!out->id && !json_is_null(id)))
            return invalid(code, err, "a message needs \"method\" (or \"id\" with \"result\"/\"error\")");
        if (!json_object_get(msg, "result") == !json_object_get(msg, "error"))
            return invalid(code, err, "a response needs exactly one of \"result\" and \"error\"");
        out->kind = LODE_RPC_KIND_RESPONSE;
        return out->kind;
    }
    if (has_id && !out->id) return invalid(code, err, "id must be a string or an integer");
    if (!json_is_string(method) || !json_string_length(method)) return invalid(code, err, "method must be a non-empty string");
    out->method = json_string_value(method);
    json_t *params = json_object_get(msg, "params");
    if (params && !json_is_object(params) && !json_is_array(params)) {
        if (code) *code = LODE_RPC_INVALID_PARAMS;
        lode_error_set(err, LODE_ERR_FORMAT, "params must be an object or an array");
        return LODE_RPC_KIND_INVALID;
    }
    out->params = params;
    out->kind = has_id ? LODE_RPC_KIND_REQUEST : LODE_RPC_KIND_NOTIFICATION;
    return out->kind;
}

typedef struct {
    uv_write_t req;
    char *buf;
} rpc_wreq;

static void on_rpc_written(uv_write_t *r, int status) {
    (void)status;
    rpc_wreq *w = (rpc_wreq *)r;
    lode_free(w->buf);
    lode_free(w);
}

int lode_rpc_write(uv_stream_t *st, json_t *v) {
    rpc_wreq *w = lode_xmalloc(sizeof *w);
    size_t n;
    w->buf = lode_rpc_frame(v, &n);
    json_decref(v);
    uv_buf_t b = uv_buf_init(w->buf, (unsigned)n);
    int e = uv_write(&w->req, st, &b, 1, on_rpc_written);
    if (e) {
        lode_free(w->buf);
        lode_free(w);
    }
    return e;
}
