/*
 * base.c — status names, error records, allocator hooks and logging.
 * Thread-safety: the allocator hooks and log sink are set once at start-up
 * (or by tests) before threads exist; everything else is reentrant.
 */
#define _POSIX_C_SOURCE 200809L
#include "lode_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char *lode_status_name(lode_status s) {
    switch (s) {
#define LODE__STATUS_NAME(name, val, desc) case LODE_##name: return "LODE_" #name;
        LODE_STATUS_MAP(LODE__STATUS_NAME)
#undef LODE__STATUS_NAME
    }
    return "LODE_ERR_UNKNOWN";
}

const char *lode_status_str(lode_status s) {
    switch (s) {
#define LODE__STATUS_STR(name, val, desc) case LODE_##name: return desc;
        LODE_STATUS_MAP(LODE__STATUS_STR)
#undef LODE__STATUS_STR
    }
    return "unknown error";
}

lode_status lode_error_vset(lode_error *err, lode_status s, const char *fmt, va_list ap) {
    if (err && err->status == LODE_OK) {
        err->status = s;
        vsnprintf(err->text, sizeof err->text, fmt, ap);
    }
    return s;
}

lode_status lode_error_set(lode_error *err, lode_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lode_error_vset(err, s, fmt, ap);
    va_end(ap);
    return s;
}

void lode_error_clear(lode_error *err) {
    if (err) {
        err->status = LODE_OK;
        err->text[0] = '\0';
    }
}

/* ---- allocation ----------------------------------------------------- */
static lode_alloc_hooks g_hooks = {malloc, calloc, realloc, free};

void lode_set_alloc_hooks(const lode_alloc_hooks *hooks) {
    if (hooks) g_hooks = *hooks;
    else g_hooks = (lode_alloc_hooks){malloc, calloc, realloc, free};
}

void *lode_try_malloc(size_t n) { return g_hooks.malloc_fn(n ? n : 1); }
void *lode_try_calloc(size_t n, size_t sz) { return g_hooks.calloc_fn(n ? n : 1, sz ? sz : 1); }
void *lode_try_realloc(void *p, size_t n) { return g_hooks.realloc_fn(p, n ? n : 1); }
void lode_free(void *p) {
    if (p) g_hooks.free_fn(p);
}

static _Noreturn void oom(size_t n) {
    fprintf(stderr, "lode: out of memory allocating %zu bytes\n", n);
    abort();
}
void *lode_xmalloc(size_t n) {
    void *p = lode_try_malloc(n);
    if (!p) oom(n);
    return p;
}
void *lode_xcalloc(size_t n, size_t sz) {
    void *p = lode_try_calloc(n, sz);
    if (!p) oom(n * sz);
    return p;
}
void *lode_xrealloc(void *p, size_t n) {
    void *q = lode_try_realloc(p, n);
    if (!q) oom(n);
    return q;
}
char *lode_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = lode_xmalloc(n);
    memcpy(d, s, n);
    return d;
}
char *lode_xstrndup(const char *s, size_t n) {
    char *d = lode_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void lode_buf_add(lode_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2 + 64;
        b->p = lode_xrealloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
void lode_buf_str(lode_buf *b, const char *s) { lode_buf_add(b, s, strlen(s)); }
char *lode_buf_take(lode_buf *b, size_t *n) {
    if (!b->p) lode_buf_add(b, "", 0);
    char *p = b->p;
    if (n) *n = b->n;
    b->p = NULL;
    b->n = b->cap = 0;
    return p;
}

/* ---- logging -------------------------------------------------------- */
static lode_log_fn g_log_fn;
static void *g_log_ud;
static int g_log_min = -1; /* -1: read LODE_LOG on first use */

void lode_log_set(lode_log_fn fn, void *ud, lode_log_level min_level) {
    g_log_fn = fn;
    g_log_ud = ud;
    g_log_min = (int)min_level;
}

static int log_min(void) {
    if (g_log_min < 0) {
        const char *e = getenv("LODE_LOG");
        g_log_min = LODE_LOG_WARN;
        if (e) {
            if (!strcasecmp(e, "debug")) g_log_min = LODE_LOG_DEBUG;
            else if (!strcasecmp(e, "info")) g_log_min = LODE_LOG_INFO;
            else if (!strcasecmp(e, "warn")) g_log_min = LODE_LOG_WARN;
            else if (!strcasecmp(e, "error")) g_log_min = LODE_LOG_ERROR;
            else if (!strcasecmp(e, "none")) g_log_min = LODE_LOG_NONE;
        }
    }
    return g_log_min;
}

void lode_log(lode_log_level lvl, const char *fmt, ...) {
    if ((int)lvl < log_min()) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (g_log_fn) {
        g_log_fn(lvl, buf, g_log_ud);
        return;
    }
    static const char *names[] = {"debug", "info", "warn", "error", "none"};
    fprintf(stderr, "lode %s: %s\n", names[lvl], buf);
}

double lode_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

_Noreturn void lode__assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "lode: internal error: assertion `%s` failed at %s:%d\n", expr, file, line);
    abort();
}
