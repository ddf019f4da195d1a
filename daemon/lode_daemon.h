/*
 * lode_daemon.h — `lode serve`: the resident per-user daemon (libuv loop on
 * the main thread, the compute scheduler on its own thread) and the small
 * blocking client used by `lode stop` / `lode status` and tests.
 */
#ifndef LODE_DAEMON_H
#define LODE_DAEMON_H

#include <jansson.h>
#include <stddef.h>

#include "lode_base.h"

typedef struct lode_daemon_opts {
    const char *model;      /* GGUF file or HF directory */
    const char *socket;     /* NULL: default per-user path */
    int n_threads;          /* 0: all cores */
    int64_t ctx;            /* KV cache cells (tokens), all requests together */
    int64_t cache_tokens;   /* budget for idle cached prefixes (tokens) */
    int64_t cache_mb;       /* the same budget in MB of KV cache (wins when > 0) */
    int quant_type;         /* -1 or a lode_type for --quant */
    int mla_mode;           /* a lode_mla_mode (--mla) */
    int device;             /* a lode_device (--device) */
} lode_daemon_opts;

/* Default socket path ($XDG_RUNTIME_DIR/lode/lode.sock, else
 * /tmp/lode-<uid>/lode.sock) into buf. */
void lode_daemon_default_socket(char *buf, size_t n);
/* Run until lode/shutdown or SIGTERM/SIGINT. Returns a process exit code. */
int lode_daemon_run(const lode_daemon_opts *o);
/* One request to a running daemon; *result receives the JSON-RPC result
 * (new reference) or the call fails with the error's message. */
lode_status lode_daemon_call(const char *socket, const char *method, json_t *params, json_t **result, lode_error *err);

#endif
