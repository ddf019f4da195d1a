/*
 * safetensors.c — Hugging Face safetensors reader (file or directory of
 * shards, each memory-mapped) and a streaming writer.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "BF16", "shape": [out, in], "data_offsets": [b, e]},
 *    ..., "__metadata__": {string: string}}
 * (padded with spaces), then the data area; offsets are relative to its start.
 *
 * Reader invariants (established at open, relied on by the accessors):
 *  - every tensor's [data, data + nbytes) lies in its file's data area, and
 *    nbytes == product(shape) * dtype size (no overflow);
 *  - tensors within one file do not overlap; names are unique across every
 *    shard (NUL-free: JSON forbids raw NUL and jansson rejects \u0000 keys);
 *  - in index mode every weight_map entry names a shard that opened and that
 *    really contains the tensor.
 * Tensor views are in GGML order: ne[] is the JSON shape reversed, unused
 * dims are 1; a 0-d (scalar) tensor has n_dims 0. Zero-size dims are allowed
 * (safetensors permits them) and give nbytes 0.
 *
 * Threading: immutable after open. A writer belongs to one thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "lode_safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Real headers are < 1 MB even for 90K-tensor checkpoints (V3's largest
 * shard header is ~60 kB); the cap stops a hostile length from driving the
 * JSON parser's allocations. */
#define ST_MAX_HEADER (100u << 20)

// ---- dtypes -------------------------------------------------------------------

static const struct {
    const char *name;
    lode_type type;
    size_t size;
} k_dtypes[] = {
    {"F32", LODE_TYPE_F32, 4}, {"F16", LODE_TYPE_F16, 2}, {"BF16", LODE_TYPE_BF16, 2}, {"I8", LODE_TYPE_I8, 1},
    {"I16", LODE_TYPE_I16, 2}, {"I32", LODE_TYPE_I32, 4}, {"I64", LODE_TYPE_I64, 8},   {"F64", LODE_TYPE_F64, 8},
};
#define N_DTYPES (sizeof k_dtypes / sizeof k_dtypes[0])

static int dtype_by_name(const char *s) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(k_dtypes[i].name, s) == 0) return (int)i;
    return -1;
}

static int dtype_by_type(lode_type t) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (k_dtypes[i].type == t) return (int)i;
    return -1;
}

static char *try_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = lode_try_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

// ---- name map (same scheme as gguf.c: indices only, names via callback) ----------

typedef const char *(*name_fn)(const void *ctx, int64_t i);
typedef struct nmap {
    int64_t *slot;
    size_t cap, n;
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

// ---- reader ---------------------------------------------------------------------

typedef struct st_file {
    char *path;
    const uint8_t *map;
    size_t size;
    size_t data_start; /* 8 + header length */
} st_file;

struct lode_st {
    char *path;
    st_file *files;
    size_t n_files, cap_files;
    lode_tensor *t;
    uint32_t *t_file; /* file index of each tensor */
    size_t n_t, cap_t;
    nmap map;
};

static const char *st_name(const void *ctx, int64_t i) { return ((const lode_st *)ctx)->t[i].name; }

static lode_status fmt_err(lode_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static lode_status fmt_err(lode_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    lode_error_vset(err, LODE_ERR_FORMAT, fmt, ap);
    va_end(ap);
    return LODE_ERR_FORMAT;
}

/* Parse one tensor entry; on success appends to st (tensor owned by st). */
static lode_status parse_entry(lode_st *st, size_t fi, const char *name, json_t *v, uint64_t data_size,
                               uint64_t *range, lode_error *err) {
    const char *path = st->files[fi].path;
    if (!json_is_object(v)) return fmt_err(err, "%s: tensor '%s': entry is not a JSON object", path, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) return fmt_err(err, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    int di = dtype_by_name(json_string_value(jd));
    if (di < 0)
        return fmt_err(err, "%s: tensor '%s': unsupported dtype '%s' (lode reads F32, F16, BF16, I8..I64, F64)", path,
                       name, json_string_value(jd));
    if (!json_is_array(js)) return fmt_err(err, "%s: tensor '%s': missing or non-array \"shape\"", path, name);
    size_t nd = json_array_size(js);
    if (nd > LODE_MAX_DIMS)
        return fmt_err(err, "%s: tensor '%s': %zu dimensions (at most %d supported)", path, name, nd, LODE_MAX_DIMS);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return fmt_err(err, "%s: tensor '%s': \"data_offsets\" must be [begin, end]", path, name);

    lode_tensor t = {.type = k_dtypes[di].type, .n_dims = (int)nd, .ne = {1, 1, 1, 1}};
    uint64_t n = k_dtypes[di].size, tmp;
    for (size_t i = 0; i < nd; i++) {
        json_t *e = json_array_get(js, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0)
            return fmt_err(err, "%s: tensor '%s': shape[%zu] is not a non-negative integer", path, name, i);
        t.ne[nd - 1 - i] = (int64_t)json_integer_value(e);
        if (__builtin_mul_overflow(n, (uint64_t)json_integer_value(e), &tmp))
            return fmt_err(err, "%s: tensor '%s': shape size overflows", path, name);
        n = tmp;
    }
    json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
        json_integer_value(je) < json_integer_value(jb))
        return fmt_err(err, "%s: tensor '%s': \"data_offsets\" must be integers with 0 <= begin <= end", path, name);
    uint64_t b = (uint64_t)json_integer_value(jb), e = (uint64_t)json_integer_value(je);
    if (e > data_size)
        return fmt_err(err, "%s: tensor '%s': data_offsets [%llu, %llu] run past the data area (%llu bytes; file "
                       "truncated?)",
                       path, name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_size);
    if (e - b != n)
        return fmt_err(err, "%s: tensor '%s': data_offsets span %llu bytes but shape × %s needs %llu", path, name,
                       (unsigned long long)(e - b), k_dtypes[di].name, (unsigned long long)n);
    t.nbytes = (size_t)n;
    t.data = st->files[fi].map + st->files[fi].data_start + b;
    range[0] = b;
    range[1] = e;

    if (nmap_find(&st->map, st_name, st, name) >= 0) {
        const char *other = st->files[st->t_file[nmap_find(&st->map, st_name, st, name)]].path;
        return fmt_err(err, "%s: tensor '%s' is also in %s", path, name, other);
    }
    if (st->n_t == st->cap_t) {
        size_t cap = st->cap_t ? st->cap_t * 2 : 256;
        lode_tensor *nt = lode_try_realloc(st->t, cap * sizeof *nt);
        if (!nt) return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory for tensors", path);
        st->t = nt;
        uint32_t *nf = lode_try_realloc(st->t_file, cap * sizeof *nf);
        if (!nf) return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory for tensors", path);
        st->t_file = nf;
        st->cap_t = cap;
    }
    size_t nl = strlen(name);
    char *copy = lode_try_malloc(nl + 1);
    if (!copy) return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory for a tensor name", path);
    memcpy(copy, name, nl + 1);
    t.name = copy;
    st->t[st->n_t] = t;
    st->t_file[st->n_t] = (uint32_t)fi;
    st->n_t++;
    if (!nmap_add(&st->map, st_name, st, (int64_t)st->n_t - 1))
        return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory indexing tensors", path);
    return LODE_OK;
}

typedef struct range_ref {
    uint64_t b, e;
    size_t t;
} range_ref;

static int cmp_range(const void *a, const void *b) {
    const range_ref *x = a, *y = b;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    return x->e < y->e ? -1 : x->e > y->e;
}

/* mmap one file and append its tensors. */
static lode_status open_file(lode_st *st, const char *path, lode_error *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lode_error_set(err, LODE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return lode_error_set(err, LODE_ERR_IO, "%s: not a readable regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return fmt_err(err, "%s: not a safetensors file (%lld bytes, no header length)", path, (long long)sb.st_size);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return lode_error_set(err, LODE_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    char *pcopy = try_strdup(path);
    if (st->n_files == st->cap_files) {
        size_t cap = st->cap_files ? st->cap_files * 2 : 8;
        st_file *nf = lode_try_realloc(st->files, cap * sizeof *nf);
        if (nf) st->files = nf, st->cap_files = cap;
    }
    if (!pcopy || st->n_files == st->cap_files) {
        lode_free(pcopy);
        munmap(map, (size_t)sb.st_size);
        return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t fi = st->n_files++;
    st_file *f = &st->files[fi];
    *f = (st_file){pcopy, map, (size_t)sb.st_size, 0};

    uint64_t hlen;
    memcpy(&hlen, f->map, 8);
    if (hlen > ST_MAX_HEADER || hlen > f->size - 8)
        return fmt_err(err, "%s: header length %llu is %s (file is %zu bytes)", path, (unsigned long long)hlen,
                       hlen > ST_MAX_HEADER ? "over the 100 MB cap" : "past the end of the file", f->size);
    f->data_start = 8 + (size_t)hlen;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fmt_err(err, "%s: header is not valid JSON: %s (line %d, column %d)", path, jerr.text, jerr.line,
                       jerr.column);
    lode_status s = LODE_OK;
    range_ref *ranges = NULL;
    if (!json_is_object(root)) {
        s = fmt_err(err, "%s: header is not a JSON object", path);
        goto done;
    }
    size_t n = json_object_size(root), k = 0;
    ranges = lode_try_malloc(n * sizeof *ranges); /* n <= header bytes / 8: bounded by the checked length */
    if (!ranges) {
        s = lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory for %zu tensors", path, n);
        goto done;
    }
    uint64_t data_size = f->size - f->data_start;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue; /* free-form; unused */
        uint64_t r[2] = {0, 0};
        if ((s = parse_entry(st, fi, key, v, data_size, r, err))) goto done;
        ranges[k++] = (range_ref){r[0], r[1], st->n_t - 1};
    }
    /* Overlap check: sort by begin; empty tensors occupy nothing. */
    qsort(ranges, k, sizeof *ranges, cmp_range);
    uint64_t end = 0;
    size_t prev = SIZE_MAX;
    for (size_t i = 0; i < k; i++) {
        if (ranges[i].b == ranges[i].e) continue;
        if (prev != SIZE_MAX && ranges[i].b < end) {
            s = fmt_err(err, "%s: tensor '%s' (data_offsets [%llu, %llu]) overlaps tensor '%s'", path,
                        st->t[ranges[i].t].name, (unsigned long long)ranges[i].b, (unsigned long long)ranges[i].e,
                        st->t[prev].name);
            goto done;
        }
        end = ranges[i].e;
        prev = ranges[i].t;
    }
done:
    lode_free(ranges);
    json_decref(root);
    return s;
}

/* dir + "/" + name, or NULL on OOM (callers report NOMEM). */
static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = lode_try_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct shard_ref {
    const char *file, *tensor; /* borrowed from the index JSON */
} shard_ref;

static int cmp_shard(const void *a, const void *b) {
    return strcmp(((const shard_ref *)a)->file, ((const shard_ref *)b)->file);
}

/* Directory with model.safetensors.index.json: open every referenced shard
 * once (sorted, so the tensor order is stable) and check the map. */
static lode_status open_index(lode_st *st, const char *dir, const char *ipath, lode_error *err) {
    json_error_t jerr;
    json_t *root = json_load_file(ipath, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fmt_err(err, "%s: not valid JSON: %s (line %d, column %d)", ipath, jerr.text, jerr.line, jerr.column);
    lode_status s = LODE_OK;
    shard_ref *shards = NULL;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        s = fmt_err(err, "%s: missing or empty \"weight_map\" object", ipath);
        goto done;
    }
    size_t n = json_object_size(wm), ns = 0;
    shards = lode_try_malloc(n * sizeof *shards);
    if (!shards) {
        s = lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory", ipath);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(wm, key, v) {
        const char *sh = json_string_value(v);
        /* Shard names are file names in this directory: refuse paths so an
         * index cannot point outside the model directory. */
        if (!sh || !*sh || strchr(sh, '/') || strcmp(sh, ".") == 0 || strcmp(sh, "..") == 0) {
            s = fmt_err(err, "%s: tensor '%s': weight_map value is not a shard file name", ipath, key);
            goto done;
        }
        shards[ns++] = (shard_ref){sh, key};
    }
    qsort(shards, ns, sizeof *shards, cmp_shard);
    for (size_t i = 0; i < ns; i++) {
        if (i && strcmp(shards[i].file, shards[i - 1].file) == 0) continue;
        char *p = join(dir, shards[i].file);
        if (!p) {
            s = lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory", ipath);
            goto done;
        }
        if (access(p, R_OK) != 0) {
            s = lode_error_set(err, LODE_ERR_IO, "%s: shard %s (holding tensor '%s') cannot be opened: %s", ipath, p,
                               shards[i].tensor, strerror(errno));
            lode_free(p);
            goto done;
        }
        s = open_file(st, p, err);
        lode_free(p);
        if (s) goto done;
    }
    json_object_foreach(wm, key, v) {
        int64_t ti = nmap_find(&st->map, st_name, st, key);
        const char *want = json_string_value(v);
        if (ti < 0) {
            s = fmt_err(err, "%s: tensor '%s' is listed in weight_map for %s but that shard does not contain it",
                        ipath, key, want);
            goto done;
        }
        const char *have = st->files[st->t_file[ti]].path;
        const char *base = strrchr(have, '/');
        base = base ? base + 1 : have;
        if (strcmp(base, want) != 0) {
            s = fmt_err(err, "%s: tensor '%s' is mapped to %s but found in %s", ipath, key, want, have);
            goto done;
        }
    }
done:
    lode_free(shards);
    json_decref(root);
    return s;
}

static lode_status open_dir(lode_st *st, const char *dir, lode_error *err) {
    char *p = join(dir, "model.safetensors.index.json");
    if (!p) return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory", dir);
    if (access(p, F_OK) == 0) {
        lode_status s = open_index(st, dir, p, err);
        lode_free(p);
        return s;
    }
    lode_free(p);
    p = join(dir, "model.safetensors");
    if (!p) return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory", dir);
    if (access(p, F_OK) == 0) {
        lode_status s = open_file(st, p, err);
        lode_free(p);
        return s;
    }
    lode_free(p);
    DIR *d = opendir(dir);
    if (!d) return lode_error_set(err, LODE_ERR_IO, "%s: cannot list directory: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    lode_status s = LODE_OK;
    while (!s && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l <= 12 || strcmp(de->d_name + l - 12, ".safetensors") != 0) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = lode_try_realloc(names, nc * sizeof *nn);
            if (nn) names = nn, cap = nc;
        }
        char *copy = n < cap ? try_strdup(de->d_name) : NULL;
        if (!copy) s = lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory listing the directory", dir);
        else names[n++] = copy;
    }
    closedir(d);
    if (!s && n == 0) s = lode_error_set(err, LODE_ERR_IO, "%s: no *.safetensors files in the directory", dir);
    if (!s) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (!s) {
            char *fp = join(dir, names[i]);
            s = fp ? open_file(st, fp, err) : lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory", dir);
            lode_free(fp);
        }
        lode_free(names[i]);
    }
    lode_free(names);
    return s;
}

lode_status lode_st_open(const char *path, lode_st **out, lode_error *err) {
    if (!out) return lode_error_set(err, LODE_ERR_INVALID_ARG, "lode_st_open: out is NULL");
    *out = NULL;
    if (!path) return lode_error_set(err, LODE_ERR_INVALID_ARG, "lode_st_open: path is NULL");
    struct stat sb;
    if (stat(path, &sb) != 0) return lode_error_set(err, LODE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    lode_st *st = lode_try_calloc(1, sizeof *st);
    if (st) st->path = try_strdup(path);
    if (!st || !st->path) {
        lode_free(st);
        return lode_error_set(err, LODE_ERR_NOMEM, "%s: out of memory", path);
    }
    lode_status s = S_ISDIR(sb.st_mode) ? open_dir(st, path, err) : open_file(st, path, err);
    if (s) {
        lode_st_free(st);
        return s;
    }
    *out = st;
    return LODE_OK;
}

void lode_st_free(lode_st *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n_t; i++) lode_free((void *)st->t[i].name);
    for (size_t i = 0; i < st->n_files; i++) {
        munmap((void *)st->files[i].map, st->files[i].size);
        lode_free(st->files[i].path);
    }
    lode_free(st->files);
    lode_free(st->t);
    lode_free(st->t_file);
    nmap_free(&st->map);
    lode_free(st->path);
    lode_free(st);
}

int64_t lode_st_n_tensors(const lode_st *st) { return st ? (int64_t)st->n_t : 0; }

const lode_tensor *lode_st_tensor(const lode_st *st, int64_t i) {
    return st && i >= 0 && (uint64_t)i < st->n_t ? &st->t[i] : NULL;
}

const lode_tensor *lode_st_find(const lode_st *st, const char *name) {
    if (!st) return NULL;
    int64_t i = nmap_find(&st->map, st_name, st, name);
    return i >= 0 ? &st->t[i] : NULL;
}

// ---- writer ---------------------------------------------------------------------
//
// Offsets are known once every tensor is added (tensors are packed back to
// back in add order, like HF's serializer), so begin can write the complete
// header and the data then streams through without buffering. Output goes to
// "<path>.partial" and is renamed on finish.

typedef struct st_wt {
    char *name;
    int dtype; /* index into k_dtypes */
    int n_dims;
    int64_t ne[LODE_MAX_DIMS];
    uint64_t offset, nbytes;
} st_wt;

enum { SW_BUILD, SW_DATA, SW_DONE, SW_FAILED };

struct lode_st_writer {
    st_wt *t;
    size_t n_t, cap_t;
    nmap map;
    uint64_t data_size;
    int state;
    FILE *f;
    char *path, *tmp;
    size_t cur;
    uint64_t cur_done;
};

static const char *sw_name(const void *ctx, int64_t i) { return ((const lode_st_writer *)ctx)->t[i].name; }

lode_st_writer *lode_st_writer_new(void) { return lode_xcalloc(1, sizeof(lode_st_writer)); }

void lode_st_writer_free(lode_st_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        unlink(w->tmp);
    }
    for (size_t i = 0; i < w->n_t; i++) lode_free(w->t[i].name);
    lode_free(w->t);
    nmap_free(&w->map);
    lode_free(w->path);
    lode_free(w->tmp);
    lode_free(w);
}

lode_status lode_st_writer_add_tensor(lode_st_writer *w, const char *name, lode_type type, int n_dims,
                                      const int64_t *ne, lode_error *err) {
    if (!w || !name || (n_dims > 0 && !ne))
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "safetensors writer: NULL argument");
    if (w->state != SW_BUILD)
        return lode_error_set(err, LODE_ERR_STATE, "safetensors writer: tensor '%s' added after begin", name);
    if (!*name || strcmp(name, "__metadata__") == 0)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "safetensors writer: invalid tensor name '%s'", name);
    int di = dtype_by_type(type);
    if (di < 0)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "safetensors writer: tensor '%s': type id %d has no dtype",
                              name, (int)type);
    if (n_dims < 0 || n_dims > LODE_MAX_DIMS)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "safetensors writer: tensor '%s': n_dims %d", name, n_dims);
    st_wt t = {.dtype = di, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    uint64_t n = k_dtypes[di].size, tmp;
    for (int i = 0; i < n_dims; i++) {
        if (ne[i] < 0 || __builtin_mul_overflow(n, (uint64_t)ne[i], &tmp))
            return lode_error_set(err, LODE_ERR_INVALID_ARG, "safetensors writer: tensor '%s': bad ne[%d] = %lld",
                                  name, i, (long long)ne[i]);
        n = tmp;
        t.ne[i] = ne[i];
    }
    if (nmap_find(&w->map, sw_name, w, name) >= 0)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "safetensors writer: tensor '%s' added twice", name);
    if (__builtin_add_overflow(w->data_size, n, &tmp) || tmp > (uint64_t)INT64_MAX)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "safetensors writer: tensor '%s': file too large", name);
    t.offset = w->data_size;
    t.nbytes = n;
    t.name = lode_xstrdup(name);
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t ? w->cap_t * 2 : 256;
        w->t = lode_xrealloc(w->t, w->cap_t * sizeof *w->t);
    }
    w->t[w->n_t++] = t;
    if (!nmap_add(&w->map, sw_name, w, (int64_t)w->n_t - 1)) {
        lode_free(w->t[--w->n_t].name);
        return lode_error_set(err, LODE_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->data_size = tmp;
    return LODE_OK;
}

static lode_status sw_io(lode_st_writer *w, lode_error *err) {
    w->state = SW_FAILED;
    return lode_error_set(err, LODE_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno));
}

/* Skip tensors with no bytes so `cur` always names one that still needs data. */
static void sw_skip_empty(lode_st_writer *w) {
    while (w->cur < w->n_t && w->t[w->cur].nbytes == 0) w->cur++;
}

lode_status lode_st_writer_begin(lode_st_writer *w, const char *path, lode_error *err) {
    if (!w || !path) return lode_error_set(err, LODE_ERR_INVALID_ARG, "safetensors writer: NULL argument");
    if (w->state != SW_BUILD) return lode_error_set(err, LODE_ERR_STATE, "%s: safetensors writer already begun", path);
    json_t *root = json_object();
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", meta);
    for (size_t i = 0; i < w->n_t; i++) {
        const st_wt *t = &w->t[i];
        json_t *shape = json_array(), *offs = json_array(), *e = json_object();
        for (int d = t->n_dims - 1; d >= 0; d--) json_array_append_new(shape, json_integer(t->ne[d]));
        json_array_append_new(offs, json_integer((json_int_t)t->offset));
        json_array_append_new(offs, json_integer((json_int_t)(t->offset + t->nbytes)));
        json_object_set_new(e, "dtype", json_string(k_dtypes[t->dtype].name));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        /* Names may contain bytes jansson rejects (invalid UTF-8). */
        if (json_object_set_new(root, t->name, e) != 0) {
            json_decref(root);
            w->state = SW_FAILED;
            return lode_error_set(err, LODE_ERR_INVALID_ARG, "%s: tensor name '%s' is not valid UTF-8", path,
                                  t->name);
        }
    }
    char *js = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!js) {
        w->state = SW_FAILED;
        return lode_error_set(err, LODE_ERR_NOMEM, "%s: cannot serialize the header", path);
    }
    size_t jl = strlen(js);
    uint64_t hlen = (jl + 8 + 7) / 8 * 8 - 8; /* HF pads so that data starts 8-aligned */
    w->path = lode_xstrdup(path);
    w->tmp = lode_xmalloc(strlen(path) + 9);
    sprintf(w->tmp, "%s.partial", path);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        free(js);
        w->state = SW_FAILED;
        return lode_error_set(err, LODE_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    bool ok = fwrite(&hlen, 8, 1, w->f) == 1 && fwrite(js, 1, jl, w->f) == jl;
    for (size_t i = jl; ok && i < hlen; i++) ok = fputc(' ', w->f) != EOF;
    free(js); /* jansson's allocator */
    if (!ok) return sw_io(w, err);
    w->state = SW_DATA;
    sw_skip_empty(w);
    return LODE_OK;
}

lode_status lode_st_writer_write_data(lode_st_writer *w, const void *data, size_t nbytes, lode_error *err) {
    if (!w) return lode_error_set(err, LODE_ERR_INVALID_ARG, "safetensors writer: NULL writer");
    if (w->state != SW_DATA)
        return lode_error_set(err, LODE_ERR_STATE, "%s: safetensors writer: write_data outside begin..finish",
                              w->path ? w->path : "(safetensors)");
    if (w->cur >= w->n_t) {
        w->state = SW_FAILED;
        return lode_error_set(err, LODE_ERR_STATE, "%s: %zu bytes written after the last tensor", w->path, nbytes);
    }
    const st_wt *t = &w->t[w->cur];
    if (nbytes > t->nbytes - w->cur_done) {
        w->state = SW_FAILED;
        return lode_error_set(err, LODE_ERR_INVALID_ARG,
                              "%s: tensor '%s': %zu bytes supplied but only %llu of its %llu bytes remain", w->path,
                              t->name, nbytes, (unsigned long long)(t->nbytes - w->cur_done),
                              (unsigned long long)t->nbytes);
    }
    if (nbytes && !data) return lode_error_set(err, LODE_ERR_INVALID_ARG, "safetensors writer: NULL data");
    if (nbytes && fwrite(data, 1, nbytes, w->f) != nbytes) return sw_io(w, err);
    w->cur_done += nbytes;
    if (w->cur_done == t->nbytes) {
        w->cur++;
        w->cur_done = 0;
        sw_skip_empty(w);
    }
    return LODE_OK;
}

lode_status lode_st_writer_finish(lode_st_writer *w, lode_error *err) {
    if (!w) return lode_error_set(err, LODE_ERR_INVALID_ARG, "safetensors writer: NULL writer");
    if (w->state != SW_DATA)
        return lode_error_set(err, LODE_ERR_STATE, "%s: safetensors writer: finish without a successful begin",
                              w->path ? w->path : "(safetensors)");
    if (w->cur < w->n_t) {
        w->state = SW_FAILED;
        return lode_error_set(err, LODE_ERR_STATE, "%s: tensor '%s': only %llu of %llu bytes written at finish",
                              w->path, w->t[w->cur].name, (unsigned long long)w->cur_done,
                              (unsigned long long)w->t[w->cur].nbytes);
    }
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) return sw_io(w, err);
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) {
        unlink(w->tmp);
        return sw_io(w, err);
    }
    if (rename(w->tmp, w->path) != 0) {
        int e = errno;
        unlink(w->tmp);
        w->state = SW_FAILED;
        return lode_error_set(err, LODE_ERR_IO, "%s: cannot rename from %s: %s", w->path, w->tmp, strerror(e));
    }
    w->state = SW_DONE;
    return LODE_OK;
}
