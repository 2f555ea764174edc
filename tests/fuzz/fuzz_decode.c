/* Fuzz target: every Consul answer decoder on the same bytes. A decoder must
 * either fail cleanly or produce output it can free; never crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tests/fuzz/fuzz.h"
#include "consul/agent.h"
#include "consul/decode.h"
#include "consul/scan.h"

/* The change detector's scanner accepts nothing the cJSON decoder refuses,
 * and finds the same checks in what it accepts (indexes compared where a
 * double holds them exactly). */
static void scan_agrees(const char *b, size_t size, int whole, const struct consul_check_entry *e,
                        size_t n)
{
    static struct consul_state_scan s; /* reused, as the detector does */
    char err[256];
    if (consul_scan_health_state(&s, b, size, err, sizeof err) < 0)
        return;
    if (!whole || s.n != n)
        abort();
    for (size_t i = 0; i < n; i++)
        if (strcmp(s.e[i].node, e[i].node) || strcmp(s.e[i].service, e[i].service_name) ||
            (s.e[i].modify_index <= (1ull << 53) && s.e[i].modify_index != e[i].modify_index))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *b = (const char *)data;
    char err[256], leader[256], id[128];
    struct consul_instances in = {0};
    if (consul_decode_health_service(b, size, 0, &in, err, sizeof err) == 0)
        consul_instances_free(&in);
    if (consul_decode_health_service(b, size, 1, &in, err, sizeof err) == 0)
        consul_instances_free(&in);
    consul_decode_leader(b, size, leader, sizeof leader, err, sizeof err);
    char **s;
    size_t n;
    if (consul_decode_peers(b, size, &s, &n, err, sizeof err) == 0)
        consul_strings_free(s, n);
    if (consul_decode_catalog_nodes(b, size, &s, &n, err, sizeof err) == 0)
        consul_strings_free(s, n);
    struct consul_member *m;
    if (consul_decode_members(b, size, &m, &n, err, sizeof err) == 0)
        consul_members_free(m, n);
    struct consul_kv kv;
    if (consul_decode_kv(b, size, &kv, err, sizeof err) == 0)
        consul_kv_free(&kv);
    struct consul_check_entry *e;
    int whole = consul_decode_health_state(b, size, &e, &n, err, sizeof err) == 0;
    scan_agrees(b, size, whole, e, n);
    if (whole)
        consul_check_entries_free(e, n);
    consul_decode_session_id(b, size, id, sizeof id, err, sizeof err);
    char dc[64], node[256];
    consul_decode_agent_self(b, size, dc, sizeof dc, node, sizeof node, err, sizeof err);
    /* Anti-entropy compares what the agent reports with a wanted service:
     * the agent's GET /v1/agent/services and /v1/agent/checks answers. */
    static const char def[] =
        "{\"ID\":\"web-1\",\"Name\":\"web\",\"Port\":80,\"Tags\":[\"a\"],"
        "\"Meta\":{\"managed-by\":\"consul-sidecar\"},\"Weights\":{\"Passing\":1,\"Warning\":1},"
        "\"Checks\":[{\"CheckID\":\"web-ttl\",\"Name\":\"t\",\"TTL\":\"10s\"}]}";
    struct consul_check_ref ref = {"web-ttl", "t", 10000};
    struct consul_service want = {"web-1", "web", cJSON_Parse(def), &ref, 1};
    cJSON *view = cJSON_ParseWithLength(b, size);
    if (view) {
        char why[256];
        consul_service_drift(&want, view, why, sizeof why);
        consul_service_drift(&want, cJSON_GetObjectItemCaseSensitive(view, "web-1"), why,
                             sizeof why);
        consul_checks_drift(&want, view, why, sizeof why);
        cJSON_Delete(view);
    }
    cJSON_Delete(want.definition);
    return 0;
}
