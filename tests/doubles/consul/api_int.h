/*
 * What the Consul API's files share (api.c routes; api_agent.c, api_health.c
 * and api_kv.c answer; api_blocking.c parks). Not for main.c or control.c,
 * which see only double.h.
 */
#ifndef CONSUL_DOUBLE_API_INT_H
#define CONSUL_DOUBLE_API_INT_H

#include "tests/doubles/consul/double.h"

#define MAX_WAIT_MS 600000
#define DEFAULT_WAIT_MS 300000
#define OUTPUT_MAX 4096

/* One request, as the route table hands it to a handler. rest is the URL
 * past the route's pattern (a service name, check ID, KV key...). */
struct req {
    struct agent *a;
    struct MHD_Connection *c;
    const char *method, *rest, *body;
    size_t body_len;
};
typedef enum MHD_Result (*handler_fn)(const struct req *r);

/* ---- api.c: small helpers ---- */
const char *arg(struct MHD_Connection *c, const char *k);
int has_arg(struct MHD_Connection *c, const char *k); /* with or without a value */
/* Replies o (freed), compact or ?pretty. */
enum MHD_Result json_reply(struct MHD_Connection *c, unsigned status, cJSON *o,
                           const char *const *headers);
void apply_filter(struct MHD_Connection *c, cJSON *body);
enum MHD_Result empty_ok(struct MHD_Connection *c);
int parse_bool(const char *s, int *out);
/* Go duration from JSON (string or nanoseconds). 0 ok, -1 with Go's text. */
int json_dur(const cJSON *v, int64_t *ms, char *err, size_t len);
const char *canon(const char *key, const char *const *names);
uint64_t max64(uint64_t a, uint64_t b);
/* Case-insensitive lookup among an object's keys (last wins, as in Go);
 * iget2 tries a second spelling (a snake_case alias). */
const cJSON *iget(const cJSON *o, const char *name);
const cJSON *iget2(const cJSON *o, const char *a, const char *b);

/* ---- api_blocking.c: query parameters and parking ---- */
struct query {
    uint64_t index;
    int64_t wait_ms;
    int stale, consistent;
};
/* 0 ok; else the response was queued (*ret). */
int common_params(struct MHD_Connection *c, struct query *q, int need_leader, enum MHD_Result *ret);
typedef cJSON *(*view_fn)(struct MHD_Connection *c, const void *ctx, uint64_t *index, int *status);
/* Runs a view, parking while its index has not passed the client's. Call
 * with S.mu held; returns with it held. */
enum MHD_Result blocking_view(struct agent *a, struct MHD_Connection *c, const struct query *q,
                              view_fn fn, const void *ctx);
enum MHD_Result blocking_state(struct agent *a, struct MHD_Connection *c, const struct query *q,
                               const char *state);
/* The common parameters, then blocking_view under S.mu: a whole read. */
enum MHD_Result serve_view(const struct req *r, view_fn fn, const void *ctx);

/* ---- api_health.c: JSON of the catalog's things, and the views ---- */
int node_visible(const struct node *n);
cJSON *check_json(const struct node *n, const struct check *k, int agent_view);
cJSON *agent_service_json(const struct service *s);
cJSON *view_health_service(struct MHD_Connection *c, const void *ctx, uint64_t *index, int *status);
cJSON *view_catalog_services(struct MHD_Connection *c, const void *ctx, uint64_t *index,
                             int *status);
cJSON *view_kv(struct MHD_Connection *c, const void *ctx, uint64_t *index, int *status);

/* ---- handlers, one per route ---- */
/* api_agent.c */
enum MHD_Result h_agent_self(const struct req *r);
enum MHD_Result h_agent_services(const struct req *r);
enum MHD_Result h_agent_checks(const struct req *r);
enum MHD_Result h_agent_members(const struct req *r);
enum MHD_Result h_agent_service(const struct req *r);
enum MHD_Result h_service_register(const struct req *r);
enum MHD_Result h_service_deregister(const struct req *r);
enum MHD_Result h_service_maintenance(const struct req *r);
enum MHD_Result h_check_register(const struct req *r);
enum MHD_Result h_check_deregister(const struct req *r);
enum MHD_Result h_check_pass(const struct req *r);
enum MHD_Result h_check_warn(const struct req *r);
enum MHD_Result h_check_fail(const struct req *r);
enum MHD_Result h_check_update(const struct req *r);
enum MHD_Result h_node_maintenance(const struct req *r);
/* api_node.c: a node's services and checks */
struct service *svc_find(struct node *n, const char *id);
struct check *check_find(struct node *n, const char *id);
/* A free check slot of n, or NULL when all are taken. */
struct check *check_slot(struct node *n);
void check_free_slot(struct check *k);
/* A check of a service went away: that service's index moves to idx. */
void touch_check_service(struct node *n, const struct check *k, uint64_t idx);
void check_update(struct check *k, enum cstatus st, const char *output);
void remove_service(struct node *n, struct service *s);
/* api_health.c */
enum MHD_Result h_catalog_services(const struct req *r);
enum MHD_Result h_catalog_nodes(const struct req *r);
enum MHD_Result h_catalog_service(const struct req *r);
enum MHD_Result h_catalog_node(const struct req *r);
enum MHD_Result h_health_service(const struct req *r);
enum MHD_Result h_health_checks(const struct req *r);
enum MHD_Result h_health_state(const struct req *r);
enum MHD_Result h_health_node(const struct req *r);
enum MHD_Result h_status_leader(const struct req *r);
enum MHD_Result h_status_peers(const struct req *r);
/* api_kv.c */
enum MHD_Result h_session_create(const struct req *r);
enum MHD_Result h_session_renew(const struct req *r);
enum MHD_Result h_session_destroy(const struct req *r);
enum MHD_Result h_session_info(const struct req *r);
enum MHD_Result h_session_node(const struct req *r);
enum MHD_Result h_session_list(const struct req *r);
enum MHD_Result h_kv(const struct req *r);

#endif
