/*
 * main.c — `lode` entry point: dispatches to the subcommands in cli.h.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct lode_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} lode_cmd;

static const lode_cmd k_cmds[] = {
    {"run", lode_cmd_run, "generate text: lode run -m MODEL -p TEXT [-n N] [--temp T] [--seed S]"},
    {"logits", lode_cmd_logits, "logits per position: lode logits -m MODEL --tokens 1,2,3 [--top K] [--full]"},
    {"inspect", lode_cmd_inspect, "architecture, config, tensors, memory: lode inspect -m MODEL"},
    {"gen", lode_cmd_gen, "random model: lode gen PRESET|CONFIG.json -o OUT [--format hf|gguf] [--type T]"},
    {"serve", lode_cmd_serve, "resident daemon: lode serve -m MODEL [--socket PATH] [--ctx N] [-t N]"},
    {"stop", lode_cmd_stop, "stop the daemon: lode stop [--socket PATH]"},
    {"context", lode_cmd_context, "project-context FIM prompt: lode context FILE:LINE:COL [--root DIR] [--budget N] [-m MODEL] [--json]"},
    {"complete", lode_cmd_complete, "complete at a cursor in-process: lode complete FILE:LINE:COL -m MODEL [--root DIR] [-n N]"},
    {"lsp", lode_cmd_lsp, "language server for editors (stdio): lode lsp [-m MODEL] [--socket PATH]"},
    {"status", lode_cmd_status, "daemon status: lode status [--socket PATH] [--json]"},
    {"bench", lode_cmd_bench, "speed: lode bench -m MODEL [-p 512] [-n 128] [-d DEPTH] [-t N] [--json]"},
    {"tokenize", lode_cmd_tokenize, "text to ids: lode tokenize -m MODEL [--text T | < FILE] [--json] [--bos]"},
    {"detokenize", lode_cmd_detokenize, "ids to text: lode detokenize -m MODEL --tokens 1,2,3"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: lode COMMAND [options]   (lode COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        fprintf(f, "  %-11s %s\n", k_cmds[i].name, k_cmds[i].help);
    fprintf(f, "\nMODEL is a GGUF file or a Hugging Face model directory.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        if (!strcmp(argv[1], k_cmds[i].name)) return k_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "lode: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
