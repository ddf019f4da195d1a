/*
 * cmd_serve.c — `lode serve`, `lode stop`, `lode status`, and the blocking
 * JSON-RPC client they share (lode_daemon_call).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "cli_util.h"
#include "jsonrpc.h"
#include "lode_daemon.h"
#include "lode_engine.h"

lode_status lode_daemon_call(const char *socket_path, const char *method, json_t *params, json_t **result,
                             lode_error *err) {
    *result = NULL;
    char def[4096];
    if (!socket_path) lode_daemon_default_socket(def, sizeof def), socket_path = def;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(socket_path) >= sizeof a.sun_path)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "socket path too long: %s", socket_path);
    strcpy(a.sun_path, socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return lode_error_set(err, LODE_ERR_IO, "no lode daemon at %s (%s); start one with `lode serve -m MODEL`",
                              socket_path, strerror(errno));
    }
    json_t *req = json_pack("{s:s, s:i, s:s, s:o}", "jsonrpc", "2.0", "id", 1, "method", method, "params",
                            params ? json_incref(params) : json_object());
    size_t n;
    char *buf = lode_rpc_frame(req, &n);
    json_decref(req);
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, buf + off, n - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    lode_free(buf);
    lode_rpc_reader rd;
    lode_rpc_reader_init(&rd, 64u << 20);
    lode_status st = LODE_ERR_IO;
    for (;;) {
        json_t *msg;
        lode_rpc_result r = lode_rpc_reader_next(&rd, &msg);
        if (r == LODE_RPC_MESSAGE) {
            if (json_object_get(msg, "method")) { /* a notification: skip */
                json_decref(msg);
                continue;
            }
            json_t *e = json_object_get(msg, "error");
            if (e) st = lode_error_set(err, LODE_ERR_BACKEND, "%s", json_string_value(json_object_get(e, "message")));
            else {
                *result = json_incref(json_object_get(msg, "result"));
                st = LODE_OK;
            }
            json_decref(msg);
            break;
        }
        if (r != LODE_RPC_NONE) {
            st = lode_error_set(err, LODE_ERR_FORMAT, "bad reply from the daemon");
            break;
        }
        char tmp[65536];
        ssize_t got = read(fd, tmp, sizeof tmp);
        if (got <= 0) {
            st = lode_error_set(err, LODE_ERR_IO, "the daemon closed the connection");
            break;
        }
        lode_rpc_reader_feed(&rd, tmp, (size_t)got);
    }
    lode_rpc_reader_free(&rd);
    close(fd);
    return st;
}

static void usage(FILE *f) {
    fprintf(f, "usage: lode serve [-m MODEL] [--socket PATH] [--ctx N] [--cache-mb N | --cache-tokens N] " LODE_CLI_MODEL_FLAGS_HELP "\n"
               "       lode stop [--socket PATH]\n       lode status [--socket PATH] [--json]\n");
}

int lode_cmd_serve(int argc, char **argv) {
    lode_daemon_opts o = {0};
    o.ctx = 16384;
    o.cache_tokens = 8192;
    lode_model_params mp = lode_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (!strcmp(a, "-m") && v) o.model = v, i++;
        else if (!strcmp(a, "--socket") && v) o.socket = v, i++;
        else if (!strcmp(a, "--ctx") && v && lode_cli_parse_i64(v, &o.ctx) && o.ctx > 0) i++;
        else if (!strcmp(a, "--cache-tokens") && v && lode_cli_parse_i64(v, &o.cache_tokens) && o.cache_tokens >= 0) i++;
        else if (!strcmp(a, "--cache-mb") && v && lode_cli_parse_i64(v, &o.cache_mb) && o.cache_mb >= 0) i++;
        else if ((x = lode_cli_model_flag("serve", a, v, &mp)) > 0) i += (int)x - 1;
        else {
            usage(stderr);
            return 2;
        }
    }
    if (!o.model) o.model = getenv("LODE_MODEL"); /* one resident model per user, set once */
    if (!o.model || !*o.model) {
        fprintf(stderr, "lode serve: no model: pass -m MODEL or set LODE_MODEL\n");
        usage(stderr);
        return 2;
    }
    o.n_threads = mp.n_threads;
    o.quant_type = mp.quant_type;
    o.mla_mode = (int)mp.mla_mode;
    o.device = (int)mp.device;
    return lode_daemon_run(&o);
}

static int client_cmd(int argc, char **argv, const char *method) {
    const char *sock = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc) sock = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = true;
        else {
            usage(stderr);
            return 2;
        }
    }
    json_t *res;
    lode_error err = {0};
    if (lode_daemon_call(sock, method, NULL, &res, &err)) {
        fprintf(stderr, "lode %s: %s\n", argv[0], err.text);
        return 1;
    }
    if (!strcmp(method, "lode/shutdown")) printf("lode daemon stopped\n");
    else if (json) json_dumpf(res, stdout, JSON_INDENT(2)), printf("\n");
    else {
        json_t *rq = json_object_get(res, "requests"), *tk = json_object_get(res, "tokens");
        printf("model     %s (%s, %s)\nbackend   %s, %lld threads, weights %.2f GB\n",
               json_string_value(json_object_get(res, "model")), json_string_value(json_object_get(res, "format")),
               json_string_value(json_object_get(res, "architecture")), json_string_value(json_object_get(res, "backend")),
               (long long)json_integer_value(json_object_get(res, "threads")),
               json_number_value(json_object_get(res, "weights_gb")));
        printf("memory    %.1f MB resident; KV cache %.1f MB for %lld tokens\n", json_number_value(json_object_get(res, "rss_mb")),
               json_number_value(json_object_get(res, "kv_mb")),
               (long long)json_integer_value(json_object_get(res, "kv_cells")));
        printf("cache     %lld/%lld KV cells free, %lld cached prefixes, hit rate %.1f%% (%lld of %lld prompt tokens reused)\n",
               (long long)json_integer_value(json_object_get(res, "kv_free")),
               (long long)json_integer_value(json_object_get(res, "kv_cells")),
               (long long)json_integer_value(json_object_get(res, "cache_entries")),
               100 * json_number_value(json_object_get(res, "cache_hit_rate")),
               (long long)json_integer_value(json_object_get(tk, "cached")),
               (long long)json_integer_value(json_object_get(tk, "prompt")));
        printf("requests  %lld received, %lld done, %lld cancelled, %lld active, %lld queued\n",
               (long long)json_integer_value(json_object_get(rq, "received")),
               (long long)json_integer_value(json_object_get(rq, "done")),
               (long long)json_integer_value(json_object_get(rq, "cancelled")),
               (long long)json_integer_value(json_object_get(rq, "active")),
               (long long)json_integer_value(json_object_get(rq, "queued")));
        printf("speed     %.1f tokens/s computed, %.1f tokens/s generated; %lld generated; uptime %.0f s; pid %lld\n",
               json_number_value(json_object_get(res, "tokens_per_s")),
               json_number_value(json_object_get(res, "generated_tokens_per_s")),
               (long long)json_integer_value(json_object_get(tk, "generated")),
               json_number_value(json_object_get(res, "uptime_s")), (long long)json_integer_value(json_object_get(res, "pid")));
    }
    json_decref(res);
    return 0;
}

int lode_cmd_stop(int argc, char **argv) { return client_cmd(argc, argv, "lode/shutdown"); }
int lode_cmd_status(int argc, char **argv) { return client_cmd(argc, argv, "lode/status"); }
