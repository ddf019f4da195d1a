/*
 * gen_vocab.c — tokenizers for generated models: a synthetic byte-level BPE
 * vocabulary (merges learned from a small built-in corpus, so common code
 * fragments become single tokens) or a copy of a real vocab GGUF, written as
 * GGUF tokenizer.* metadata and as HF tokenizer.json / tokenizer_config.json.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen_vocab.h"
#include "lode_tok.h"

/* ---- GPT-2 byte <-> unicode map ---------------------------------------- */
static int byte_to_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
    return 256 + n;
}

static int put_utf8(char *o, int cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static const char *k_corpus =
    "#include <stdio.h>\n#include <stdlib.h>\n\nint main(int argc, char **argv) {\n    for (int i = 0; i < argc; i++) {\n"
    "        printf(\"%s\\n\", argv[i]);\n    }\n    return 0;\n}\n\n"
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n"
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        self.items.append(item)\n\n"
    "    def pop(self):\n        return self.items.pop()\n\nfunction add(a, b) {\n  return a + b;\n}\n"
    "const result = items.filter((x) => x !== null).map((x) => x.value);\nexport default function render(props) {\n"
    "  return props.children;\n}\nfn main() {\n    let mut v = Vec::new();\n    v.push(1);\n    println!(\"{:?}\", v);\n}\n"
    "public static void main(String[] args) {\n    System.out.println(\"hello world\");\n}\n"
    "func (s *Server) Handle(w http.ResponseWriter, r *http.Request) error {\n\tif err != nil {\n\t\treturn err\n\t}\n}\n"
    "The quick brown fox jumps over the lazy dog. return value of the function is the number of items in the list.\n"
    "import os\nimport sys\nfrom typing import List, Optional\n\nwhile (true) { if (x == null) break; else continue; }\n";

/* Word-ish pieces of the corpus (letters/digits, spaces+letters, punct runs)
 * in byte-level form, each as a list of symbol strings. */
typedef struct {
    char **sym;
    int n;
} word;

static void free_words(word *w, int n) {
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < w[i].n; j++) free(w[i].sym[j]);
        free(w[i].sym);
    }
    free(w);
}

static bool is_alnum(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

static int split_words(const char *s, word **out) {
    int cap = 256, n = 0;
    word *w = lode_xmalloc((size_t)cap * sizeof *w);
    size_t i = 0, L = strlen(s);
    while (i < L) {
        size_t j = i;
        if (s[j] == ' ' && j + 1 < L && is_alnum((unsigned char)s[j + 1])) j++;
        if (is_alnum((unsigned char)s[j])) {
            while (j < L && is_alnum((unsigned char)s[j])) j++;
        } else if (s[j] == ' ' || s[j] == '\t') {
            while (j < L && (s[j] == ' ' || s[j] == '\t')) j++;
        } else {
            j++;
        }
        if (n == cap) w = lode_xrealloc(w, (size_t)(cap *= 2) * sizeof *w);
        w[n].n = (int)(j - i);
        w[n].sym = lode_xmalloc((size_t)w[n].n * sizeof(char *));
        for (size_t k = i; k < j; k++) {
            char b[8];
            int m = put_utf8(b, byte_to_cp((unsigned char)s[k]));
            b[m] = 0;
            w[n].sym[k - i] = lode_xstrdup(b);
        }
        n++;
        i = j;
    }
    *out = w;
    return n;
}

static const char *k_specials[] = {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜fim▁hole｜>",
                                    "<｜fim▁begin｜>",         "<｜fim▁end｜>",          "<｜User｜>",
                                    "<｜Assistant｜>",          "<|EOT|>"};
#define N_SPECIALS 8

lode_status lode__gen_vocab_synthetic(int64_t n_vocab, const char *pre, lode_gen_vocab *v, lode_error *err) {
    memset(v, 0, sizeof *v);
    if (n_vocab < 256 + N_SPECIALS + 16 || n_vocab > 1000000)
        return lode_error_set(err, LODE_ERR_INVALID_ARG, "synthetic vocabulary size %lld must be in 280..1000000",
                              (long long)n_vocab);
    v->n_tokens = n_vocab;
    v->tokens = lode_xcalloc((size_t)n_vocab, sizeof(char *));
    v->types = lode_xcalloc((size_t)n_vocab, sizeof(int32_t));
    int64_t n_merge_target = n_vocab - 256 - N_SPECIALS;
    v->merges = lode_xcalloc((size_t)n_merge_target, sizeof(char *));
    int64_t nt = 0;
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int m = put_utf8(buf, byte_to_cp(b));
        buf[m] = 0;
        v->types[nt] = 1;
        v->tokens[nt++] = lode_xstrdup(buf);
    }
    word *w;
    int nw = split_words(k_corpus, &w);
    /* Greedy BPE training: merge the most frequent adjacent pair. When the
     * corpus runs out of pairs, remaining slots become unused tokens. */
    while (v->n_merges < n_merge_target) {
        char *best_a = NULL, *best_b = NULL;
        int best = 0;
        for (int i = 0; i < nw; i++)
            for (int j = 0; j + 1 < w[i].n; j++) {
                int cnt = 0;
                for (int i2 = 0; i2 < nw; i2++)
                    for (int j2 = 0; j2 + 1 < w[i2].n; j2++)
                        if (!strcmp(w[i2].sym[j2], w[i].sym[j]) && !strcmp(w[i2].sym[j2 + 1], w[i].sym[j + 1])) cnt++;
                if (cnt > best) {
                    best = cnt;
                    best_a = w[i].sym[j];
                    best_b = w[i].sym[j + 1];
                }
            }
        if (!best) break;
        char *a = lode_xstrdup(best_a), *b = lode_xstrdup(best_b);
        size_t la = strlen(a), lb = strlen(b);
        char *ab = lode_xmalloc(la + lb + 1);
        memcpy(ab, a, la);
        memcpy(ab + la, b, lb + 1);
        char *mg = lode_xmalloc(la + lb + 2);
        snprintf(mg, la + lb + 2, "%s %s", a, b);
        v->merges[v->n_merges++] = mg;
        v->types[nt] = 1;
        v->tokens[nt++] = lode_xstrdup(ab);
        for (int i = 0; i < nw; i++) {
            int o = 0;
            for (int j = 0; j < w[i].n; j++) {
                if (j + 1 < w[i].n && !strcmp(w[i].sym[j], a) && !strcmp(w[i].sym[j + 1], b)) {
                    free(w[i].sym[j]);
                    free(w[i].sym[j + 1]);
                    w[i].sym[o++] = lode_xstrdup(ab);
                    j++;
                } else {
                    w[i].sym[o++] = w[i].sym[j];
                }
            }
            w[i].n = o;
        }
        free(a);
        free(b);
        free(ab);
    }
    free_words(w, nw);
    for (int64_t i = 0; nt < n_vocab - N_SPECIALS; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%lld]", (long long)nt);
        v->types[nt] = 5;
        v->tokens[nt++] = lode_xstrdup(buf);
    }
    v->bos = (int32_t)nt;
    v->eos = (int32_t)nt + 1;
    for (int s = 0; s < N_SPECIALS; s++) {
        v->types[nt] = 3;
        v->tokens[nt++] = lode_xstrdup(k_specials[s]);
    }
    snprintf(v->pre, sizeof v->pre, "%s", pre ? pre : "deepseek-llm");
    v->add_bos = true;
    return LODE_OK;
}

lode_status lode__gen_vocab_from_gguf(const char *path, lode_gen_vocab *v, lode_error *err) {
    memset(v, 0, sizeof *v);
    lode_gguf *g;
    lode_status s = lode_gguf_open(path, &g, err);
    if (s) return s;
    lode_gguf_vtype et;
    uint64_t n = 0, nm = 0;
    int64_t ki = lode_gguf_find_key(g, "tokenizer.ggml.tokens");
    int64_t mi = lode_gguf_find_key(g, "tokenizer.ggml.merges");
    int64_t ti = lode_gguf_find_key(g, "tokenizer.ggml.token_type");
    if (ki < 0 || lode_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, err) || et != LODE_GGUF_STRING || n == 0) {
        lode_gguf_free(g);
        return lode_error_set(err, LODE_ERR_FORMAT, "%s: no tokenizer.ggml.tokens string array", path);
    }
    v->n_tokens = (int64_t)n;
    v->tokens = lode_xcalloc(n, sizeof(char *));
    v->types = lode_xcalloc(n, sizeof(int32_t));
    for (uint64_t i = 0; i < n; i++) {
        const char *str;
        uint64_t len;
        lode_gguf_arr_str(g, ki, i, &str, &len);
        v->tokens[i] = lode_xmalloc(len + 1);
        memcpy(v->tokens[i], str, len);
        v->tokens[i][len] = 0;
        v->types[i] = 1;
    }
    if (ti >= 0 && lode_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &nm, NULL) == LODE_OK && nm == n &&
        et == LODE_GGUF_INT32)
        memcpy(v->types, lode_gguf_arr_data(g, ti), n * sizeof(int32_t));
    if (mi >= 0 && lode_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &nm, NULL) == LODE_OK && et == LODE_GGUF_STRING) {
        v->merges = lode_xcalloc(nm ? nm : 1, sizeof(char *));
        for (uint64_t i = 0; i < nm; i++) {
            const char *str;
            uint64_t len;
            lode_gguf_arr_str(g, mi, i, &str, &len);
            v->merges[i] = lode_xmalloc(len + 1);
            memcpy(v->merges[i], str, len);
            v->merges[i][len] = 0;
        }
        v->n_merges = (int64_t)nm;
    }
    uint32_t u;
    v->bos = lode_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u, NULL) == LODE_OK ? (int32_t)u : -1;
    v->eos = lode_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u, NULL) == LODE_OK ? (int32_t)u : -1;
    const char *pre;
    uint64_t pl;
    if (lode_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &pl, NULL) == LODE_OK && pl < sizeof v->pre) {
        memcpy(v->pre, pre, pl);
        v->pre[pl] = 0;
    } else {
        snprintf(v->pre, sizeof v->pre, "default");
    }
    bool ab = true;
    lode_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &ab, NULL);
    v->add_bos = ab;
    lode_gguf_free(g);
    return LODE_OK;
}

void lode__gen_vocab_free(lode_gen_vocab *v) {
    for (int64_t i = 0; i < v->n_tokens; i++) lode_free(v->tokens[i]);
    for (int64_t i = 0; i < v->n_merges; i++) lode_free(v->merges[i]);
    lode_free(v->tokens);
    lode_free(v->types);
    lode_free(v->merges);
    memset(v, 0, sizeof *v);
}

void lode__gen_vocab_to_gguf(const lode_gen_vocab *v, lode_gguf_writer *w) {
    lode_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    lode_gguf_writer_set_str(w, "tokenizer.ggml.pre", v->pre);
    lode_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, (uint64_t)v->n_tokens);
    lode_gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", v->types, (uint64_t)v->n_tokens);
    lode_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, (uint64_t)v->n_merges);
    if (v->bos >= 0) lode_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    if (v->eos >= 0) {
        lode_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
        lode_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->eos);
    }
    lode_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos);
    lode_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
}

/* ---- HF tokenizer.json ----------------------------------------------------- */
static char *cps_to_utf8(const unsigned *ranges, size_t n) {
    char *o = lode_xmalloc(n * 8 + 1), *p = o;
    for (size_t i = 0; i < n; i++) p += put_utf8(p, (int)ranges[i]);
    *p = 0;
    return o;
}

/* Regex strings in tokenizer.json form for llama.cpp's named pre-tokenizers
 * (spec-model.md §6.5). R2 of deepseek-llm comes from the tokenizer's
 * code-point table, so no copy damaged by Unicode normalization is involved. */
static json_t *split(const char *re) {
    return json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", re, "behavior", "Isolated",
                     "invert", 0);
}

static json_t *pre_tokenizer(const char *pre) {
    json_t *seq = json_array();
    if (!strcmp(pre, "deepseek-llm")) {
        static const unsigned r3[] = {0x21, '-', 0x2F, 0x3A, '-', 0x7E, 0xFF01, '-', 0xFF0F, 0xFF1A, '-', 0xFF5E,
                                      0x2018, '-', 0x201F, 0x3000, '-', 0x3002};
        static const unsigned r5[] = {0x4E00, '-', 0x9FA5, 0x0800, '-', 0x4E00, 0xAC00, '-', 0xD7FF};
        const char *c2 = lode_tok_deepseek_llm_letters();
        char *c3 = cps_to_utf8(r3, sizeof r3 / sizeof r3[0]);
        char *c5 = cps_to_utf8(r5, sizeof r5 / sizeof r5[0]);
        /* Escape the class-syntax characters inside R3 (its range holds
         * '-' '[' '\\' ']' '^' literally as range endpoints only). */
        char buf[4096];
        json_array_append_new(seq, split("[\r\n]"));
        snprintf(buf, sizeof buf, "\\s?[%s]+", c2);
        json_array_append_new(seq, split(buf));
        snprintf(buf, sizeof buf, "\\s?[%s]+", c3);
        json_array_append_new(seq, split(buf));
        json_array_append_new(seq, split("\\s+$"));
        snprintf(buf, sizeof buf, "[%s]+", c5);
        json_array_append_new(seq, split(buf));
        json_array_append_new(seq, split("\\p{N}+"));
        free(c3);
        free(c5);
    } else if (!strcmp(pre, "deepseek-coder")) {
        json_array_append_new(seq, split("[\r\n]"));
        json_array_append_new(seq, split("\\s?\\p{L}+"));
        json_array_append_new(seq, split("\\s?\\p{P}+"));
        static const unsigned r5[] = {0x4E00, '-', 0x9FA5, 0x0800, '-', 0x4E00, 0xAC00, '-', 0xD7FF};
        char *c5 = cps_to_utf8(r5, sizeof r5 / sizeof r5[0]);
        char buf[256];
        snprintf(buf, sizeof buf, "[%s]+", c5);
        json_array_append_new(seq, split(buf));
        free(c5);
        json_array_append_new(seq, json_pack("{s:s, s:b}", "type", "Digits", "individual_digits", 1));
    } else {
        /* GPT-2 style default. */
        json_array_append_new(
            seq, split("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"));
    }
    json_array_append_new(seq, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                                         "trim_offsets", 0, "use_regex", 0));
    return json_pack("{s:s, s:o}", "type", "Sequence", "pretokenizers", seq);
}

lode_status lode__gen_vocab_to_hf(const lode_gen_vocab *v, const char *dir, lode_error *err) {
    json_t *vocab = json_object();
    json_t *added = json_array();
    for (int64_t i = 0; i < v->n_tokens; i++) {
        if (v->types[i] == 3 || v->types[i] == 4) {
            json_array_append_new(added, json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)i,
                                                   "content", v->tokens[i], "single_word", 0, "lstrip", 0, "rstrip",
                                                   0, "normalized", 0, "special",
                                                   v->types[i] == 3 || lode_tok_llamacpp_control(v->tokens[i], strlen(v->tokens[i]))));
        } else {
            json_object_set_new(vocab, v->tokens[i], json_integer(i));
        }
    }
    json_t *merges = json_array();
    for (int64_t i = 0; i < v->n_merges; i++) json_array_append_new(merges, json_string(v->merges[i]));
    json_t *post = json_null();
    if (v->add_bos && v->bos >= 0) {
        const char *b = v->tokens[v->bos];
        post = json_pack("{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:s, s:[I], s:[s]}}}",
                         "type", "TemplateProcessing", "single", "SpecialToken", "id", b, "type_id", 0, "Sequence",
                         "id", "A", "type_id", 0, "pair", "SpecialToken", "id", b, "type_id", 0, "Sequence", "id",
                         "A", "type_id", 0, "SpecialToken", "id", b, "type_id", 1, "Sequence", "id", "B", "type_id",
                         1, "special_tokens", b, "id", b, "ids", (json_int_t)v->bos, "tokens", b);
    }
    json_t *root = json_pack(
        "{s:s, s:n, s:n, s:o, s:n, s:o, s:o, s:o, s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}}", "version", "1.0",
        "truncation", "padding", "added_tokens", added, "normalizer", "pre_tokenizer", pre_tokenizer(v->pre),
        "post_processor", post,
        "decoder", json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1),
        "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
        0, "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab, "merges", merges);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    lode_status s = LODE_OK;
    if (!root || json_dump_file(root, path, JSON_INDENT(1) | JSON_ENSURE_ASCII * 0) != 0)
        s = lode_error_set(err, LODE_ERR_IO, "cannot write %s", path);
    json_decref(root);
    if (s) return s;
    json_t *tc = json_pack("{s:b, s:b, s:s?, s:s?, s:s?, s:s, s:b, s:I}", "add_bos_token", v->add_bos,
                           "add_eos_token", 0, "bos_token", v->bos >= 0 ? v->tokens[v->bos] : NULL, "eos_token",
                           v->eos >= 0 ? v->tokens[v->eos] : NULL, "pad_token",
                           v->eos >= 0 ? v->tokens[v->eos] : NULL, "tokenizer_class", "LlamaTokenizerFast",
                           "clean_up_tokenization_spaces", 0, "model_max_length", (json_int_t)16384);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (!tc || json_dump_file(tc, path, JSON_INDENT(2)) != 0) s = lode_error_set(err, LODE_ERR_IO, "cannot write %s", path);
    json_decref(tc);
    return s;
}
