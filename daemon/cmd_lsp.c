/*
 * cmd_lsp.c — `lode lsp [-m MODEL] [--socket PATH]`: the Language Server an
 * editor spawns, on stdin/stdout (lsp/lode_lsp.h, docs/lsp.md). It reaches
 * the user's daemon (`lode serve`), starting it when absent.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "lode_lsp.h"

static void usage(FILE *f) {
    fprintf(f, "usage: lode lsp [-m MODEL] [--socket PATH] [--stdio]\n"
               "  Language Server on stdin/stdout for editors. The model and socket may also come from\n"
               "  initializationOptions {\"model\", \"socket\"} or $LODE_MODEL; see docs/lsp.md.\n");
}

int lode_cmd_lsp(int argc, char **argv) {
    lode_lsp_opts o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-m") && v) o.model = v, i++;
        else if (!strcmp(a, "--socket") && v) o.socket = v, i++;
        else if (!strcmp(a, "--stdio")) continue; /* what vscode-languageclient passes */
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    return lode_lsp_run_stdio(&o, STDIN_FILENO, STDOUT_FILENO);
}
