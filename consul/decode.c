/* Decoders for Consul answers; see decode.h. */
#include "consul/decode.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *parse(const char *body, size_t len, char *err, size_t errlen)
{
    cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
    if (root == NULL)
        snprintf(err, errlen, "not valid JSON");
    return root;
}

static int is_str(const cJSON *v)
{
    return cJSON_IsString(v) && strlen(v->valuestring) <= CONSUL_DECODE_MAX_STR;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static enum consul_health status_of(const char *s)
{
    if (strcmp(s, "passing") == 0)
        return CONSUL_PASSING;
    if (strcmp(s, "warning") == 0)
        return CONSUL_WARNING;
    return CONSUL_CRITICAL;
}

static int inst_cmp(const void *pa, const void *pb)
{
    const struct consul_instance *a = pa, *b = pb;
    int c = strcmp(a->address, b->address);
    if (c)
        return c;
    if (a->port != b->port)
        return a->port < b->port ? -1 : 1;
    return strcmp(a->service_id, b->service_id);
}

static void inst_free(struct consul_instance *i)
{
    free(i->node); /* and service_id and address: one block */
    for (size_t t = 0; t < i->n_tags; t++)
        free(i->tags[t]);
    free(i->tags);
}

void consul_instances_keep_nodes(struct consul_instances *in)
{
    for (size_t i = 0; i < in->n; i++)
        inst_free(&in->items[i]);
    free(in->items);
    in->items = NULL;
    in->n = 0;
}

void consul_instances_free(struct consul_instances *in)
{
    consul_instances_keep_nodes(in);
    free(in->nodes); /* one block: collect_nodes */
    in->nodes = NULL;
    in->n_nodes = 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* in->nodes: each instance's node once, sorted, in one block (the
 * pointers, then the names): kept per followed service while it is
 * followed, so it should cost one allocation, not one per node. -1: out of
 * memory. */
static int collect_nodes(struct consul_instances *in, const cJSON *root)
{
    int n = cJSON_GetArraySize(root);
    const cJSON *e;
    if (n == 0)
        return 0;
    const char **tmp = calloc((size_t)n, sizeof *tmp);
    size_t k = 0, bytes = 0;
    if (tmp == NULL)
        return -1;
    cJSON_ArrayForEach(e, root)
        tmp[k++] = get(get(e, "Node"), "Node")->valuestring;
    qsort(tmp, k, sizeof *tmp, str_cmp);
    size_t m = 0;
    for (size_t i = 0; i < k; i++)
        if (m == 0 || strcmp(tmp[m - 1], tmp[i]) != 0) {
            tmp[m++] = tmp[i];
            bytes += strlen(tmp[i]) + 1;
        }
    in->nodes = malloc(m * sizeof *in->nodes + bytes);
    if (in->nodes == NULL) {
        free(tmp);
        return -1;
    }
    char *p = (char *)(in->nodes + m);
    for (size_t i = 0; i < m; i++) {
        size_t len = strlen(tmp[i]) + 1;
        in->nodes[i] = memcpy(p, tmp[i], len);
        p += len;
    }
    in->n_nodes = m;
    free(tmp);
    return 0;
}

int consul_instances_on_node(const struct consul_instances *in, const char *node)
{
    return in->n_nodes > 0 &&
           bsearch(&node, in->nodes, in->n_nodes, sizeof *in->nodes, str_cmp) != NULL;
}

/* One entry of a /v1/health/service answer, checked. */
struct entry {
    const cJSON *nname, *naddr, *sid, *saddr, *tags;
    int port;                  /* 0: none (an instance that cannot be a target) */
    enum consul_health health; /* the worst of its checks */
    int wpass, wwarn;
};

/* Reads entry idx's fields and checks their types; 0, or -1 with err. */
static int entry_read(const cJSON *e, int idx, struct entry *f, char *err, size_t errlen)
{
    const cJSON *node = get(e, "Node"), *svc = get(e, "Service"), *checks = get(e, "Checks");
    const cJSON *port = get(svc, "Port"), *weights = get(svc, "Weights"), *c;
    f->nname = get(node, "Node"), f->naddr = get(node, "Address");
    f->sid = get(svc, "ID"), f->saddr = get(svc, "Address"), f->tags = get(svc, "Tags");
    if (!cJSON_IsObject(e) || !cJSON_IsObject(node) || !cJSON_IsObject(svc) || !is_str(f->nname) ||
        !is_str(f->naddr) || !is_str(f->sid) ||
        (f->saddr && !cJSON_IsNull(f->saddr) && !is_str(f->saddr)) ||
        (checks && !cJSON_IsNull(checks) && !cJSON_IsArray(checks)) ||
        (f->tags && !cJSON_IsNull(f->tags) && !cJSON_IsArray(f->tags)) ||
        (weights && !cJSON_IsNull(weights) && !cJSON_IsObject(weights)))
        return snprintf(err, errlen, "entry %d: missing or mistyped Node/Service/Checks", idx), -1;
    /* Port is omitted when 0; an instance without a port cannot be a proxy
     * target, but it is a valid answer: skipped by the caller. */
    double p = port && cJSON_IsNumber(port) ? port->valuedouble : 0;
    if (port && (!cJSON_IsNumber(port) || p < 0 || p > 65535 || p != (int)p))
        return snprintf(err, errlen, "entry %d: Service.Port is not a port number", idx), -1;
    f->port = (int)p;
    f->health = CONSUL_PASSING;
    cJSON_ArrayForEach(c, checks) {
        const cJSON *st = get(c, "Status");
        if (!is_str(st))
            return snprintf(err, errlen, "entry %d: a check has no Status", idx), -1;
        enum consul_health ch = status_of(st->valuestring);
        if (ch > f->health)
            f->health = ch;
    }
    const cJSON *wp = get(weights, "Passing"), *ww = get(weights, "Warning");
    if ((wp && (!cJSON_IsNumber(wp) || wp->valuedouble < 0 || wp->valuedouble > 65535)) ||
        (ww && (!cJSON_IsNumber(ww) || ww->valuedouble < 0 || ww->valuedouble > 65535)))
        return snprintf(err, errlen, "entry %d: Weights out of range", idx), -1;
    f->wpass = wp ? wp->valueint : 1;
    f->wwarn = ww ? ww->valueint : 1;
    return 0;
}

/* Adds the instance of a routable entry to res (address: the service's, or
 * its node's). 0, or -1 with err. */
static int instance_add(struct consul_instances *res, const struct entry *f, int idx, char *err,
                        size_t errlen)
{
    const char *addr = is_str(f->saddr) && f->saddr->valuestring[0] ? f->saddr->valuestring
                                                                    : f->naddr->valuestring;
    if (addr[0] == '\0')
        return snprintf(err, errlen, "entry %d: no address", idx), -1;
    struct consul_instance *in = &res->items[res->n++];
    /* Three strings, one allocation: 10,000 targets are 20,000 fewer. */
    size_t ln = strlen(f->nname->valuestring) + 1, ls = strlen(f->sid->valuestring) + 1;
    size_t la = strlen(addr) + 1;
    in->node = malloc(ln + ls + la);
    if (in->node) {
        in->service_id = in->node + ln;
        in->address = in->service_id + ls;
        memcpy(in->node, f->nname->valuestring, ln);
        memcpy(in->service_id, f->sid->valuestring, ls);
        memcpy(in->address, addr, la);
    }
    in->port = f->port;
    in->health = f->health;
    in->weight = f->health == CONSUL_WARNING ? f->wwarn : f->wpass;
    int nt = cJSON_IsArray(f->tags) ? cJSON_GetArraySize(f->tags) : 0;
    if (!in->node || !in->service_id || !in->address ||
        (nt && (in->tags = calloc((size_t)nt, sizeof *in->tags)) == NULL))
        return snprintf(err, errlen, "out of memory"), -1;
    const cJSON *t;
    cJSON_ArrayForEach(t, f->tags) {
        if (!is_str(t))
            return snprintf(err, errlen, "entry %d: a tag is not a string", idx), -1;
        if ((in->tags[in->n_tags] = strdup(t->valuestring)) == NULL)
            return snprintf(err, errlen, "out of memory"), -1;
        in->n_tags++;
    }
    return 0;
}

int consul_decode_health_service(const char *body, size_t len, int passing_only,
                                 struct consul_instances *out, char *err, size_t errlen)
{
    struct consul_instances res = {0};
    cJSON *root = parse(body, len, err, errlen);
    if (root == NULL)
        return -1;
    if (!cJSON_IsArray(root)) {
        snprintf(err, errlen, "expected an array");
        goto fail;
    }
    int n = cJSON_GetArraySize(root);
    if (n > CONSUL_DECODE_MAX_ITEMS) {
        snprintf(err, errlen, "%d entries is more than the %d accepted", n,
                 CONSUL_DECODE_MAX_ITEMS);
        goto fail;
    }
    res.items = n ? calloc((size_t)n, sizeof *res.items) : NULL;
    if (n && res.items == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    int idx = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        struct entry f;
        if (entry_read(e, idx, &f, err, errlen) < 0)
            goto fail;
        int routable = f.port != 0 && f.health != CONSUL_CRITICAL &&
                       !(passing_only && f.health == CONSUL_WARNING);
        if (routable && instance_add(&res, &f, idx, err, errlen) < 0)
            goto fail;
        idx++;
    }
    if (res.n)
        qsort(res.items, res.n, sizeof *res.items, inst_cmp);
    if (collect_nodes(&res, root) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    cJSON_Delete(root);
    consul_instances_free(out);
    *out = res;
    return 0;
fail:
    cJSON_Delete(root);
    consul_instances_free(&res);
    return -1;
}

int consul_instances_equal(const struct consul_instances *a, const struct consul_instances *b)
{
    if (a->n != b->n)
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const struct consul_instance *x = &a->items[i], *y = &b->items[i];
        if (strcmp(x->address, y->address) || x->port != y->port || x->weight != y->weight ||
            x->health != y->health || strcmp(x->service_id, y->service_id))
            return 0;
    }
    return 1;
}

int consul_decode_leader(const char *body, size_t len, char *out, size_t outlen, char *err,
                         size_t errlen)
{
    cJSON *root = parse(body, len, err, errlen);
    if (root == NULL)
        return -1;
    if (!is_str(root)) {
        snprintf(err, errlen, "expected a JSON string");
        cJSON_Delete(root);
        return -1;
    }
    snprintf(out, outlen, "%s", root->valuestring);
    cJSON_Delete(root);
    return 0;
}

int consul_decode_agent_self(const char *body, size_t len, char *dc, size_t dclen, char *node,
                             size_t nodelen, char *err, size_t errlen)
{
    cJSON *root = parse(body, len, err, errlen);
    if (root == NULL)
        return -1;
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "Config");
    const cJSON *d = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "Datacenter") : NULL;
    const cJSON *n = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "NodeName") : NULL;
    const char *bad = NULL;
    if (!cJSON_IsObject(cfg))
        bad = "Config: expected an object";
    else if (!is_str(d) || !d->valuestring[0])
        bad = "Config.Datacenter: expected a non-empty string";
    else if (!is_str(n) || !n->valuestring[0])
        bad = "Config.NodeName: expected a non-empty string";
    else if (strlen(d->valuestring) >= dclen || strlen(d->valuestring) > CONSUL_DECODE_MAX_STR)
        bad = "Config.Datacenter: too long";
    else if (strlen(n->valuestring) >= nodelen || strlen(n->valuestring) > CONSUL_DECODE_MAX_STR)
        bad = "Config.NodeName: too long";
    else if (d->valuestring[strspn(d->valuestring, "abcdefghijklmnopqrstuvwxyz"
                                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")])
        bad = "Config.Datacenter: not a datacenter name (letters, digits, '_', '.', '-')";
    if (bad) {
        snprintf(err, errlen, "%s", bad);
        cJSON_Delete(root);
        return -1;
    }
    snprintf(dc, dclen, "%s", d->valuestring);
    snprintf(node, nodelen, "%s", n->valuestring);
    cJSON_Delete(root);
    return 0;
}

void consul_strings_free(char **s, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        free(s[i]);
    free(s);
}

static int decode_strings(cJSON *arr, const char *field, char ***out, size_t *n, char *err,
                          size_t errlen)
{
    int count = cJSON_GetArraySize(arr);
    char **s = count ? calloc((size_t)count, sizeof *s) : NULL;
    size_t k = 0;
    if (count > CONSUL_DECODE_MAX_ITEMS || (count && s == NULL)) {
        snprintf(err, errlen, "too many entries");
        free(s);
        return -1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const cJSON *v = field ? get(e, field) : e;
        if (!is_str(v) || (s[k] = strdup(v->valuestring)) == NULL) {
            snprintf(err, errlen, "entry %zu: expected a string%s%s", k, field ? " " : "",
                     field ? field : "");
            consul_strings_free(s, k);
            return -1;
        }
        k++;
    }
    *out = s;
    *n = k;
    return 0;
}

int consul_decode_peers(const char *body, size_t len, char ***out, size_t *n, char *err,
                        size_t errlen)
{
    cJSON *root = parse(body, len, err, errlen);
    if (root == NULL)
        return -1;
    int rc = -1;
    if (!cJSON_IsArray(root))
        snprintf(err, errlen, "expected an array");
    else
        rc = decode_strings(root, NULL, out, n, err, errlen);
    cJSON_Delete(root);
    return rc;
}

int consul_decode_catalog_nodes(const char *body, size_t len, char ***names, size_t *n, char *err,
                                size_t errlen)
{
    cJSON *root = parse(body, len, err, errlen);
    if (root == NULL)
        return -1;
    int rc = -1;
    if (!cJSON_IsArray(root))
        snprintf(err, errlen, "expected an array");
    else if ((rc = decode_strings(root, "Node", names, n, err, errlen)) == 0 && *n)
        qsort(*names, *n, sizeof **names, str_cmp);
    cJSON_Delete(root);
    return rc;
}

void consul_members_free(struct consul_member *m, size_t n)
{
    for (size_t i = 0; m && i < n; i++) {
        free(m[i].name);
        free(m[i].addr);
    }
    free(m);
}

const char *consul_member_status_name(int status)
{
    static const char *const names[] = {"none", "alive", "leaving", "left", "failed"};
    return status >= 0 && status <= 4 ? names[status] : "unknown";
}

int consul_decode_members(const char *body, size_t len, struct consul_member **out, size_t *n,
                          char *err, size_t errlen)
{
    cJSON *root = parse(body, len, err, errlen);
    if (root == NULL)
        return -1;
    struct consul_member *m = NULL;
    size_t k = 0;
    if (!cJSON_IsArray(root)) {
        snprintf(err, errlen, "expected an array");
        goto fail;
    }
    int count = cJSON_GetArraySize(root);
    if (count > CONSUL_DECODE_MAX_ITEMS) {
        snprintf(err, errlen, "too many members");
        goto fail;
    }
    m = count ? calloc((size_t)count, sizeof *m) : NULL;
    if (count && m == NULL)
        goto fail;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        const cJSON *name = get(e, "Name"), *addr = get(e, "Addr"), *st = get(e, "Status");
        const cJSON *role = get(get(e, "Tags"), "role");
        if (!is_str(name) || !is_str(addr) || !cJSON_IsNumber(st) || st->valuedouble < 0 ||
            st->valuedouble > 4) {
            snprintf(err, errlen, "member %zu: missing or mistyped Name/Addr/Status", k);
            goto fail;
        }
        m[k].name = strdup(name->valuestring);
        m[k].addr = strdup(addr->valuestring);
        m[k].status = st->valueint;
        m[k].server = is_str(role) && strcmp(role->valuestring, "consul") == 0;
        k++;
        if (!m[k - 1].name || !m[k - 1].addr)
            goto fail;
    }
    cJSON_Delete(root);
    *out = m;
    *n = k;
    return 0;
fail:
    cJSON_Delete(root);
    consul_members_free(m, k);
    return -1;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static char *b64decode(const char *in, size_t *outlen)
{
    size_t n = strlen(in);
    char *out = malloc(n / 4 * 3 + 4);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=')
            break;
        int v = b64val((unsigned char)in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

void consul_kv_free(struct consul_kv *kv)
{
    free(kv->key);
    free(kv->session);
    free(kv->value);
    memset(kv, 0, sizeof *kv);
}

int consul_decode_kv(const char *body, size_t len, struct consul_kv *out, char *err, size_t errlen)
{
    struct consul_kv kv = {0};
    cJSON *root = parse(body, len, err, errlen);
    if (root == NULL)
        return -1;
    const cJSON *e = cJSON_IsArray(root) ? cJSON_GetArrayItem(root, 0) : NULL;
    const cJSON *key = get(e, "Key"), *sess = get(e, "Session"), *val = get(e, "Value");
    const cJSON *li = get(e, "LockIndex"), *mi = get(e, "ModifyIndex");
    if (!cJSON_IsObject(e) || !is_str(key) || (sess && !is_str(sess)) ||
        (val && !cJSON_IsNull(val) && !cJSON_IsString(val)) || !cJSON_IsNumber(li) ||
        !cJSON_IsNumber(mi)) {
        snprintf(err, errlen, "expected an array with one KV entry");
        goto fail;
    }
    kv.key = strdup(key->valuestring);
    kv.session = sess ? strdup(sess->valuestring) : NULL;
    kv.lock_index = (uint64_t)li->valuedouble;
    kv.modify_index = (uint64_t)mi->valuedouble;
    if (cJSON_IsString(val) && (kv.value = b64decode(val->valuestring, &kv.value_len)) == NULL) {
        snprintf(err, errlen, "Value is not base64");
        goto fail;
    }
    if (!kv.key || (sess && !kv.session))
        goto fail;
    cJSON_Delete(root);
    *out = kv;
    return 0;
fail:
    cJSON_Delete(root);
    consul_kv_free(&kv);
    return -1;
}

int consul_decode_session_id(const char *body, size_t len, char *out, size_t outlen, char *err,
                             size_t errlen)
{
    cJSON *root = parse(body, len, err, errlen);
    if (root == NULL)
        return -1;
    const cJSON *id = get(root, "ID");
    if (!is_str(id) || id->valuestring[0] == '\0' || strlen(id->valuestring) >= outlen) {
        snprintf(err, errlen, "expected {\"ID\": \"<session>\"}");
        cJSON_Delete(root);
        return -1;
    }
    snprintf(out, outlen, "%s", id->valuestring);
    cJSON_Delete(root);
    return 0;
}

void consul_check_entries_free(struct consul_check_entry *e, size_t n)
{
    for (size_t i = 0; e && i < n; i++) {
        free(e[i].node);
        free(e[i].service_name);
    }
    free(e);
}

int consul_decode_health_state(const char *body, size_t len, struct consul_check_entry **out,
                               size_t *n, char *err, size_t errlen)
{
    cJSON *root = parse(body, len, err, errlen);
    if (root == NULL)
        return -1;
    struct consul_check_entry *e = NULL;
    size_t k = 0;
    if (!cJSON_IsArray(root)) {
        snprintf(err, errlen, "expected an array");
        goto fail;
    }
    int count = cJSON_GetArraySize(root);
    if (count > CONSUL_DECODE_MAX_ITEMS * 4) {
        snprintf(err, errlen, "too many checks");
        goto fail;
    }
    e = count ? calloc((size_t)count, sizeof *e) : NULL;
    if (count && e == NULL)
        goto fail;
    const cJSON *c;
    cJSON_ArrayForEach(c, root) {
        const cJSON *node = get(c, "Node"), *svc = get(c, "ServiceName"),
                    *mi = get(c, "ModifyIndex");
        if (!is_str(node) || !is_str(svc) || !cJSON_IsNumber(mi) || mi->valuedouble < 0 ||
            mi->valuedouble >= 18446744073709551616.0) {
            snprintf(err, errlen, "check %zu: missing or mistyped Node/ServiceName/ModifyIndex", k);
            goto fail;
        }
        e[k].node = strdup(node->valuestring);
        e[k].service_name = strdup(svc->valuestring);
        e[k].modify_index = (uint64_t)mi->valuedouble;
        k++;
        if (!e[k - 1].node || !e[k - 1].service_name)
            goto fail;
    }
    cJSON_Delete(root);
    *out = e;
    *n = k;
    return 0;
fail:
    cJSON_Delete(root);
    consul_check_entries_free(e, k);
    return -1;
}
