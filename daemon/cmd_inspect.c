/* cmd_inspect.c — `lode inspect -m MODEL`: architecture, config, tensor
 * table and memory needs. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "lode_cuda.h"
#include "lode_quant.h"
#include "lode_engine.h"

int lode_cmd_inspect(int argc, char **argv) {
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: lode inspect -m MODEL\n");
            return 0;
        } else {
            fprintf(stderr, "lode inspect: bad argument '%s'\nusage: lode inspect -m MODEL\n", argv[i]);
            return 2;
        }
    }
    if (!model) {
        fprintf(stderr, "usage: lode inspect -m MODEL\n");
        return 2;
    }
    lode_model_params mp = lode_model_default_params();
    mp.n_threads = 1;
    lode_model *m;
    lode_error err = {0};
    if (lode_model_load(model, &mp, &m, &err)) {
        fprintf(stderr, "lode inspect: %s\n", err.text);
        return 1;
    }
    char why[256] = "";
    int nd = lode_cuda_device_count(why, sizeof why);
    printf("backend:      %s (CPU: %s kernels, %d threads)", lode_model_device(m),
           lode_cpu_level_name(lode_quant_cpu_level()), lode_model_n_threads(m));
    if (nd > 0) printf("; CUDA devices: %d (%s); --device cuda|auto runs on it\n", nd, lode_cuda_device_name(0));
    else printf("; %s\n", why);
    lode_model_describe(m, stdout);
    lode_model_free(m);
    return 0;
}
