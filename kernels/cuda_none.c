/* cuda_none.c — the CUDA interface in builds without nvcc. */
#include <stdio.h>

#include "lode_cuda.h"

#ifndef LODE_HAVE_CUDA
int lode_cuda_device_count(char *why, size_t why_len) {
    if (why && why_len) snprintf(why, why_len, "this lode build has no CUDA backend (nvcc was not found at build time)");
    return 0;
}
const char *lode_cuda_device_name(int i) {
    (void)i;
    return "";
}
int lode_cuda_compiled(void) { return 0; }
#else
/* Keep the translation unit non-empty under -Wpedantic. */
typedef int lode_cuda_none_unused;
#endif
