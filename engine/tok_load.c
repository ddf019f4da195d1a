/*
 * tok_load.c — tokenizer loading from GGUF metadata (tokenizer.ggml.*) and
 * from Hugging Face tokenizer.json (+ tokenizer_config.json), and the
 * `path` dispatcher (GGUF file, HF directory, tokenizer.json).
 */
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include "tok_impl.h"

static lode_status add_merge(lode_tok *t, const char *a, size_t la, const char *b, size_t lb, int32_t rank) {
    int32_t ia = lode__strmap_get(&t->vocab, a, la), ib = lode__strmap_get(&t->vocab, b, lb);
    if (ia < 0 || ib < 0) return LODE_OK; /* merges of unknown tokens never fire */
    char buf[1024];
    if (la + lb > sizeof buf) return LODE_OK;
    memcpy(buf, a, la);
    memcpy(buf + la, b, lb);
    int32_t m = lode__strmap_get(&t->vocab, buf, la + lb);
    if (m >= 0) lode__pairmap_put(&t->merges, ia, ib, rank, m);
    return LODE_OK;
}

/* llama.cpp detects FIM and end-of-turn tokens by their text and forces
 * them to CONTROL, so they are never matched in plain text (verified against
 * its tokenizer: DeepSeek-Coder's <｜fim▁hole｜> in source text is tokenized
 * as text, while <|EOT|> and <|User|> stay user-defined). */
bool lode_tok_llamacpp_control(const char *text, size_t len) {
    static const char *const forced[] = {
        "<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|fim_suffix|>", "<fim-suffix>",
        "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
        "<|fim_pad|>", "<fim-pad>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<|file_sep|>", "<|eot_id|>",
        "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>", "<｜end▁of▁sentence｜>",
        "<|eom_id|>"};
    for (size_t k = 0; k < sizeof forced / sizeof forced[0]; k++)
        if (len == strlen(forced[k]) && !memcmp(text, forced[k], len)) return true;
    return false;
}

lode_status lode_tok_from_gguf(const lode_gguf *g, lode_tok **out, lode_error *err) {
    *out = NULL;
    const char *path = lode_gguf_path(g);
    const char *model;
    uint64_t ml;
    if (lode_gguf_get_str(g, "tokenizer.ggml.model", &model, &ml, NULL) != LODE_OK)
        return lode_error_set(err, LODE_ERR_FORMAT, "%s: no tokenizer in this GGUF (tokenizer.ggml.model missing)", path);
    if (!(ml == 4 && !memcmp(model, "gpt2", 4)))
        return lode_error_set(err, LODE_ERR_UNSUPPORTED,
                              "%s: tokenizer model '%.*s' is not supported (lode implements byte-level BPE, 'gpt2')",
                              path, (int)ml, model);
    lode_gguf_vtype et;
    uint64_t n;
    int64_t ki = lode_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (ki < 0 || lode_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, err) || et != LODE_GGUF_STRING || !n ||
        n > (1u << 24))
        return lode_error_set(err, LODE_ERR_FORMAT, "%s: tokenizer.ggml.tokens must be a non-empty string array", path);
    lode_tok *t = lode__tok_alloc((int64_t)n);
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        uint64_t l;
        lode_gguf_arr_str(g, ki, i, &s, &l);
        t->text[i] = lode_xmalloc(l + 1);
        memcpy(t->text[i], s, l);
        t->text[i][l] = 0;
        t->len[i] = (uint32_t)l;
        t->type[i] = LODE_TOKEN_NORMAL;
    }
    int64_t ti = lode_gguf_find_key(g, "tokenizer.ggml.token_type");
    uint64_t nt;
    if (ti >= 0 && lode_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &nt, NULL) == LODE_OK && nt == n &&
        et == LODE_GGUF_INT32) {
        const char *d = lode_gguf_arr_data(g, ti);
        for (uint64_t i = 0; i < n; i++) memcpy(&t->type[i], d + 4 * i, 4);
    }
    uint32_t u;
    if (lode_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u, NULL) == LODE_OK && u < n) t->bos = (int32_t)u;
    if (lode_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u, NULL) == LODE_OK && u < n) t->eos = (int32_t)u;
    for (uint64_t i = 0; i < n; i++)
        if ((t->type[i] == LODE_TOKEN_USER_DEFINED || t->type[i] == LODE_TOKEN_NORMAL) &&
            lode_tok_llamacpp_control(t->text[i], t->len[i]))
            t->type[i] = LODE_TOKEN_CONTROL;
    bool ab = true;
    lode_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &ab, NULL);
    t->add_bos = ab && t->bos >= 0;
    for (int64_t i = 0; i < (int64_t)n; i++) lode__strmap_put(&t->vocab, t->text[i], t->len[i], (int32_t)i);
    int64_t mi = lode_gguf_find_key(g, "tokenizer.ggml.merges");
    uint64_t nm;
    if (mi >= 0 && lode_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &nm, NULL) == LODE_OK && et == LODE_GGUF_STRING) {
        for (uint64_t i = 0; i < nm; i++) {
            const char *s;
            uint64_t l;
            lode_gguf_arr_str(g, mi, i, &s, &l);
            const char *sp = memchr(s + 1, ' ', l > 1 ? l - 1 : 0); /* a token never starts with its separator */
            if (!sp) continue;
            add_merge(t, s, (size_t)(sp - s), sp + 1, (size_t)(s + l - sp - 1), (int32_t)i);
        }
    }
    const char *pre = "default";
    char prebuf[64];
    const char *ps;
    uint64_t pl;
    if (lode_gguf_get_str(g, "tokenizer.ggml.pre", &ps, &pl, NULL) == LODE_OK && pl < sizeof prebuf) {
        memcpy(prebuf, ps, pl);
        prebuf[pl] = 0;
        pre = prebuf;
    }
    lode_status s = lode__tok_named_pre(t, pre, err);
    if (!s) s = lode__tok_finish(t, err);
    if (s) {
        if (err && s == LODE_ERR_UNSUPPORTED && strncmp(err->text, path, strlen(path)) != 0) {
            char m[LODE_ERROR_TEXT];
            snprintf(m, sizeof m, "%s", err->text);
            snprintf(err->text, sizeof err->text, "%.200s: %.300s", path, m);
        }
        lode_tok_free(t);
        return s;
    }
    *out = t;
    return LODE_OK;
}

/* ---- tokenizer.json ------------------------------------------------------------ */
static const char *special_text(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static lode_status json_pre(lode_tok *t, json_t *pt, const char *path, int depth, lode_error *err) {
    if (!pt || json_is_null(pt)) return LODE_OK;
    const char *type = json_string_value(json_object_get(pt, "type"));
    if (!type || depth > 8) return lode_error_set(err, LODE_ERR_FORMAT, "%s: pre_tokenizer without a type", path);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(pt, "pretokenizers");
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v) {
            lode_status s = json_pre(t, v, path, depth + 1, err);
            if (s) return s;
        }
        return LODE_OK;
    }
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(pt, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        char lit[1024];
        if (!re) { /* String pattern: a literal */
            const char *str = json_string_value(json_object_get(pat, "String"));
            if (!str || strlen(str) > 200) return lode_error_set(err, LODE_ERR_FORMAT, "%s: Split without a pattern", path);
            snprintf(lit, sizeof lit, "\\Q%s\\E", str);
            re = lit;
        }
        const char *beh = json_string_value(json_object_get(pt, "behavior"));
        int b = !beh || !strcmp(beh, "Isolated") ? 0 : !strcmp(beh, "Removed") ? 1 : !strcmp(beh, "MergedWithPrevious") ? 2
              : !strcmp(beh, "MergedWithNext") ? 3 : -1;
        if (b < 0 || json_is_true(json_object_get(pt, "invert")))
            return lode_error_set(err, LODE_ERR_UNSUPPORTED, "%s: Split behavior '%s'%s is not supported", path,
                                  beh ? beh : "?", json_is_true(json_object_get(pt, "invert")) ? " (inverted)" : "");
        return lode__tok_add_split(t, re, b, err);
    }
    if (!strcmp(type, "ByteLevel")) {
        json_t *ur = json_object_get(pt, "use_regex");
        if (json_is_true(json_object_get(pt, "add_prefix_space")))
            return lode_error_set(err, LODE_ERR_UNSUPPORTED, "%s: ByteLevel add_prefix_space is not supported", path);
        if (!ur || json_is_true(ur))
            return lode__tok_add_split(t, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", 0, err);
        return LODE_OK;
    }
    if (!strcmp(type, "Digits"))
        return lode__tok_add_split(t, json_is_true(json_object_get(pt, "individual_digits")) ? "\\p{N}" : "\\p{N}+", 0, err);
    return lode_error_set(err, LODE_ERR_UNSUPPORTED, "%s: pre-tokenizer '%s' is not supported", path, type);
}

lode_status lode__tok_from_json(const char *path, const char *cfg_path, lode_tok **out, lode_error *err) {
    *out = NULL;
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return lode_error_set(err, LODE_ERR_FORMAT, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    lode_status s = LODE_OK;
    lode_tok *t = NULL;
    json_t *model = json_object_get(root, "model");
    json_t *vocab = json_object_get(model, "vocab");
    const char *mt = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(vocab) || (mt && strcmp(mt, "BPE"))) {
        s = lode_error_set(err, LODE_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (byte-level BPE only)", path,
                           mt ? mt : "?");
        goto done;
    }
    json_t *norm = json_object_get(root, "normalizer");
    const char *nt = json_string_value(json_object_get(norm, "type"));
    bool empty_seq = nt && !strcmp(nt, "Sequence") && json_array_size(json_object_get(norm, "normalizers")) == 0;
    if (norm && !json_is_null(norm) && !empty_seq) {
        s = lode_error_set(err, LODE_ERR_UNSUPPORTED, "%s: normalizer '%s' is not supported", path, nt ? nt : "?");
        goto done;
    }
    int64_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) if (json_integer_value(v) + 1 > n) n = json_integer_value(v) + 1;
    json_t *added = json_object_get(root, "added_tokens");
    size_t ai;
    json_array_foreach(added, ai, v) if (json_integer_value(json_object_get(v, "id")) + 1 > n) n = json_integer_value(json_object_get(v, "id")) + 1;
    if (n <= 0 || n > (1 << 24)) {
        s = lode_error_set(err, LODE_ERR_FORMAT, "%s: vocabulary size %lld is invalid", path, (long long)n);
        goto done;
    }
    t = lode__tok_alloc(n);
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (id < 0 || t->text[id]) continue;
        t->text[id] = lode_xstrdup(key);
        t->len[id] = (uint32_t)strlen(key);
        t->type[id] = LODE_TOKEN_NORMAL;
    }
    json_array_foreach(added, ai, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        const char *c = json_string_value(json_object_get(v, "content"));
        if (id < 0 || !c) continue;
        lode_free(t->text[id]);
        t->text[id] = lode_xstrdup(c);
        t->len[id] = (uint32_t)strlen(c);
        t->type[id] = json_is_true(json_object_get(v, "special")) ? LODE_TOKEN_CONTROL : LODE_TOKEN_USER_DEFINED;
    }
    for (int64_t i = 0; i < n; i++) {
        if (!t->text[i]) { /* holes: unused ids */
            char b[32];
            snprintf(b, sizeof b, "[PAD%lld]", (long long)i);
            t->text[i] = lode_xstrdup(b);
            t->len[i] = (uint32_t)strlen(b);
            t->type[i] = LODE_TOKEN_UNUSED;
        }
        lode__strmap_put(&t->vocab, t->text[i], t->len[i], (int32_t)i);
    }
    json_t *merges = json_object_get(model, "merges");
    json_array_foreach(merges, ai, v) {
        if (json_is_string(v)) {
            const char *m = json_string_value(v);
            size_t l = strlen(m);
            const char *sp = l > 1 ? memchr(m + 1, ' ', l - 1) : NULL;
            if (sp) add_merge(t, m, (size_t)(sp - m), sp + 1, (size_t)(m + l - sp - 1), (int32_t)ai);
        } else if (json_is_array(v) && json_array_size(v) == 2) {
            const char *a = json_string_value(json_array_get(v, 0)), *b = json_string_value(json_array_get(v, 1));
            if (a && b) add_merge(t, a, strlen(a), b, strlen(b), (int32_t)ai);
        }
    }
    if ((s = json_pre(t, json_object_get(root, "pre_tokenizer"), path, 0, err))) goto done;
    snprintf(t->pre, sizeof t->pre, "tokenizer.json (%d splits)", t->n_splits);
    /* BOS/EOS and add_bos from tokenizer_config.json. */
    json_t *cfg = cfg_path ? json_load_file(cfg_path, 0, NULL) : NULL;
    t->add_bos = true;
    if (cfg) {
        const char *b = special_text(json_object_get(cfg, "bos_token"));
        const char *e = special_text(json_object_get(cfg, "eos_token"));
        if (b) t->bos = lode__strmap_get(&t->vocab, b, strlen(b));
        if (e) t->eos = lode__strmap_get(&t->vocab, e, strlen(e));
        json_t *ab = json_object_get(cfg, "add_bos_token");
        if (json_is_boolean(ab)) t->add_bos = json_is_true(ab);
        json_decref(cfg);
    }
    if (t->bos < 0) t->bos = lode__strmap_get(&t->vocab, "<｜begin▁of▁sentence｜>", strlen("<｜begin▁of▁sentence｜>"));
    if (t->eos < 0) t->eos = lode__strmap_get(&t->vocab, "<｜end▁of▁sentence｜>", strlen("<｜end▁of▁sentence｜>"));
    t->add_bos = t->add_bos && t->bos >= 0;
    /* The vocab map was filled above; finish builds the rest. */
    lode__strmap_free(&t->vocab);
    s = lode__tok_finish(t, err);
done:
    json_decref(root);
    if (s) {
        lode_tok_free(t);
        return s;
    }
    *out = t;
    return LODE_OK;
}

lode_status lode_tok_load(const char *path, lode_tok **out, lode_error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) return lode_error_set(err, LODE_ERR_NOT_FOUND, "%s: no such file or directory", path);
    char tj[4096], tc[4096];
    if (S_ISDIR(sb.st_mode)) {
        snprintf(tj, sizeof tj, "%s/tokenizer.json", path);
        snprintf(tc, sizeof tc, "%s/tokenizer_config.json", path);
        if (stat(tj, &sb) != 0)
            return lode_error_set(err, LODE_ERR_NOT_FOUND, "%s: the model directory has no tokenizer.json", path);
        return lode__tok_from_json(tj, stat(tc, &sb) == 0 ? tc : NULL, out, err);
    }
    size_t l = strlen(path);
    if (l >= 5 && !strcmp(path + l - 5, ".json")) {
        snprintf(tc, sizeof tc, "%.*stokenizer_config.json", (int)(strrchr(path, '/') ? strrchr(path, '/') - path + 1 : 0), path);
        return lode__tok_from_json(path, stat(tc, &sb) == 0 ? tc : NULL, out, err);
    }
    lode_gguf *g;
    lode_status s = lode_gguf_open(path, &g, err);
    if (s) return s;
    s = lode_tok_from_gguf(g, out, err);
    lode_gguf_free(g);
    return s;
}
