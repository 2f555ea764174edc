/*
 * kong-double: what its files share. kong.c serves (the request log,
 * faults, the control API, main), admin.c answers the Admin API through its
 * route table, store.c holds the upstreams and targets and the answers'
 * shapes (errors, pagination, normalization).
 */
#ifndef KONG_DOUBLE_H
#define KONG_DOUBLE_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stddef.h>

#define MAX_UP 1024
#define MAX_T 65536

struct upstream {
    char id[40], name[256];
    cJSON *entity; /* full rendered entity */
    int used;
    int head, tail; /* its first, last target's slot + 1 (oldest first); 0: none */
};

struct target {
    char id[40], target[300];
    struct upstream *up; /* its upstream's slot */
    int next, prev;      /* slot + 1 of its upstream's next / previous target; 0: none */
    int weight;
    cJSON *tags; /* NULL = null */
    double created, updated;
    unsigned long seq;
    int used;
};

struct fault {
    char path[256], method[16], kind[16], body[512];
    int count, status;
    long delay_ms;
};

struct kstate {
    pthread_mutex_t mu;
    struct upstream ups[MAX_UP];
    struct target *ts;
    unsigned long seq;
    int dbless, control_plane;
    char version[32], node_id[40], rbac[256], port_file[4096];
    cJSON *requests;
    struct fault faults[64];
    int n_faults;
    struct MHD_Daemon *admin, *control;
    int admin_port, control_port, down;
    int delayed;        /* requests held by a delay fault right now */
    int t_hi;           /* no target at or past this slot */
    int t_free;         /* where to look for a free slot first */
    int inflight, peak; /* the sidecar's requests received, not yet answered; the most at once */
};
extern struct kstate K;

double mono_ms(void);
double now_s(void);
void uuid(char out[40]);
int is_uuid(const char *s);
enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *body,
                        int *logged_status);
enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *o, int *ls);
enum MHD_Result message(struct MHD_Connection *c, unsigned status, const char *msg, int *ls);
enum MHD_Result dao_error(struct MHD_Connection *c, unsigned status, int code, const char *name,
                          const char *msg, cJSON *fields, int *ls);
enum MHD_Result schema_violation(struct MHD_Connection *c, cJSON *fields, int *ls);
const char *name_problem(const char *name, char *buf, size_t len);
int normalize_target(const char *in, char *out, size_t len);
cJSON *upstream_defaults(const char *id, const char *name);
void merge(cJSON *dst, const cJSON *src);
cJSON *check_upstream_body(const cJSON *in, int need_name);
struct upstream *up_find(const char *key);
cJSON *target_json(const struct target *t);
struct target *first_target(const struct upstream *u);
struct target *next_target(const struct target *t);
void target_link(struct target *t, struct upstream *u);
void target_drop(struct target *t);
struct target *target_find(const struct upstream *u, const char *key);
void delete_targets_of(const struct upstream *u);
int parse_body(struct MHD_Connection *c, const char *body, size_t len, cJSON **out,
               enum MHD_Result *ret, int *ls);
enum MHD_Result list_targets(struct MHD_Connection *c, const struct upstream *u,
                             const char *u_as_written, int all, int *ls);
enum MHD_Result list_upstreams(struct MHD_Connection *c, int *ls);

/* admin.c: one Admin API request, with K.mu held; *ls gets the status. */
enum MHD_Result admin(struct MHD_Connection *c, const char *url, const char *method,
                      const char *body, size_t len, int *ls);

#endif
