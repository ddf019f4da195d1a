/* model_describe.c — human-readable model summary for `lode inspect`. */
#include <stdio.h>

#include "model_impl.h"

static void tensor_table(const lode_model *m, FILE *f) {
    int64_t n = m->gguf ? lode_gguf_n_tensors(m->gguf) : lode_st_n_tensors(m->st);
    fprintf(f, "\ntensors (%lld):\n  %-56s %-6s %s\n", (long long)n, "name", "type", "shape (GGML order)");
    for (int64_t i = 0; i < n; i++) {
        const lode_tensor *t = m->gguf ? lode_gguf_tensor(m->gguf, i) : lode_st_tensor(m->st, i);
        fprintf(f, "  %-56s %-6s [", t->name, lode_type_name(t->type));
        for (int d = 0; d < t->n_dims; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
        fprintf(f, "]\n");
    }
}

void lode_model_describe(const lode_model *m, void *file) {
    FILE *f = file;
    const lode_config *c = &m->cfg;
    fprintf(f, "model:        %s (%s)\n", m->path, m->format);
    fprintf(f, "architecture: %s\n", c->arch == LODE_ARCH_DEEPSEEK2 ? "deepseek2 (MLA + DeepSeekMoE)" : "llama");
    fprintf(f, "vocab %lld, hidden %lld, layers %lld, heads %lld (kv %lld), context %lld\n", (long long)c->n_vocab,
            (long long)c->n_embd, (long long)c->n_layer, (long long)c->n_head, (long long)c->n_head_kv,
            (long long)c->n_ctx_train);
    static const char *rs[] = {"none", "linear", "yarn"};
    fprintf(f, "rope: theta %g, scaling %s, factor %g", c->rope_theta, rs[c->rope_scaling], c->rope_factor);
    if (c->rope_scaling == LODE_ROPE_SCALING_YARN)
        fprintf(f, ", original ctx %lld, beta %g/%g, mscale %g/%g", (long long)c->rope_orig_ctx, c->yarn_beta_fast,
                c->yarn_beta_slow, c->yarn_mscale, c->yarn_mscale_all_dim);
    fprintf(f, "; softmax scale %.8g\n", m->attn_scale);
    if (c->arch == LODE_ARCH_DEEPSEEK2) {
        fprintf(f, "MLA: q_lora_rank %lld, kv_lora_rank %lld, qk_nope %lld, qk_rope %lld, v %lld, kv_b %s\n",
                (long long)c->q_lora_rank, (long long)c->kv_lora_rank, (long long)c->qk_nope_dim,
                (long long)c->qk_rope_dim, (long long)c->v_head_dim,
                m->layers[0].split_kvb ? "split (attn_k_b/attn_v_b)" : "single (kv_b_proj / attn_kv_b)");
        static const char *tm[] = {"greedy", "group_limited_greedy", "noaux_tc"};
        fprintf(f, "MoE: %lld routed experts (width %lld), top-%lld, %lld shared, first %lld layers dense (width %lld)\n",
                (long long)c->n_expert, (long long)c->n_ff_exp, (long long)c->n_expert_used,
                (long long)c->n_expert_shared, (long long)c->first_k_dense, (long long)c->n_ff);
        fprintf(f, "routing: %s, %s scores, groups %lld/%lld, norm_topk_prob %s, routed_scaling %g\n",
                tm[c->topk_method], c->scoring == LODE_SCORING_SIGMOID ? "sigmoid" : "softmax",
                (long long)c->topk_group, (long long)c->n_group, c->norm_topk_prob ? "true" : "false",
                c->routed_scaling);
    } else {
        fprintf(f, "head dim %lld, FFN %lld\n", (long long)c->head_dim, (long long)c->n_ff);
    }
    fprintf(f, "BOS %d, EOS %d, tied embeddings %s\n", c->bos_id, c->eos_id, c->tie_embeddings ? "yes" : "no");
    double kvt = (double)lode_model_kv_width(m) * (double)c->n_layer * 4.0;
    fprintf(f, "memory: weights %.2f GB (%s); KV cache %.0f bytes/token (f32): 4K %.2f GB, 16K %.2f GB, 128K %.2f GB\n",
            (double)m->weight_bytes / 1e9, m->resident ? "read into RAM" : "mapped", kvt, kvt * 4096 / 1e9,
            kvt * 16384 / 1e9, kvt * 131072 / 1e9);
    if (m->n_r16)
        fprintf(f, "int8 kernels: %lld matrices (%.2f GB) interleaved in 16-row groups (r16; LODE_R16=0 keeps rows)\n",
                (long long)m->n_r16, (double)m->r16_bytes / 1e9);
    tensor_table(m, f);
}
