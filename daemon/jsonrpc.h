/*
 * jsonrpc.h — JSON-RPC 2.0 over LSP-style framing ("Content-Length: N\r\n
 * \r\n" + N bytes of JSON), shared by the daemon's socket API and the LSP
 * server.
 *
 * The reader is incremental: feed it whatever bytes arrived, then pull
 * complete messages. It never trusts a header: unknown headers are ignored,
 * a missing/invalid/oversized Content-Length is a framing error (the
 * connection cannot be resynchronised and must be closed), and a body that
 * is not valid UTF-8 JSON is reported per message (-32700) without losing
 * the stream.
 */
#ifndef LODE_JSONRPC_H
#define LODE_JSONRPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lode_base.h"

/* JSON-RPC and LSP error codes. */
enum {
    LODE_RPC_PARSE_ERROR = -32700,
    LODE_RPC_INVALID_REQUEST = -32600,
    LODE_RPC_METHOD_NOT_FOUND = -32601,
    LODE_RPC_INVALID_PARAMS = -32602,
    LODE_RPC_INTERNAL_ERROR = -32603,
    LODE_RPC_SERVER_NOT_INITIALIZED = -32002,
    LODE_RPC_REQUEST_FAILED = -32803,
    LODE_RPC_SERVER_CANCELLED = -32802,
    LODE_RPC_CONTENT_MODIFIED = -32801,
    LODE_RPC_REQUEST_CANCELLED = -32800,
    LODE_RPC_DEADLINE_EXCEEDED = -32000 /* lode: a request's deadline passed */
};

typedef struct lode_rpc_reader {
    char *buf;
    size_t off, len, cap; /* unread bytes are buf[off..len) */
    size_t scan;          /* header bytes already searched for the blank line */
    size_t max_body;      /* bytes; larger messages are a framing error */
    bool broken;          /* framing lost: the peer must be disconnected */
    char error[128];
} lode_rpc_reader;

void lode_rpc_reader_init(lode_rpc_reader *r, size_t max_body);
void lode_rpc_reader_free(lode_rpc_reader *r);
/* Append received bytes (at most one header block + max_body are kept
 * buffered beyond what next() consumed; the caller pulls after each feed). */
void lode_rpc_reader_feed(lode_rpc_reader *r, const char *data, size_t n);

typedef enum {
    LODE_RPC_NONE = 0,  /* need more bytes */
    LODE_RPC_MESSAGE,   /* *msg holds a parsed JSON value (caller decrefs) */
    LODE_RPC_BAD_JSON,  /* one message's body was not JSON: answer -32700 */
    LODE_RPC_BROKEN     /* framing error (r->error says why): close */
} lode_rpc_result;

lode_rpc_result lode_rpc_reader_next(lode_rpc_reader *r, json_t **msg);

/* Frame a JSON value: returns a malloc'ed buffer (lode_free) and its size.
 * Never NULL: a value that cannot be serialised (NULL, OOM) is framed as a
 * -32603 error without id. */
char *lode_rpc_frame(json_t *v, size_t *len);
/* Frame v (stolen) and queue it on a libuv stream; the buffer is freed when
 * the write completes. A failed write shows up on the stream's read side
 * (error or EOF). Returns 0 or a libuv error code. */
struct uv_stream_s; /* uv_stream_t, without pulling <uv.h> into every user */
int lode_rpc_write(struct uv_stream_s *st, json_t *v);
/* Builders (new references). id may be NULL (→ null). */
json_t *lode_rpc_result_msg(json_t *id, json_t *result /* stolen */);
json_t *lode_rpc_error_msg(json_t *id, int code, const char *message);
json_t *lode_rpc_notification(const char *method, json_t *params /* stolen */);

/* ---- message envelopes -------------------------------------------------
 * What a parsed message is, checked against JSON-RPC 2.0: a request (method
 * + id), a notification (method, no id), or a response (result/error + id).
 * The pointers are borrowed from msg. */
typedef enum {
    LODE_RPC_KIND_INVALID = 0,
    LODE_RPC_KIND_REQUEST,
    LODE_RPC_KIND_NOTIFICATION,
    LODE_RPC_KIND_RESPONSE
} lode_rpc_kind;

typedef struct lode_rpc_msg {
    lode_rpc_kind kind;
    const char *method; /* requests and notifications */
    json_t *id;         /* requests and responses: a string or an integer; NULL if absent/unusable */
    json_t *params;     /* NULL, an object or an array */
} lode_rpc_msg;

/* Classify msg. On INVALID, *code is the JSON-RPC error to answer (-32600)
 * and err (may be NULL) says why; out->id is set when the id itself is
 * usable, so the error can be addressed to it. */
lode_rpc_kind lode_rpc_parse(json_t *msg, lode_rpc_msg *out, int *code, lode_error *err);

#endif
