/*
 * unit_models.h — the tiny random model a unit test loads: one of `lode gen`'s
 * presets written as GGUF to a per-process path under /tmp (the caller
 * removes it). Fails the test with the generator's message.
 */
#ifndef LODE_UNIT_MODELS_H
#define LODE_UNIT_MODELS_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

#include "lode_gen.h"
#include "lode_quant.h"

static inline void lode_test_gen(char *path, size_t cap, const char *tag, const char *preset, lode_type type,
                                 bool legacy_kvb, const char *vocab_pre) {
    snprintf(path, cap, "/tmp/lode-test-%s-%d-%s-%s.gguf", tag, (int)getpid(), preset, lode_type_name(type));
    lode_config cfg;
    const char *vocab;
    lode_error err = {0};
    cr_assert_eq(lode_gen_preset(preset, &cfg, &vocab, &err), LODE_OK, "%s", err.text);
    lode_gen_params p = {0};
    p.out = path;
    p.format = LODE_GEN_GGUF;
    p.type = type;
    p.kb_type = -1;
    p.quiet = true;
    p.n_threads = 1;
    p.vocab_pre = vocab_pre;
    p.legacy_kvb = legacy_kvb;
    cr_assert_eq(lode_gen_write(&cfg, &p, &err), LODE_OK, "%s", err.text);
}

#endif
