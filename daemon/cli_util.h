/* cli_util.h — small helpers shared by the subcommands. */
#ifndef LODE_CLI_UTIL_H
#define LODE_CLI_UTIL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parse "1,2,3" (spaces allowed) into a malloc'ed array; false on error. */
bool lode_cli_parse_ids(const char *s, int32_t **out, size_t *n);
/* Strict integer / float parsing: false on garbage or overflow. */
bool lode_cli_parse_i64(const char *s, int64_t *out);
bool lode_cli_parse_f32(const char *s, float *out);
struct lode_model_params;
/* Model options shared by the commands that load a model:
 *   -t N, --mla auto|absorbed|decompressed, --quant TYPE, --device cpu|cuda|auto.
 * Returns the number of argv entries consumed (1 or 2), 0 when `a` is not
 * one of them, -1 after printing an error for a bad value. */
int lode_cli_model_flag(const char *cmd, const char *a, const char *v, struct lode_model_params *mp);
#define LODE_CLI_MODEL_FLAGS_HELP "[-t N] [--mla auto|absorbed|decompressed] [--quant q8_0|q4_k|...] [--device cpu|cuda|auto]"
/* Read all of stdin (malloc'ed, NUL-terminated); NULL on error. */
char *lode_cli_read_stdin(size_t *len);
#endif
