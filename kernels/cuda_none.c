/* cuda_none.c — the CUDA interface in builds without nvcc. */
#include <stdio.h>

#include "lode_cuda.h"

#ifndef LODE_HAVE_CUDA
#define NO_CUDA_TEXT "this lode build has no CUDA backend (nvcc was not found at build time)"
int lode_cuda_device_count(char *why, size_t why_len) {
    if (why && why_len) snprintf(why, why_len, NO_CUDA_TEXT);
    return 0;
}
const char *lode_cuda_device_name(int i) {
    (void)i;
    return "";
}
int lode_cuda_compiled(void) { return 0; }

lode_status lode_cuda_model_new(struct lode_model *m, lode_cuda_model **out, lode_error *err) {
    (void)m;
    *out = NULL;
    return lode_error_set(err, LODE_ERR_UNSUPPORTED, NO_CUDA_TEXT);
}
void lode_cuda_model_free(lode_cuda_model *cm) { (void)cm; }
const char *lode_cuda_model_describe(const lode_cuda_model *cm) {
    (void)cm;
    return "cpu";
}
void lode_cuda_kv_free(void *dev_kv) { (void)dev_kv; }
lode_status lode_cuda_eval(struct lode_model *m, struct lode_kv *kv, const struct lode_eval_plan *p, const float *x,
                           const bool *want, float *logits, lode_error *err) {
    (void)m, (void)kv, (void)p, (void)x, (void)want, (void)logits;
    return lode_error_set(err, LODE_ERR_UNSUPPORTED, NO_CUDA_TEXT);
}
lode_status lode_cuda_test_matmul(int type, const void *W, int64_t rows, int64_t cols, const float *X, int64_t n,
                                  float *Y, bool f32, lode_error *err) {
    (void)type, (void)W, (void)rows, (void)cols, (void)X, (void)n, (void)Y, (void)f32;
    return lode_error_set(err, LODE_ERR_UNSUPPORTED, NO_CUDA_TEXT);
}
lode_status lode_cuda_test_rmsnorm(const float *x, const float *w, int64_t n, int64_t H, float eps, float *y,
                                   lode_error *err) {
    (void)x, (void)w, (void)n, (void)H, (void)eps, (void)y;
    return lode_error_set(err, LODE_ERR_UNSUPPORTED, NO_CUDA_TEXT);
}
lode_status lode_cuda_test_rope(float *x, int64_t n, int64_t n_pairs, const float *theta, const int64_t *pos,
                                bool neox, float mag, lode_error *err) {
    (void)x, (void)n, (void)n_pairs, (void)theta, (void)pos, (void)neox, (void)mag;
    return lode_error_set(err, LODE_ERR_UNSUPPORTED, NO_CUDA_TEXT);
}
lode_status lode_cuda_selftest_dequant(int type, const void *row, int64_t cols, float *out, lode_error *err) {
    (void)type, (void)row, (void)cols, (void)out;
    return lode_error_set(err, LODE_ERR_UNSUPPORTED, NO_CUDA_TEXT);
}
lode_status lode_cuda_selftest_attention(bool shared_rope_key, int64_t q_block, double *max_err, lode_error *err) {
    (void)shared_rope_key, (void)q_block;
    *max_err = 0;
    return lode_error_set(err, LODE_ERR_UNSUPPORTED, NO_CUDA_TEXT);
}
lode_status lode_cuda_selftest_mla_weights(struct lode_model *m, double *max_err, lode_error *err) {
    (void)m;
    *max_err = 0;
    return lode_error_set(err, LODE_ERR_UNSUPPORTED, NO_CUDA_TEXT);
}
lode_status lode_cuda_selftest_plan(struct lode_model *m, struct lode_kv *kv, const struct lode_eval_plan *p,
                                    const bool *want, lode_error *err) {
    (void)m, (void)kv, (void)p, (void)want;
    return lode_error_set(err, LODE_ERR_UNSUPPORTED, NO_CUDA_TEXT);
}
lode_status lode_cuda_measure_bandwidth(double *read_gbps, lode_error *err) {
    *read_gbps = 0;
    return lode_error_set(err, LODE_ERR_UNSUPPORTED, NO_CUDA_TEXT);
}
#else
/* Keep the translation unit non-empty under -Wpedantic. */
typedef int lode_cuda_none_unused;
#endif
