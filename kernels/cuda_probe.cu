// cuda_probe.cu — device discovery for the CUDA backend. A binary built with
// CUDA must still run on machines with no GPU or driver: every runtime error
// becomes "0 devices" plus a message, never an abort (see lode_cuda.h).
#include <cuda_runtime.h>
#include <stdio.h>

#include "lode_cuda.h"

extern "C" int lode_cuda_device_count(char *why, size_t why_len) {
    int n = 0;  // cudaGetDeviceCount leaves it untouched on error
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why && why_len)
            snprintf(why, why_len, "no usable CUDA device: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
        cudaGetLastError();
        return 0;
    }
    if (n == 0 && why && why_len) snprintf(why, why_len, "no CUDA device found");
    return n;
}

extern "C" const char *lode_cuda_device_name(int i) {
    static cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
        cudaGetLastError();
        return "";
    }
    return prop.name;
}

extern "C" int lode_cuda_compiled(void) { return 1; }
