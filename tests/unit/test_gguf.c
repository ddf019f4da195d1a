/*
 * test_gguf.c — GGUF reader/writer: writer→reader round trip, and a hostile
 * file suite built with an independent byte-level builder (not the writer),
 * so a bug shared by both sides cannot hide. Every malformed file must fail
 * with LODE_ERR_FORMAT and a message naming the file (and the key/tensor).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lode_gguf.h"

// ---- helpers ---------------------------------------------------------------------

static char g_dir[64];

static void make_dir(void) {
    strcpy(g_dir, "/tmp/lode_gguf_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
}

static void rm_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) cr_log_warn("cleanup of %s failed", g_dir);
}

static void tmp_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_dir, name); }

TestSuite(gguf, .init = make_dir, .fini = rm_dir, .timeout = 120);

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_strn(buf *b, const char *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}
static void put_str(buf *b, const char *s) { put_strn(b, s, strlen(s)); }
static void pad_to(buf *b, size_t a) {
    static const uint8_t z[256];
    while (b->n % a) put(b, z, 1);
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    if (n) cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* A tensor info as the builder emits it (fields may be hostile). */
typedef struct tinfo {
    const char *name;
    size_t name_len; /* 0: strlen(name) */
    uint32_t n_dims;
    uint64_t ne[5];
    uint32_t type;
    uint64_t offset;
} tinfo;

typedef void (*kv_fn)(buf *b);

/* Default kvs: 3 pairs (string, u32, string array). */
static void kv_default(buf *b) {
    put_str(b, "general.architecture");
    put_u32(b, LODE_GGUF_STRING);
    put_str(b, "test");
    put_str(b, "test.n");
    put_u32(b, LODE_GGUF_UINT32);
    put_u32(b, 7);
    put_str(b, "tokenizer.ggml.tokens");
    put_u32(b, LODE_GGUF_ARRAY);
    put_u32(b, LODE_GGUF_STRING);
    put_u64(b, 3);
    put_str(b, "a");
    put_str(b, "");
    put_str(b, "ccc");
}

/* File = header + kvs + tensor infos + padding to `align` + data_bytes of a
 * byte pattern. n_kv / n_t are written as given (may lie). */
static void build(buf *b, uint32_t version, uint64_t n_kv, kv_fn kvs, uint64_t n_t, const tinfo *t, size_t nt,
                  size_t align, size_t data_bytes) {
    b->n = 0;
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_t);
    put_u64(b, n_kv);
    if (kvs) kvs(b);
    for (size_t i = 0; i < nt; i++) {
        size_t nl = t[i].name_len ? t[i].name_len : strlen(t[i].name);
        if (nl > 4096) put_u64(b, nl); /* hostile length: the bytes are not there */
        else put_strn(b, t[i].name, nl);
        put_u32(b, t[i].n_dims);
        for (uint32_t d = 0; d < t[i].n_dims && d < 5; d++) put_u64(b, t[i].ne[d]);
        put_u32(b, t[i].type);
        put_u64(b, t[i].offset);
    }
    pad_to(b, align);
    for (size_t i = 0; i < data_bytes; i++) {
        uint8_t c = (uint8_t)(i * 7 + 1);
        put(b, &c, 1);
    }
}

/* Valid default: "a" f32 [4] at 0 (16 B), "b" f16 [8, 2] at 32 (32 B). */
static const tinfo k_valid_t[2] = {
    {"a", 0, 1, {4}, LODE_TYPE_F32, 0},
    {"b", 0, 2, {8, 2}, LODE_TYPE_F16, 32},
};

static void build_valid(buf *b) { build(b, 3, 3, kv_default, 2, k_valid_t, 2, 32, 64); }

/* Open `b` as a file; expect LODE_ERR_FORMAT naming the path and `needle`. */
static void expect_format(const buf *b, const char *needle) {
    char path[128];
    tmp_path(path, sizeof path, "bad.gguf");
    write_file(path, b->p, b->n);
    lode_gguf *g = (lode_gguf *)0x1;
    lode_error err = {0};
    lode_status s = lode_gguf_open(path, &g, &err);
    cr_assert_eq(s, LODE_ERR_FORMAT, "status %s, msg: %s", lode_status_name(s), err.text);
    cr_assert_null(g);
    cr_assert_eq(err.status, LODE_ERR_FORMAT);
    cr_assert(strstr(err.text, path), "message lacks the path: %s", err.text);
    if (needle) cr_assert(strstr(err.text, needle), "message lacks '%s': %s", needle, err.text);
}

static lode_gguf *open_ok(const buf *b) {
    char path[128];
    tmp_path(path, sizeof path, "ok.gguf");
    write_file(path, b->p, b->n);
    lode_gguf *g = NULL;
    lode_error err = {0};
    lode_status s = lode_gguf_open(path, &g, &err);
    cr_assert_eq(s, LODE_OK, "%s", err.text);
    return g;
}

// ---- allocation failure ------------------------------------------------------------

static long g_fail_after, g_allocs;
static void *fail_malloc(size_t n) { return g_allocs++ >= g_fail_after ? NULL : malloc(n); }
static void *fail_calloc(size_t n, size_t k) { return g_allocs++ >= g_fail_after ? NULL : calloc(n, k); }
static void *fail_realloc(void *p, size_t n) { return g_allocs++ >= g_fail_after ? NULL : realloc(p, n); }
static const lode_alloc_hooks k_fail_hooks = {fail_malloc, fail_calloc, fail_realloc, free};

// ---- writer → reader round trip ------------------------------------------------------

Test(gguf, roundtrip_all_kv_types_and_tensors) {
    char path[128];
    tmp_path(path, sizeof path, "rt.gguf");
    lode_gguf_writer *w = lode_gguf_writer_new();
    lode_gguf_writer_set_str(w, "general.architecture", "deepseek2");
    lode_gguf_writer_set_u32(w, "k.u32", 4000000000u);
    lode_gguf_writer_set_i32(w, "k.i32", -5);
    lode_gguf_writer_set_u64(w, "k.u64", 1ull << 40);
    lode_gguf_writer_set_f32(w, "k.f32", 1.5f);
    lode_gguf_writer_set_bool(w, "k.bool", true);
    const char *toks[] = {"hello", "", "wörld", "\xff\xfe raw bytes"};
    lode_gguf_writer_set_arr_str(w, "k.arr_str", toks, 4);
    int32_t iv[] = {1, -2, 3};
    lode_gguf_writer_set_arr_i32(w, "k.arr_i32", iv, 3);
    float fv[] = {0.25f, -8.0f};
    lode_gguf_writer_set_arr_f32(w, "k.arr_f32", fv, 2);
    lode_gguf_writer_set_arr_i32(w, "k.empty", NULL, 0);
    lode_gguf_writer_set_u32(w, "k.i32", 9); /* replaces, keeps position */

    struct {
        const char *name;
        lode_type type;
        int n_dims;
        int64_t ne[4];
        size_t nbytes;
    } ts[] = {
        {"t.f32", LODE_TYPE_F32, 1, {7}, 28},
        {"t.f16", LODE_TYPE_F16, 2, {8, 3}, 48},
        {"t.q8_0", LODE_TYPE_Q8_0, 2, {64, 2}, 2 * 2 * 34},
        {"t.q4_k", LODE_TYPE_Q4_K, 3, {256, 1, 2}, 2 * 144},
        {"t.bf16", LODE_TYPE_BF16, 4, {2, 3, 4, 5}, 240},
        {"t.q6_k", LODE_TYPE_Q6_K, 2, {512, 3}, 6 * 210},
    };
    size_t nts = sizeof ts / sizeof ts[0];
    lode_error err = {0};
    for (size_t i = 0; i < nts; i++)
        cr_assert_eq(lode_gguf_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, &err), LODE_OK,
                     "%s", err.text);
    cr_assert_eq(lode_gguf_writer_begin(w, path, &err), LODE_OK, "%s", err.text);
    for (size_t i = 0; i < nts; i++) {
        uint8_t *d = malloc(ts[i].nbytes);
        for (size_t k = 0; k < ts[i].nbytes; k++) d[k] = (uint8_t)(k * 31 + i);
        /* Odd tensors in three chunks (one empty) to exercise chunking. */
        if (i % 2) {
            size_t h = ts[i].nbytes / 3;
            cr_assert_eq(lode_gguf_writer_write_data(w, d, h, &err), LODE_OK, "%s", err.text);
            cr_assert_eq(lode_gguf_writer_write_data(w, d + h, 0, &err), LODE_OK, "%s", err.text);
            cr_assert_eq(lode_gguf_writer_write_data(w, d + h, ts[i].nbytes - h, &err), LODE_OK, "%s", err.text);
        } else {
            cr_assert_eq(lode_gguf_writer_write_data(w, d, ts[i].nbytes, &err), LODE_OK, "%s", err.text);
        }
        free(d);
    }
    cr_assert_eq(lode_gguf_writer_finish(w, &err), LODE_OK, "%s", err.text);
    lode_gguf_writer_free(w);

    lode_gguf *g = NULL;
    cr_assert_eq(lode_gguf_open(path, &g, &err), LODE_OK, "%s", err.text);
    cr_assert_eq(lode_gguf_version(g), 3);
    cr_assert_eq(lode_gguf_alignment(g), 32);
    cr_assert_str_eq(lode_gguf_path(g), path);
    cr_assert_eq(lode_gguf_n_kv(g), 10);
    const char *order[] = {"general.architecture", "k.u32", "k.i32", "k.u64", "k.f32",
                           "k.bool", "k.arr_str", "k.arr_i32", "k.arr_f32", "k.empty"};
    for (int i = 0; i < 10; i++) {
        cr_assert_str_eq(lode_gguf_kv_key(g, i), order[i]);
        cr_assert_eq(lode_gguf_find_key(g, order[i]), i);
    }
    cr_assert_eq(lode_gguf_kv_type(g, 2), LODE_GGUF_UINT32);
    cr_assert_eq(lode_gguf_find_key(g, "nope"), -1);
    cr_assert_null(lode_gguf_kv_key(g, 10));
    cr_assert_null(lode_gguf_kv_key(g, -1));

    const char *s;
    uint64_t len, u64;
    uint32_t u32;
    int64_t i64;
    float f;
    bool b;
    cr_assert_eq(lode_gguf_get_str(g, "general.architecture", &s, &len, NULL), LODE_OK);
    cr_assert_eq(len, 9);
    cr_assert(memcmp(s, "deepseek2", 9) == 0);
    cr_assert_eq(lode_gguf_get_u32(g, "k.u32", &u32, NULL), LODE_OK);
    cr_assert_eq(u32, 4000000000u);
    cr_assert_eq(lode_gguf_get_u64(g, "k.u32", &u64, NULL), LODE_OK);
    cr_assert_eq(u64, 4000000000u);
    cr_assert_eq(lode_gguf_get_i64(g, "k.u32", &i64, NULL), LODE_OK);
    cr_assert_eq(i64, 4000000000ll);
    cr_assert_eq(lode_gguf_get_u32(g, "k.i32", &u32, NULL), LODE_OK);
    cr_assert_eq(u32, 9);
    cr_assert_eq(lode_gguf_get_u64(g, "k.u64", &u64, NULL), LODE_OK);
    cr_assert_eq(u64, 1ull << 40);
    lode_error e2 = {0};
    cr_assert_eq(lode_gguf_get_u32(g, "k.u64", &u32, &e2), LODE_ERR_FORMAT); /* does not fit */
    cr_assert(strstr(e2.text, "k.u64") && strstr(e2.text, path), "%s", e2.text);
    cr_assert_eq(lode_gguf_get_f32(g, "k.f32", &f, NULL), LODE_OK);
    cr_assert_float_eq(f, 1.5f, 0);
    cr_assert_eq(lode_gguf_get_bool(g, "k.bool", &b, NULL), LODE_OK);
    cr_assert(b);
    lode_error e3 = {0};
    cr_assert_eq(lode_gguf_get_bool(g, "k.u32", &b, &e3), LODE_ERR_FORMAT);
    cr_assert(strstr(e3.text, "k.u32"), "%s", e3.text);
    cr_assert_eq(lode_gguf_get_f32(g, "k.u32", &f, NULL), LODE_ERR_FORMAT);
    cr_assert_eq(lode_gguf_get_u32(g, "k.f32", &u32, NULL), LODE_ERR_FORMAT);
    cr_assert_eq(lode_gguf_get_str(g, "k.u32", &s, &len, NULL), LODE_ERR_FORMAT);
    lode_error e4 = {0};
    cr_assert_eq(lode_gguf_get_u32(g, "missing.key", &u32, &e4), LODE_ERR_NOT_FOUND);
    cr_assert(strstr(e4.text, "missing.key"), "%s", e4.text);

    lode_gguf_vtype et;
    uint64_t n;
    cr_assert_eq(lode_gguf_get_arr(g, "k.arr_str", &et, &n, NULL), LODE_OK);
    cr_assert_eq(et, LODE_GGUF_STRING);
    cr_assert_eq(n, 4);
    int64_t ki = lode_gguf_find_key(g, "k.arr_str");
    for (uint64_t i = 0; i < 4; i++) {
        cr_assert_eq(lode_gguf_arr_str(g, ki, i, &s, &len), LODE_OK);
        cr_assert_eq(len, strlen(toks[i]));
        cr_assert(memcmp(s, toks[i], len) == 0);
    }
    cr_assert_eq(lode_gguf_arr_str(g, ki, 4, &s, &len), LODE_ERR_RANGE);
    cr_assert_neq(lode_gguf_arr_str(g, lode_gguf_find_key(g, "k.arr_i32"), 0, &s, &len), LODE_OK);
    cr_assert_eq(lode_gguf_get_arr(g, "k.arr_i32", &et, &n, NULL), LODE_OK);
    cr_assert_eq(et, LODE_GGUF_INT32);
    cr_assert_eq(n, 3);
    int32_t iv2[3];
    memcpy(iv2, lode_gguf_arr_data(g, lode_gguf_find_key(g, "k.arr_i32")), sizeof iv2);
    cr_assert(memcmp(iv, iv2, sizeof iv) == 0);
    float fv2[2];
    memcpy(fv2, lode_gguf_arr_data(g, lode_gguf_find_key(g, "k.arr_f32")), sizeof fv2);
    cr_assert(memcmp(fv, fv2, sizeof fv) == 0);
    cr_assert_eq(lode_gguf_get_arr(g, "k.empty", &et, &n, NULL), LODE_OK);
    cr_assert_eq(n, 0);
    cr_assert_null(lode_gguf_arr_data(g, lode_gguf_find_key(g, "k.u32")));

    cr_assert_eq(lode_gguf_n_tensors(g), (int64_t)nts);
    for (size_t i = 0; i < nts; i++) {
        const lode_tensor *t = lode_gguf_find_tensor(g, ts[i].name);
        cr_assert_not_null(t, "%s", ts[i].name);
        cr_assert_eq(t, lode_gguf_tensor(g, (int64_t)i));
        cr_assert_str_eq(t->name, ts[i].name);
        cr_assert_eq(t->type, ts[i].type);
        cr_assert_eq(t->n_dims, ts[i].n_dims);
        for (int d = 0; d < 4; d++) cr_assert_eq(t->ne[d], d < ts[i].n_dims ? ts[i].ne[d] : 1);
        cr_assert_eq(t->nbytes, ts[i].nbytes);
        cr_assert_eq((uintptr_t)t->data % 32, 0, "tensor data aligned (mmap is page aligned)");
        const uint8_t *d = t->data;
        for (size_t k = 0; k < ts[i].nbytes; k++) cr_assert_eq(d[k], (uint8_t)(k * 31 + i));
    }
    cr_assert_null(lode_gguf_find_tensor(g, "t.none"));
    cr_assert_null(lode_gguf_tensor(g, (int64_t)nts));
    lode_gguf_free(g);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_size % 32, 0, "file padded to the alignment");
}

Test(gguf, custom_alignment_and_empty_file) {
    char path[128];
    tmp_path(path, sizeof path, "al.gguf");
    lode_gguf_writer *w = lode_gguf_writer_new();
    lode_gguf_writer_set_alignment(w, 256);
    lode_gguf_writer_set_str(w, "general.name", "x");
    lode_error err = {0};
    int64_t ne1[] = {3}, ne2[] = {5};
    cr_assert_eq(lode_gguf_writer_add_tensor(w, "x", LODE_TYPE_F32, 1, ne1, &err), LODE_OK);
    cr_assert_eq(lode_gguf_writer_add_tensor(w, "y", LODE_TYPE_I8, 1, ne2, &err), LODE_OK);
    cr_assert_eq(lode_gguf_writer_begin(w, path, &err), LODE_OK, "%s", err.text);
    uint8_t d[12] = {1, 2, 3};
    cr_assert_eq(lode_gguf_writer_write_data(w, d, 12, &err), LODE_OK);
    cr_assert_eq(lode_gguf_writer_write_data(w, d, 5, &err), LODE_OK);
    cr_assert_eq(lode_gguf_writer_finish(w, &err), LODE_OK, "%s", err.text);
    lode_gguf_writer_free(w);
    lode_gguf *g = NULL;
    cr_assert_eq(lode_gguf_open(path, &g, &err), LODE_OK, "%s", err.text);
    cr_assert_eq(lode_gguf_alignment(g), 256);
    uint32_t a;
    cr_assert_eq(lode_gguf_get_u32(g, "general.alignment", &a, NULL), LODE_OK);
    cr_assert_eq(a, 256);
    cr_assert_eq((uintptr_t)lode_gguf_find_tensor(g, "y")->data % 256, 0);
    lode_gguf_free(g);

    /* No tensors, no keys: a valid (if useless) file. */
    w = lode_gguf_writer_new();
    cr_assert_eq(lode_gguf_writer_begin(w, path, &err), LODE_OK);
    cr_assert_eq(lode_gguf_writer_finish(w, &err), LODE_OK);
    lode_gguf_writer_free(w);
    cr_assert_eq(lode_gguf_open(path, &g, &err), LODE_OK, "%s", err.text);
    cr_assert_eq(lode_gguf_n_tensors(g), 0);
    cr_assert_eq(lode_gguf_n_kv(g), 0);
    lode_gguf_free(g);
}

Test(gguf, writer_misuse) {
    char path[128];
    tmp_path(path, sizeof path, "bad_w.gguf");
    lode_error err = {0};
    lode_gguf_writer *w = lode_gguf_writer_new();
    int64_t ne[] = {32, 2}, bad0[] = {33}, neg[] = {-1};
    cr_assert_eq(lode_gguf_writer_add_tensor(w, "q", LODE_TYPE_Q8_0, 2, ne, &err), LODE_OK);
    lode_error_clear(&err);
    cr_assert_neq(lode_gguf_writer_add_tensor(w, "q", LODE_TYPE_F32, 2, ne, &err), LODE_OK);
    cr_assert(strstr(err.text, "'q'"), "%s", err.text);
    lode_error_clear(&err);
    cr_assert_neq(lode_gguf_writer_add_tensor(w, "r", LODE_TYPE_Q8_0, 1, bad0, &err), LODE_OK);
    cr_assert(strstr(err.text, "'r'"), "%s", err.text);
    cr_assert_neq(lode_gguf_writer_add_tensor(w, "r", LODE_TYPE_F32, 1, neg, NULL), LODE_OK);
    cr_assert_neq(lode_gguf_writer_add_tensor(w, "r", LODE_TYPE_F32, 0, ne, NULL), LODE_OK);
    cr_assert_neq(lode_gguf_writer_add_tensor(w, "r", LODE_TYPE_F32, 5, ne, NULL), LODE_OK);
    cr_assert_neq(lode_gguf_writer_add_tensor(w, "r", (lode_type)4, 1, ne, NULL), LODE_OK);
    cr_assert_neq(lode_gguf_writer_add_tensor(w, "", LODE_TYPE_F32, 1, ne, NULL), LODE_OK);
    cr_assert_neq(lode_gguf_writer_add_tensor(w, "\xc3(", LODE_TYPE_F32, 1, ne, NULL), LODE_OK);
    cr_assert_eq(lode_gguf_writer_add_tensor(w, "f", LODE_TYPE_F32, 1, ne, NULL), LODE_OK);
    cr_assert_eq(lode_gguf_writer_write_data(w, "x", 1, NULL), LODE_ERR_STATE); /* before begin */
    cr_assert_eq(lode_gguf_writer_begin(w, path, NULL), LODE_OK);
    cr_assert_neq(lode_gguf_writer_add_tensor(w, "late", LODE_TYPE_F32, 1, ne, NULL), LODE_OK);
    uint8_t d[200] = {0};
    cr_assert_eq(lode_gguf_writer_write_data(w, d, 68, NULL), LODE_OK); /* q: 2 rows × 34 */
    lode_error_clear(&err);
    cr_assert_eq(lode_gguf_writer_write_data(w, d, 129, &err), LODE_ERR_INVALID_ARG); /* f: 128 */
    cr_assert(strstr(err.text, "'f'") && strstr(err.text, path), "%s", err.text);
    cr_assert_neq(lode_gguf_writer_finish(w, NULL), LODE_OK);
    lode_gguf_writer_free(w);
    cr_assert_neq(access(path, F_OK), 0, "no output under the final name after a failure");
    char partial[160];
    snprintf(partial, sizeof partial, "%s.partial", path);
    cr_assert_neq(access(partial, F_OK), 0, "partial file removed");

    /* Finish with a tensor short. */
    w = lode_gguf_writer_new();
    cr_assert_eq(lode_gguf_writer_add_tensor(w, "f", LODE_TYPE_F32, 1, ne, NULL), LODE_OK);
    cr_assert_eq(lode_gguf_writer_begin(w, path, NULL), LODE_OK);
    cr_assert_eq(lode_gguf_writer_write_data(w, d, 100, NULL), LODE_OK);
    lode_error_clear(&err);
    cr_assert_eq(lode_gguf_writer_finish(w, &err), LODE_ERR_STATE);
    cr_assert(strstr(err.text, "'f'"), "%s", err.text);
    lode_gguf_writer_free(w);
    cr_assert_neq(access(path, F_OK), 0);

    /* Bad alignment / bad key are reported at begin. */
    w = lode_gguf_writer_new();
    lode_gguf_writer_set_alignment(w, 48);
    cr_assert_neq(lode_gguf_writer_begin(w, path, NULL), LODE_OK);
    lode_gguf_writer_free(w);
    w = lode_gguf_writer_new();
    lode_gguf_writer_set_u32(w, "", 1);
    cr_assert_neq(lode_gguf_writer_begin(w, path, NULL), LODE_OK);
    lode_gguf_writer_free(w);
    /* Unwritable destination. */
    w = lode_gguf_writer_new();
    lode_error_clear(&err);
    cr_assert_eq(lode_gguf_writer_begin(w, "/nonexistent-dir/x.gguf", &err), LODE_ERR_IO);
    lode_gguf_writer_free(w);
    lode_gguf_writer_free(NULL);
}

// ---- hand-built files --------------------------------------------------------------

Test(gguf, hand_built_valid_file) {
    buf b = {0};
    build_valid(&b);
    lode_gguf *g = open_ok(&b);
    cr_assert_eq(lode_gguf_n_kv(g), 3);
    cr_assert_eq(lode_gguf_n_tensors(g), 2);
    const lode_tensor *t = lode_gguf_find_tensor(g, "b");
    cr_assert_eq(t->ne[0], 8);
    cr_assert_eq(t->ne[1], 2);
    cr_assert_eq(t->nbytes, 32);
    cr_assert_eq(((const uint8_t *)t->data)[0], (uint8_t)(32 * 7 + 1));
    const char *s;
    uint64_t len;
    cr_assert_eq(lode_gguf_arr_str(g, 2, 2, &s, &len), LODE_OK);
    cr_assert_eq(len, 3);
    cr_assert(memcmp(s, "ccc", 3) == 0);
    lode_gguf_free(g);
    /* v2 has the same layout. */
    build(&b, 2, 3, kv_default, 2, k_valid_t, 2, 32, 64);
    g = open_ok(&b);
    cr_assert_eq(lode_gguf_version(g), 2);
    lode_gguf_free(g);
    free(b.p);
}

Test(gguf, truncation_at_every_offset) {
    buf b = {0};
    build_valid(&b);
    char path[128];
    tmp_path(path, sizeof path, "trunc.gguf");
    for (size_t n = 0; n < b.n; n++) {
        write_file(path, b.p, n);
        lode_gguf *g = NULL;
        lode_error err = {0};
        lode_status s = lode_gguf_open(path, &g, &err);
        cr_assert_eq(s, LODE_ERR_FORMAT, "prefix %zu of %zu: %s (%s)", n, b.n, lode_status_name(s), err.text);
        cr_assert_null(g);
        cr_assert(strstr(err.text, path), "%s", err.text);
    }
    free(b.p);
}

/* Flip 1..4 random bytes of the valid file; the reader may accept or reject
 * the result but must never crash, and rejections are FORMAT with the path. */
Test(gguf, random_byte_flips) {
    buf b = {0};
    build_valid(&b);
    char path[128];
    tmp_path(path, sizeof path, "flip.gguf");
    uint8_t *copy = malloc(b.n);
    unsigned seed = 12345;
    int ok = 0, bad = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(copy, b.p, b.n);
        int nflip = 1 + rand_r(&seed) % 4;
        for (int k = 0; k < nflip; k++) {
            size_t at = (size_t)rand_r(&seed) % b.n;
            copy[at] = rand_r(&seed) % 3 == 0 ? (uint8_t)rand_r(&seed) : copy[at] ^ (uint8_t)(1u << (rand_r(&seed) % 8));
        }
        write_file(path, copy, b.n);
        lode_gguf *g = NULL;
        lode_error err = {0};
        lode_status s = lode_gguf_open(path, &g, &err);
        if (s == LODE_OK) {
            /* Touch everything the accessors expose. */
            for (int64_t i = 0; i < lode_gguf_n_kv(g); i++) {
                const char *str;
                uint64_t len, n = 0;
                lode_gguf_vtype et;
                cr_assert_not_null(lode_gguf_kv_key(g, i));
                if (lode_gguf_get_arr(g, lode_gguf_kv_key(g, i), &et, &n, NULL) == LODE_OK && et == LODE_GGUF_STRING)
                    for (uint64_t j = 0; j < n; j++) cr_assert_eq(lode_gguf_arr_str(g, i, j, &str, &len), LODE_OK);
            }
            for (int64_t i = 0; i < lode_gguf_n_tensors(g); i++) {
                const lode_tensor *t = lode_gguf_tensor(g, i);
                volatile uint8_t sink = 0;
                for (size_t k = 0; k < t->nbytes; k++) sink ^= ((const uint8_t *)t->data)[k];
                (void)sink;
            }
            lode_gguf_free(g);
            ok++;
        } else {
            cr_assert_eq(s, LODE_ERR_FORMAT, "iteration %d: %s", it, err.text);
            cr_assert(strstr(err.text, path), "%s", err.text);
            bad++;
        }
    }
    cr_log_info("byte flips: %d accepted, %d rejected", ok, bad);
    cr_assert_gt(bad, 100);
    free(copy);
    free(b.p);
}

Test(gguf, bad_magic_and_versions) {
    buf b = {0};
    build_valid(&b);
    b.p[0] = 'X';
    expect_format(&b, "magic");
    build(&b, 1, 3, kv_default, 2, k_valid_t, 2, 32, 64);
    expect_format(&b, "version 1");
    build(&b, 4, 3, kv_default, 2, k_valid_t, 2, 32, 64);
    expect_format(&b, "version 4");
    build(&b, 0x03000000u, 3, kv_default, 2, k_valid_t, 2, 32, 64);
    expect_format(&b, "big-endian");
    free(b.p);
}

Test(gguf, huge_counts) {
    buf b = {0};
    build(&b, 3, 3, kv_default, 1ull << 63, k_valid_t, 2, 32, 64);
    expect_format(&b, "tensor count");
    build(&b, 3, 1ull << 63, kv_default, 2, k_valid_t, 2, 32, 64);
    expect_format(&b, "key count");
    build(&b, 3, UINT64_MAX, kv_default, UINT64_MAX, k_valid_t, 2, 32, 64);
    expect_format(&b, NULL);
    /* More kvs claimed than present (within the plausible bound). */
    build(&b, 3, 4, kv_default, 2, k_valid_t, 2, 32, 64);
    expect_format(&b, NULL);
    free(b.p);
}

static void kv_huge_key_len(buf *b) { put_u64(b, 1ull << 62); }
static void kv_huge_str_len(buf *b) {
    put_str(b, "big.str");
    put_u32(b, LODE_GGUF_STRING);
    put_u64(b, 1ull << 62);
}
static void kv_huge_arr(buf *b) {
    put_str(b, "big.arr");
    put_u32(b, LODE_GGUF_ARRAY);
    put_u32(b, LODE_GGUF_UINT64);
    put_u64(b, 1ull << 62);
}
static void kv_huge_str_arr(buf *b) {
    put_str(b, "big.strs");
    put_u32(b, LODE_GGUF_ARRAY);
    put_u32(b, LODE_GGUF_STRING);
    put_u64(b, 1ull << 62);
}
static void kv_huge_arr_elem(buf *b) {
    put_str(b, "big.elem");
    put_u32(b, LODE_GGUF_ARRAY);
    put_u32(b, LODE_GGUF_STRING);
    put_u64(b, 2);
    put_str(b, "ok");
    put_u64(b, 1ull << 62);
}

Test(gguf, huge_lengths) {
    buf b = {0};
    build(&b, 3, 1, kv_huge_key_len, 0, NULL, 0, 32, 0);
    expect_format(&b, "key #0");
    build(&b, 3, 1, kv_huge_str_len, 0, NULL, 0, 32, 0);
    expect_format(&b, "big.str");
    build(&b, 3, 1, kv_huge_arr, 0, NULL, 0, 32, 0);
    expect_format(&b, "big.arr");
    build(&b, 3, 1, kv_huge_str_arr, 0, NULL, 0, 32, 0);
    expect_format(&b, "big.strs");
    build(&b, 3, 1, kv_huge_arr_elem, 0, NULL, 0, 32, 0);
    expect_format(&b, "big.elem");
    tinfo t = {"x", 1ull << 62, 1, {4}, 0, 0};
    build(&b, 3, 0, NULL, 1, &t, 1, 32, 16);
    expect_format(&b, "tensor #0");
    free(b.p);
}

static uint32_t g_align_val;
static uint32_t g_align_type;
static void kv_align(buf *b) {
    put_str(b, "general.alignment");
    put_u32(b, g_align_type);
    if (g_align_type == LODE_GGUF_UINT64) put_u64(b, g_align_val);
    else put_u32(b, g_align_val);
}

Test(gguf, alignment_key) {
    buf b = {0};
    tinfo t[2] = {{"a", 0, 1, {4}, 0, 0}, {"b", 0, 1, {4}, 0, 64}};
    g_align_type = LODE_GGUF_UINT32;
    g_align_val = 64;
    build(&b, 3, 1, kv_align, 2, t, 2, 64, 80);
    lode_gguf *g = open_ok(&b);
    cr_assert_eq(lode_gguf_alignment(g), 64);
    lode_gguf_free(g);
    g_align_val = 0;
    build(&b, 3, 1, kv_align, 2, t, 2, 64, 80);
    expect_format(&b, "general.alignment");
    g_align_val = 48;
    build(&b, 3, 1, kv_align, 2, t, 2, 64, 80);
    expect_format(&b, "general.alignment");
    g_align_type = LODE_GGUF_UINT64;
    g_align_val = 64;
    build(&b, 3, 1, kv_align, 2, t, 2, 64, 80);
    expect_format(&b, "general.alignment");
    /* Offset 32 is fine at the default alignment but not at 64. */
    g_align_type = LODE_GGUF_UINT32;
    t[1].offset = 32;
    build(&b, 3, 1, kv_align, 2, t, 2, 64, 80);
    expect_format(&b, "'b'");
    free(b.p);
}

Test(gguf, tensor_placement) {
    buf b = {0};
    tinfo t[2] = {{"a", 0, 1, {4}, 0, 0}, {"b", 0, 2, {8, 2}, 1, 32}};
    t[1].offset = 8; /* misaligned */
    build(&b, 3, 0, NULL, 2, t, 2, 32, 64);
    expect_format(&b, "'b'");
    t[1].offset = 0; /* overlaps "a" */
    build(&b, 3, 0, NULL, 2, t, 2, 32, 64);
    expect_format(&b, "overlaps");
    t[0].ne[0] = 16; /* "a" now 64 bytes at 0, "b" at 32 */
    t[1].offset = 32;
    build(&b, 3, 0, NULL, 2, t, 2, 32, 96);
    expect_format(&b, "overlaps");
    t[0].ne[0] = 4;
    t[1].offset = 64; /* past the end of the 64-byte data area */
    build(&b, 3, 0, NULL, 2, t, 2, 32, 64);
    expect_format(&b, "'b'");
    t[1].offset = UINT64_MAX - 31; /* aligned, wraps when added */
    build(&b, 3, 0, NULL, 2, t, 2, 32, 64);
    expect_format(&b, "'b'");
    free(b.p);
}

Test(gguf, tensor_shapes_and_types) {
    buf b = {0};
    tinfo t = {"w", 0, 0, {4}, 0, 0};
    build(&b, 3, 0, NULL, 1, &t, 1, 32, 64);
    expect_format(&b, "'w'"); /* n_dims 0 */
    t.n_dims = 5;
    t.ne[1] = t.ne[2] = t.ne[3] = t.ne[4] = 1;
    build(&b, 3, 0, NULL, 1, &t, 1, 32, 64);
    expect_format(&b, "n_dims");
    t.n_dims = 2;
    t.ne[1] = (uint64_t)-3; /* negative */
    build(&b, 3, 0, NULL, 1, &t, 1, 32, 64);
    expect_format(&b, "'w'");
    t.ne[1] = 0;
    build(&b, 3, 0, NULL, 1, &t, 1, 32, 64);
    expect_format(&b, "'w'");
    t.ne[0] = 1ull << 40;
    t.ne[1] = 1ull << 40; /* product overflows */
    build(&b, 3, 0, NULL, 1, &t, 1, 32, 64);
    expect_format(&b, "overflow");
    t.ne[0] = 4;
    t.ne[1] = 1;
    t.type = 4; /* removed Q4_2 */
    build(&b, 3, 0, NULL, 1, &t, 1, 32, 64);
    expect_format(&b, "unknown type");
    t.type = 1000;
    build(&b, 3, 0, NULL, 1, &t, 1, 32, 64);
    expect_format(&b, "unknown type");
    t.type = LODE_TYPE_Q4_0; /* ne[0] = 4 is not a multiple of 32 */
    build(&b, 3, 0, NULL, 1, &t, 1, 32, 64);
    expect_format(&b, "block size");
    /* Known types the engine may not compute with still open (IQ4_NL = 20). */
    t.type = 20;
    t.ne[0] = 32;
    build(&b, 3, 0, NULL, 1, &t, 1, 32, 64);
    lode_gguf *g = open_ok(&b);
    cr_assert_eq(lode_gguf_tensor(g, 0)->nbytes, 18);
    lode_gguf_free(g);
    free(b.p);
}

Test(gguf, tensor_names) {
    buf b = {0};
    tinfo t[2] = {{"a", 0, 1, {4}, 0, 0}, {"a", 0, 1, {4}, 0, 32}};
    build(&b, 3, 0, NULL, 2, t, 2, 32, 64);
    expect_format(&b, "'a' appears twice");
    t[1].name = "b\xff";
    build(&b, 3, 0, NULL, 2, t, 2, 32, 64);
    expect_format(&b, "UTF-8");
    t[1].name = "b\0c";
    t[1].name_len = 3;
    build(&b, 3, 0, NULL, 2, t, 2, 32, 64);
    expect_format(&b, "NUL");
    t[1].name = "\xed\xa0\x80"; /* UTF-16 surrogate */
    t[1].name_len = 0;
    build(&b, 3, 0, NULL, 2, t, 2, 32, 64);
    expect_format(&b, "UTF-8");
    t[1].name = "\xc0\xaf"; /* overlong '/' */
    build(&b, 3, 0, NULL, 2, t, 2, 32, 64);
    expect_format(&b, "UTF-8");
    t[1].name = "";
    build(&b, 3, 0, NULL, 2, t, 2, 32, 64);
    expect_format(&b, "empty");
    t[1].name = "blk.0.ffn_\xe2\x86\x92.weight"; /* valid multibyte is fine */
    build(&b, 3, 0, NULL, 2, t, 2, 32, 64);
    lode_gguf *g = open_ok(&b);
    cr_assert_not_null(lode_gguf_find_tensor(g, "blk.0.ffn_\xe2\x86\x92.weight"));
    lode_gguf_free(g);
    free(b.p);
}

static void kv_dup(buf *b) {
    for (int i = 0; i < 2; i++) {
        put_str(b, "dup.key");
        put_u32(b, LODE_GGUF_UINT8);
        uint8_t v = 1;
        put(b, &v, 1);
    }
}
static void kv_bad_utf8(buf *b) {
    put_str(b, "bad\xc3");
    put_u32(b, LODE_GGUF_UINT8);
    put(b, "", 1);
}
static void kv_nul(buf *b) {
    put_strn(b, "has\0nul", 7);
    put_u32(b, LODE_GGUF_UINT8);
    put(b, "", 1);
}
static void kv_bad_type(buf *b) {
    put_str(b, "odd.type");
    put_u32(b, 13);
    put_u32(b, 0);
}
static void kv_bad_elem(buf *b) {
    put_str(b, "odd.elem");
    put_u32(b, LODE_GGUF_ARRAY);
    put_u32(b, 77);
    put_u64(b, 1);
    put_u32(b, 0);
}
static void kv_bad_bool(buf *b) {
    put_str(b, "odd.bool");
    put_u32(b, LODE_GGUF_BOOL);
    uint8_t v = 2;
    put(b, &v, 1);
}
static int g_depth;
static void kv_nested(buf *b) {
    put_str(b, "nested");
    put_u32(b, LODE_GGUF_ARRAY);
    for (int i = 0; i < g_depth; i++) {
        put_u32(b, LODE_GGUF_ARRAY);
        put_u64(b, 1);
    }
    put_u32(b, LODE_GGUF_INT16);
    put_u64(b, 2);
    put_u32(b, 0xFFFF0001u);
}

Test(gguf, bad_keys_and_values) {
    buf b = {0};
    build(&b, 3, 2, kv_dup, 0, NULL, 0, 32, 0);
    expect_format(&b, "'dup.key' appears twice");
    build(&b, 3, 1, kv_bad_utf8, 0, NULL, 0, 32, 0);
    expect_format(&b, "UTF-8");
    build(&b, 3, 1, kv_nul, 0, NULL, 0, 32, 0);
    expect_format(&b, "NUL");
    build(&b, 3, 1, kv_bad_type, 0, NULL, 0, 32, 0);
    expect_format(&b, "odd.type");
    build(&b, 3, 1, kv_bad_elem, 0, NULL, 0, 32, 0);
    expect_format(&b, "odd.elem");
    build(&b, 3, 1, kv_bad_bool, 0, NULL, 0, 32, 0);
    expect_format(&b, "odd.bool");
    /* Nested arrays: a few levels are accepted, deep nesting is not. */
    g_depth = 3;
    build(&b, 3, 1, kv_nested, 0, NULL, 0, 32, 0);
    lode_gguf *g = open_ok(&b);
    lode_gguf_vtype et;
    uint64_t n;
    cr_assert_eq(lode_gguf_get_arr(g, "nested", &et, &n, NULL), LODE_OK);
    cr_assert_eq(et, LODE_GGUF_ARRAY);
    cr_assert_eq(n, 1);
    const char *s;
    cr_assert_neq(lode_gguf_arr_str(g, 0, 0, &s, &n), LODE_OK);
    lode_gguf_free(g);
    g_depth = 20;
    build(&b, 3, 1, kv_nested, 0, NULL, 0, 32, 0);
    expect_format(&b, "nested");
    free(b.p);
}

static void kv_ints(buf *b) {
    put_str(b, "neg");
    put_u32(b, LODE_GGUF_INT8);
    int8_t v = -1;
    put(b, &v, 1);
    put_str(b, "i64min");
    put_u32(b, LODE_GGUF_INT64);
    put_u64(b, 1ull << 63);
    put_str(b, "u64max");
    put_u32(b, LODE_GGUF_UINT64);
    put_u64(b, UINT64_MAX);
    put_str(b, "f64");
    put_u32(b, LODE_GGUF_FLOAT64);
    double d = 0.125;
    put(b, &d, 8);
    put_str(b, "u16");
    put_u32(b, LODE_GGUF_UINT16);
    uint16_t h = 65535;
    put(b, &h, 2);
}

Test(gguf, getter_conversions) {
    buf b = {0};
    build(&b, 3, 5, kv_ints, 0, NULL, 0, 32, 0);
    lode_gguf *g = open_ok(&b);
    int64_t i64;
    uint64_t u64;
    uint32_t u32;
    float f;
    cr_assert_eq(lode_gguf_get_i64(g, "neg", &i64, NULL), LODE_OK);
    cr_assert_eq(i64, -1);
    cr_assert_eq(lode_gguf_get_u64(g, "neg", &u64, NULL), LODE_ERR_FORMAT);
    cr_assert_eq(lode_gguf_get_u32(g, "neg", &u32, NULL), LODE_ERR_FORMAT);
    cr_assert_eq(lode_gguf_get_i64(g, "i64min", &i64, NULL), LODE_OK);
    cr_assert_eq(i64, INT64_MIN);
    cr_assert_eq(lode_gguf_get_i64(g, "u64max", &i64, NULL), LODE_ERR_FORMAT);
    cr_assert_eq(lode_gguf_get_u64(g, "u64max", &u64, NULL), LODE_OK);
    cr_assert_eq(u64, UINT64_MAX);
    cr_assert_eq(lode_gguf_get_f32(g, "f64", &f, NULL), LODE_OK);
    cr_assert_float_eq(f, 0.125f, 0);
    cr_assert_eq(lode_gguf_get_i64(g, "f64", &i64, NULL), LODE_ERR_FORMAT);
    cr_assert_eq(lode_gguf_get_u32(g, "u16", &u32, NULL), LODE_OK);
    cr_assert_eq(u32, 65535);
    lode_gguf_free(g);
    free(b.p);
}

Test(gguf, missing_and_special_files) {
    lode_gguf *g = NULL;
    lode_error err = {0};
    char path[128];
    tmp_path(path, sizeof path, "does-not-exist.gguf");
    cr_assert_eq(lode_gguf_open(path, &g, &err), LODE_ERR_IO);
    cr_assert(strstr(err.text, path), "%s", err.text);
    lode_error_clear(&err);
    cr_assert_eq(lode_gguf_open(g_dir, &g, &err), LODE_ERR_IO); /* a directory */
    cr_assert(strstr(err.text, g_dir), "%s", err.text);
    buf b = {0};
    expect_format(&b, NULL); /* empty file */
    lode_gguf_free(NULL);
    cr_assert_eq(lode_gguf_n_tensors(NULL), 0);
    cr_assert_null(lode_gguf_find_tensor(NULL, "x"));
}

/* A vocab-sized string array: the offsets index makes element access O(1). */
Test(gguf, large_string_array) {
    char path[128];
    tmp_path(path, sizeof path, "vocab.gguf");
    enum { N = 100000 };
    char **toks = malloc(N * sizeof *toks);
    for (int i = 0; i < N; i++) {
        toks[i] = malloc(16);
        snprintf(toks[i], 16, "tok%d", i);
    }
    lode_gguf_writer *w = lode_gguf_writer_new();
    lode_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, N);
    lode_error err = {0};
    cr_assert_eq(lode_gguf_writer_begin(w, path, &err), LODE_OK);
    cr_assert_eq(lode_gguf_writer_finish(w, &err), LODE_OK);
    lode_gguf_writer_free(w);
    lode_gguf *g = NULL;
    cr_assert_eq(lode_gguf_open(path, &g, &err), LODE_OK, "%s", err.text);
    int64_t ki = lode_gguf_find_key(g, "tokenizer.ggml.tokens");
    for (int i = N - 1; i >= 0; i -= 7) {
        const char *s;
        uint64_t len;
        cr_assert_eq(lode_gguf_arr_str(g, ki, (uint64_t)i, &s, &len), LODE_OK);
        cr_assert_eq(len, strlen(toks[i]));
        cr_assert(memcmp(s, toks[i], len) == 0);
    }
    lode_gguf_free(g);
    for (int i = 0; i < N; i++) free(toks[i]);
    free(toks);
}

/* Fail the k-th allocation for k = 0, 1, ... until open succeeds: every
 * failure must be a clean LODE_ERR_NOMEM (ASan checks for leaks). */
Test(gguf, alloc_failure_loop) {
    buf b = {0};
    build_valid(&b);
    char path[128];
    tmp_path(path, sizeof path, "oom.gguf");
    write_file(path, b.p, b.n);
    long k;
    for (k = 0; k < 1000; k++) {
        g_fail_after = k;
        g_allocs = 0;
        lode_set_alloc_hooks(&k_fail_hooks);
        lode_gguf *g = NULL;
        lode_error err = {0};
        lode_status s = lode_gguf_open(path, &g, &err);
        lode_set_alloc_hooks(NULL);
        if (s == LODE_OK) {
            cr_assert_eq(lode_gguf_n_tensors(g), 2);
            lode_gguf_free(g);
            break;
        }
        cr_assert_eq(s, LODE_ERR_NOMEM, "k=%ld: %s", k, err.text);
        cr_assert(strstr(err.text, path), "%s", err.text);
        cr_assert_null(g);
    }
    cr_assert_gt(k, 5);
    cr_assert_lt(k, 1000);
    free(b.p);
}

Test(gguf, writer_rejects_names_llamacpp_cannot_load) {
    lode_gguf_writer *w = lode_gguf_writer_new();
    int64_t ne[] = {4};
    char name[80];
    memset(name, 'n', 63);
    name[63] = 0;
    cr_assert_eq(lode_gguf_writer_add_tensor(w, name, LODE_TYPE_F32, 1, ne, NULL), LODE_OK);
    name[63] = 'x';
    name[64] = 0;
    lode_error err = {0};
    cr_assert_eq(lode_gguf_writer_add_tensor(w, name, LODE_TYPE_F32, 1, ne, &err), LODE_ERR_INVALID_ARG);
    cr_assert(strstr(err.text, "63"), "%s", err.text);
    lode_gguf_writer_free(w);
}
