/*
 * lode_cuda.h — the CUDA backend's thin C interface (no CUDA types). Built
 * from the kernels/ .cu files when nvcc is present; otherwise kernels/cuda_none.c
 * provides the same functions reporting that CUDA is not compiled in.
 */
#ifndef LODE_CUDA_H
#define LODE_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 when none, no driver, or not built);
 * `why` (may be NULL) receives a message the user can act on when 0. */
int lode_cuda_device_count(char *why, size_t why_len);
/* Name of device i, or "" when unavailable. */
const char *lode_cuda_device_name(int i);
/* 1 when the binary was built with the CUDA backend. */
int lode_cuda_compiled(void);

#ifdef __cplusplus
}
#endif
#endif
