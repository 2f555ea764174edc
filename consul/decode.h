/*
 * Pure decoders for Consul answers: body in, plain structs out. Any body that
 * does not have the expected shape fails as a whole (-1, err says where) and
 * leaves the output untouched: a garbage answer can never shrink an upstream.
 */
#ifndef CONSUL_DECODE_H
#define CONSUL_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "consul/instance-t.h"

#define CONSUL_DECODE_MAX_ITEMS 100000
#define CONSUL_DECODE_MAX_STR 1024

/* /v1/health/service/:name -> instances (sorted by address, port). The
 * health of an instance is the worst of all its checks (node checks such as
 * serfHealth and maintenance included); critical instances are dropped,
 * warning ones too when passing_only. Weight: Weights.Passing, or
 * Weights.Warning for a warning instance. */
int consul_decode_health_service(const char *body, size_t len, int passing_only,
                                 struct consul_instances *out, char *err, size_t errlen);
void consul_instances_free(struct consul_instances *in);
/* Frees the instances and keeps the nodes (and the index): what a caller
 * needs of an answer once it has been turned into targets. */
void consul_instances_keep_nodes(struct consul_instances *in);
/* Whether an instance of the answer, whatever its health, is on node. */
int consul_instances_on_node(const struct consul_instances *in, const char *node);
int consul_instances_equal(const struct consul_instances *a, const struct consul_instances *b);

/* /v1/status/leader: a JSON string; "" = no leader. */
int consul_decode_leader(const char *body, size_t len, char *out, size_t outlen, char *err,
                         size_t errlen);

/* /v1/agent/self: Config.Datacenter and Config.NodeName (both required,
 * non-empty strings, at most CONSUL_DECODE_MAX_STR bytes; the datacenter
 * only letters, digits, '_', '.' and '-', as it goes into URL paths). */
int consul_decode_agent_self(const char *body, size_t len, char *dc, size_t dclen, char *node,
                             size_t nodelen, char *err, size_t errlen);

/* /v1/status/peers: array of strings. *out is malloc'd (free each, then it). */
int consul_decode_peers(const char *body, size_t len, char ***out, size_t *n, char *err,
                        size_t errlen);
void consul_strings_free(char **s, size_t n);

struct consul_member {
    char *name;
    char *addr;
    int status; /* 0 none, 1 alive, 2 leaving, 3 left, 4 failed */
    int server; /* Tags.role == "consul" */
};
/* /v1/agent/members */
int consul_decode_members(const char *body, size_t len, struct consul_member **out, size_t *n,
                          char *err, size_t errlen);
void consul_members_free(struct consul_member *m, size_t n);
const char *consul_member_status_name(int status);

/* /v1/catalog/nodes -> node names (sorted). */
int consul_decode_catalog_nodes(const char *body, size_t len, char ***names, size_t *n, char *err,
                                size_t errlen);

struct consul_kv {
    char *key;
    char *session; /* NULL when not locked */
    char *value;   /* base64-decoded, NUL-terminated; NULL when null */
    size_t value_len;
    uint64_t lock_index, modify_index;
};
/* /v1/kv/<key> (an array of one entry). */
int consul_decode_kv(const char *body, size_t len, struct consul_kv *out, char *err, size_t errlen);
void consul_kv_free(struct consul_kv *kv);

struct consul_check_entry {
    char *node;
    char *service_name; /* "" for node-level checks (serfHealth, maintenance) */
    uint64_t modify_index;
};
/* /v1/health/state/any -> every check's node, service and ModifyIndex. */
int consul_decode_health_state(const char *body, size_t len, struct consul_check_entry **out,
                               size_t *n, char *err, size_t errlen);
void consul_check_entries_free(struct consul_check_entry *e, size_t n);

/* /v1/session/create -> {"ID": "..."} */
int consul_decode_session_id(const char *body, size_t len, char *out, size_t outlen, char *err,
                             size_t errlen);

#endif
