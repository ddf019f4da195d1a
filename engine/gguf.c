/*
 * gguf.c — GGUF v2/v3 reader (mmap, validated up front) and streaming writer.
 *
 * Layout (little-endian): "GGUF" u32 version, u64 n_tensors, u64 n_kv,
 * n_kv × {string key, u32 type, value}, n_tensors × {string name, u32 n_dims,
 * u64 ne[n_dims], u32 type, u64 offset}, zero padding up to the alignment
 * (general.alignment, default 32), then tensor data. Offsets are relative to
 * that aligned data start. A string is u64 length + bytes (no NUL).
 *
 * Reader invariants (established by lode_gguf_open, relied on by every
 * accessor without re-checking):
 *  - every kv value and every tensor's [data, data + nbytes) lies inside the
 *    mapping; tensors are aligned, non-overlapping and have 1..4 dims, each
 *    ne >= 1, with ne[0] a multiple of the type's block size;
 *  - keys and tensor names are unique, non-empty, valid UTF-8 without NUL,
 *    and are held as NUL-terminated copies;
 *  - string arrays have an offsets index so element access is O(1).
 * Nothing is allocated from an unchecked count: tables grow as entries are
 * actually parsed, and an array's offsets index is allocated only after the
 * whole array has been walked inside the file.
 *
 * Threading: a lode_gguf is immutable after open; concurrent readers are
 * fine. A writer belongs to one thread.
 *
 * Byte sizes of tensor types come from a private table (GGML block layouts)
 * rather than lode_quant so that the reader accepts every known GGML type and
 * the model loader can reject unsupported ones later, by name.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lode_gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_DEFAULT_ALIGN 32u
#define GGUF_MAX_ARRAY_DEPTH 8 /* nested arrays: bound recursion */
#define GGUF_HEADER_BYTES 24u  /* magic + version + n_tensors + n_kv */

// ---- type table --------------------------------------------------------------

/* GGML block size (elements) and bytes per block, by GGML type id.
 * Zero block size = unknown/removed id. Mirrors ggml-common.h. */
static const struct {
    uint16_t blck;
    uint16_t size;
} k_ggml_types[LODE_TYPE_COUNT] = {
    [0] = {1, 4},      [1] = {1, 2},      [2] = {32, 18},    [3] = {32, 20},    [6] = {32, 22},
    [7] = {32, 24},    [8] = {32, 34},    [9] = {32, 36},    [10] = {256, 84},  [11] = {256, 110},
    [12] = {256, 144}, [13] = {256, 176}, [14] = {256, 210}, [15] = {256, 292}, [16] = {256, 66},
    [17] = {256, 74},  [18] = {256, 98},  [19] = {256, 50},  [20] = {32, 18},   [21] = {256, 110},
    [22] = {256, 82},  [23] = {256, 136}, [24] = {1, 1},     [25] = {1, 2},     [26] = {1, 4},
    [27] = {1, 8},     [28] = {1, 8},     [29] = {256, 56},  [30] = {1, 2},     [34] = {256, 54},
    [35] = {256, 66},  [39] = {32, 17},
};

static bool ggml_type_known(uint32_t t) { return t < LODE_TYPE_COUNT && k_ggml_types[t].blck != 0; }

/* Bytes of a tensor with ne[0..n_dims), or 0 if ne[0] is not a multiple of the
 * block size or the product overflows (callers report which). */
static uint64_t ggml_nbytes(uint32_t type, int n_dims, const int64_t *ne, const char **why) {
    uint64_t blck = k_ggml_types[type].blck, size = k_ggml_types[type].size;
    if ((uint64_t)ne[0] % blck != 0) {
        *why = "ne[0] is not a multiple of the block size";
        return 0;
    }
    uint64_t n, tmp;
    if (__builtin_mul_overflow((uint64_t)ne[0] / blck, size, &n)) goto overflow;
    for (int i = 1; i < n_dims; i++) {
        if (__builtin_mul_overflow(n, (uint64_t)ne[i], &tmp)) goto overflow;
        n = tmp;
    }
    if (n > (uint64_t)INT64_MAX) goto overflow;
    return n;
overflow:
    *why = "size overflows";
    return 0;
}

static size_t vtype_size(uint32_t t) {
    switch (t) {
    case LODE_GGUF_UINT8: case LODE_GGUF_INT8: case LODE_GGUF_BOOL: return 1;
    case LODE_GGUF_UINT16: case LODE_GGUF_INT16: return 2;
    case LODE_GGUF_UINT32: case LODE_GGUF_INT32: case LODE_GGUF_FLOAT32: return 4;
    case LODE_GGUF_UINT64: case LODE_GGUF_INT64: case LODE_GGUF_FLOAT64: return 8;
    default: return 0; /* string, array, unknown */
    }
}

static const char *vtype_name(uint32_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return t < sizeof names / sizeof names[0] ? names[t] : "unknown";
}

// ---- small helpers shared by reader and writer --------------------------------

/* Strict UTF-8 (no overlongs, surrogates or > U+10FFFF) and no NUL byte.
 * Returns the offset of the first bad byte, or len if the string is fine. */
static size_t utf8_bad_at(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c == 0) return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) n = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) n = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) n = 3, cp = c & 0x07;
        else return i;
        if (len - i <= n) return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += n + 1;
    }
    return len;
}

/* Open-addressing string → index map. Names are fetched through a callback so
 * the map stores only indices (8 bytes per slot, 2..4 slots per entry). */
typedef const char *(*name_fn)(const void *ctx, int64_t i);
typedef struct nmap {
    int64_t *slot; /* -1 = empty */
    size_t cap;    /* power of two, or 0 */
    size_t n;
} nmap;

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int64_t nmap_find(const nmap *m, name_fn get, const void *ctx, const char *s) {
    if (!m->cap || !s) return -1;
    for (size_t i = fnv1a(s) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        int64_t v = m->slot[i];
        if (v < 0) return -1;
        if (strcmp(get(ctx, v), s) == 0) return v;
    }
}

/* Insert index `idx` (its name must not be present yet). False on OOM. */
static bool nmap_add(nmap *m, name_fn get, const void *ctx, int64_t idx) {
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        int64_t *s = lode_try_malloc(cap * sizeof *s);
        if (!s) return false;
        memset(s, 0xff, cap * sizeof *s);
        for (size_t k = 0; k < m->cap; k++) {
            if (m->slot[k] < 0) continue;
            size_t i = fnv1a(get(ctx, m->slot[k])) & (cap - 1);
            while (s[i] >= 0) i = (i + 1) & (cap - 1);
            s[i] = m->slot[k];
        }
        lode_free(m->slot);
        m->slot = s;
        m->cap = cap;
    }
    size_t i = fnv1a(get(ctx, idx)) & (m->cap - 1);
    while (m->slot[i] >= 0) i = (i + 1) & (m->cap - 1);
    m->slot[i] = idx;
    m->n++;
    return true;
}

static void nmap_free(nmap *m) {
    lode_free(m->slot);
    *m = (nmap){0};
}

/* Grow a table to hold at least n+1 entries; false on OOM. */
static bool grow(void **p, size_t *cap, size_t n, size_t elt) {
    if (n < *cap) return true;
    size_t nc = *cap ? *cap * 2 : 16;
    void *q = lode_try_realloc(*p, nc * elt);
    if (!q) return false;
    *p = q;
    *cap = nc;
    return true;
}

// ---- reader -------------------------------------------------------------------

typedef struct gguf_kv {
    char *key;            /* NUL-terminated copy */
    uint32_t type;        /* lode_gguf_vtype */
    const uint8_t *data;  /* scalar bytes / string bytes / packed array elements */
    uint64_t len;         /* string length, or array element count */
    uint32_t arr_type;    /* arrays: element type */
    uint64_t *str_off;    /* string arrays: offset of element i's length field */
} gguf_kv;

struct lode_gguf {
    char *path;
    const uint8_t *map;
    size_t size;
    uint32_t version;
    size_t alignment;
    size_t data_start;
    gguf_kv *kv;
    size_t n_kv, cap_kv;
    lode_tensor *t;
    size_t n_t, cap_t;
    nmap kv_map, t_map;
    ino_t ino; /* identity of the opened file (make_resident checks it) */
    dev_t dev;
    struct timespec mtime;
    void *resident;       /* lode_gguf_make_resident: tensor data copy (anonymous) */
    size_t resident_size; /* its mapping length */
};

static const char *kv_name(const void *ctx, int64_t i) { return ((const lode_gguf *)ctx)->kv[i].key; }
static const char *t_name(const void *ctx, int64_t i) { return ((const lode_gguf *)ctx)->t[i].name; }

/* Parse cursor. All reads are bounds-checked against the mapping. */
typedef struct cur {
    const uint8_t *p;
    uint64_t pos, size;
} cur;

static bool rd_u32(cur *c, uint32_t *v) {
    if (c->size - c->pos < 4) return false;
    memcpy(v, c->p + c->pos, 4);
    c->pos += 4;
    return true;
}
static bool rd_u64(cur *c, uint64_t *v) {
    if (c->size - c->pos < 8) return false;
    memcpy(v, c->p + c->pos, 8);
    c->pos += 8;
    return true;
}
static uint64_t remaining(const cur *c) { return c->size - c->pos; }

/* Shared "what went wrong" reporter: every message starts with the path. */
#define FAIL(err, ...) lode_error_set(err, LODE_ERR_FORMAT, __VA_ARGS__)

/* Read a string header; on success *s points at `*len` bytes inside the file. */
static bool rd_str(cur *c, const uint8_t **s, uint64_t *len) {
    if (!rd_u64(c, len) || *len > remaining(c)) return false;
    *s = c->p + c->pos;
    c->pos += *len;
    return true;
}

/* Walk (and validate) an array body of n elements of type et, without
 * allocating. depth counts nesting levels. */
static lode_status skip_array(const lode_gguf *g, cur *c, const char *key, uint32_t et, uint64_t n, int depth,
                              lode_error *err) {
    if (depth > GGUF_MAX_ARRAY_DEPTH)
        return FAIL(err, "%s: key '%s': arrays nested deeper than %d", g->path, key, GGUF_MAX_ARRAY_DEPTH);
    size_t es = vtype_size(et);
    if (es) {
        if (n > remaining(c) / es)
            return FAIL(err, "%s: key '%s': array of %llu %s elements runs past the end of the file at offset %llu",
                        g->path, key, (unsigned long long)n, vtype_name(et), (unsigned long long)c->pos);
        if (et == LODE_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (c->p[c->pos + i] > 1)
                    return FAIL(err, "%s: key '%s': bool array element %llu is %u (not 0/1)", g->path, key,
                                (unsigned long long)i, c->p[c->pos + i]);
        c->pos += n * es;
        return LODE_OK;
    }
    if (et == LODE_GGUF_STRING) {
        if (n > remaining(c) / 8)
            return FAIL(err, "%s: key '%s': string array count %llu exceeds the file size", g->path, key,
                        (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++) {
            const uint8_t *s;
            uint64_t len;
            if (!rd_str(c, &s, &len))
                return FAIL(err, "%s: key '%s': string %llu of %llu runs past the end of the file", g->path, key,
                            (unsigned long long)i, (unsigned long long)n);
        }
        return LODE_OK;
    }
    if (et == LODE_GGUF_ARRAY) {
        if (n > remaining(c) / 12)
            return FAIL(err, "%s: key '%s': nested array count %llu exceeds the file size", g->path, key,
                        (unsigned long long)n);
        for (uint64_t i = 0; i < n; i++) {
            uint32_t it;
            uint64_t in;
            if (!rd_u32(c, &it) || !rd_u64(c, &in))
                return FAIL(err, "%s: key '%s': nested array header runs past the end of the file", g->path, key);
            lode_status s = skip_array(g, c, key, it, in, depth + 1, err);
            if (s) return s;
        }
        return LODE_OK;
    }
    return FAIL(err, "%s: key '%s': unknown array element type %u", g->path, key, et);
}

static lode_status parse_kv(lode_gguf *g, cur *c, uint64_t idx, lode_error *err) {
    const uint8_t *ks;
    uint64_t klen;
    if (!rd_str(c, &ks, &klen))
        return FAIL(err, "%s: key #%llu: key string runs past the end of the file (offset %llu)", g->path,
                    (unsigned long long)idx, (unsigned long long)c->pos);
    if (klen == 0) return FAIL(err, "%s: key #%llu: empty key", g->path, (unsigned long long)idx);
    size_t bad = utf8_bad_at(ks, klen);
    if (bad != klen)
        return FAIL(err, "%s: key #%llu ('%.*s...'): %s at byte %zu of the key", g->path, (unsigned long long)idx,
                    (int)(bad < 64 ? bad : 64), (const char *)ks, ks[bad] ? "invalid UTF-8" : "embedded NUL", bad);
    if (!grow((void **)&g->kv, &g->cap_kv, g->n_kv, sizeof *g->kv))
        return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory for %zu keys", g->path, g->n_kv + 1);
    gguf_kv *kv = &g->kv[g->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = lode_try_malloc(klen + 1);
    if (!kv->key) return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory for a key", g->path);
    memcpy(kv->key, ks, klen);
    kv->key[klen] = '\0';
    g->n_kv++; /* owned from here on: lode_gguf_free releases it */
    if (nmap_find(&g->kv_map, kv_name, g, kv->key) >= 0)
        return FAIL(err, "%s: key '%s' appears twice", g->path, kv->key);
    if (!nmap_add(&g->kv_map, kv_name, g, (int64_t)(g->n_kv - 1)))
        return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory indexing keys", g->path);

    if (!rd_u32(c, &kv->type))
        return FAIL(err, "%s: key '%s': value type runs past the end of the file", g->path, kv->key);
    size_t es = vtype_size(kv->type);
    if (es) {
        if (remaining(c) < es)
            return FAIL(err, "%s: key '%s': %s value runs past the end of the file", g->path, kv->key,
                        vtype_name(kv->type));
        kv->data = c->p + c->pos;
        kv->len = 1;
        if (kv->type == LODE_GGUF_BOOL && kv->data[0] > 1)
            return FAIL(err, "%s: key '%s': bool value is %u (not 0/1)", g->path, kv->key, kv->data[0]);
        c->pos += es;
        return LODE_OK;
    }
    if (kv->type == LODE_GGUF_STRING) {
        if (!rd_str(c, &kv->data, &kv->len))
            return FAIL(err, "%s: key '%s': string value runs past the end of the file", g->path, kv->key);
        return LODE_OK;
    }
    if (kv->type != LODE_GGUF_ARRAY)
        return FAIL(err, "%s: key '%s': unknown value type %u", g->path, kv->key, kv->type);
    if (!rd_u32(c, &kv->arr_type) || !rd_u64(c, &kv->len))
        return FAIL(err, "%s: key '%s': array header runs past the end of the file", g->path, kv->key);
    kv->data = c->p + c->pos;
    uint64_t start = c->pos;
    lode_status s = skip_array(g, c, kv->key, kv->arr_type, kv->len, 1, err);
    if (s) return s;
    if (kv->arr_type == LODE_GGUF_STRING && kv->len > 0) {
        /* The walk above proved len strings of >= 8 bytes each fit, so this
         * index is at most as large as the bytes it describes. */
        kv->str_off = lode_try_malloc(kv->len * sizeof(uint64_t));
        if (!kv->str_off)
            return lode_error_set(err, LODE_ERR_NOMEM, "%s: key '%s': out of memory indexing %llu strings", g->path,
                                  kv->key, (unsigned long long)kv->len);
        uint64_t off = 0;
        for (uint64_t i = 0; i < kv->len; i++) {
            uint64_t l;
            kv->str_off[i] = off;
            memcpy(&l, kv->data + off, 8);
            off += 8 + l;
        }
        LODE_ASSERT(start + off == c->pos);
    }
    return LODE_OK;
}

static lode_status parse_tensor_info(lode_gguf *g, cur *c, uint64_t idx, uint64_t *offsets, lode_error *err) {
    const uint8_t *ns;
    uint64_t nlen;
    if (!rd_str(c, &ns, &nlen))
        return FAIL(err, "%s: tensor #%llu: name runs past the end of the file (offset %llu)", g->path,
                    (unsigned long long)idx, (unsigned long long)c->pos);
    if (nlen == 0) return FAIL(err, "%s: tensor #%llu: empty name", g->path, (unsigned long long)idx);
    size_t bad = utf8_bad_at(ns, nlen);
    if (bad != nlen)
        return FAIL(err, "%s: tensor #%llu ('%.*s...'): %s in the name at byte %zu", g->path,
                    (unsigned long long)idx, (int)(bad < 64 ? bad : 64), (const char *)ns,
                    ns[bad] ? "invalid UTF-8" : "embedded NUL", bad);
    if (!grow((void **)&g->t, &g->cap_t, g->n_t, sizeof *g->t))
        return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory for %zu tensors", g->path, g->n_t + 1);
    lode_tensor *t = &g->t[g->n_t];
    memset(t, 0, sizeof *t);
    char *name = lode_try_malloc(nlen + 1);
    if (!name) return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory for a tensor name", g->path);
    memcpy(name, ns, nlen);
    name[nlen] = '\0';
    t->name = name;
    g->n_t++;
    if (nmap_find(&g->t_map, t_name, g, name) >= 0)
        return FAIL(err, "%s: tensor '%s' appears twice", g->path, name);
    if (!nmap_add(&g->t_map, t_name, g, (int64_t)(g->n_t - 1)))
        return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory indexing tensors", g->path);

    uint32_t n_dims, type;
    if (!rd_u32(c, &n_dims)) goto trunc;
    if (n_dims < 1 || n_dims > LODE_MAX_DIMS)
        return FAIL(err, "%s: tensor '%s': n_dims %u is outside 1..%d", g->path, name, n_dims, LODE_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int i = 0; i < LODE_MAX_DIMS; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        uint64_t v;
        if (!rd_u64(c, &v)) goto trunc;
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return FAIL(err, "%s: tensor '%s': ne[%u] = %lld is not a positive size", g->path, name, i,
                        (long long)v);
        t->ne[i] = (int64_t)v;
    }
    if (!rd_u32(c, &type)) goto trunc;
    if (!ggml_type_known(type))
        return FAIL(err, "%s: tensor '%s': unknown type id %u", g->path, name, type);
    t->type = (lode_type)type;
    const char *why = NULL;
    t->nbytes = ggml_nbytes(type, t->n_dims, t->ne, &why);
    if (!t->nbytes)
        return FAIL(err, "%s: tensor '%s': shape [%lld, %lld, %lld, %lld] of type %u: %s", g->path, name,
                    (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], type, why);
    if (!rd_u64(c, &offsets[g->n_t - 1])) goto trunc;
    return LODE_OK;
trunc:
    return FAIL(err, "%s: tensor '%s': info runs past the end of the file", g->path, name);
}

static int cmp_by_offset(const void *a, const void *b, void *ctx) {
    const uint64_t *off = ctx;
    uint64_t x = off[*(const size_t *)a], y = off[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

/* Second pass over tensors once the data start is known. */
static lode_status place_tensors(lode_gguf *g, uint64_t *offsets, lode_error *err) {
    for (size_t i = 0; i < g->n_t; i++) {
        lode_tensor *t = &g->t[i];
        uint64_t off = offsets[i];
        if (off % g->alignment)
            return FAIL(err, "%s: tensor '%s': data offset %llu is not a multiple of the alignment %zu", g->path,
                        t->name, (unsigned long long)off, g->alignment);
        uint64_t avail = g->size > g->data_start ? g->size - g->data_start : 0;
        if (off > avail || t->nbytes > avail - off)
            return FAIL(err,
                        "%s: tensor '%s': data [%llu, +%zu) lies outside the file (data area is %llu bytes; "
                        "file truncated?)",
                        g->path, t->name, (unsigned long long)off, t->nbytes, (unsigned long long)avail);
        t->data = g->map + g->data_start + off;
    }
    if (g->n_t < 2) return LODE_OK;
    size_t *order = lode_try_malloc(g->n_t * sizeof *order);
    if (!order) return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory sorting tensors", g->path);
    for (size_t i = 0; i < g->n_t; i++) order[i] = i;
    qsort_r(order, g->n_t, sizeof *order, cmp_by_offset, offsets);
    lode_status s = LODE_OK;
    for (size_t k = 1; k < g->n_t && !s; k++) {
        const lode_tensor *a = &g->t[order[k - 1]], *b = &g->t[order[k]];
        if (offsets[order[k - 1]] + a->nbytes > offsets[order[k]])
            s = FAIL(err, "%s: tensor '%s' (offset %llu, %zu bytes) overlaps tensor '%s' (offset %llu)", g->path,
                     a->name, (unsigned long long)offsets[order[k - 1]], a->nbytes, b->name,
                     (unsigned long long)offsets[order[k]]);
    }
    lode_free(order);
    return s;
}

static lode_status parse(lode_gguf *g, lode_error *err) {
    cur c = {g->map, 0, g->size};
    if (g->size < GGUF_HEADER_BYTES || memcmp(g->map, "GGUF", 4) != 0)
        return FAIL(err, "%s: not a GGUF file (%s)", g->path,
                    g->size < 4 ? "file too short" : "magic is not \"GGUF\"");
    c.pos = 4;
    uint32_t version;
    uint64_t n_tensors, n_kv;
    rd_u32(&c, &version);
    rd_u64(&c, &n_tensors);
    rd_u64(&c, &n_kv);
    if (version == 1)
        return FAIL(err, "%s: GGUF version 1 is not supported (re-convert the model with a current llama.cpp)",
                    g->path);
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && version >> 16)
            return FAIL(err, "%s: big-endian GGUF is not supported", g->path);
        return FAIL(err, "%s: unsupported GGUF version %u (expected 2 or 3)", g->path, version);
    }
    g->version = version;
    /* Counts are bounded by what could possibly fit, so that a hostile header
     * fails fast with a clear message instead of after a long walk. */
    if (n_kv > g->size / 12)
        return FAIL(err, "%s: key count %llu is impossible for a %zu-byte file", g->path,
                    (unsigned long long)n_kv, g->size);
    if (n_tensors > g->size / 32)
        return FAIL(err, "%s: tensor count %llu is impossible for a %zu-byte file", g->path,
                    (unsigned long long)n_tensors, g->size);
    lode_status s;
    for (uint64_t i = 0; i < n_kv; i++)
        if ((s = parse_kv(g, &c, i, err))) return s;

    g->alignment = GGUF_DEFAULT_ALIGN;
    int64_t ai = nmap_find(&g->kv_map, kv_name, g, "general.alignment");
    if (ai >= 0) {
        const gguf_kv *kv = &g->kv[ai];
        uint32_t a;
        if (kv->type != LODE_GGUF_UINT32)
            return FAIL(err, "%s: key 'general.alignment' has type %s (expected u32)", g->path,
                        vtype_name(kv->type));
        memcpy(&a, kv->data, 4);
        if (a == 0 || (a & (a - 1)))
            return FAIL(err, "%s: key 'general.alignment' = %u is not a nonzero power of two", g->path, a);
        g->alignment = a;
    }

    uint64_t *offsets = NULL;
    size_t cap_off = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (!grow((void **)&offsets, &cap_off, (size_t)i, sizeof *offsets)) {
            lode_free(offsets);
            return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory for tensor offsets", g->path);
        }
        if ((s = parse_tensor_info(g, &c, i, offsets, err))) {
            lode_free(offsets);
            return s;
        }
    }
    g->data_start = (size_t)((c.pos + g->alignment - 1) / g->alignment * g->alignment);
    s = place_tensors(g, offsets, err);
    lode_free(offsets);
    return s;
}

lode_status lode_gguf_open(const char *path, lode_gguf **out, lode_error *err) {
    if (!out) return lode_error_set(err, LODE_ERR_INVALID_ARG, "lode_gguf_open: out is NULL");
    *out = NULL;
    if (!path) return lode_error_set(err, LODE_ERR_INVALID_ARG, "lode_gguf_open: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lode_error_set(err, LODE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lode_error_set(err, LODE_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lode_error_set(err, LODE_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size < (off_t)GGUF_HEADER_BYTES) {
        close(fd);
        return lode_error_set(err, LODE_ERR_FORMAT, "%s: not a GGUF file (only %lld bytes)", path,
                              (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) return lode_error_set(err, LODE_ERR_IO, "%s: mmap failed: %s", path, strerror(e));

    /* The reader allocates only through the try_ functions so that an
     * allocation-failure loop can drive every path to LODE_ERR_NOMEM. */
    lode_gguf *g = lode_try_calloc(1, sizeof *g);
    char *pcopy = lode_try_malloc(strlen(path) + 1);
    if (!g || !pcopy) {
        lode_free(g);
        lode_free(pcopy);
        munmap(map, (size_t)st.st_size);
        return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory", path);
    }
    strcpy(pcopy, path);
    g->path = pcopy;
    g->map = map;
    g->ino = st.st_ino;
    g->dev = st.st_dev;
    g->mtime = st.st_mtim;
    g->size = (size_t)st.st_size;
    lode_status s = parse(g, err);
    if (s) {
        lode_gguf_free(g);
        return s;
    }
    *out = g;
    return LODE_OK;
}

void lode_gguf_free(lode_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) {
        lode_free(g->kv[i].key);
        lode_free(g->kv[i].str_off);
    }
    for (size_t i = 0; i < g->n_t; i++) lode_free((void *)g->t[i].name);
    lode_free(g->kv);
    lode_free(g->t);
    nmap_free(&g->kv_map);
    nmap_free(&g->t_map);
    if (g->map) munmap((void *)g->map, g->size);
    if (g->resident) munmap(g->resident, g->resident_size);
    lode_free(g->path);
    lode_free(g);
}

/* The tensor data region [data_start, size) read with pread into anonymous
 * memory (transparent huge pages where the kernel allows: 2 MiB aligned,
 * MADV_HUGEPAGE), then read-only; every tensor's data pointer moves there.
 * The mmap keeps only the metadata (its data pages were never touched, so
 * they do not count in the resident set). The file is checked to be the
 * one that was opened (device, inode, size, mtime). */
lode_status lode_gguf_make_resident(lode_gguf *g, lode_error *err) {
    if (!g) return lode_error_set(err, LODE_ERR_INVALID_ARG, "lode_gguf_make_resident: g is NULL");
    if (g->resident || g->data_start >= g->size) return LODE_OK;
    const size_t n = g->size - g->data_start, huge = (size_t)2 << 20;
    const size_t len = n + huge;
    uint8_t *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return lode_error_set(err, LODE_ERR_NOMEM, "%s: cannot allocate %.2f GB for the weights: %s", g->path,
                              (double)n / 1e9, strerror(errno));
    uint8_t *buf = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
#ifdef MADV_HUGEPAGE
    (void)madvise(buf, n, MADV_HUGEPAGE);
#endif
    lode_status st = LODE_OK;
    const int fd = open(g->path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = lode_error_set(err, LODE_ERR_IO, "%s: cannot reopen to read the weights: %s", g->path, strerror(errno));
    } else if (sb.st_ino != g->ino || sb.st_dev != g->dev || (uint64_t)sb.st_size != g->size ||
               sb.st_mtim.tv_sec != g->mtime.tv_sec || sb.st_mtim.tv_nsec != g->mtime.tv_nsec) {
        st = lode_error_set(err, LODE_ERR_IO, "%s: the file changed while loading; load it again", g->path);
    } else {
        for (size_t done = 0; done < n && !st;) {
            const size_t want = n - done < ((size_t)1 << 30) ? n - done : (size_t)1 << 30;
            const ssize_t r = pread(fd, buf + done, want, (off_t)(g->data_start + done));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) st = lode_error_set(err, LODE_ERR_IO, "%s: read failed at byte %zu: %s", g->path,
                                            g->data_start + done, r < 0 ? strerror(errno) : "unexpected end of file");
            else done += (size_t)r;
        }
    }
    if (fd >= 0) close(fd);
    if (st) {
        munmap(raw, len);
        return st;
    }
    (void)mprotect(buf, (n + 4095) & ~(size_t)4095, PROT_READ);
    for (size_t i = 0; i < g->n_t; i++)
        if (g->t[i].data) g->t[i].data = buf + ((const uint8_t *)g->t[i].data - (g->map + g->data_start));
    g->resident = raw;
    g->resident_size = len;
    return LODE_OK;
}

bool lode_gguf_resident_writable(lode_gguf *g, bool writable) {
    if (!g || !g->resident) return false;
    const size_t huge = (size_t)2 << 20, n = g->resident_size - huge;
    uint8_t *buf = (uint8_t *)(((uintptr_t)g->resident + huge - 1) & ~(uintptr_t)(huge - 1));
    return mprotect(buf, (n + 4095) & ~(size_t)4095, writable ? PROT_READ | PROT_WRITE : PROT_READ) == 0;
}

const char *lode_gguf_path(const lode_gguf *g) { return g ? g->path : ""; }
uint32_t lode_gguf_version(const lode_gguf *g) { return g ? g->version : 0; }
size_t lode_gguf_alignment(const lode_gguf *g) { return g ? g->alignment : 0; }

// ---- key/value accessors --------------------------------------------------------

int64_t lode_gguf_n_kv(const lode_gguf *g) { return g ? (int64_t)g->n_kv : 0; }

static const gguf_kv *kv_at(const lode_gguf *g, int64_t i) {
    return g && i >= 0 && (uint64_t)i < g->n_kv ? &g->kv[i] : NULL;
}

const char *lode_gguf_kv_key(const lode_gguf *g, int64_t i) {
    const gguf_kv *kv = kv_at(g, i);
    return kv ? kv->key : NULL;
}

lode_gguf_vtype lode_gguf_kv_type(const lode_gguf *g, int64_t i) {
    const gguf_kv *kv = kv_at(g, i);
    return kv ? (lode_gguf_vtype)kv->type : (lode_gguf_vtype)-1;
}

int64_t lode_gguf_find_key(const lode_gguf *g, const char *key) {
    return g ? nmap_find(&g->kv_map, kv_name, g, key) : -1;
}

static lode_status lookup(const lode_gguf *g, const char *key, const gguf_kv **kv, lode_error *err) {
    int64_t i = lode_gguf_find_key(g, key);
    if (i < 0)
        return lode_error_set(err, LODE_ERR_NOT_FOUND, "%s: metadata key '%s' not found", lode_gguf_path(g),
                              key ? key : "(null)");
    *kv = &g->kv[i];
    return LODE_OK;
}

/* Integer value of an integer-typed kv as sign + magnitude, so that every
 * target type can be range-checked without loss. */
static bool kv_int(const gguf_kv *kv, bool *neg, uint64_t *mag) {
    uint8_t b[8];
    size_t es = vtype_size(kv->type);
    memcpy(b, kv->data, es ? es : 0);
    int64_t sv = 0;
    *neg = false;
    switch (kv->type) {
    case LODE_GGUF_UINT8: *mag = b[0]; return true;
    case LODE_GGUF_UINT16: { uint16_t v; memcpy(&v, b, 2); *mag = v; return true; }
    case LODE_GGUF_UINT32: { uint32_t v; memcpy(&v, b, 4); *mag = v; return true; }
    case LODE_GGUF_UINT64: { uint64_t v; memcpy(&v, b, 8); *mag = v; return true; }
    case LODE_GGUF_INT8: { int8_t v; memcpy(&v, b, 1); sv = v; break; }
    case LODE_GGUF_INT16: { int16_t v; memcpy(&v, b, 2); sv = v; break; }
    case LODE_GGUF_INT32: { int32_t v; memcpy(&v, b, 4); sv = v; break; }
    case LODE_GGUF_INT64: { memcpy(&sv, b, 8); break; }
    default: return false;
    }
    *neg = sv < 0;
    *mag = sv < 0 ? (uint64_t)0 - (uint64_t)sv : (uint64_t)sv;
    return true;
}

static lode_status conv_fail(const lode_gguf *g, const gguf_kv *kv, const char *want, lode_error *err) {
    return lode_error_set(err, LODE_ERR_FORMAT, "%s: metadata key '%s' has type %s, not convertible to %s",
                          g->path, kv->key, vtype_name(kv->type), want);
}

static lode_status get_uint(const lode_gguf *g, const char *key, uint64_t max, const char *want, uint64_t *out,
                            lode_error *err) {
    const gguf_kv *kv = NULL;
    lode_status s = lookup(g, key, &kv, err);
    if (s) return s;
    bool neg;
    uint64_t mag;
    if (!kv_int(kv, &neg, &mag)) return conv_fail(g, kv, want, err);
    if (neg || mag > max)
        return lode_error_set(err, LODE_ERR_FORMAT, "%s: metadata key '%s' = %s%llu does not fit in %s", g->path,
                              kv->key, neg ? "-" : "", (unsigned long long)mag, want);
    *out = mag;
    return LODE_OK;
}

lode_status lode_gguf_get_u64(const lode_gguf *g, const char *key, uint64_t *out, lode_error *err) {
    return get_uint(g, key, UINT64_MAX, "u64", out, err);
}

lode_status lode_gguf_get_u32(const lode_gguf *g, const char *key, uint32_t *out, lode_error *err) {
    uint64_t v;
    lode_status s = get_uint(g, key, UINT32_MAX, "u32", &v, err);
    if (!s) *out = (uint32_t)v;
    return s;
}

lode_status lode_gguf_get_i64(const lode_gguf *g, const char *key, int64_t *out, lode_error *err) {
    const gguf_kv *kv = NULL;
    lode_status s = lookup(g, key, &kv, err);
    if (s) return s;
    bool neg;
    uint64_t mag;
    if (!kv_int(kv, &neg, &mag)) return conv_fail(g, kv, "i64", err);
    if (!neg && mag > (uint64_t)INT64_MAX)
        return lode_error_set(err, LODE_ERR_FORMAT, "%s: metadata key '%s' = %llu does not fit in i64", g->path,
                              kv->key, (unsigned long long)mag);
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag; /* 0 - mag: two's complement, INT64_MIN included */
    return LODE_OK;
}

lode_status lode_gguf_get_f32(const lode_gguf *g, const char *key, float *out, lode_error *err) {
    const gguf_kv *kv = NULL;
    lode_status s = lookup(g, key, &kv, err);
    if (s) return s;
    if (kv->type == LODE_GGUF_FLOAT32) {
        memcpy(out, kv->data, 4);
    } else if (kv->type == LODE_GGUF_FLOAT64) {
        double d;
        memcpy(&d, kv->data, 8);
        *out = (float)d;
    } else {
        return conv_fail(g, kv, "f32", err);
    }
    return LODE_OK;
}

lode_status lode_gguf_get_bool(const lode_gguf *g, const char *key, bool *out, lode_error *err) {
    const gguf_kv *kv = NULL;
    lode_status s = lookup(g, key, &kv, err);
    if (s) return s;
    if (kv->type != LODE_GGUF_BOOL) return conv_fail(g, kv, "bool", err);
    *out = kv->data[0] != 0;
    return LODE_OK;
}

lode_status lode_gguf_get_str(const lode_gguf *g, const char *key, const char **str, uint64_t *len,
                              lode_error *err) {
    const gguf_kv *kv = NULL;
    lode_status s = lookup(g, key, &kv, err);
    if (s) return s;
    if (kv->type != LODE_GGUF_STRING) return conv_fail(g, kv, "string", err);
    *str = (const char *)kv->data;
    *len = kv->len;
    return LODE_OK;
}

lode_status lode_gguf_get_arr(const lode_gguf *g, const char *key, lode_gguf_vtype *elem_type, uint64_t *count,
                              lode_error *err) {
    const gguf_kv *kv = NULL;
    lode_status s = lookup(g, key, &kv, err);
    if (s) return s;
    if (kv->type != LODE_GGUF_ARRAY) return conv_fail(g, kv, "array", err);
    if (elem_type) *elem_type = (lode_gguf_vtype)kv->arr_type;
    if (count) *count = kv->len;
    return LODE_OK;
}

const void *lode_gguf_arr_data(const lode_gguf *g, int64_t kv_index) {
    const gguf_kv *kv = kv_at(g, kv_index);
    return kv && kv->type == LODE_GGUF_ARRAY ? kv->data : NULL;
}

lode_status lode_gguf_arr_str(const lode_gguf *g, int64_t kv_index, uint64_t i, const char **s, uint64_t *len) {
    const gguf_kv *kv = kv_at(g, kv_index);
    if (!kv || kv->type != LODE_GGUF_ARRAY || kv->arr_type != LODE_GGUF_STRING) return LODE_ERR_INVALID_ARG;
    if (i >= kv->len) return LODE_ERR_RANGE;
    uint64_t l;
    memcpy(&l, kv->data + kv->str_off[i], 8);
    *s = (const char *)kv->data + kv->str_off[i] + 8;
    *len = l;
    return LODE_OK;
}

// ---- tensor accessors -------------------------------------------------------------

int64_t lode_gguf_n_tensors(const lode_gguf *g) { return g ? (int64_t)g->n_t : 0; }

const lode_tensor *lode_gguf_tensor(const lode_gguf *g, int64_t i) {
    return g && i >= 0 && (uint64_t)i < g->n_t ? &g->t[i] : NULL;
}

const lode_tensor *lode_gguf_find_tensor(const lode_gguf *g, const char *name) {
    if (!g) return NULL;
    int64_t i = nmap_find(&g->t_map, t_name, g, name);
    return i >= 0 ? &g->t[i] : NULL;
}

// ---- writer -----------------------------------------------------------------------
//
// The writer keeps only metadata in memory: kv values are serialized when set
// (so arrays are copied once), tensor infos are laid out at add time (offsets
// are independent of the header size because they are relative to the data
// start), and tensor bytes are streamed straight to the file. It writes to
// "<path>.partial" and renames on finish, so a crash or an error never leaves
// a truncated file under the final name.

typedef struct wkv {
    char *key;
    uint32_t type;
    uint8_t *val; /* serialized value (arrays: elem type + count + elements) */
    size_t len;
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[LODE_MAX_DIMS];
    uint64_t offset, nbytes;
} wtensor;

enum { W_BUILD, W_DATA, W_DONE, W_FAILED };

struct lode_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    nmap t_map;
    uint32_t align;
    lode_error sticky; /* first error from a void setter; reported by begin */
    int state;
    FILE *f;
    char *path, *tmp;
    uint64_t pos;      /* bytes written so far */
    uint64_t data_end; /* end of the last tensor's data, relative to data start */
    uint64_t data_start;
    size_t cur;        /* tensor being written */
    uint64_t cur_done; /* bytes of it written */
};

static const char *wt_name(const void *ctx, int64_t i) { return ((const lode_gguf_writer *)ctx)->t[i].name; }

lode_gguf_writer *lode_gguf_writer_new(void) {
    lode_gguf_writer *w = lode_xcalloc(1, sizeof *w);
    w->align = GGUF_DEFAULT_ALIGN;
    return w;
}

void lode_gguf_writer_free(lode_gguf_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        if (w->tmp) unlink(w->tmp);
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        lode_free(w->kv[i].key);
        lode_free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) lode_free(w->t[i].name);
    lode_free(w->kv);
    lode_free(w->t);
    nmap_free(&w->t_map);
    lode_free(w->path);
    lode_free(w->tmp);
    lode_free(w);
}

/* Replace or append key with an already-serialized value (takes ownership). */
static void w_put(lode_gguf_writer *w, const char *key, uint32_t type, uint8_t *val, size_t len) {
    if (!w) {
        lode_free(val);
        return;
    }
    if (w->state != W_BUILD) {
        lode_error_set(&w->sticky, LODE_ERR_STATE, "gguf writer: key '%s' set after begin", key ? key : "(null)");
        lode_free(val);
        return;
    }
    if (!key || !*key || utf8_bad_at((const uint8_t *)key, strlen(key)) != strlen(key)) {
        lode_error_set(&w->sticky, LODE_ERR_INVALID_ARG, "gguf writer: key '%s' is empty or not valid UTF-8",
                       key ? key : "(null)");
        lode_free(val);
        return;
    }
    /* Keys are few (tens); a linear scan keeps insertion order trivially. */
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            lode_free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val;
            w->kv[i].len = len;
            return;
        }
    }
    if (w->n_kv == w->cap_kv) {
        w->cap_kv = w->cap_kv ? w->cap_kv * 2 : 32;
        w->kv = lode_xrealloc(w->kv, w->cap_kv * sizeof *w->kv);
    }
    w->kv[w->n_kv++] = (wkv){lode_xstrdup(key), type, val, len};
}

static void w_put_scalar(lode_gguf_writer *w, const char *key, uint32_t type, const void *v, size_t n) {
    uint8_t *val = lode_xmalloc(n);
    memcpy(val, v, n);
    w_put(w, key, type, val, n);
}

void lode_gguf_writer_set_alignment(lode_gguf_writer *w, uint32_t align) {
    if (!w) return;
    if (align == 0 || (align & (align - 1))) {
        lode_error_set(&w->sticky, LODE_ERR_INVALID_ARG, "gguf writer: alignment %u is not a power of two", align);
        return;
    }
    if (w->n_t) {
        lode_error_set(&w->sticky, LODE_ERR_STATE, "gguf writer: alignment set after tensors were added");
        return;
    }
    w->align = align;
    if (align != GGUF_DEFAULT_ALIGN) {
        w_put_scalar(w, "general.alignment", LODE_GGUF_UINT32, &align, 4);
    } else {
        for (size_t i = 0; i < w->n_kv; i++) {
            if (strcmp(w->kv[i].key, "general.alignment") == 0) {
                lode_free(w->kv[i].key);
                lode_free(w->kv[i].val);
                memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - i - 1) * sizeof *w->kv);
                w->n_kv--;
                break;
            }
        }
    }
}

void lode_gguf_writer_set_u32(lode_gguf_writer *w, const char *key, uint32_t v) {
    /* general.alignment through the generic setter must stay consistent with
     * the offsets the writer computes. */
    if (w && key && strcmp(key, "general.alignment") == 0) {
        lode_gguf_writer_set_alignment(w, v);
        return;
    }
    w_put_scalar(w, key, LODE_GGUF_UINT32, &v, 4);
}
void lode_gguf_writer_set_i32(lode_gguf_writer *w, const char *key, int32_t v) {
    w_put_scalar(w, key, LODE_GGUF_INT32, &v, 4);
}
void lode_gguf_writer_set_u64(lode_gguf_writer *w, const char *key, uint64_t v) {
    w_put_scalar(w, key, LODE_GGUF_UINT64, &v, 8);
}
void lode_gguf_writer_set_f32(lode_gguf_writer *w, const char *key, float v) {
    w_put_scalar(w, key, LODE_GGUF_FLOAT32, &v, 4);
}
void lode_gguf_writer_set_bool(lode_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    w_put_scalar(w, key, LODE_GGUF_BOOL, &b, 1);
}

void lode_gguf_writer_set_str(lode_gguf_writer *w, const char *key, const char *v) {
    uint64_t n = v ? strlen(v) : 0;
    uint8_t *val = lode_xmalloc(8 + n);
    memcpy(val, &n, 8);
    if (n) memcpy(val + 8, v, n);
    w_put(w, key, LODE_GGUF_STRING, val, 8 + n);
}

static uint8_t *arr_header(uint32_t et, uint64_t n, size_t body, size_t *len) {
    *len = 12 + body;
    uint8_t *val = lode_xmalloc(*len);
    memcpy(val, &et, 4);
    memcpy(val + 4, &n, 8);
    return val;
}

void lode_gguf_writer_set_arr_str(lode_gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    size_t body = 0, len;
    for (uint64_t i = 0; i < n; i++) body += 8 + (v[i] ? strlen(v[i]) : 0);
    uint8_t *val = arr_header(LODE_GGUF_STRING, n, body, &len), *p = val + 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l = v[i] ? strlen(v[i]) : 0;
        memcpy(p, &l, 8);
        if (l) memcpy(p + 8, v[i], l);
        p += 8 + l;
    }
    w_put(w, key, LODE_GGUF_ARRAY, val, len);
}

void lode_gguf_writer_set_arr_i32(lode_gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    size_t len;
    uint8_t *val = arr_header(LODE_GGUF_INT32, n, (size_t)n * 4, &len);
    if (n) memcpy(val + 12, v, (size_t)n * 4);
    w_put(w, key, LODE_GGUF_ARRAY, val, len);
}

void lode_gguf_writer_set_arr_f32(lode_gguf_writer *w, const char *key, const float *v, uint64_t n) {
    size_t len;
    uint8_t *val = arr_header(LODE_GGUF_FLOAT32, n, (size_t)n * 4, &len);
    if (n) memcpy(val + 12, v, (size_t)n * 4);
    w_put(w, key, LODE_GGUF_ARRAY, val, len);
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

lode_status lode_gguf_writer_add_tensor(lode_gguf_writer *w, const char *name, lode_type type, int n_dims,
                                        const int64_t *ne, lode_error *err) {
    if (!w || !name || !ne) return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: NULL argument");
    if (w->state != W_BUILD)
        return lode_error_set(err, LODE_ERR_STATE, "gguf writer: tensor '%s' added after begin", name);
    size_t nl = strlen(name);
    if (!nl || utf8_bad_at((const uint8_t *)name, nl) != nl)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: tensor name '%s' is empty or not UTF-8", name);
    /* llama.cpp stores names in char[GGML_MAX_NAME = 64] and refuses longer
     * ones at load; refuse them here so every file we write loads there. */
    if (nl > 63)
        return lode_error_set(err, LODE_ERR_INVALID_ARG,
                              "gguf writer: tensor name '%s' is %zu bytes (llama.cpp allows at most 63)", name, nl);
    if (!ggml_type_known((uint32_t)type))
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: tensor '%s': unknown type id %d", name,
                              (int)type);
    if (n_dims < 1 || n_dims > LODE_MAX_DIMS)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: tensor '%s': n_dims %d outside 1..%d", name,
                              n_dims, LODE_MAX_DIMS);
    wtensor t = {.type = (uint32_t)type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    for (int i = 0; i < n_dims; i++) {
        if (ne[i] < 1)
            return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: tensor '%s': ne[%d] = %lld", name, i,
                                  (long long)ne[i]);
        t.ne[i] = ne[i];
    }
    const char *why = NULL;
    t.nbytes = ggml_nbytes(t.type, n_dims, t.ne, &why);
    if (!t.nbytes) return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: tensor '%s': %s", name, why);
    if (nmap_find(&w->t_map, wt_name, w, name) >= 0)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: tensor '%s' added twice", name);
    t.offset = align_up(w->data_end, w->align);
    if (t.offset > UINT64_MAX - t.nbytes)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: tensor '%s': file too large", name);
    t.name = lode_xstrdup(name);
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t ? w->cap_t * 2 : 64;
        w->t = lode_xrealloc(w->t, w->cap_t * sizeof *w->t);
    }
    w->t[w->n_t++] = t;
    if (!nmap_add(&w->t_map, wt_name, w, (int64_t)w->n_t - 1)) {
        lode_free(w->t[--w->n_t].name);
        return lode_error_set(err, LODE_ERR_NOMEM, "gguf writer: out of memory");
    }
    w->data_end = t.offset + t.nbytes;
    return LODE_OK;
}

static lode_status w_io(lode_gguf_writer *w, lode_error *err) {
    w->state = W_FAILED;
    return lode_error_set(err, LODE_ERR_IO, "%s: write failed: %s", w->tmp ? w->tmp : "(gguf)", strerror(errno));
}

static bool w_bytes(lode_gguf_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) return false;
    w->pos += n;
    return true;
}

static bool w_zeros(lode_gguf_writer *w, uint64_t n) {
    static const uint8_t zero[256];
    while (n) {
        size_t k = n < sizeof zero ? (size_t)n : sizeof zero;
        if (!w_bytes(w, zero, k)) return false;
        n -= k;
    }
    return true;
}

lode_status lode_gguf_writer_begin(lode_gguf_writer *w, const char *path, lode_error *err) {
    if (!w || !path) return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: NULL argument");
    if (w->sticky.status) return lode_error_set(err, w->sticky.status, "%s: %s", path, w->sticky.text);
    if (w->state != W_BUILD) return lode_error_set(err, LODE_ERR_STATE, "%s: gguf writer already begun", path);
    w->path = lode_xstrdup(path);
    w->tmp = lode_xmalloc(strlen(path) + 9);
    sprintf(w->tmp, "%s.partial", path);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        w->state = W_FAILED;
        return lode_error_set(err, LODE_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    uint32_t version = 3;
    uint64_t nt = w->n_t, nkv = w->n_kv;
    bool ok = w_bytes(w, "GGUF", 4) && w_bytes(w, &version, 4) && w_bytes(w, &nt, 8) && w_bytes(w, &nkv, 8);
    for (size_t i = 0; ok && i < w->n_kv; i++) {
        uint64_t kl = strlen(w->kv[i].key);
        ok = w_bytes(w, &kl, 8) && w_bytes(w, w->kv[i].key, kl) && w_bytes(w, &w->kv[i].type, 4) &&
             w_bytes(w, w->kv[i].val, w->kv[i].len);
    }
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t nl = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims;
        ok = w_bytes(w, &nl, 8) && w_bytes(w, t->name, nl) && w_bytes(w, &nd, 4);
        for (int d = 0; ok && d < t->n_dims; d++) ok = w_bytes(w, &t->ne[d], 8);
        ok = ok && w_bytes(w, &t->type, 4) && w_bytes(w, &t->offset, 8);
    }
    w->data_start = align_up(w->pos, w->align);
    ok = ok && w_zeros(w, w->data_start - w->pos);
    if (!ok) return w_io(w, err);
    w->state = W_DATA;
    return LODE_OK;
}

lode_status lode_gguf_writer_write_data(lode_gguf_writer *w, const void *data, size_t nbytes, lode_error *err) {
    if (!w) return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: NULL writer");
    if (w->state != W_DATA)
        return lode_error_set(err, LODE_ERR_STATE, "%s: gguf writer: write_data outside begin..finish",
                              w->path ? w->path : "(gguf)");
    if (w->cur >= w->n_t) {
        w->state = W_FAILED;
        return lode_error_set(err, LODE_ERR_STATE, "%s: %zu bytes written after the last tensor", w->path, nbytes);
    }
    const wtensor *t = &w->t[w->cur];
    if (nbytes > t->nbytes - w->cur_done) {
        w->state = W_FAILED;
        return lode_error_set(err, LODE_ERR_INVALID_ARG,
                              "%s: tensor '%s': %zu bytes supplied but only %llu of its %llu bytes remain", w->path,
                              t->name, nbytes, (unsigned long long)(t->nbytes - w->cur_done),
                              (unsigned long long)t->nbytes);
    }
    if (nbytes && !data) return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: NULL data");
    if (w->cur_done == 0 && !w_zeros(w, w->data_start + t->offset - w->pos)) return w_io(w, err);
    if (!w_bytes(w, data, nbytes)) return w_io(w, err);
    w->cur_done += nbytes;
    if (w->cur_done == t->nbytes) {
        w->cur++;
        w->cur_done = 0;
    }
    return LODE_OK;
}

lode_status lode_gguf_writer_finish(lode_gguf_writer *w, lode_error *err) {
    if (!w) return lode_error_set(err, LODE_ERR_INVALID_ARG, "gguf writer: NULL writer");
    if (w->state != W_DATA)
        return lode_error_set(err, LODE_ERR_STATE, "%s: gguf writer: finish without a successful begin",
                              w->path ? w->path : "(gguf)");
    if (w->cur < w->n_t) {
        w->state = W_FAILED;
        return lode_error_set(err, LODE_ERR_STATE, "%s: tensor '%s': only %llu of %llu bytes written at finish",
                              w->path, w->t[w->cur].name, (unsigned long long)w->cur_done,
                              (unsigned long long)w->t[w->cur].nbytes);
    }
    /* Pad the last tensor to the alignment, as llama.cpp's writer does. */
    if (!w_zeros(w, align_up(w->pos, w->align) - w->pos)) return w_io(w, err);
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) return w_io(w, err);
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) {
        unlink(w->tmp);
        return w_io(w, err);
    }
    if (rename(w->tmp, w->path) != 0) {
        int e = errno;
        unlink(w->tmp);
        w->state = W_FAILED;
        return lode_error_set(err, LODE_ERR_IO, "%s: cannot rename from %s: %s", w->path, w->tmp, strerror(e));
    }
    w->state = W_DONE;
    return LODE_OK;
}
