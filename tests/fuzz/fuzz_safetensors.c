/*
 * fuzz_safetensors.c — libFuzzer target for the safetensors reader (single
 * file through a memfd; see fuzz_gguf.c). Accepted files have every tensor's
 * bytes read and every name looked up.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lode_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    lode_st *st = NULL;
    lode_error err = {0};
    if (lode_st_open(path, &st, &err) == LODE_OK) {
        for (int64_t i = 0; i < lode_st_n_tensors(st); i++) {
            const lode_tensor *t = lode_st_tensor(st, i);
            if (lode_st_find(st, t->name) != t) __builtin_trap();
            volatile uint8_t sink = 0;
            for (size_t k = 0; k < t->nbytes; k++) sink ^= ((const uint8_t *)t->data)[k];
            (void)sink;
        }
        lode_st_free(st);
    } else if (err.status != LODE_ERR_FORMAT && err.status != LODE_ERR_NOMEM) {
        __builtin_trap();
    }
    close(fd);
    return 0;
}
