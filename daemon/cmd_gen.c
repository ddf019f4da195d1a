/*
 * cmd_gen.c — `lode gen PRESET|CONFIG.json -o OUT`: deterministic random
 * models for tests and benchmarks (see engine/lode_gen.h).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"
#include "lode_gen.h"
#include "lode_quant.h"
#include "model_config.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: lode gen PRESET|CONFIG.json -o OUT [--format hf|gguf] [--type T] [--seed S]\n"
            "                [--legacy-kvb] [--kb-type T] [--shard-mb N] [--vocab VOCAB.gguf] [-t N]\n"
            "  PRESET      one of:");
    for (const char *const *n = lode_gen_preset_names(); *n; n++) fprintf(f, " %s", *n);
    fprintf(f, "\n  CONFIG.json a Hugging Face config.json (deepseek_v2/v3 or llama)\n"
               "  --format    gguf (default when OUT ends in .gguf) or hf (a directory)\n"
               "  --type      f32 (default), f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k (quantized: gguf only)\n"
               "  --legacy-kvb  GGUF: one attn_kv_b tensor instead of attn_k_b/attn_v_b\n"
               "  --kb-type   GGUF: type of attn_k_b/attn_v_b (default f32 for quantized files)\n");
}

int lode_cmd_gen(int argc, char **argv) {
    const char *what = NULL, *out = NULL, *fmt = NULL, *vocab = NULL;
    lode_gen_params p = {0};
    p.type = LODE_TYPE_F32;
    p.kb_type = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") && v) out = v, i++;
        else if (!strcmp(a, "--format") && v) fmt = v, i++;
        else if (!strcmp(a, "--vocab") && v) vocab = v, i++;
        else if (!strcmp(a, "--legacy-kvb")) p.legacy_kvb = true;
        else if (!strcmp(a, "--quiet")) p.quiet = true;
        else if (!strcmp(a, "--type") && v) {
            int t = lode_type_from_name(v);
            if (t < 0 || !lode_type_get((lode_type)t)) {
                fprintf(stderr, "lode gen: unknown --type '%s'\n", v);
                return 2;
            }
            p.type = (lode_type)t, i++;
        } else if (!strcmp(a, "--kb-type") && v) {
            int t = lode_type_from_name(v);
            if (t < 0 || !lode_type_get((lode_type)t)) {
                fprintf(stderr, "lode gen: unknown --kb-type '%s'\n", v);
                return 2;
            }
            p.kb_type = t, i++;
        } else if (!strcmp(a, "--seed") && v && lode_cli_parse_i64(v, &x)) p.seed = (uint64_t)x, i++;
        else if (!strcmp(a, "--shard-mb") && v && lode_cli_parse_i64(v, &x) && x > 0) p.shard_bytes = (uint64_t)x << 20, i++;
        else if (!strcmp(a, "-t") && v && lode_cli_parse_i64(v, &x) && x >= 0 && x < 1024) p.n_threads = (int)x, i++;
        else if (a[0] != '-' && !what) what = a;
        else {
            fprintf(stderr, "lode gen: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!what || !out) {
        usage(stderr);
        return 2;
    }
    size_t ol = strlen(out);
    if (!fmt) fmt = ol > 5 && !strcmp(out + ol - 5, ".gguf") ? "gguf" : "hf";
    if (!strcmp(fmt, "gguf")) p.format = LODE_GEN_GGUF;
    else if (!strcmp(fmt, "hf")) p.format = LODE_GEN_HF;
    else {
        fprintf(stderr, "lode gen: --format must be hf or gguf\n");
        return 2;
    }
    p.out = out;
    lode_config cfg;
    const char *vocab_kind = "synthetic";
    lode_error err = {0};
    size_t wl = strlen(what);
    lode_status s;
    if (wl > 5 && !strcmp(what + wl - 5, ".json")) s = lode__config_from_hf(what, &cfg, &err);
    else s = lode_gen_preset(what, &cfg, &vocab_kind, &err);
    if (s) {
        fprintf(stderr, "lode gen: %s\n", err.text);
        return s == LODE_ERR_NOT_FOUND ? 2 : 1;
    }
    char *found = NULL;
    if (vocab) p.vocab_gguf = vocab;
    else if (strcmp(vocab_kind, "synthetic") != 0) {
        found = lode_gen_find_vocab(vocab_kind);
        if (!found && !strcmp(vocab_kind, "deepseek-llm")) {
            fprintf(stderr, "lode gen: note: ggml-vocab-deepseek-llm.gguf not found; using a synthetic vocabulary\n");
            p.vocab_pre = "deepseek-llm";
        } else if (!found) {
            fprintf(stderr,
                    "lode gen: preset '%s' carries the real %s vocabulary, but ggml-vocab-%s.gguf was not found in "
                    "$LODE_VOCAB_DIR or ../shared/data/vocab; pass --vocab PATH\n",
                    what, vocab_kind, vocab_kind);
            return 1;
        }
        p.vocab_gguf = found;
        p.coder_v2_fim = !strcmp(what, "lite");
    } else {
        p.vocab_pre = cfg.arch == LODE_ARCH_LLAMA ? "deepseek-coder" : "deepseek-llm";
    }
    s = lode_gen_write(&cfg, &p, &err);
    lode_free(found);
    if (s) {
        fprintf(stderr, "lode gen: %s\n", err.text);
        return 1;
    }
    return 0;
}
