/*
 * One healthy-enough instance of a watched service, as decoded from
 * /v1/health/service/:name. Types only; shared by consul/ (decoder) and
 * sidecar/ (desired state).
 */
#ifndef CONSUL_INSTANCE_T_H
#define CONSUL_INSTANCE_T_H

#include <stddef.h>
#include <stdint.h>

enum consul_health {
    CONSUL_PASSING = 0,
    CONSUL_WARNING = 1,
    CONSUL_CRITICAL = 2, /* includes maintenance */
};

struct consul_instance {
    char *node; /* node, service_id and address: one allocation, node's */
    char *service_id;
    char *address; /* Service.Address, or Node.Address when empty */
    int port;
    enum consul_health health; /* worst of node + service checks */
    int weight;                /* Weights.Passing or Weights.Warning by health */
    char **tags;
    size_t n_tags;
};

/* A decoded answer for one service. */
struct consul_instances {
    struct consul_instance *items;
    size_t n;
    uint64_t index; /* X-Consul-Index of the answer */
    /* The nodes of every instance in the answer, whatever its health or
     * port (sorted, each once): where a node-level check can change it.
     * One allocation, names included. */
    char **nodes;
    size_t n_nodes;
};

#endif
