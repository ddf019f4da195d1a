/*
 * lode_gguf.h — GGUF v2/v3 reader (memory-mapped, fully validated) and a
 * streaming GGUF writer.
 *
 * Reader contract: lode_gguf_open validates every header field, string,
 * array length, tensor dimension, type and offset before returning. After a
 * successful open, every accessor is bounds-safe. A truncated, corrupt or
 * hostile file yields LODE_ERR_FORMAT with one message naming the file, the
 * key or tensor, and the problem; never a crash, a hang or an allocation
 * sized by unchecked input.
 *
 * Ownership: strings and tensor views returned by accessors are borrowed and
 * valid until lode_gguf_free.
 */
#ifndef LODE_GGUF_H
#define LODE_GGUF_H

#include <stdbool.h>
#include <stdint.h>

#include "lode_base.h"
#include "lode_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lode_gguf_vtype {
    LODE_GGUF_UINT8 = 0,
    LODE_GGUF_INT8 = 1,
    LODE_GGUF_UINT16 = 2,
    LODE_GGUF_INT16 = 3,
    LODE_GGUF_UINT32 = 4,
    LODE_GGUF_INT32 = 5,
    LODE_GGUF_FLOAT32 = 6,
    LODE_GGUF_BOOL = 7,
    LODE_GGUF_STRING = 8,
    LODE_GGUF_ARRAY = 9,
    LODE_GGUF_UINT64 = 10,
    LODE_GGUF_INT64 = 11,
    LODE_GGUF_FLOAT64 = 12
} lode_gguf_vtype;

typedef struct lode_gguf lode_gguf;

/* Open and mmap `path`. On error *out is NULL and err says why. */
lode_status lode_gguf_open(const char *path, lode_gguf **out, lode_error *err);
void lode_gguf_free(lode_gguf *g); /* NULL ok */
/* Read the tensor data into anonymous memory (huge pages where allowed) and
 * point every tensor there, instead of the file's page-cache mapping; the
 * metadata stays mapped. Fails (g unchanged) on I/O error, memory, or when
 * the file changed since lode_gguf_open. */
lode_status lode_gguf_make_resident(lode_gguf *g, lode_error *err);
/* Make the resident copy writable (the loader repacks weights in place) or
 * read-only again; false when the data is not resident or mprotect fails. */
bool lode_gguf_resident_writable(lode_gguf *g, bool writable);

const char *lode_gguf_path(const lode_gguf *g);
uint32_t lode_gguf_version(const lode_gguf *g);
size_t lode_gguf_alignment(const lode_gguf *g);

/* ---- key/value metadata ---- */
int64_t lode_gguf_n_kv(const lode_gguf *g);
const char *lode_gguf_kv_key(const lode_gguf *g, int64_t i);
lode_gguf_vtype lode_gguf_kv_type(const lode_gguf *g, int64_t i);
/* Index of `key`, or -1. */
int64_t lode_gguf_find_key(const lode_gguf *g, const char *key);

/* Typed getters. Each returns LODE_ERR_NOT_FOUND if the key is absent and
 * LODE_ERR_FORMAT (message names the key) if the stored type cannot be
 * converted losslessly: integers convert among integer types when the value
 * fits; f32/f64 convert to each other; bool is only bool. */
lode_status lode_gguf_get_u64(const lode_gguf *g, const char *key, uint64_t *out, lode_error *err);
lode_status lode_gguf_get_i64(const lode_gguf *g, const char *key, int64_t *out, lode_error *err);
lode_status lode_gguf_get_u32(const lode_gguf *g, const char *key, uint32_t *out, lode_error *err);
lode_status lode_gguf_get_f32(const lode_gguf *g, const char *key, float *out, lode_error *err);
lode_status lode_gguf_get_bool(const lode_gguf *g, const char *key, bool *out, lode_error *err);
/* String value (NOT NUL-terminated in the file: returns pointer + length). */
lode_status lode_gguf_get_str(const lode_gguf *g, const char *key, const char **s, uint64_t *len,
                              lode_error *err);

/* Arrays: element type and count; element access is bounds-checked. */
lode_status lode_gguf_get_arr(const lode_gguf *g, const char *key, lode_gguf_vtype *elem_type,
                              uint64_t *count, lode_error *err);
/* Raw pointer to the packed elements of a numeric array (little-endian,
 * possibly unaligned: read with memcpy). */
const void *lode_gguf_arr_data(const lode_gguf *g, int64_t kv_index);
/* i-th string of a string array (pointer into the mmap + length). */
lode_status lode_gguf_arr_str(const lode_gguf *g, int64_t kv_index, uint64_t i, const char **s,
                              uint64_t *len);

/* ---- tensors ---- */
int64_t lode_gguf_n_tensors(const lode_gguf *g);
const lode_tensor *lode_gguf_tensor(const lode_gguf *g, int64_t i);
/* Tensor by name, or NULL. Names are NUL-terminated copies. */
const lode_tensor *lode_gguf_find_tensor(const lode_gguf *g, const char *name);

/* ---- writer ----
 * Usage: w = lode_gguf_writer_new(); set kv pairs; add tensor infos;
 * lode_gguf_writer_begin(w, path) writes the header; then call
 * lode_gguf_writer_write_data exactly once per tensor, in the order they
 * were added, with exactly lode_row_size(type, ne0) * (rows) bytes (data may
 * also be supplied in several consecutive chunks); lode_gguf_writer_finish
 * pads and closes. Alignment 32 (general.alignment is written only if a
 * different value is set with lode_gguf_writer_set_alignment). Keys are
 * written in insertion order; setting an existing key replaces it. */
typedef struct lode_gguf_writer lode_gguf_writer;
lode_gguf_writer *lode_gguf_writer_new(void);
void lode_gguf_writer_free(lode_gguf_writer *w); /* NULL ok; closes an open file */
void lode_gguf_writer_set_alignment(lode_gguf_writer *w, uint32_t align);
void lode_gguf_writer_set_u32(lode_gguf_writer *w, const char *key, uint32_t v);
void lode_gguf_writer_set_i32(lode_gguf_writer *w, const char *key, int32_t v);
void lode_gguf_writer_set_u64(lode_gguf_writer *w, const char *key, uint64_t v);
void lode_gguf_writer_set_f32(lode_gguf_writer *w, const char *key, float v);
void lode_gguf_writer_set_bool(lode_gguf_writer *w, const char *key, bool v);
void lode_gguf_writer_set_str(lode_gguf_writer *w, const char *key, const char *v);
/* Arrays are copied. */
void lode_gguf_writer_set_arr_str(lode_gguf_writer *w, const char *key, const char *const *v, uint64_t n);
void lode_gguf_writer_set_arr_i32(lode_gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
void lode_gguf_writer_set_arr_f32(lode_gguf_writer *w, const char *key, const float *v, uint64_t n);
lode_status lode_gguf_writer_add_tensor(lode_gguf_writer *w, const char *name, lode_type type,
                                        int n_dims, const int64_t *ne, lode_error *err);
lode_status lode_gguf_writer_begin(lode_gguf_writer *w, const char *path, lode_error *err);
lode_status lode_gguf_writer_write_data(lode_gguf_writer *w, const void *data, size_t nbytes,
                                        lode_error *err);
lode_status lode_gguf_writer_finish(lode_gguf_writer *w, lode_error *err);

#ifdef __cplusplus
}
#endif
#endif
