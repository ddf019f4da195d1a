/* jsonrpc.c — see jsonrpc.h. */
#include "jsonrpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lode_base.h"

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

static void consume(lode_rpc_reader *r, size_t n) {
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
}

lode_rpc_result lode_rpc_reader_next(lode_rpc_reader *r, json_t **msg) {
    *msg = NULL;
    if (r->broken) return LODE_RPC_BROKEN;
    /* Header block ends at the first "\r\n\r\n". Cap its size. */
    char *end = NULL;
    for (size_t i = 0; i + 3 < r->len; i++)
        if (r->buf[i] == '\r' && r->buf[i + 1] == '\n' && r->buf[i + 2] == '\r' && r->buf[i + 3] == '\n') {
            end = r->buf + i;
            break;
        }
    if (!end) return r->len > 8192 ? broken(r, "header block longer than 8 KiB") : LODE_RPC_NONE;
    size_t hlen = (size_t)(end - r->buf);
    long long clen = -1;
    const char *p = r->buf;
    while (p < end) {
        const char *eol = p;
        while (eol < end && !(eol[0] == '\r' && eol[1] == '\n')) eol++;
        size_t ll = (size_t)(eol - p);
        if (ll > 15 && !strncasecmp(p, "Content-Length:", 15)) {
            const char *v = p + 15;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            if (v == eol) return broken(r, "empty Content-Length");
            long long x = 0;
            for (; v < eol; v++) {
                if (*v < '0' || *v > '9') return broken(r, "Content-Length is not a number");
                x = x * 10 + (*v - '0');
                if (x > (long long)r->max_body) return broken(r, "message larger than the limit");
            }
            clen = x;
        } else if (ll && !memchr(p, ':', ll)) {
            return broken(r, "malformed header line");
        }
        p = eol + 2;
    }
    if (clen < 0) return broken(r, "missing Content-Length header");
    size_t total = hlen + 4 + (size_t)clen;
    if (r->len < total) return LODE_RPC_NONE;
    json_error_t je;
    json_t *v = json_loadb(r->buf + hlen + 4, (size_t)clen, JSON_REJECT_DUPLICATES, &je);
    consume(r, total);
    if (!v) return LODE_RPC_BAD_JSON;
    *msg = v;
    return LODE_RPC_MESSAGE;
}

char *lode_rpc_frame(json_t *v, size_t *len) {
    char *body = json_dumps(v, JSON_COMPACT);
    size_t bl = strlen(body);
    char hdr[64];
    int hl = snprintf(hdr, sizeof hdr, "Content-Length: %zu\r\n\r\n", bl);
    char *out = lode_xmalloc((size_t)hl + bl);
    memcpy(out, hdr, (size_t)hl);
    memcpy(out + hl, body, bl);
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
                     "message", message);
}

json_t *lode_rpc_notification(const char *method, json_t *params) {
    return json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", method, "params", params ? params : json_object());
}
