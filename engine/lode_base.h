/*
 * lode_base.h — status codes, error records, allocation and logging shared by
 * every lode module.
 *
 * Conventions (see docs/style.md of the shared notes):
 *  - Every fallible function returns `lode_status` (0 = OK, negative = error).
 *  - Parsers and loaders also take an optional `lode_error *` that receives a
 *    human-readable message naming the file/tensor/field at fault. The first
 *    error written wins; passing NULL is allowed.
 *  - Allocations whose size comes from input go through lode_try_malloc and
 *    turn into LODE_ERR_NOMEM; small bookkeeping uses lode_xmalloc (aborts).
 */
#ifndef LODE_BASE_H
#define LODE_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X-macro: name, value, description. */
#define LODE_STATUS_MAP(X)                                              \
    X(OK, 0, "success")                                                 \
    X(ERR_INVALID_ARG, -1, "invalid argument")                          \
    X(ERR_IO, -2, "input/output error")                                 \
    X(ERR_FORMAT, -3, "malformed or unsupported file format")           \
    X(ERR_NOMEM, -4, "out of memory")                                   \
    X(ERR_UNSUPPORTED, -5, "unsupported feature")                       \
    X(ERR_NOT_FOUND, -6, "not found")                                   \
    X(ERR_RANGE, -7, "value out of range")                              \
    X(ERR_CANCELLED, -8, "cancelled")                                   \
    X(ERR_FULL, -9, "capacity exhausted")                               \
    X(ERR_STATE, -10, "invalid state")                                  \
    X(ERR_BACKEND, -11, "backend failure")                              \
    X(ERR_TIMEOUT, -12, "deadline exceeded")

typedef enum lode_status {
#define LODE__STATUS_ENUM(name, val, desc) LODE_##name = val,
    LODE_STATUS_MAP(LODE__STATUS_ENUM)
#undef LODE__STATUS_ENUM
} lode_status;

/* "LODE_ERR_IO" style name; never NULL. */
const char *lode_status_name(lode_status s);
/* Short description ("input/output error"); never NULL. */
const char *lode_status_str(lode_status s);

#define LODE_ERROR_TEXT 512

/* Caller-owned error record. `status` is LODE_OK until an error is set. */
typedef struct lode_error {
    lode_status status;
    char text[LODE_ERROR_TEXT];
} lode_error;

/* Record an error (first one wins; err may be NULL). Returns `s` so that
 * callers can write `return lode_error_set(err, LODE_ERR_IO, "...")`. */
lode_status lode_error_set(lode_error *err, lode_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
lode_status lode_error_vset(lode_error *err, lode_status s, const char *fmt, va_list ap);
void lode_error_clear(lode_error *err);

/* ---- allocation ----------------------------------------------------- */
typedef struct lode_alloc_hooks {
    void *(*malloc_fn)(size_t);
    void *(*calloc_fn)(size_t, size_t);
    void *(*realloc_fn)(void *, size_t);
    void (*free_fn)(void *);
} lode_alloc_hooks;

/* Replace the allocator (tests inject failures); NULL restores libc. */
void lode_set_alloc_hooks(const lode_alloc_hooks *hooks);

/* May return NULL (size from input): caller turns it into LODE_ERR_NOMEM. */
void *lode_try_malloc(size_t n);
void *lode_try_calloc(size_t n, size_t sz);
void *lode_try_realloc(void *p, size_t n);
/* Bookkeeping allocations: abort with a message on OOM; never NULL. */
void *lode_xmalloc(size_t n);
void *lode_xcalloc(size_t n, size_t sz);
void *lode_xrealloc(void *p, size_t n);
char *lode_xstrdup(const char *s);
char *lode_xstrndup(const char *s, size_t n); /* n bytes of s, NUL-terminated */
void lode_free(void *p);

/* A growable byte string, always NUL-terminated once non-empty. Start with
 * {0}; lode_buf_take hands the bytes to the caller (lode_free) and resets. */
typedef struct lode_buf {
    char *p;
    size_t n, cap;
} lode_buf;
void lode_buf_add(lode_buf *b, const char *s, size_t n);
void lode_buf_str(lode_buf *b, const char *s);
char *lode_buf_take(lode_buf *b, size_t *n); /* never NULL; *n (may be NULL) its length */

/* Overflow-checked size arithmetic: returns false on overflow. */
static inline bool lode_mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool lode_add_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* ---- logging -------------------------------------------------------- */
typedef enum lode_log_level {
    LODE_LOG_DEBUG = 0,
    LODE_LOG_INFO = 1,
    LODE_LOG_WARN = 2,
    LODE_LOG_ERROR = 3,
    LODE_LOG_NONE = 4
} lode_log_level;

typedef void (*lode_log_fn)(lode_log_level lvl, const char *msg, void *ud);
/* Default: messages >= WARN (or LODE_LOG=debug|info|warn|error) to stderr. */
void lode_log_set(lode_log_fn fn, void *ud, lode_log_level min_level);
void lode_log(lode_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic time in seconds. */
double lode_time_s(void);

/* Internal invariant check: bugs only, never input validation. */
#define LODE_ASSERT(cond)                                                       \
    do {                                                                        \
        if (!(cond)) lode__assert_fail(#cond, __FILE__, __LINE__);              \
    } while (0)
_Noreturn void lode__assert_fail(const char *expr, const char *file, int line);

#ifdef __cplusplus
}
#endif
#endif /* LODE_BASE_H */
