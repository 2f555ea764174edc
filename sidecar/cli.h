/*
 * The command line, following the consul CLI's conventions (single-dash
 * flags, "-flag value" or "-flag=value"), and the consul CLI's environment
 * variables. cli_parse() gives the action and, for run/once/validate, the
 * loaded and validated configuration (flags > environment > files).
 */
#ifndef SIDECAR_CLI_H
#define SIDECAR_CLI_H

#include <stddef.h>

#include "sidecar/config.h"

enum cli_action { CLI_RUN, CLI_ONCE, CLI_VALIDATE, CLI_VERSION, CLI_HELP };

/* envp: the environment to read (NULL-terminated "K=V"), injectable for
 * tests. Returns 0, or 2 with a one-line err (usage or configuration). */
int cli_parse(int argc, char **argv, char **envp, enum cli_action *action, struct config *cfg,
              char *err, size_t errlen);
const char *cli_usage(void);

#endif
