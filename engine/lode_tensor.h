/*
 * lode_tensor.h — tensor element types and the borrowed tensor view shared by
 * the GGUF and safetensors loaders, the quant kernels and the architectures.
 *
 * Type ids are GGML's numeric ids so that GGUF files map one-to-one.
 * Shapes are in GGML order: ne[0] is the innermost (contiguous) dimension, so
 * a PyTorch Linear weight of shape [out, in] has ne = {in, out}.
 */
#ifndef LODE_TENSOR_H
#define LODE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lode_type {
    LODE_TYPE_F32 = 0,
    LODE_TYPE_F16 = 1,
    LODE_TYPE_Q4_0 = 2,
    LODE_TYPE_Q4_1 = 3,
    LODE_TYPE_Q5_0 = 6,
    LODE_TYPE_Q5_1 = 7,
    LODE_TYPE_Q8_0 = 8,
    LODE_TYPE_Q8_1 = 9,
    LODE_TYPE_Q2_K = 10,
    LODE_TYPE_Q3_K = 11,
    LODE_TYPE_Q4_K = 12,
    LODE_TYPE_Q5_K = 13,
    LODE_TYPE_Q6_K = 14,
    LODE_TYPE_Q8_K = 15,
    LODE_TYPE_I8 = 24,
    LODE_TYPE_I16 = 25,
    LODE_TYPE_I32 = 26,
    LODE_TYPE_I64 = 27,
    LODE_TYPE_F64 = 28,
    LODE_TYPE_BF16 = 30,
    LODE_TYPE_COUNT = 40 /* upper bound for tables indexed by type id */
} lode_type;

#define LODE_MAX_DIMS 4

/* A borrowed view of one tensor's bytes (usually inside an mmap).
 * `name` and `data` stay valid while the owning file handle is open. */
typedef struct lode_tensor {
    const char *name;
    lode_type type;
    int n_dims;
    int64_t ne[LODE_MAX_DIMS]; /* GGML order; unused dims are 1 */
    const void *data;
    size_t nbytes;
} lode_tensor;

#ifdef __cplusplus
}
#endif
#endif
