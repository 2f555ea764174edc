/* Reading configuration files, JSON or HCL, and directories of them; see
 * config_files.h. */
#include "sidecar/config_files.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/buf.h"
#include "lib/fileio.h"
#include "lib/hcl.h"

#define CFG_MAX_FILE (4u * 1024 * 1024)
#define CFG_MAX_FILES 256

static void line_col(const char *text, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at && *p; p++) {
        if (*p == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int ends_with(const char *s, const char *suffix)
{
    size_t l = strlen(s), n = strlen(suffix);
    return l > n && strcmp(s + l - n, suffix) == 0;
}

/* Consul's HCL spelling of lists: two `service { }` blocks are a list of
 * services, two `check { }` blocks in a service a list of checks. As JSON
 * they are "services" and "checks". */
static int plural_lists(cJSON *obj, const char *one, const char *many)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, one);
    if (!cJSON_IsArray(v))
        return 0;
    cJSON *list = cJSON_GetObjectItemCaseSensitive(obj, many);
    if (list && !cJSON_IsArray(list))
        return -1;
    v = cJSON_DetachItemViaPointer(obj, v);
    if (list == NULL) {
        cJSON_AddItemToObject(obj, many, v);
        return 0;
    }
    cJSON *e;
    while ((e = cJSON_DetachItemFromArray(v, 0)) != NULL)
        cJSON_AddItemToArray(list, e);
    cJSON_Delete(v);
    return 0;
}

static cJSON *parse_hcl(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    char why[300];
    cJSON *root = hcl_parse(text, len, why, sizeof why);
    if (root == NULL) {
        snprintf(err, errlen, "%s: invalid HCL at %s", path, why);
        return NULL;
    }
    int rc = plural_lists(root, "service", "services");
    const char *keys[] = {"service", "services"};
    for (int k = 0; k < 2 && rc == 0; k++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[k]), *e;
        if (cJSON_IsObject(v))
            rc = plural_lists(v, "check", "checks");
        else if (cJSON_IsArray(v))
            cJSON_ArrayForEach(e, v)
                if (rc == 0 && cJSON_IsObject(e))
                    rc = plural_lists(e, "check", "checks");
    }
    if (rc < 0) {
        snprintf(err, errlen,
                 "%s: blocks and a list of the same kind (service/services, "
                 "check/checks) cannot be mixed",
                 path);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* A configuration file: JSON, or HCL when its name ends in .hcl. */
static int read_config_file(const char *path, cJSON **out, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    switch (file_read_capped(path, CFG_MAX_FILE, &text, &len)) {
    case FILE_READ_OK:
        break;
    case FILE_READ_TOO_BIG:
        snprintf(err, errlen, "%s: file larger than 4 MiB", path);
        return -1;
    case FILE_READ_MISSING:
        errno = ENOENT;
        /* fall through */
    default:
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    const char *end = NULL;
    if (ends_with(path, ".hcl")) {
        cJSON *root = parse_hcl(path, text, len, err, errlen);
        free(text);
        if (root == NULL)
            return -1;
        *out = root;
        return 0;
    }
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (root == NULL) {
        int line, col;
        line_col(text, end ? end : text + len, &line, &col);
        snprintf(err, errlen, "%s: invalid JSON at line %d, column %d", path, line, col);
        free(text);
        return -1;
    }
    free(text);
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: expected a JSON object at the top level", path);
        cJSON_Delete(root);
        return -1;
    }
    *out = root;
    return 0;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_source(struct cfg_source **srcs, size_t *n, const char *file, char *err,
                      size_t errlen)
{
    if (*n >= CFG_MAX_FILES) {
        snprintf(err, errlen, "%s: more than %d configuration files", file, CFG_MAX_FILES);
        return -1;
    }
    cJSON *root;
    if (read_config_file(file, &root, err, errlen) < 0)
        return -1;
    struct cfg_source *s = realloc(*srcs, (*n + 1) * sizeof *s);
    if (s == NULL) {
        cJSON_Delete(root);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *srcs = s;
    s[*n].file = strdup(file);
    s[*n].root = root;
    (*n)++;
    return 0;
}

int config_load_path(struct cfg_source **srcs, size_t *n, const char *path, char *err,
                     size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return add_source(srcs, n, path, err, errlen);
    DIR *d = opendir(path);
    if (d == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t nn = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' ||
            (!ends_with(e->d_name, ".json") && !ends_with(e->d_name, ".hcl")))
            continue;
        char **nw = realloc(names, (nn + 1) * sizeof *nw);
        if (nw == NULL) {
            rc = -1;
            break;
        }
        names = nw;
        names[nn++] = strdup(e->d_name);
    }
    closedir(d);
    if (nn)
        qsort(names, nn, sizeof *names, str_cmp);
    for (size_t i = 0; i < nn && rc == 0; i++) {
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, names[i]);
        rc = add_source(srcs, n, full, err, errlen);
    }
    for (size_t i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    if (rc < 0 && err[0] == '\0')
        snprintf(err, errlen, "%s: out of memory", path);
    return rc;
}
