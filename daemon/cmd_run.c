/*
 * cmd_run.c — `lode run -m MODEL -p TEXT [-n N] [--temp T] [--seed S]`:
 * generate text. The prompt is tokenized with the model's own tokenizer
 * (BOS added when the model wants it; special-token text in the prompt is
 * parsed), evaluated in chunks, then tokens are sampled until -n, an
 * end-of-generation token or a stop string. Output streams to stdout as
 * whole UTF-8 characters; timings go to stderr.
 *   --fim PREFIX --suffix SUFFIX   fill-in-the-middle prompt (model's FIM format)
 *   --chat                          wrap -p as a user message in the chat format
 *   --tokens 1,2,3                  prompt as token ids (no tokenizer needed)
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"
#include "lode_engine.h"
#include "lode_sampler.h"
#include "lode_tok.h"

#define MAX_STOPS 16

static void usage(FILE *f) {
    fprintf(f, "usage: lode run -m MODEL (-p TEXT | --fim PREFIX --suffix SUFFIX | --tokens 1,2,3) [-n N]\n"
               "                [--chat] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]\n"
               "                [--seed S] [--stop STR]... [--show-special] [-c CTX] " LODE_CLI_MODEL_FLAGS_HELP "\n");
}

int lode_cmd_run(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *fim = NULL, *suffix = "", *toks = NULL;
    const char *stops[MAX_STOPS];
    size_t n_stops = 0;
    int64_t n_gen = 128, ctx = 0;
    bool chat = false, show_special = false;
    lode_sampler_params sp = lode_sampler_default_params();
    sp.temp = 0.8f;
    lode_model_params mp = lode_model_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        float f;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") && v) model = v, i++;
        else if (!strcmp(a, "-p") && v) prompt = v, i++;
        else if (!strcmp(a, "--fim") && v) fim = v, i++;
        else if (!strcmp(a, "--suffix") && v) suffix = v, i++;
        else if (!strcmp(a, "--tokens") && v) toks = v, i++;
        else if (!strcmp(a, "--chat")) chat = true;
        else if (!strcmp(a, "--show-special")) show_special = true;
        else if (!strcmp(a, "--stop") && v && n_stops < MAX_STOPS) stops[n_stops++] = v, i++;
        else if (!strcmp(a, "-n") && v && (ok = lode_cli_parse_i64(v, &n_gen) && n_gen >= 0)) i++;
        else if (!strcmp(a, "-c") && v && (ok = lode_cli_parse_i64(v, &ctx) && ctx > 0)) i++;
        else if (!strcmp(a, "--seed") && v && (ok = lode_cli_parse_i64(v, &x))) sp.seed = (uint64_t)x, i++;
        else if (!strcmp(a, "--top-k") && v && (ok = lode_cli_parse_i64(v, &x))) sp.top_k = (int32_t)x, i++;
        else if (!strcmp(a, "--temp") && v && (ok = lode_cli_parse_f32(v, &f))) sp.temp = f, i++;
        else if (!strcmp(a, "--top-p") && v && (ok = lode_cli_parse_f32(v, &f))) sp.top_p = f, i++;
        else if (!strcmp(a, "--min-p") && v && (ok = lode_cli_parse_f32(v, &f))) sp.min_p = f, i++;
        else if (!strcmp(a, "--repeat-penalty") && v && (ok = lode_cli_parse_f32(v, &f))) sp.repeat_penalty = f, i++;
        else if ((x = lode_cli_model_flag("run", a, v, &mp)) != 0) {
            if (x < 0) return 2;
            i += (int)x - 1;
        } else ok = false;
        if (!ok) {
            fprintf(stderr, "lode run: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!model || (!prompt && !fim && !toks)) {
        usage(stderr);
        return 2;
    }
    lode_error err = {0};
    lode_tok *tok = NULL;
    lode_model *m = NULL;
    lode_kv *kv = NULL;
    lode_sampler *smp = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    float *lg = NULL;
    int rc = 1;
    if (lode_tok_load(model, &tok, &err)) goto fail;
    if (toks) {
        if (!lode_cli_parse_ids(toks, &ids, &n_ids) || !n_ids) {
            fprintf(stderr, "lode run: --tokens must be a non-empty list of token ids\n");
            rc = 2;
            goto done;
        }
    } else if (fim) {
        if (lode_tok_fim_prompt(tok, fim, strlen(fim), suffix, strlen(suffix), &ids, &n_ids, &err)) goto fail;
    } else if (chat) {
        lode_chat_msg msg = {"user", prompt};
        if (lode_tok_chat_prompt(tok, &msg, 1, &ids, &n_ids, &err)) goto fail;
    } else if (lode_tok_encode(tok, prompt, strlen(prompt), lode_tok_add_bos(tok), true, &ids, &n_ids, &err)) {
        goto fail;
    }
    if (lode_model_load(model, &mp, &m, &err)) goto fail;
    const int64_t V = lode_model_config(m)->n_vocab;
    if (lode_tok_n_vocab(tok) > V) {
        fprintf(stderr, "lode run: the tokenizer has %lld tokens but the model only %lld rows\n",
                (long long)lode_tok_n_vocab(tok), (long long)V);
        goto done;
    }
    if (!ctx) ctx = (int64_t)n_ids + n_gen + 1;
    if ((int64_t)n_ids + n_gen > ctx) {
        fprintf(stderr, "lode run: prompt (%zu tokens) + %lld new tokens exceed the context of %lld (-c)\n", n_ids,
                (long long)n_gen, (long long)ctx);
        goto done;
    }
    if (lode_kv_new(m, ctx, &kv, &err)) goto fail;
    int32_t seq = lode_kv_seq_new(kv);
    lg = lode_xmalloc((size_t)V * sizeof(float));
    smp = lode_sampler_new(&sp, V);
    /* Prefill in chunks of 512 (bounded workspace); logits of the last only. */
    double t0 = lode_time_s();
    bool *want = lode_xcalloc(512, sizeof(bool));
    for (size_t off = 0; off < n_ids; off += 512) {
        size_t k = n_ids - off < 512 ? n_ids - off : 512;
        memset(want, 0, 512);
        want[k - 1] = off + k == n_ids;
        lode_batch b = {(int64_t)k, ids + off, NULL, seq, want};
        if (lode_model_eval(m, kv, &b, lg, &err)) {
            lode_free(want);
            goto fail;
        }
    }
    lode_free(want);
    double t1 = lode_time_s();
    int32_t *hist = lode_xmalloc((n_ids + (size_t)n_gen + 1) * sizeof(int32_t));
    memcpy(hist, ids, n_ids * sizeof(int32_t));
    size_t n_hist = n_ids;
    lode_tok_stream ts;
    lode_tok_stream_init(&ts, show_special);
    size_t tcap = 4096, tlen = 0, shown = 0;
    char *text = lode_xmalloc(tcap);
    int64_t produced = 0;
    const char *why = "length";
    for (int64_t i = 0; i < n_gen; i++) {
        int32_t id = lode_sampler_sample(smp, lg, hist, (int64_t)n_hist);
        hist[n_hist++] = id;
        produced++;
        if (lode_tok_is_eog(tok, id)) {
            why = "end of generation";
            break;
        }
        char piece[1024];
        size_t pl = lode_tok_stream_push(tok, &ts, id, piece, sizeof piece);
        if (tlen + pl + 1 > tcap) text = lode_xrealloc(text, tcap = (tcap + pl) * 2);
        memcpy(text + tlen, piece, pl);
        tlen += pl;
        size_t cut, emit;
        bool stop = lode_stop_check(text, tlen, stops, n_stops, &cut, &emit);
        if (emit > shown) fwrite(text + shown, 1, emit - shown, stdout), shown = emit;
        fflush(stdout);
        if (stop) {
            why = "stop string";
            break;
        }
        if (i + 1 == n_gen) break;
        lode_batch b = {1, &id, NULL, seq, NULL};
        if (lode_model_eval(m, kv, &b, lg, &err)) {
            lode_free(hist);
            lode_free(text);
            goto fail;
        }
    }
    if (!n_stops || strcmp(why, "stop string")) {
        char tail[8];
        size_t tl = lode_tok_stream_flush(&ts, tail, sizeof tail);
        fwrite(text + shown, 1, tlen - shown, stdout);
        fwrite(tail, 1, tl, stdout);
    }
    printf("\n");
    double t2 = lode_time_s();
    fprintf(stderr, "lode run: prompt %zu tokens in %.2f s (%.1f t/s); generated %lld tokens in %.2f s (%.1f t/s); stop: %s\n",
            n_ids, t1 - t0, (double)n_ids / (t1 - t0 + 1e-9), (long long)produced, t2 - t1,
            (double)produced / (t2 - t1 + 1e-9), why);
    lode_free(hist);
    lode_free(text);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "lode run: %s\n", err.text);
done:
    lode_sampler_free(smp);
    lode_free(lg);
    lode_free(ids);
    lode_kv_free(kv);
    lode_model_free(m);
    lode_tok_free(tok);
    return rc;
}
