/*
 * gen_seeds.c — writes a small seed corpus for the file fuzzers using lode's
 * own writers: usage `gen_seeds DIR` creates DIR/gguf/ and DIR/safetensors/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lode_gguf.h"
#include "lode_safetensors.h"

static void check(lode_status s, const lode_error *e) {
    if (s) {
        fprintf(stderr, "gen_seeds: %s\n", e->text);
        exit(1);
    }
}

static void gguf_seed(const char *path, uint32_t align, int variant) {
    lode_error e = {0};
    lode_gguf_writer *w = lode_gguf_writer_new();
    if (align != 32) lode_gguf_writer_set_alignment(w, align);
    lode_gguf_writer_set_str(w, "general.architecture", "deepseek2");
    lode_gguf_writer_set_u32(w, "deepseek2.block_count", 2);
    lode_gguf_writer_set_f32(w, "deepseek2.rope.freq_base", 10000.0f);
    lode_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    lode_gguf_writer_set_u64(w, "k.u64", 123456789);
    lode_gguf_writer_set_i32(w, "k.i32", -3);
    const char *toks[] = {"<s>", "a", "bc", ""};
    lode_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    int32_t tt[] = {3, 1, 1, 1};
    lode_gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", tt, 4);
    float sc[] = {0.5f, 1.0f};
    lode_gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", sc, 2);
    int64_t ne1[] = {8}, ne2[] = {32, 2}, ne3[] = {4, 2, 2};
    check(lode_gguf_writer_add_tensor(w, "output_norm.weight", LODE_TYPE_F32, 1, ne1, &e), &e);
    check(lode_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", variant ? LODE_TYPE_Q8_0 : LODE_TYPE_F16, 2, ne2, &e),
          &e);
    check(lode_gguf_writer_add_tensor(w, "blk.0.ffn_up_exps.weight", LODE_TYPE_BF16, 3, ne3, &e), &e);
    check(lode_gguf_writer_begin(w, path, &e), &e);
    static uint8_t buf[256];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)i;
    check(lode_gguf_writer_write_data(w, buf, 32, &e), &e);
    check(lode_gguf_writer_write_data(w, buf, variant ? 68 : 128, &e), &e);
    check(lode_gguf_writer_write_data(w, buf, 32, &e), &e);
    check(lode_gguf_writer_finish(w, &e), &e);
    lode_gguf_writer_free(w);
}

static void st_seed(const char *path) {
    lode_error e = {0};
    lode_st_writer *w = lode_st_writer_new();
    int64_t ne1[] = {4}, ne2[] = {2, 3};
    check(lode_st_writer_add_tensor(w, "model.norm.weight", LODE_TYPE_BF16, 1, ne1, &e), &e);
    check(lode_st_writer_add_tensor(w, "model.layers.0.self_attn.q_proj.weight", LODE_TYPE_F32, 2, ne2, &e), &e);
    check(lode_st_writer_add_tensor(w, "x.i64", LODE_TYPE_I64, 1, ne1, &e), &e);
    check(lode_st_writer_begin(w, path, &e), &e);
    static uint8_t buf[64];
    check(lode_st_writer_write_data(w, buf, 8, &e), &e);
    check(lode_st_writer_write_data(w, buf, 24, &e), &e);
    check(lode_st_writer_write_data(w, buf, 32, &e), &e);
    check(lode_st_writer_finish(w, &e), &e);
    lode_st_writer_free(w);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds DIR\n");
        return 2;
    }
    char p[4096];
    snprintf(p, sizeof p, "%s/gguf", argv[1]);
    mkdir(argv[1], 0755);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/gguf/a.gguf", argv[1]);
    gguf_seed(p, 32, 0);
    snprintf(p, sizeof p, "%s/gguf/b.gguf", argv[1]);
    gguf_seed(p, 64, 1);
    snprintf(p, sizeof p, "%s/safetensors", argv[1]);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/safetensors/a.safetensors", argv[1]);
    st_seed(p);
    return 0;
}
