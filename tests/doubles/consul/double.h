/*
 * consul-double: a Consul HTTP API test double (NOT a Consul replacement).
 * Shared state of the simulated cluster; see README.md in this directory.
 *
 * One process simulates server nodes (with a Raft leader), client agents each
 * on its own loopback port, one catalog with a single raft index, TTL checks,
 * the critical-service reaper, sessions and KV. All state lives under one
 * mutex; every change broadcasts a condition variable that parked blocking
 * queries wait on (libmicrohttpd runs a thread per connection).
 */
#ifndef CONSUL_DOUBLE_H
#define CONSUL_DOUBLE_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>

/* Services and checks one agent holds: --max-per-agent (default 256; the
 * benchmarks raise it for 100,000 targets). Every scan is bounded by it. */
#define MAXN_DEFAULT 256
#define MAX_SESSIONS 256
#define OUTPUT_MAX_TTL 4200

enum cstatus { ST_PASSING, ST_WARNING, ST_CRITICAL };

struct check {
    char id[256], name[256], notes[512], service_id[256];
    char type[32], interval[32], timeout[32];
    enum cstatus status;
    char *output;
    int64_t ttl_ms, dereg_ms;
    uint64_t ttl_deadline;   /* ms, 0 none */
    uint64_t critical_since; /* ms of the first update to critical, 0 none */
    int updated;             /* any status update since registration */
    uint64_t create_index, modify_index;
    int used;
};

struct service {
    char id[256], name[256], address[256];
    int port;
    cJSON *tags, *meta, *tagged;
    int w_passing, w_warning;
    int tag_override;
    uint64_t create_index, modify_index;
    int used;
};

struct agent;

struct node {
    char name[128], address[64];
    int server;
    int status;               /* serf: 1 alive 2 leaving 3 left 4 failed */
    struct agent *agent;      /* NULL for servers */
    struct service *services; /* S.maxn of them, allocated once */
    struct check *checks;     /* service and node checks of this agent */
    enum cstatus serf;
    uint64_t serf_index;
    uint64_t create_index, modify_index;
    int used;
};

enum { LIMIT_CLOSE, LIMIT_RESET, LIMIT_429 };

struct agent {
    char name[128];
    int port;
    struct MHD_Daemon *mhd;
    int down, hang;
    struct node *node;
    /* Consul's per-client connection limit (POST /agents/NAME/limit): past
     * max_conns open connections (0: no limit) a new one is closed at once
     * (LIMIT_CLOSE), reset (LIMIT_RESET) or answered 429 and closed
     * (LIMIT_429). */
    int max_conns, limit_mode;
    int open_conns, refused_conns;
    /* After POST /agents/NAME/restart with rejoin_ms: until then the agent
     * has not rejoined its servers (ms, 0 none). */
    uint64_t rejoin_until;
};

struct session {
    char id[40], name[256], node[128], behavior[16];
    int64_t ttl_ms, lock_delay_ms;
    uint64_t expires; /* ms, 0 no TTL */
    uint64_t create_index, modify_index;
    int used;
};

struct kv {
    char key[512];
    char *value;
    size_t value_len;
    int has_value;
    uint64_t flags;
    char session[40];
    uint64_t lock_index, create_index, modify_index;
    int used;
};

struct fault {
    char agent[128], path[256], kind[16], body[512], index_raw[64];
    int count, status;
    long delay_ms;
    uint64_t index;
    size_t size_bytes;
};

struct dstate {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    uint64_t raft;  /* the cluster-wide index */
    uint64_t wakes; /* broadcasts of `changed` so far */
    int maxn;       /* capacity of each node's arrays */
    uint64_t services_index, nodes_index, checks_index, extinction, kv_index, sessions_index;
    struct node nodes[64];
    struct agent agents[64];
    int n_agents;
    char leader[128]; /* server node name, "" none */
    char dc[64];
    struct session sessions[MAX_SESSIONS];
    struct kv kvs[1024];
    uint64_t lock_delay_until[1024]; /* per kv slot */
    struct {                         /* lock delays of keys deleted with their
                                      session (Behavior "delete") */
        char key[512];
        uint64_t until;
    } deleted_delay[64];
    struct fault faults[64];
    int n_faults;
    cJSON *requests; /* request log */
    int n_requests;  /* entries in requests (capped) */
    int dev, pretty;
    int64_t reap_interval_ms, reap_min_ms, session_ttl_min_ms;
    char port_file[4096];
    struct {
        char name[256];
        uint64_t index;
    } svc_changes[1024]; /* last change per service name (removals) */
};

extern struct dstate S;

uint64_t now_ms(void);
uint64_t bump(void); /* raft index + 1; call with S.mu held */
void changed(void);  /* broadcast; call with S.mu held */
/* api.c: wakes the parked health/service queries whose service moved (or
 * whose agent went down); with S.mu held. */
void api_wake_waiters(void);
struct node *node_by_name(const char *name);
struct node *node_new(const char *name, const char *addr, int server);
int agent_start(struct agent *a);
void agent_stop(struct agent *a);
struct agent *agent_add(const char *name);
void write_port_file(void);
/* main.c: a blocking query that parked before a fault replacing answers
 * (status, garbage, truncated, big, close) was set for its path answers with
 * it when it wakes: *handled = 1 and the reply made. With S.mu held (let go
 * around the reply). */
enum MHD_Result fault_after_wait(struct agent *a, struct MHD_Connection *c, int *handled);
/* Records a change to a service name's instances at index (removals). */
void svc_touch(const char *name, uint64_t index);
uint64_t svc_touched(const char *name);
const char *status_name(enum cstatus s);

/* The Consul API on an agent's port. */
enum MHD_Result api_handle(struct agent *a, struct MHD_Connection *c, const char *url,
                           const char *method, const char *body, size_t body_len);
/* The control API. */
enum MHD_Result control_handle(struct MHD_Connection *c, const char *url, const char *method,
                               const char *body, size_t body_len);
/* Background work: TTL expiry, reaper, session TTLs. */
void *ticker(void *arg);
/* Node restart emulation. */
void node_restart(struct node *n, int persist);
void node_set_status(struct node *n, int status);
void session_invalidate(struct session *s);

/* Responses. */
enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                      const char *body, size_t len, const char *const *headers);
enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text);
struct buf;
/* render.c: the checks /v1/health/state/<state> lists, as JSON; with S.mu
 * held. -1 when out of memory. */
int render_health_state(struct buf *b, const char *state);
char *json_out(const cJSON *o); /* compact, or pretty with --pretty / --dev */
/* Go's json.MarshalIndent with 4 spaces, plus the trailing newline Consul
 * adds (?pretty, --pretty, --dev). Caller frees. */
char *json_pretty(const cJSON *o);

/* ?filter (filter.c): a subset of go-bexpr over the answer's JSON. NULL with
 * err (Consul's parser wording) on a syntax error. */
struct dfilter;
struct dfilter *dfilter_new(const char *expr, char *err, size_t errlen);
/* Keeps the matching elements of an array, or matching values of an object. */
void dfilter_apply(const struct dfilter *f, cJSON *coll);
void dfilter_free(struct dfilter *f);

#endif
