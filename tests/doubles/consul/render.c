/* /v1/health/state/<state> written straight from the double's state, as a
 * real Consul serialises from memory: the same fields, in the same order,
 * as the cJSON views of api.c (check_json, serf_json), which remain for
 * ?filter and ?pretty. A tree of 10,000 checks cost the double ~60 ms of
 * CPU for every change a change detector follows. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "double.h"
#include "lib/buf.h"
#include "lib/jsonstr.h"
#include "lib/strmap.h"

/* ,"key":"value" */
static void put_field(struct buf *b, const char *key, const char *value)
{
    buf_append(b, ",\"", 2);
    buf_puts(b, key);
    buf_append(b, "\":", 2);
    buf_json_string(b, value);
}

static void put_tags(struct buf *b, const cJSON *tags)
{
    const cJSON *t;
    int first = 1;
    buf_puts(b, ",\"ServiceTags\":[");
    cJSON_ArrayForEach(t, tags) {
        if (!first)
            buf_append(b, ",", 1);
        first = 0;
        if (cJSON_IsString(t)) {
            buf_json_string(b, t->valuestring);
        } else {
            char *s = cJSON_PrintUnformatted(t);
            buf_puts(b, s ? s : "null");
            cJSON_free(s);
        }
    }
    buf_append(b, "]", 1);
}

static void put_serf(struct buf *b, const struct node *n)
{
    buf_puts(b, "{\"Node\":");
    buf_json_string(b, n->name);
    buf_puts(b, ",\"CheckID\":\"serfHealth\",\"Name\":\"Serf Health Status\"");
    put_field(b, "Status", status_name(n->serf));
    buf_puts(b, ",\"Notes\":\"\"");
    put_field(b, "Output",
              n->serf == ST_PASSING ? "Agent alive and reachable"
                                    : "Agent not live or unreachable");
    buf_puts(b, ",\"ServiceID\":\"\",\"ServiceName\":\"\",\"ServiceTags\":[],\"Type\":\"\","
                "\"Interval\":\"\",\"Timeout\":\"\",\"ExposedPort\":0,\"Definition\":{}");
    buf_printf(b, ",\"CreateIndex\":%" PRIu64 ",\"ModifyIndex\":%" PRIu64 "}", n->create_index,
               n->serf_index);
}

static void put_check(struct buf *b, const struct node *n, const struct check *k,
                      const struct service *s)
{
    buf_puts(b, "{\"Node\":");
    buf_json_string(b, n->name);
    put_field(b, "CheckID", k->id);
    put_field(b, "Name", k->name);
    put_field(b, "Status", status_name(k->status));
    put_field(b, "Notes", k->notes);
    put_field(b, "Output", k->output ? k->output : "");
    put_field(b, "ServiceID", k->service_id);
    put_field(b, "ServiceName", s ? s->name : "");
    if (s && s->tags)
        put_tags(b, s->tags);
    else
        buf_puts(b, ",\"ServiceTags\":[]");
    put_field(b, "Type", k->type);
    put_field(b, "Interval", k->interval);
    put_field(b, "Timeout", k->timeout);
    buf_printf(b,
               ",\"ExposedPort\":0,\"Definition\":{},\"CreateIndex\":%" PRIu64
               ",\"ModifyIndex\":%" PRIu64 "}",
               k->create_index, k->modify_index);
}

int render_health_state(struct buf *b, const char *state)
{
    struct strmap ids = {0};
    int any = strcmp(state, "any") == 0, first = 1, added;
    buf_append(b, "[", 1);
    for (int i = 0; i < 64; i++) {
        const struct node *n = &S.nodes[i];
        if (!n->used || n->status == 3) /* left: not in the catalog */
            continue;
        if (any || !strcmp(state, status_name(n->serf))) {
            buf_puts(b, first ? "" : ",");
            first = 0;
            put_serf(b, n);
        }
        strmap_clear(&ids); /* this node's services by ID */
        for (int k = 0; k < S.maxn; k++) {
            const struct service *s = &n->services[k];
            if (s->used)
                strmap_put(&ids, s->id, strlen(s->id), (uint64_t)k, &added);
        }
        for (int k = 0; k < S.maxn; k++) {
            const struct check *ck = &n->checks[k];
            if (!ck->used || (!any && strcmp(state, status_name(ck->status))))
                continue;
            const uint64_t *slot =
                ck->service_id[0] ? strmap_get(&ids, ck->service_id, strlen(ck->service_id)) : NULL;
            buf_puts(b, first ? "" : ",");
            first = 0;
            put_check(b, n, ck, slot ? &n->services[*slot] : NULL);
        }
    }
    buf_append(b, "]", 1);
    strmap_free(&ids);
    return b->overflow ? -1 : 0;
}
