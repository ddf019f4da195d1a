/* quant_policy.c — see quant_policy.h. */
#include "quant_policy.h"

#include "lode_quant.h"

lode_type lode__quant_fallback(lode_type want, int64_t cols) {
    const lode_type_traits *tr = lode_type_get(want);
    if (tr && cols % tr->block_size == 0) return want;
    /* llama.cpp's choice for rows that do not tile (llama-quant.cpp), so
     * lode's files and quantize-at-load match the community's GGUFs. */
    if (tr && tr->is_quantized && cols % 32 == 0)
        return want == LODE_TYPE_Q4_K ? LODE_TYPE_Q5_0 : want == LODE_TYPE_Q5_K ? LODE_TYPE_Q5_1 : LODE_TYPE_Q8_0;
    return LODE_TYPE_F16;
}
