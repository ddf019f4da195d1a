/*
 * cli.h — the `lode` command-line subcommands. Each lives in its own file
 * daemon/cmd_<name>.c and returns a process exit status (0 ok, 1 runtime
 * error, 2 usage error). argv[0] is the subcommand name.
 */
#ifndef LODE_CLI_H
#define LODE_CLI_H

int lode_cmd_run(int argc, char **argv);
int lode_cmd_logits(int argc, char **argv);
int lode_cmd_inspect(int argc, char **argv);
int lode_cmd_gen(int argc, char **argv);
int lode_cmd_tokenize(int argc, char **argv);
int lode_cmd_detokenize(int argc, char **argv);
int lode_cmd_bench(int argc, char **argv);
int lode_cmd_serve(int argc, char **argv);
int lode_cmd_stop(int argc, char **argv);
int lode_cmd_status(int argc, char **argv);
int lode_cmd_lsp(int argc, char **argv);
int lode_cmd_context(int argc, char **argv);
int lode_cmd_complete(int argc, char **argv);

#endif
