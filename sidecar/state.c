/* Atomic state file of last known good upstreams; see state.h. */
#include "sidecar/state.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/fileio.h"
#include "lib/jsonstr.h"

#define STATE_FILE "upstreams.json"
#define STATE_MAX_BYTES (64u * 1024 * 1024)

void state_free(struct state *st)
{
    for (size_t i = 0; i < st->n; i++) {
        free(st->items[i].name);
        free(st->items[i].proxy);
        proxy_target_set_free(&st->items[i].targets);
    }
    free(st->items);
    st->items = NULL;
    st->n = 0;
}

static struct state_upstream *find(const struct state *st, const char *proxy, const char *name)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->items[i].name, name) == 0 && strcmp(st->items[i].proxy, proxy) == 0)
            return &st->items[i];
    return NULL;
}

const struct state_upstream *state_get(const struct state *st, const char *proxy, const char *name)
{
    return find(st, proxy ? proxy : "", name);
}

int state_set(struct state *st, const char *name, const char *proxy, uint64_t index,
              const struct proxy_target_set *targets)
{
    struct proxy_target_set copy;
    char *pcopy = strdup(proxy ? proxy : "");
    if (pcopy == NULL || proxy_target_set_share(&copy, targets) < 0) {
        free(pcopy);
        return -1;
    }
    struct state_upstream *old = find(st, pcopy, name);
    if (old) {
        proxy_target_set_free(&old->targets);
        free(old->proxy);
        old->targets = copy;
        old->proxy = pcopy;
        old->index = index;
        return 0;
    }
    struct state_upstream *n = realloc(st->items, (st->n + 1) * sizeof *n);
    if (n)
        st->items = n;
    char *ncopy = n ? strdup(name) : NULL;
    if (ncopy == NULL) {
        free(pcopy);
        proxy_target_set_free(&copy);
        return -1;
    }
    struct state_upstream *u = &st->items[st->n++];
    u->name = ncopy;
    u->proxy = pcopy;
    u->index = index;
    u->targets = copy;
    return 0;
}

/* One upstream's entry (its name from the version-1 key or the version-2
 * "name" field) into out. */
static int parse_entry(const cJSON *u, const char *name, struct state *out, char *err,
                       size_t errlen)
{
    const cJSON *proxy = cJSON_GetObjectItemCaseSensitive(u, "proxy");
    const cJSON *index = cJSON_GetObjectItemCaseSensitive(u, "index");
    const cJSON *targets = cJSON_GetObjectItemCaseSensitive(u, "targets");
    if (!cJSON_IsObject(u) || !cJSON_IsString(proxy) || !cJSON_IsNumber(index) ||
        index->valuedouble < 0 || !cJSON_IsArray(targets)) {
        snprintf(err, errlen, "upstreams.%.64s: expected proxy, index and targets", name);
        return -1;
    }
    struct proxy_target_set set = {0};
    int n = cJSON_GetArraySize(targets);
    set.items = n ? calloc((size_t)n, sizeof *set.items) : NULL;
    if (n && set.items == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, targets) {
        const cJSON *host = cJSON_GetObjectItemCaseSensitive(t, "host");
        const cJSON *port = cJSON_GetObjectItemCaseSensitive(t, "port");
        const cJSON *weight = cJSON_GetObjectItemCaseSensitive(t, "weight");
        if (!cJSON_IsString(host) || host->valuestring[0] == '\0' ||
            strlen(host->valuestring) > 255 || !cJSON_IsNumber(port) || port->valueint < 1 ||
            port->valueint > 65535 || !cJSON_IsNumber(weight) || weight->valueint < 0 ||
            weight->valueint > 65535) {
            snprintf(err, errlen, "upstreams.%.64s.targets[%zu]: bad target", name, set.n);
            proxy_target_set_free(&set);
            return -1;
        }
        set.items[set.n].host = strdup(host->valuestring);
        set.items[set.n].port = port->valueint;
        set.items[set.n].weight = weight->valueint;
        if (set.items[set.n].host == NULL) {
            proxy_target_set_free(&set);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        set.n++;
    }
    if (find(out, proxy->valuestring, name)) {
        snprintf(err, errlen, "upstreams.%.64s: a second entry for %.32s", name,
                 proxy->valuestring);
        proxy_target_set_free(&set);
        return -1;
    }
    int rc = state_set(out, name, proxy->valuestring, (uint64_t)index->valuedouble, &set);
    proxy_target_set_free(&set);
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

/* Version 2 is a list of entries, each naming its upstream and proxy.
 * Version 1 (until upstreams were told apart by proxy) was an object keyed
 * by upstream name alone, its proxy inside: each of its entries is read as
 * the upstream of that name on that proxy, and the next save writes
 * version 2. */
int state_parse(const char *text, struct state *st, char *err, size_t errlen)
{
    struct state out = {0};
    cJSON *root = cJSON_Parse(text);
    if (root == NULL) {
        snprintf(err, errlen, "not valid JSON");
        return -1;
    }
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    const cJSON *ups = cJSON_GetObjectItemCaseSensitive(root, "upstreams");
    int v = cJSON_IsNumber(ver) && (ver->valuedouble == 1 || ver->valuedouble == 2)
                ? (int)ver->valuedouble
                : 0;
    if (v == 0) {
        snprintf(err, errlen, "version: expected 1 or 2");
        goto fail;
    }
    if (v == 1 ? !cJSON_IsObject(ups) : !cJSON_IsArray(ups)) {
        snprintf(err, errlen, "upstreams: expected %s", v == 1 ? "an object" : "an array");
        goto fail;
    }
    const cJSON *u;
    size_t k = 0;
    cJSON_ArrayForEach(u, ups) {
        const char *name = u->string;
        char where[32];
        if (v == 2) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(u, "name");
            snprintf(where, sizeof where, "[%zu]", k);
            if (!cJSON_IsString(nm) || nm->valuestring[0] == '\0') {
                snprintf(err, errlen, "upstreams%s: expected a name", where);
                goto fail;
            }
            name = nm->valuestring;
        }
        k++;
        if (parse_entry(u, name, &out, err, errlen) < 0)
            goto fail;
    }
    cJSON_Delete(root);
    state_free(st);
    *st = out;
    return 0;
fail:
    cJSON_Delete(root);
    state_free(&out);
    return -1;
}

/* mkdir -p with mode 0750; 0, or -1 with errno set. */
static int make_dirs(const char *dir)
{
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char was = *p;
        *p = '\0';
        if (stat(path, &st) < 0) {
            if (errno != ENOENT || (mkdir(path, 0750) < 0 && errno != EEXIST))
                return -1;
        } else if (!S_ISDIR(st.st_mode)) {
            errno = ENOTDIR;
            return -1;
        }
        *p = was;
        if (was == '\0')
            return 0;
    }
}

int state_dir_prepare(const char *dir, char *err, size_t errlen)
{
    char probe[4200];
    if (make_dirs(dir) < 0) {
        snprintf(err, errlen, "state directory '%s': cannot create it: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(probe, sizeof probe, "%s/.write-test.XXXXXX", dir);
    int fd = mkstemp(probe);
    if (fd < 0) {
        snprintf(err, errlen, "state directory '%s': cannot write in it: %s", dir, strerror(errno));
        return -1;
    }
    close(fd);
    unlink(probe);
    return 0;
}

int state_load(const char *dir, struct state *st, char *err, size_t errlen)
{
    char path[4096], why[256];
    snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
    char *text = NULL;
    size_t len = 0;
    switch (file_read_capped(path, STATE_MAX_BYTES, &text, &len)) {
    case FILE_READ_OK:
        break;
    case FILE_READ_MISSING:
        return 0;
    case FILE_READ_TOO_BIG:
        snprintf(err, errlen, "%s: larger than %u bytes", path, STATE_MAX_BYTES);
        return -1;
    default:
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int rc = state_parse(text, st, why, sizeof why);
    if (rc < 0)
        snprintf(err, errlen, "%s: corrupt state file: %s", path, why);
    free(text);
    return rc;
}

/* The file's text, one upstream a line, made one upstream at a time and
 * written out as it goes (file_write_atomic_parts): it is rewritten up to
 * once a second while changes come, and neither a cJSON tree nor the whole
 * text of 10,000 targets (a megabyte) is worth holding for it. */
struct render {
    const struct state *st;
    size_t next; /* the upstream to append; st->n: the end */
};

static int render_part(void *arg, struct buf *b)
{
    struct render *r = arg;
    if (r->next == 0)
        buf_puts(b, "{\"version\":2,\"upstreams\":[");
    if (r->next == r->st->n) {
        buf_puts(b, "\n]}\n");
        return 0;
    }
    const struct state_upstream *u = &r->st->items[r->next];
    buf_puts(b, r->next ? ",\n{\"proxy\":" : "\n{\"proxy\":");
    buf_json_string(b, u->proxy);
    buf_puts(b, ",\"name\":");
    buf_json_string(b, u->name);
    buf_printf(b, ",\"index\":%llu,\"targets\":[", (unsigned long long)u->index);
    for (size_t j = 0; j < u->targets.n; j++) {
        const struct proxy_target *t = &u->targets.items[j];
        buf_puts(b, j ? ",{\"host\":" : "{\"host\":");
        buf_json_string(b, t->host);
        buf_printf(b, ",\"port\":%d,\"weight\":%d}", t->port, t->weight);
    }
    buf_puts(b, "]}");
    r->next++;
    return 1;
}

int state_save(const char *dir, const struct state *st, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE);
    struct render r = {st, 0};
    return file_write_atomic_parts(path, render_part, &r, 0600, err, errlen);
}
