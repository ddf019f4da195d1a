/* cli_util.c — see cli_util.h. */
#include "cli_util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "lode_base.h"

bool lode_cli_parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

bool lode_cli_parse_f32(const char *s, float *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return false;
    *out = (float)v;
    return true;
}

bool lode_cli_parse_ids(const char *s, int32_t **out, size_t *n) {
    size_t cap = 16, k = 0;
    int32_t *v = lode_xmalloc(cap * sizeof *v);
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '[' || *p == ']') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            lode_free(v);
            return false;
        }
        if (k == cap) v = lode_xrealloc(v, (cap *= 2) * sizeof *v);
        v[k++] = (int32_t)x;
        p = end;
        if (*p && *p != ',' && *p != ' ' && *p != '\n' && *p != '\t' && *p != ']') {
            lode_free(v);
            return false;
        }
    }
    *out = v;
    *n = k;
    return true;
}

char *lode_cli_read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = lode_xmalloc(cap + 1);
    size_t r;
    while ((r = fread(b + n, 1, cap - n, stdin)) > 0) {
        n += r;
        if (n == cap) b = lode_xrealloc(b, (cap *= 2) + 1);
    }
    if (ferror(stdin)) {
        lode_free(b);
        return NULL;
    }
    b[n] = 0;
    *len = n;
    return b;
}
