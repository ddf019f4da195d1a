/*
 * lode_safetensors.h — Hugging Face safetensors reader (single file, or a
 * directory with model.safetensors / model.safetensors.index.json + shards)
 * and a streaming writer.
 *
 * Reader contract: each file is memory-mapped; the JSON header is validated
 * (size cap, dtype, shape, data_offsets inside the data area, no overlap, size
 * == product(shape) * dtype size). Errors name the file and tensor.
 * Tensor views are in GGML order (ne reversed from the JSON shape) and use
 * lode types F32, F16, BF16 (also I8/I16/I32/I64/F64 are reported with their
 * type so callers can reject them by name).
 */
#ifndef LODE_SAFETENSORS_H
#define LODE_SAFETENSORS_H

#include "lode_base.h"
#include "lode_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lode_st lode_st;

/* `path`: a .safetensors file or a directory. In a directory:
 * model.safetensors.index.json (weight_map) if present, else
 * model.safetensors, else every *.safetensors file (sorted by name). */
lode_status lode_st_open(const char *path, lode_st **out, lode_error *err);
void lode_st_free(lode_st *st); /* NULL ok */

int64_t lode_st_n_tensors(const lode_st *st);
const lode_tensor *lode_st_tensor(const lode_st *st, int64_t i);
/* By HF name (e.g. "model.layers.0.self_attn.q_proj.weight"), or NULL. */
const lode_tensor *lode_st_find(const lode_st *st, const char *name);

/* ---- writer ----
 * Add every tensor (name, type F32/F16/BF16, GGML-order shape), then begin
 * (writes the header with offsets), then write each tensor's bytes in order,
 * then finish. `metadata_format` goes into __metadata__.format ("pt"). */
typedef struct lode_st_writer lode_st_writer;
lode_st_writer *lode_st_writer_new(void);
void lode_st_writer_free(lode_st_writer *w);
lode_status lode_st_writer_add_tensor(lode_st_writer *w, const char *name, lode_type type, int n_dims,
                                      const int64_t *ne, lode_error *err);
lode_status lode_st_writer_begin(lode_st_writer *w, const char *path, lode_error *err);
lode_status lode_st_writer_write_data(lode_st_writer *w, const void *data, size_t nbytes, lode_error *err);
lode_status lode_st_writer_finish(lode_st_writer *w, lode_error *err);

#ifdef __cplusplus
}
#endif
#endif
