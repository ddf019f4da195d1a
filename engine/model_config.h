/* model_config.h — config readers (private to engine/). */
#ifndef LODE_MODEL_CONFIG_H
#define LODE_MODEL_CONFIG_H
#include "lode_engine.h"
#include "lode_gguf.h"
lode_status lode__config_from_hf(const char *config_json_path, lode_config *c, lode_error *err);
lode_status lode__config_from_gguf(const lode_gguf *g, lode_config *c, lode_error *err);
lode_status lode__config_validate(const lode_config *c, const char *path, lode_error *err);
#endif
