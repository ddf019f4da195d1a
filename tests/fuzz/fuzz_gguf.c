/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader. The input bytes become
 * a memfd that lode_gguf_open maps through /proc/self/fd, so the real mmap
 * path is exercised without touching the disk. On success every accessor is
 * driven over every key and tensor (reading all tensor bytes) so that any
 * gap in open-time validation shows up as an ASan report.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lode_gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(lode_log_level lvl, const char *msg, void *ud) { (void)lvl, (void)msg, (void)ud; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) lode_log_set(quiet, NULL, LODE_LOG_NONE), once = 1;
    int fd = memfd_create("fuzz.gguf", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    lode_gguf *g = NULL;
    lode_error err = {0};
    if (lode_gguf_open(path, &g, &err) == LODE_OK) {
        for (int64_t i = 0; i < lode_gguf_n_kv(g); i++) {
            const char *key = lode_gguf_kv_key(g, i), *s;
            uint64_t u64, len, n;
            int64_t i64;
            uint32_t u32;
            float f;
            bool b;
            lode_gguf_vtype et;
            (void)lode_gguf_get_u64(g, key, &u64, NULL);
            (void)lode_gguf_get_i64(g, key, &i64, NULL);
            (void)lode_gguf_get_u32(g, key, &u32, NULL);
            (void)lode_gguf_get_f32(g, key, &f, NULL);
            (void)lode_gguf_get_bool(g, key, &b, NULL);
            if (lode_gguf_get_str(g, key, &s, &len, NULL) == LODE_OK && len) {
                volatile char c = s[len - 1];
                (void)c;
            }
            if (lode_gguf_get_arr(g, key, &et, &n, NULL) == LODE_OK) {
                (void)lode_gguf_arr_data(g, i);
                for (uint64_t j = 0; et == LODE_GGUF_STRING && j < n; j++)
                    if (lode_gguf_arr_str(g, i, j, &s, &len) == LODE_OK && len) {
                        volatile char c = s[0] ^ s[len - 1];
                        (void)c;
                    }
            }
        }
        for (int64_t i = 0; i < lode_gguf_n_tensors(g); i++) {
            const lode_tensor *t = lode_gguf_tensor(g, i);
            if (lode_gguf_find_tensor(g, t->name) != t) __builtin_trap();
            volatile uint8_t sink = 0;
            for (size_t k = 0; k < t->nbytes; k++) sink ^= ((const uint8_t *)t->data)[k];
            (void)sink;
        }
        lode_gguf_free(g);
    } else if (err.status != LODE_ERR_FORMAT && err.status != LODE_ERR_NOMEM) {
        __builtin_trap(); /* a malformed file must be a format error */
    }
    close(fd);
    return 0;
}
