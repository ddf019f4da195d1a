/*
 * test_safetensors.c — safetensors reader/writer: round trip, directory modes
 * (index.json + shards, model.safetensors, sorted *.safetensors) and hostile
 * headers built as literal JSON text (independent of the writer). Every bad
 * file must fail with LODE_ERR_FORMAT (LODE_ERR_IO for a missing file) and a
 * message naming the file and, where relevant, the tensor.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lode_safetensors.h"

static char g_dir[64];

static void make_dir(void) {
    strcpy(g_dir, "/tmp/lode_st_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
}

static void rm_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) cr_log_warn("cleanup of %s failed", g_dir);
}

TestSuite(safetensors, .init = make_dir, .fini = rm_dir, .timeout = 120);

static void path_in(char *out, size_t n, const char *sub, const char *name) {
    if (sub) snprintf(out, n, "%s/%s/%s", g_dir, sub, name);
    else snprintf(out, n, "%s/%s", g_dir, name);
}

/* Builds header-length + JSON (unpadded) + data_bytes of a pattern. */
static uint8_t *build(const char *json, uint64_t hlen_override, size_t data_bytes, size_t *n) {
    size_t jl = strlen(json);
    *n = 8 + jl + data_bytes;
    uint8_t *p = malloc(*n + 1);
    uint64_t hl = hlen_override ? hlen_override : jl;
    memcpy(p, &hl, 8);
    memcpy(p + 8, json, jl);
    for (size_t i = 0; i < data_bytes; i++) p[8 + jl + i] = (uint8_t)(i * 13 + 5);
    return p;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    if (n) cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void write_st(const char *path, const char *json, size_t data_bytes) {
    size_t n;
    uint8_t *p = build(json, 0, data_bytes, &n);
    write_file(path, p, n);
    free(p);
}

static void expect_fail(const char *path, lode_status want, const char *needle) {
    lode_st *st = (lode_st *)0x1;
    lode_error err = {0};
    lode_status s = lode_st_open(path, &st, &err);
    cr_assert_eq(s, want, "%s: got %s: %s", needle ? needle : "", lode_status_name(s), err.text);
    cr_assert_null(st);
    cr_assert(strstr(err.text, path) || strstr(err.text, g_dir), "message lacks the path: %s", err.text);
    if (needle) cr_assert(strstr(err.text, needle), "message lacks '%s': %s", needle, err.text);
}

static void expect_bad_json(const char *json, size_t data_bytes, const char *needle) {
    char path[128];
    path_in(path, sizeof path, NULL, "bad.safetensors");
    write_st(path, json, data_bytes);
    expect_fail(path, LODE_ERR_FORMAT, needle);
}

static lode_st *open_ok(const char *path) {
    lode_st *st = NULL;
    lode_error err = {0};
    cr_assert_eq(lode_st_open(path, &st, &err), LODE_OK, "%s", err.text);
    return st;
}

/* Valid: a = F32 [2, 3] at [0, 24), b = BF16 [4] at [24, 32). */
static const char *k_valid =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]}}";

// ---- allocation failure ------------------------------------------------------------

static long g_fail_after, g_allocs;
static void *fail_malloc(size_t n) { return g_allocs++ >= g_fail_after ? NULL : malloc(n); }
static void *fail_calloc(size_t n, size_t k) { return g_allocs++ >= g_fail_after ? NULL : calloc(n, k); }
static void *fail_realloc(void *p, size_t n) { return g_allocs++ >= g_fail_after ? NULL : realloc(p, n); }
static const lode_alloc_hooks k_fail_hooks = {fail_malloc, fail_calloc, fail_realloc, free};

// ---- round trip ----------------------------------------------------------------------

Test(safetensors, roundtrip) {
    char path[128];
    path_in(path, sizeof path, NULL, "rt.safetensors");
    struct {
        const char *name;
        lode_type type;
        int n_dims;
        int64_t ne[4];
        size_t nbytes;
    } ts[] = {
        {"model.embed_tokens.weight", LODE_TYPE_BF16, 2, {8, 5}, 80},
        {"model.norm.weight", LODE_TYPE_F32, 1, {8}, 32},
        {"x.f16", LODE_TYPE_F16, 3, {3, 2, 2}, 24},
        {"x.i64", LODE_TYPE_I64, 1, {3}, 24},
        {"x.4d", LODE_TYPE_F32, 4, {1, 2, 3, 2}, 48},
        {"x.empty", LODE_TYPE_F32, 2, {0, 4}, 0},
        {"x.scalar", LODE_TYPE_F64, 0, {0}, 8},
    };
    size_t nts = sizeof ts / sizeof ts[0];
    lode_st_writer *w = lode_st_writer_new();
    lode_error err = {0};
    for (size_t i = 0; i < nts; i++)
        cr_assert_eq(lode_st_writer_add_tensor(w, ts[i].name, ts[i].type, ts[i].n_dims, ts[i].ne, &err), LODE_OK,
                     "%s", err.text);
    cr_assert_eq(lode_st_writer_begin(w, path, &err), LODE_OK, "%s", err.text);
    for (size_t i = 0; i < nts; i++) {
        if (!ts[i].nbytes) continue;
        uint8_t *d = malloc(ts[i].nbytes);
        for (size_t k = 0; k < ts[i].nbytes; k++) d[k] = (uint8_t)(k * 17 + i);
        size_t h = ts[i].nbytes / 2;
        cr_assert_eq(lode_st_writer_write_data(w, d, h, &err), LODE_OK, "%s", err.text);
        cr_assert_eq(lode_st_writer_write_data(w, d + h, ts[i].nbytes - h, &err), LODE_OK, "%s", err.text);
        free(d);
    }
    cr_assert_eq(lode_st_writer_finish(w, &err), LODE_OK, "%s", err.text);
    lode_st_writer_free(w);

    /* Header: length multiple-of-8 aligned data start, space padding, JSON
     * shape in PyTorch order, __metadata__.format = "pt". */
    FILE *f = fopen(path, "rb");
    uint64_t hl;
    cr_assert_eq(fread(&hl, 8, 1, f), 1);
    cr_assert_eq((8 + hl) % 8, 0);
    char *hdr = malloc(hl + 1);
    cr_assert_eq(fread(hdr, 1, hl, f), hl);
    fclose(f);
    hdr[hl] = 0;
    json_error_t je;
    json_t *root = json_loads(hdr, 0, &je);
    cr_assert_not_null(root, "%s", je.text);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "__metadata__"), "format")), "pt");
    json_t *shape = json_object_get(json_object_get(root, "model.embed_tokens.weight"), "shape");
    cr_assert_eq(json_integer_value(json_array_get(shape, 0)), 5);
    cr_assert_eq(json_integer_value(json_array_get(shape, 1)), 8);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "x.f16"), "dtype")), "F16");
    json_decref(root);
    free(hdr);

    lode_st *st = open_ok(path);
    cr_assert_eq(lode_st_n_tensors(st), (int64_t)nts);
    for (size_t i = 0; i < nts; i++) {
        const lode_tensor *t = lode_st_find(st, ts[i].name);
        cr_assert_not_null(t, "%s", ts[i].name);
        cr_assert_str_eq(t->name, ts[i].name);
        cr_assert_eq(t->type, ts[i].type);
        cr_assert_eq(t->n_dims, ts[i].n_dims);
        for (int d = 0; d < 4; d++) cr_assert_eq(t->ne[d], d < ts[i].n_dims ? ts[i].ne[d] : 1);
        cr_assert_eq(t->nbytes, ts[i].nbytes);
        for (size_t k = 0; k < ts[i].nbytes; k++) cr_assert_eq(((const uint8_t *)t->data)[k], (uint8_t)(k * 17 + i));
    }
    cr_assert_null(lode_st_find(st, "missing"));
    cr_assert_null(lode_st_find(st, "__metadata__"));
    cr_assert_null(lode_st_tensor(st, (int64_t)nts));
    cr_assert_not_null(lode_st_tensor(st, 0));
    lode_st_free(st);
}

Test(safetensors, writer_misuse) {
    char path[128];
    path_in(path, sizeof path, NULL, "w.safetensors");
    lode_st_writer *w = lode_st_writer_new();
    lode_error err = {0};
    int64_t ne[] = {4, 2}, neg[] = {-1};
    cr_assert_eq(lode_st_writer_add_tensor(w, "a", LODE_TYPE_F32, 2, ne, NULL), LODE_OK);
    cr_assert_neq(lode_st_writer_add_tensor(w, "a", LODE_TYPE_F32, 2, ne, &err), LODE_OK);
    cr_assert(strstr(err.text, "'a'"), "%s", err.text);
    cr_assert_neq(lode_st_writer_add_tensor(w, "q", LODE_TYPE_Q8_0, 1, ne, NULL), LODE_OK);
    cr_assert_neq(lode_st_writer_add_tensor(w, "n", LODE_TYPE_F32, 1, neg, NULL), LODE_OK);
    cr_assert_neq(lode_st_writer_add_tensor(w, "__metadata__", LODE_TYPE_F32, 1, ne, NULL), LODE_OK);
    cr_assert_neq(lode_st_writer_add_tensor(w, "d", LODE_TYPE_F32, 5, ne, NULL), LODE_OK);
    cr_assert_eq(lode_st_writer_add_tensor(w, "b", LODE_TYPE_F16, 1, ne, NULL), LODE_OK);
    cr_assert_eq(lode_st_writer_finish(w, NULL), LODE_ERR_STATE); /* before begin */
    cr_assert_eq(lode_st_writer_begin(w, path, NULL), LODE_OK);
    uint8_t d[64] = {0};
    cr_assert_eq(lode_st_writer_write_data(w, d, 20, NULL), LODE_OK);
    lode_error_clear(&err);
    cr_assert_eq(lode_st_writer_write_data(w, d, 20, &err), LODE_ERR_INVALID_ARG); /* 12 left of a */
    cr_assert(strstr(err.text, "'a'") && strstr(err.text, path), "%s", err.text);
    lode_st_writer_free(w);
    cr_assert_neq(access(path, F_OK), 0);

    w = lode_st_writer_new();
    cr_assert_eq(lode_st_writer_add_tensor(w, "a", LODE_TYPE_F32, 2, ne, NULL), LODE_OK);
    cr_assert_eq(lode_st_writer_begin(w, path, NULL), LODE_OK);
    lode_error_clear(&err);
    cr_assert_eq(lode_st_writer_finish(w, &err), LODE_ERR_STATE);
    cr_assert(strstr(err.text, "'a'"), "%s", err.text);
    lode_st_writer_free(w);
    w = lode_st_writer_new();
    cr_assert_eq(lode_st_writer_add_tensor(w, "bad\xff", LODE_TYPE_F32, 2, ne, NULL), LODE_OK);
    cr_assert_neq(lode_st_writer_begin(w, path, NULL), LODE_OK);
    lode_st_writer_free(w);
    lode_st_writer_free(NULL);
    cr_assert_neq(access(path, F_OK), 0);
}

// ---- hostile single files -------------------------------------------------------------

Test(safetensors, valid_hand_built) {
    char path[128];
    path_in(path, sizeof path, NULL, "ok.safetensors");
    write_st(path, k_valid, 32);
    lode_st *st = open_ok(path);
    const lode_tensor *a = lode_st_find(st, "a");
    cr_assert_eq(a->n_dims, 2);
    cr_assert_eq(a->ne[0], 3); /* reversed */
    cr_assert_eq(a->ne[1], 2);
    cr_assert_eq(a->nbytes, 24);
    const lode_tensor *b = lode_st_find(st, "b");
    cr_assert_eq(b->type, LODE_TYPE_BF16);
    cr_assert_eq(((const uint8_t *)b->data)[0], (uint8_t)(24 * 13 + 5));
    lode_st_free(st);
    /* Trailing spaces (HF padding), unused data and gaps are fine. */
    write_st(path,
             "{\"b\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[8,10]},"
             "\"s\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[12,16]}}      ",
             40);
    st = open_ok(path);
    cr_assert_eq(lode_st_find(st, "s")->n_dims, 0);
    cr_assert_eq(lode_st_find(st, "s")->nbytes, 4);
    lode_st_free(st);
}

Test(safetensors, bad_headers) {
    char path[128];
    path_in(path, sizeof path, NULL, "bad.safetensors");
    size_t n;
    uint8_t *p = build(k_valid, 1u << 30, 32, &n); /* length > file */
    write_file(path, p, n);
    expect_fail(path, LODE_ERR_FORMAT, "header length");
    free(p);
    p = build(k_valid, 200u << 20, 32, &n); /* over the cap */
    write_file(path, p, n);
    expect_fail(path, LODE_ERR_FORMAT, "cap");
    free(p);
    p = build(k_valid, UINT64_MAX, 32, &n);
    write_file(path, p, n);
    expect_fail(path, LODE_ERR_FORMAT, "header length");
    free(p);
    write_file(path, "\x00\x00", 2);
    expect_fail(path, LODE_ERR_FORMAT, NULL);
    write_file(path, "", 0);
    expect_fail(path, LODE_ERR_FORMAT, NULL);

    expect_bad_json("", 0, "JSON");
    expect_bad_json("{\"a\":", 0, "JSON");
    expect_bad_json("[1,2]", 0, "object");
    expect_bad_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "JSON");
    expect_bad_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8, "JSON"); /* duplicate key */
    expect_bad_json("{\"a\":[1]}", 0, "'a'");
    expect_bad_json("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "F8_E4M3");
    expect_bad_json("{\"w\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "'w'");
    expect_bad_json("{\"w\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "dtype");
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "shape");
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "'w'");
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "'w'");
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions");
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", 4,
                    "overflow");
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "data_offsets");
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "data_offsets");
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 4, "'w'"); /* past end */
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "'w'");  /* size */
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],"
                    "\"data_offsets\":[0,9223372036854775807]}}",
                    4, "'w'");
    expect_bad_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    8, "overlaps");
    expect_bad_json("{\"w\\u0000x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "JSON");
    expect_bad_json("{\"w\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "JSON");
}

Test(safetensors, truncation_at_every_offset) {
    size_t n;
    uint8_t *p = build(k_valid, 0, 32, &n);
    char path[128];
    path_in(path, sizeof path, NULL, "trunc.safetensors");
    for (size_t k = 0; k < n; k++) {
        write_file(path, p, k);
        lode_st *st = NULL;
        lode_error err = {0};
        lode_status s = lode_st_open(path, &st, &err);
        cr_assert_eq(s, LODE_ERR_FORMAT, "prefix %zu/%zu: %s %s", k, n, lode_status_name(s), err.text);
        cr_assert(strstr(err.text, path), "%s", err.text);
    }
    free(p);
}

Test(safetensors, random_byte_flips) {
    size_t n;
    uint8_t *p = build(k_valid, 0, 32, &n);
    uint8_t *c = malloc(n);
    char path[128];
    path_in(path, sizeof path, NULL, "flip.safetensors");
    unsigned seed = 777;
    int ok = 0, bad = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(c, p, n);
        int nf = 1 + rand_r(&seed) % 3;
        for (int k = 0; k < nf; k++) {
            size_t at = (size_t)rand_r(&seed) % n;
            c[at] = rand_r(&seed) % 2 ? (uint8_t)rand_r(&seed) : c[at] ^ (uint8_t)(1u << (rand_r(&seed) % 8));
        }
        write_file(path, c, n);
        lode_st *st = NULL;
        lode_error err = {0};
        lode_status s = lode_st_open(path, &st, &err);
        if (s == LODE_OK) {
            for (int64_t i = 0; i < lode_st_n_tensors(st); i++) {
                const lode_tensor *t = lode_st_tensor(st, i);
                cr_assert_eq(lode_st_find(st, t->name), t);
                volatile uint8_t sink = 0;
                for (size_t k = 0; k < t->nbytes; k++) sink ^= ((const uint8_t *)t->data)[k];
                (void)sink;
            }
            lode_st_free(st);
            ok++;
        } else {
            cr_assert_eq(s, LODE_ERR_FORMAT, "it %d: %s", it, err.text);
            cr_assert(strstr(err.text, path), "%s", err.text);
            bad++;
        }
    }
    cr_log_info("flips: %d accepted, %d rejected", ok, bad);
    cr_assert_gt(bad, 100);
    free(c);
    free(p);
}

// ---- directories ---------------------------------------------------------------------

static void mkdir_in(const char *sub) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", g_dir, sub);
    cr_assert_eq(mkdir(p, 0755), 0);
}

static void shard(const char *sub, const char *name, const char *tname, size_t nfloat) {
    char path[128], json[256];
    path_in(path, sizeof path, sub, name);
    snprintf(json, sizeof json, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[0,%zu]}}", tname,
             nfloat, nfloat * 4);
    write_st(path, json, nfloat * 4);
}

static void index_json(const char *sub, const char *body) {
    char path[128];
    path_in(path, sizeof path, sub, "model.safetensors.index.json");
    write_file(path, body, strlen(body));
}

Test(safetensors, directory_index) {
    mkdir_in("m");
    shard("m", "model-00002-of-000002.safetensors", "model.norm.weight", 4);
    shard("m", "model-00001-of-000002.safetensors", "model.embed_tokens.weight", 8);
    index_json("m", "{\"metadata\":{\"total_size\":48},\"weight_map\":{"
                    "\"model.norm.weight\":\"model-00002-of-000002.safetensors\","
                    "\"model.embed_tokens.weight\":\"model-00001-of-000002.safetensors\"}}");
    char dir[128];
    snprintf(dir, sizeof dir, "%s/m", g_dir);
    lode_st *st = open_ok(dir);
    cr_assert_eq(lode_st_n_tensors(st), 2);
    cr_assert_str_eq(lode_st_tensor(st, 0)->name, "model.embed_tokens.weight"); /* shard order */
    cr_assert_eq(lode_st_find(st, "model.norm.weight")->ne[0], 4);
    lode_st_free(st);

    /* Missing shard: IO, naming the index, the shard and a tensor. */
    index_json("m", "{\"weight_map\":{\"model.norm.weight\":\"model-00002-of-000002.safetensors\","
                    "\"lm_head.weight\":\"model-00003-of-000003.safetensors\"}}");
    expect_fail(dir, LODE_ERR_IO, "model-00003-of-000003.safetensors");
    lode_st *x = NULL;
    lode_error err = {0};
    lode_st_open(dir, &x, &err);
    cr_assert(strstr(err.text, "lm_head.weight") && strstr(err.text, "index.json"), "%s", err.text);
    /* Tensor listed but not in its shard. */
    index_json("m", "{\"weight_map\":{\"model.norm.weight\":\"model-00002-of-000002.safetensors\","
                    "\"lm_head.weight\":\"model-00002-of-000002.safetensors\"}}");
    expect_fail(dir, LODE_ERR_FORMAT, "lm_head.weight");
    /* Tensor mapped to the wrong shard. */
    index_json("m", "{\"weight_map\":{\"model.norm.weight\":\"model-00001-of-000002.safetensors\","
                    "\"model.embed_tokens.weight\":\"model-00002-of-000002.safetensors\"}}");
    expect_fail(dir, LODE_ERR_FORMAT, "mapped to");
    /* Path escapes and malformed indexes. */
    index_json("m", "{\"weight_map\":{\"model.norm.weight\":\"../x.safetensors\"}}");
    expect_fail(dir, LODE_ERR_FORMAT, "model.norm.weight");
    index_json("m", "{\"weight_map\":{\"model.norm.weight\":7}}");
    expect_fail(dir, LODE_ERR_FORMAT, "model.norm.weight");
    index_json("m", "{\"weight_map\":[]}");
    expect_fail(dir, LODE_ERR_FORMAT, "weight_map");
    index_json("m", "{\"weight_map\":");
    expect_fail(dir, LODE_ERR_FORMAT, "JSON");
    /* A corrupt shard reports the shard's own path. */
    index_json("m", "{\"weight_map\":{\"model.norm.weight\":\"model-00002-of-000002.safetensors\"}}");
    char sp[128];
    path_in(sp, sizeof sp, "m", "model-00002-of-000002.safetensors");
    write_file(sp, "garbage!garbage!", 16);
    expect_fail(dir, LODE_ERR_FORMAT, "model-00002-of-000002.safetensors");
}

Test(safetensors, directory_single_and_glob) {
    mkdir_in("one");
    shard("one", "model.safetensors", "w", 2);
    shard("one", "zzz.safetensors", "other", 2); /* ignored: model.safetensors wins */
    char dir[128];
    snprintf(dir, sizeof dir, "%s/one", g_dir);
    lode_st *st = open_ok(dir);
    cr_assert_eq(lode_st_n_tensors(st), 1);
    cr_assert_not_null(lode_st_find(st, "w"));
    lode_st_free(st);

    mkdir_in("glob");
    shard("glob", "b.safetensors", "tb", 1);
    shard("glob", "a.safetensors", "ta", 1);
    char other[128];
    path_in(other, sizeof other, "glob", "notes.txt");
    write_file(other, "x", 1);
    snprintf(dir, sizeof dir, "%s/glob", g_dir);
    st = open_ok(dir);
    cr_assert_eq(lode_st_n_tensors(st), 2);
    cr_assert_str_eq(lode_st_tensor(st, 0)->name, "ta");
    cr_assert_str_eq(lode_st_tensor(st, 1)->name, "tb");
    lode_st_free(st);
    /* The same tensor in two shards. */
    shard("glob", "c.safetensors", "ta", 1);
    expect_fail(dir, LODE_ERR_FORMAT, "'ta'");

    mkdir_in("empty");
    snprintf(dir, sizeof dir, "%s/empty", g_dir);
    expect_fail(dir, LODE_ERR_IO, NULL);
    snprintf(dir, sizeof dir, "%s/none.safetensors", g_dir);
    expect_fail(dir, LODE_ERR_IO, NULL);
    lode_st_free(NULL);
    cr_assert_eq(lode_st_n_tensors(NULL), 0);
}

/* Many tensors: the name index stays correct across rehashing. */
Test(safetensors, many_tensors) {
    char path[128];
    path_in(path, sizeof path, NULL, "many.safetensors");
    enum { N = 6000 };
    lode_st_writer *w = lode_st_writer_new();
    char name[64];
    int64_t ne[] = {2};
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.up_proj.weight", i / 64, i % 64);
        cr_assert_eq(lode_st_writer_add_tensor(w, name, LODE_TYPE_F16, 1, ne, NULL), LODE_OK);
    }
    cr_assert_eq(lode_st_writer_begin(w, path, NULL), LODE_OK);
    for (int i = 0; i < N; i++) {
        uint16_t v[2] = {(uint16_t)i, (uint16_t)~i};
        cr_assert_eq(lode_st_writer_write_data(w, v, 4, NULL), LODE_OK);
    }
    cr_assert_eq(lode_st_writer_finish(w, NULL), LODE_OK);
    lode_st_writer_free(w);
    lode_st *st = open_ok(path);
    cr_assert_eq(lode_st_n_tensors(st), N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.up_proj.weight", i / 64, i % 64);
        const lode_tensor *t = lode_st_find(st, name);
        cr_assert_not_null(t, "%s", name);
        uint16_t v;
        memcpy(&v, t->data, 2);
        cr_assert_eq(v, (uint16_t)i);
    }
    lode_st_free(st);
}

/* Allocation-failure loop over directory (index) mode: every failure is a
 * clean LODE_ERR_NOMEM. jansson's own allocations are not hooked. */
Test(safetensors, alloc_failure_loop) {
    mkdir_in("oom");
    shard("oom", "s2.safetensors", "b", 4);
    shard("oom", "s1.safetensors", "a", 8);
    index_json("oom", "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
    char dir[128];
    snprintf(dir, sizeof dir, "%s/oom", g_dir);
    long k;
    for (k = 0; k < 1000; k++) {
        g_fail_after = k;
        g_allocs = 0;
        lode_set_alloc_hooks(&k_fail_hooks);
        lode_st *st = NULL;
        lode_error err = {0};
        lode_status s = lode_st_open(dir, &st, &err);
        lode_set_alloc_hooks(NULL);
        if (s == LODE_OK) {
            cr_assert_eq(lode_st_n_tensors(st), 2);
            lode_st_free(st);
            break;
        }
        cr_assert_eq(s, LODE_ERR_NOMEM, "k=%ld: %s", k, err.text);
        cr_assert_null(st);
    }
    cr_assert_gt(k, 5);
    cr_assert_lt(k, 1000);
}
