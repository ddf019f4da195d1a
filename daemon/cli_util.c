/* cli_util.c — see cli_util.h. */
#include "cli_util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <string.h>

#include "lode_base.h"
#include "lode_engine.h"
#include "lode_quant.h"

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

int lode_cli_model_flag(const char *cmd, const char *a, const char *v, struct lode_model_params *mp) {
    int64_t x;
    if (!strcmp(a, "-t")) {
        if (!v || !lode_cli_parse_i64(v, &x) || x < 0 || x > 1024) {
            fprintf(stderr, "lode %s: -t needs a thread count (0 = all cores)\n", cmd);
            return -1;
        }
        mp->n_threads = (int)x;
        return 2;
    }
    if (!strcmp(a, "--mla")) {
        if (v && !strcmp(v, "auto")) mp->mla_mode = LODE_MLA_AUTO;
        else if (v && !strcmp(v, "absorbed")) mp->mla_mode = LODE_MLA_ABSORBED;
        else if (v && !strcmp(v, "decompressed")) mp->mla_mode = LODE_MLA_DECOMPRESSED;
        else {
            fprintf(stderr, "lode %s: --mla must be auto, absorbed or decompressed\n", cmd);
            return -1;
        }
        return 2;
    }
    if (!strcmp(a, "--device")) {
        if (v && !strcmp(v, "cpu")) mp->device = LODE_DEVICE_CPU;
        else if (v && !strcmp(v, "cuda")) mp->device = LODE_DEVICE_CUDA;
        else if (v && !strcmp(v, "auto")) mp->device = LODE_DEVICE_AUTO;
        else {
            fprintf(stderr, "lode %s: --device must be cpu, cuda or auto\n", cmd);
            return -1;
        }
        return 2;
    }
    if (!strcmp(a, "--quant")) {
        int t = v ? lode_type_from_name(v) : -1;
        if (t < 0 || !lode_type_get((lode_type)t)) {
            fprintf(stderr, "lode %s: --quant needs a type: q8_0, q4_0, q4_k, q5_k, q6_k, f16, bf16\n", cmd);
            return -1;
        }
        mp->quant_type = t;
        return 2;
    }
    return 0;
}
