/*
 * ts_grammars.h — the grammar entry points compiled into libgrammars.a
 * (grammars/, one per language lode parses), shared by the syntax module
 * and the profile-guided build's trainer (tools/pgo_train.c).
 */
#ifndef LODE_TS_GRAMMARS_H
#define LODE_TS_GRAMMARS_H

#include <tree_sitter/api.h>

const TSLanguage *tree_sitter_c(void);
const TSLanguage *tree_sitter_cpp(void);
const TSLanguage *tree_sitter_python(void);
const TSLanguage *tree_sitter_javascript(void);
const TSLanguage *tree_sitter_typescript(void);
const TSLanguage *tree_sitter_tsx(void);
const TSLanguage *tree_sitter_go(void);
const TSLanguage *tree_sitter_rust(void);
const TSLanguage *tree_sitter_java(void);
const TSLanguage *tree_sitter_lua(void);
const TSLanguage *tree_sitter_bash(void);
const TSLanguage *tree_sitter_json(void);
const TSLanguage *tree_sitter_ruby(void);

#endif
