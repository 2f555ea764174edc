/* nginx render + test + reload; see nginx.h. */
#include "proxy/nginx.h"

#include "lib/fileio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NGX_MAX_FILE (16u * 1024 * 1024)

struct job;

struct ngx {
    struct proxy base;
    char *dir, *test_cmd, *reload_cmd, *params;
    long cmd_timeout_ms;
    unsigned long commands;
    struct job *job; /* the apply in progress (one at a time) */
};

/* One apply: write, test, reload, with the previous bytes kept. */
struct job {
    struct ngx *n;
    char path[4096], bak[4096];
    char *old; /* previous file content, NULL if none */
    size_t old_len;
    int had_old;
    struct proxy_op_result *results;
    size_t n_ops;
    proxy_apply_fn fn;
    void *arg;
    /* the running child */
    pid_t pid;
    int fd;
    struct buf output;
    struct loop_timer *timer;
    int phase; /* 1 test, 2 reload */
    int timed_out;
};

static int is_ip(const char *h)
{
    unsigned char b[16];
    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static int cmp_target(const void *pa, const void *pb)
{
    const struct proxy_target *a = pa, *b = pb;
    int c = strcmp(a->host, b->host);
    return c ? c : (a->port > b->port) - (a->port < b->port);
}

int nginx_render(const char *name, const struct proxy_target_set *set, const char *params,
                 struct buf *out)
{
    struct proxy_target *sorted = set->n ? malloc(set->n * sizeof *sorted) : NULL;
    if (set->n && sorted == NULL)
        return -1;
    if (set->n) {
        memcpy(sorted, set->items, set->n * sizeof *sorted);
        qsort(sorted, set->n, sizeof *sorted, cmp_target);
    }
    buf_printf(out,
               "# Managed by consul-sidecar: changes here are overwritten.\n"
               "upstream %s {\n",
               name);
    int servers = 0;
    for (size_t i = 0; i < set->n; i++) {
        const struct proxy_target *t = &sorted[i];
        if (!is_ip(t->host))
            continue;
        if (strchr(t->host, ':'))
            buf_printf(out, "    server [%s]:%d", t->host, t->port);
        else
            buf_printf(out, "    server %s:%d", t->host, t->port);
        if (t->weight <= 0)
            buf_puts(out, " down");
        else
            buf_printf(out, " weight=%d", t->weight);
        if (params && *params)
            buf_printf(out, " %s", params);
        buf_puts(out, ";\n");
        servers++;
    }
    buf_puts(out, "}\n");
    free(sorted);
    return out->overflow ? -1 : servers;
}

int nginx_parse(const char *text, struct proxy_target_set *out, char *err, size_t errlen)
{
    struct proxy_target_set set = {0};
    size_t cap = 0;
    const char *p = text;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        char line[1024];
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), p);
        p = nl ? nl + 1 : NULL;
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        if (strncmp(s, "server ", 7) != 0)
            continue;
        s += 7;
        char addr[300];
        size_t al = strcspn(s, " ;");
        snprintf(addr, sizeof addr, "%.*s", (int)(al < sizeof addr ? al : sizeof addr - 1), s);
        s += al;
        char host[300];
        int port;
        char *colon = strrchr(addr, ':');
        if (colon == NULL) {
            snprintf(err, errlen, "unexpected server line: %.100s", line);
            goto fail;
        }
        *colon = '\0';
        port = (int)strtol(colon + 1, NULL, 10);
        snprintf(host, sizeof host, "%s", addr);
        if (host[0] == '[') {
            memmove(host, host + 1, strlen(host));
            host[strcspn(host, "]")] = '\0';
        }
        int weight = 1;
        if (strstr(s, " down"))
            weight = 0;
        else if (strstr(s, "weight="))
            weight = (int)strtol(strstr(s, "weight=") + 7, NULL, 10);
        if (set.n == cap) {
            cap = cap ? cap * 2 : 16;
            struct proxy_target *n = realloc(set.items, cap * sizeof *n);
            if (n == NULL)
                goto fail;
            set.items = n;
        }
        set.items[set.n].host = strdup(host);
        set.items[set.n].port = port;
        set.items[set.n].weight = weight;
        if (set.items[set.n].host == NULL)
            goto fail;
        set.n++;
    }
    *out = set;
    return 0;
fail:
    proxy_target_set_free(&set);
    return -1;
}

/* 0 read, 1 missing, -1 otherwise (larger than NGX_MAX_FILE included). */
static int read_file(const char *path, char **out, size_t *len)
{
    enum file_read_rc rc = file_read_capped(path, NGX_MAX_FILE, out, len);
    return rc == FILE_READ_OK ? 0 : rc == FILE_READ_MISSING ? 1 : -1;
}

static void file_path(const struct ngx *n, const char *upstream, char *out, size_t len)
{
    snprintf(out, len, "%s/consul-%s.conf", n->dir, upstream);
}

/* ---- read ----------------------------------------------------------------- */

static int ngx_read(struct proxy *p, const char *upstream, proxy_read_fn fn, void *arg, char *err,
                    size_t errlen)
{
    struct ngx *n = (struct ngx *)p;
    char path[4096], e[300];
    char *text = NULL;
    size_t len = 0;
    file_path(n, upstream, path, sizeof path);
    int rc = read_file(path, &text, &len);
    if (rc < 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: cannot read: %s", path, strerror(errno));
        fn(NULL, msg, arg);
        return 0;
    }
    struct proxy_target_set set = {0};
    if (rc == 0 && nginx_parse(text, &set, e, sizeof e) < 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s: %s", path, e);
        free(text);
        fn(NULL, msg, arg);
        return 0;
    }
    free(text);
    (void)err;
    (void)errlen;
    fn(&set, NULL, arg);
    proxy_target_set_free(&set);
    return 0;
}

/* ---- child processes --------------------------------------------------------- */

static void job_finish(struct job *j, int ok, const char *err);
static void job_after_cmd(struct job *j, int status);

static void reap(void *arg)
{
    struct job *j = arg;
    int status;
    pid_t r = waitpid(j->pid, &status, WNOHANG);
    if (r == 0) {
        loop_timer_start(j->timer, 10); /* exiting: look again shortly */
        return;
    }
    j->pid = -1;
    job_after_cmd(j, r < 0 ? -1 : status);
}

static void on_timeout(void *arg)
{
    struct job *j = arg;
    if (j->fd >= 0) {
        j->timed_out = 1;
        kill(j->pid, SIGKILL);
        loop_fd_unwatch(j->n->base.loop, j->fd);
        close(j->fd);
        j->fd = -1;
    }
    reap(j);
}

static void on_output(int fd, short revents, void *arg)
{
    struct job *j = arg;
    char tmp[4096];
    ssize_t r = read(fd, tmp, sizeof tmp);
    if (r > 0) {
        buf_append(&j->output, tmp, (size_t)r); /* capped: extra output dropped */
        return;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    (void)revents;
    loop_fd_unwatch(j->n->base.loop, fd);
    close(fd);
    j->fd = -1;
    loop_timer_stop(j->timer);
    struct loop_timer *t = j->timer;
    loop_timer_free(t);
    j->timer = loop_timer_new(j->n->base.loop, reap, j);
    reap(j);
}

static int run_cmd(struct job *j, const char *cmd)
{
    int pipefd[2];
    if (pipe(pipefd) < 0)
        return -1;
    fcntl(pipefd[0], F_SETFD, FD_CLOEXEC);
    fcntl(pipefd[1], F_SETFD, FD_CLOEXEC);
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        long maxfd = sysconf(_SC_OPEN_MAX);
        for (long fd = 3; fd < (maxfd > 0 && maxfd < 4096 ? maxfd : 4096); fd++)
            close((int)fd);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
    j->pid = pid;
    j->fd = pipefd[0];
    j->timed_out = 0;
    buf_reset(&j->output);
    j->n->commands++;
    loop_timer_free(j->timer);
    j->timer = loop_timer_new(j->n->base.loop, on_timeout, j);
    if (j->timer == NULL || loop_fd_watch(j->n->base.loop, j->fd, POLLIN, on_output, j) < 0)
        return -1;
    loop_timer_start(j->timer, (uint64_t)j->n->cmd_timeout_ms);
    return 0;
}

/* First "[emerg]" line of the output, or its first line. */
static void summary(const struct job *j, char *out, size_t len)
{
    const char *o = j->output.data ? j->output.data : "";
    const char *e = strstr(o, "[emerg]");
    const char *start = e ? e : o;
    size_t l = strcspn(start, "\n");
    snprintf(out, len, "%.*s", (int)(l > 300 ? 300 : l), start);
    if (out[0] == '\0')
        snprintf(out, len, "no output");
}

static int restore(struct job *j)
{
    if (!j->had_old)
        return unlink(j->path);
    return rename(j->bak, j->path);
}

static void job_after_cmd(struct job *j, int status)
{
    char why[400], msg[700];
    int ok = status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    summary(j, why, sizeof why);
    if (j->timed_out)
        snprintf(why, sizeof why, "timed out after %ld ms", j->n->cmd_timeout_ms);
    if (j->phase == 1) {
        if (!ok) {
            int r = restore(j);
            snprintf(msg, sizeof msg,
                     "nginx config test failed (%s); the previous %s was %s and "
                     "nginx was not reloaded",
                     why, j->path, r == 0 ? "put back" : "NOT restored");
            job_finish(j, 0, msg);
            return;
        }
        j->phase = 2;
        if (run_cmd(j, j->n->reload_cmd) < 0) {
            snprintf(msg, sizeof msg, "cannot run reload_cmd: %s", strerror(errno));
            job_finish(j, 0, msg);
        }
        return;
    }
    if (!ok) {
        /* The file goes back to what nginx still runs, so the next read-back
         * sees the change as not applied and renders, tests and reloads it
         * again (left in place, an unchanged render would never reload). */
        int r = restore(j);
        snprintf(msg, sizeof msg,
                 "nginx reload failed (%s); the previous %s was %s, the change "
                 "will be tried again",
                 why, j->path, r == 0 ? "put back" : "NOT restored");
        job_finish(j, 0, msg);
        return;
    }
    job_finish(j, 1, NULL);
}

/* ---- apply ---------------------------------------------------------------- */

static void job_free(struct job *j)
{
    if (j == NULL)
        return;
    if (j->fd >= 0) {
        loop_fd_unwatch(j->n->base.loop, j->fd);
        close(j->fd);
    }
    if (j->pid > 0) {
        kill(j->pid, SIGKILL);
        waitpid(j->pid, NULL, 0);
    }
    loop_timer_free(j->timer);
    buf_free(&j->output);
    free(j->old);
    proxy_results_free(j->results, j->n_ops);
    free(j);
}

static void job_finish(struct job *j, int ok, const char *err)
{
    for (size_t i = 0; i < j->n_ops; i++) {
        if (j->results[i].error)
            continue; /* a skipped host name keeps its own error */
        j->results[i].ok = ok;
        if (!ok)
            proxy_result_error(&j->results[i], "%s", err ? err : "failed");
    }
    int all = ok;
    for (size_t i = 0; i < j->n_ops; i++)
        all = all && j->results[i].ok;
    j->n->job = NULL;
    j->fn(all, j->results, j->n_ops, all ? NULL : (err ? err : "some targets were skipped"),
          j->arg);
    job_free(j);
}

/* The new file in place (atomically, with the old one's mode), the old
 * one kept beside it as .bak for restore(). */
static int write_keeping_backup(struct job *j, const struct buf *text, char *err, size_t errlen)
{
    struct stat st;
    mode_t mode = 0644;
    if (j->had_old && stat(j->path, &st) == 0)
        mode = st.st_mode & 0777;
    if (j->had_old) {
        unlink(j->bak);
        if (link(j->path, j->bak) < 0) {
            snprintf(err, errlen, "%s: cannot keep a backup: %s", j->bak, strerror(errno));
            return -1;
        }
    }
    return file_write_atomic(j->path, text->data, text->len, mode, err, errlen);
}

static int ngx_apply(struct proxy *p, const char *upstream, const struct proxy_op *ops,
                     size_t n_ops, const struct proxy_target_set *desired, proxy_apply_fn fn,
                     void *arg, char *err, size_t errlen)
{
    struct ngx *n = (struct ngx *)p;
    if (n->job) {
        snprintf(err, errlen, "an nginx render is already in progress");
        return -1;
    }
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL)
        goto oom;
    j->n = n;
    j->fn = fn;
    j->arg = arg;
    j->pid = -1;
    j->fd = -1;
    j->n_ops = n_ops;
    buf_init(&j->output, 16384);
    j->results = calloc(n_ops ? n_ops : 1, sizeof *j->results);
    if (j->results == NULL)
        goto oom;
    for (size_t i = 0; i < n_ops; i++)
        if (!is_ip(ops[i].target.host))
            proxy_result_error(
                &j->results[i],
                "skipped: nginx needs IP addresses, \"%s\" is a host name (it would fail "
                "the whole nginx configuration)",
                ops[i].target.host);
    file_path(n, upstream, j->path, sizeof j->path);
    snprintf(j->bak, sizeof j->bak, "%s.bak", j->path);
    struct buf text;
    buf_init(&text, NGX_MAX_FILE);
    int servers = nginx_render(upstream, desired, n->params, &text);
    if (servers <= 0) {
        buf_free(&text);
        snprintf(err, errlen,
                 servers < 0
                     ? "out of memory"
                     : "refusing to render upstream '%s' without servers: nginx would reject its "
                       "whole configuration; the previous file stays",
                 upstream);
        job_free(j);
        return -1;
    }
    int rc = read_file(j->path, &j->old, &j->old_len);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot read: %s", j->path, strerror(errno));
        buf_free(&text);
        job_free(j);
        return -1;
    }
    j->had_old = rc == 0;
    if (j->had_old && j->old_len == text.len && memcmp(j->old, text.data, text.len) == 0) {
        /* Same bytes: nothing to write, nothing to reload. */
        buf_free(&text);
        n->job = j;
        job_finish(j, 1, NULL);
        return 0;
    }
    rc = write_keeping_backup(j, &text, err, errlen);
    buf_free(&text);
    if (rc < 0) {
        job_free(j);
        return -1;
    }
    n->job = j;
    j->phase = 1;
    if (run_cmd(j, n->test_cmd) < 0) {
        restore(j);
        n->job = NULL;
        snprintf(err, errlen, "cannot run test_cmd: %s", strerror(errno));
        job_free(j);
        return -1;
    }
    return 0;
oom:
    if (j) {
        proxy_results_free(j->results, n_ops);
        buf_free(&j->output);
        free(j);
    }
    snprintf(err, errlen, "out of memory");
    return -1;
}

static void ngx_free(struct proxy *p)
{
    struct ngx *n = (struct ngx *)p;
    if (n == NULL)
        return;
    job_free(n->job);
    free(n->dir);
    free(n->test_cmd);
    free(n->reload_cmd);
    free(n->params);
    free(n);
}

unsigned long nginx_commands_run(const struct proxy *p)
{
    return ((const struct ngx *)p)->commands;
}

static const struct proxy_ops ngx_ops = {"nginx", ngx_read, ngx_apply, ngx_free, 0, NULL};

struct proxy *nginx_new(struct loop *l, const struct nginx_opts *o, char *err, size_t errlen)
{
    struct ngx *n = calloc(1, sizeof *n);
    if (n == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->base.ops = &ngx_ops;
    n->base.loop = l;
    n->dir = strdup(o->upstream_dir ? o->upstream_dir : "/etc/nginx/conf.d");
    n->test_cmd = strdup(o->test_cmd ? o->test_cmd : "nginx -t -q");
    n->reload_cmd = strdup(o->reload_cmd ? o->reload_cmd : "nginx -s reload");
    n->params = strdup(o->server_params ? o->server_params : "max_fails=1 fail_timeout=10s");
    n->cmd_timeout_ms = o->cmd_timeout_ms > 0 ? o->cmd_timeout_ms : 10000;
    if (!n->dir || !n->test_cmd || !n->reload_cmd || !n->params) {
        ngx_free(&n->base);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct stat st;
    if (stat(n->dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "nginx upstream_dir %s: not a directory", n->dir);
        ngx_free(&n->base);
        return NULL;
    }
    return &n->base;
}
