/* quant_policy.h — which type a weight matrix gets when a model is quantized
 * (by `lode gen --type` or at load with `--quant`). Private to engine/. */
#ifndef LODE_QUANT_POLICY_H
#define LODE_QUANT_POLICY_H
#include "lode_tensor.h"
#include <stdint.h>
/* `want` when rows of `cols` elements tile into its blocks; otherwise, as
 * llama.cpp's quantizer does, a 32-element type: q4_k -> q5_0, q5_k -> q5_1,
 * other quantized targets -> q8_0; else f16. */
lode_type lode__quant_fallback(lode_type want, int64_t cols);
#endif
