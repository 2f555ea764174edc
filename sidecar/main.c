/*
 * consul-sidecar: entry point. Parses flags, environment and config files
 * (sidecar/cli.c), then hands everything to the daemon (sidecar/daemon.c),
 * which runs the one event loop until a signal stops it.
 *
 * Exit status: 0 clean shutdown / valid -validate; 2 usage or configuration
 * error; 1 other fatal start-up error.
 */
#include <stdio.h>
#include <stdlib.h>

#include "lib/log.h"
#include "lib/rand.h"
#include "sidecar/cli.h"
#include "sidecar/config.h"
#include "sidecar/daemon.h"

extern char **environ;

int main(int argc, char **argv)
{
    enum cli_action action;
    struct config cfg;
    char err[1024];

    rand_seed();
    if (cli_parse(argc, argv, environ, &action, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "consul-sidecar: %s\n", err);
        return 2;
    }
    switch (action) {
    case CLI_VERSION:
        printf("consul-sidecar v%s\n", SIDECAR_VERSION);
        config_free(&cfg);
        return 0;
    case CLI_HELP:
        fputs(cli_usage(), stdout);
        config_free(&cfg);
        return 0;
    case CLI_VALIDATE: {
        char *json = config_effective_json(&cfg);
        for (size_t i = 0; i < cfg.n_warnings; i++)
            fprintf(stderr, "consul-sidecar: warning: %s\n", cfg.warnings[i]);
        if (json)
            printf("%s\n", json);
        free(json);
        config_free(&cfg);
        return json ? 0 : 1;
    }
    case CLI_RUN:
    case CLI_ONCE:
        break;
    }

    log_setup(cfg.log_level, cfg.log_format);
    struct daemon *d = daemon_new(&cfg, argc, argv, action == CLI_ONCE, err, sizeof err);
    if (d == NULL) {
        log_error("%s", err);
        config_free(&cfg);
        return 1;
    }
    int rc = daemon_run(d);
    daemon_free(d);
    return rc;
}
