/*
 * The state file: the last known good target set of every upstream,
 * persisted atomically in state_dir so that a restarted sidecar can restore
 * a proxy that lost its state before Consul answers.
 *
 *   <state_dir>/upstreams.json
 *   {"version":2,"upstreams":[{"proxy":"haproxy","name":"orders","index":42,
 *     "targets":[{"host":"10.0.0.1","port":8080,"weight":1}]}]}
 *
 * An upstream is known by its proxy and its name together: "orders" on Kong
 * and "orders" on HAProxy are two entries. Version-1 files (an object keyed
 * by name alone, the proxy inside) are still read; saves write version 2.
 *
 * A corrupt or unreadable file is reported and ignored (never half-loaded);
 * a failed write leaves the previous file intact.
 */
#ifndef SIDECAR_STATE_H
#define SIDECAR_STATE_H

#include <stdint.h>

#include "proxy/proxy.h"

struct state_upstream {
    char *name;
    char *proxy;
    uint64_t index;
    struct proxy_target_set targets;
};

struct state {
    struct state_upstream *items;
    size_t n;
};

/* Makes dir ready for the state file at start: created when missing (with
 * its missing parents, mode 0750), then written to once (a temporary file,
 * removed) to prove it can be. -1 and err naming the directory and the
 * reason when it cannot be created or written. */
int state_dir_prepare(const char *dir, char *err, size_t errlen);
/* Loads dir/upstreams.json. A missing file is an empty state (returns 0);
 * anything unreadable or malformed returns -1 with err naming the file and
 * the reason, and *st stays empty. */
int state_load(const char *dir, struct state *st, char *err, size_t errlen);
/* Writes atomically (temp file, fsync, rename, directory fsync). */
int state_save(const char *dir, const struct state *st, char *err, size_t errlen);
/* Sets (replacing) the entry of upstream name on proxy: names copied,
 * targets shared when they are a copy (proxy_target_set_share). */
int state_set(struct state *st, const char *name, const char *proxy, uint64_t index,
              const struct proxy_target_set *targets);
/* The entry of upstream name on proxy, or NULL. */
const struct state_upstream *state_get(const struct state *st, const char *proxy, const char *name);
void state_free(struct state *st);

/* Parses the file's text (fuzzing and tests). */
int state_parse(const char *text, struct state *st, char *err, size_t errlen);

#endif
