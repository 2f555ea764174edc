/*
 * The daemon: owns the loop and every long-lived part (Consul client,
 * registrar, upstream sync, writer election, cluster view, probes, status
 * endpoint) and the signal handling that ties them together:
 *
 *   SIGTERM/SIGINT  stop writing, maintenance + drain, deregister, exit 0
 *   SIGHUP          reload the configuration (invalid: logged, old kept)
 *   SIGUSR1         toggle maintenance
 */
#ifndef SIDECAR_DAEMON_H
#define SIDECAR_DAEMON_H

#include <stddef.h>

#include "sidecar/config.h"

struct daemon;

/* Takes ownership of *cfg (it is moved, *cfg is left empty). argv is kept
 * for SIGHUP reloads. once: register, sync every upstream once, exit. */
struct daemon *daemon_new(struct config *cfg, int argc, char **argv, int once, char *err,
                          size_t errlen);
/* Runs until shutdown; returns the process exit status. */
int daemon_run(struct daemon *d);
void daemon_free(struct daemon *d);

#endif
