/* Status endpoint over libmicrohttpd in external epoll mode; see status.h. */
#include "sidecar/status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/buf.h"
#include "lib/unconst.h"

struct status_server {
    struct loop *loop;
    struct MHD_Daemon *mhd;
    struct status_providers p;
    struct loop_timer *timer;
    int epoll_fd;
    int port;
    char address[300];
};

int status_parse_listen(const char *listen, char *host, size_t hostlen, int *port)
{
    const char *colon;
    if (listen == NULL || *listen == '\0')
        return -1;
    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        snprintf(host, hostlen, "%.*s", (int)(end - listen - 1), listen + 1);
        colon = end + 1;
    } else {
        colon = strrchr(listen, ':');
        if (colon == NULL || strchr(listen, ':') != colon)
            return -1;
        snprintf(host, hostlen, "%.*s", (int)(colon - listen), listen);
    }
    char *e;
    errno = 0;
    long v = strtol(colon + 1, &e, 10);
    if (colon[1] == '\0' || *e || errno || v < 0 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned code, const char *type,
                                 const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, unconst(body), MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (code == 405)
        MHD_add_response_header(r, "Allow", "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* cJSON indents with tabs and writes "key":<tab>value; people reading
 * `curl /status` get two spaces and "key": value. */
static char *pretty(const cJSON *o)
{
    char *tabs = cJSON_Print(o);
    if (tabs == NULL)
        return NULL;
    struct buf b;
    buf_init(&b, 0);
    for (const char *p = tabs; *p; p++) {
        if (*p == '\t')
            buf_puts(&b, p[-1] == ':' ? " " : "  ");
        else
            buf_append(&b, p, 1);
    }
    free(tabs);
    return buf_steal(&b);
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned code, cJSON *o)
{
    char *s = pretty(o);
    cJSON_Delete(o);
    if (s == NULL)
        return send_text(c, 500, "text/plain", "out of memory\n", 14);
    size_t n = strlen(s);
    char *body = malloc(n + 2);
    if (body == NULL) {
        free(s);
        return send_text(c, 500, "text/plain", "out of memory\n", 14);
    }
    memcpy(body, s, n);
    body[n] = '\n';
    body[n + 1] = '\0';
    free(s);
    enum MHD_Result ret = send_text(c, code, "application/json", body, n + 1);
    free(body);
    return ret;
}

static enum MHD_Result get_health(struct status_server *s, struct MHD_Connection *c)
{
    char why[512] = "";
    int ok = s->p.health ? s->p.health(why, sizeof why, s->p.arg) : 1;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", ok ? "ok" : "unhealthy");
    if (!ok)
        cJSON_AddStringToObject(o, "reason", why);
    return send_json(c, ok ? 200 : 503, o);
}

static enum MHD_Result get_status(struct status_server *s, struct MHD_Connection *c)
{
    return send_json(c, 200, s->p.status ? s->p.status(s->p.arg) : cJSON_CreateObject());
}

static enum MHD_Result get_metrics(struct status_server *s, struct MHD_Connection *c)
{
    struct buf b;
    buf_init(&b, 16 * 1024 * 1024);
    if (s->p.metrics && metrics_render(s->p.metrics, &b) < 0) {
        buf_free(&b);
        return send_text(c, 500, "text/plain", "metrics too large\n", 18);
    }
    enum MHD_Result ret =
        send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len);
    buf_free(&b);
    return ret;
}

/* Every endpoint answers GET and HEAD. */
static const struct {
    const char *path;
    enum MHD_Result (*fn)(struct status_server *s, struct MHD_Connection *c);
} routes[] = {
    {"/health", get_health},
    {"/status", get_status},
    {"/metrics", get_metrics},
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    struct status_server *s = cls;
    (void)version;
    (void)upload;
    (void)state;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        *upload_size = 0;
        return send_text(c, 405, "text/plain", "method not allowed\n", 19);
    }
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(url, routes[i].path) == 0)
            return routes[i].fn(s, c);
    return send_text(c, 404, "text/plain", "not found\n", 10);
}

static void arm(struct status_server *s)
{
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(s->mhd, &ms) == MHD_YES)
        loop_timer_start(s->timer, (uint64_t)ms);
    else
        loop_timer_stop(s->timer);
}

static void on_fd(int fd, short revents, void *arg)
{
    struct status_server *s = arg;
    (void)fd;
    (void)revents;
    MHD_run(s->mhd);
    arm(s);
}

static void on_timer(void *arg)
{
    struct status_server *s = arg;
    MHD_run(s->mhd);
    arm(s);
}

struct status_server *status_server_new(struct loop *l, const char *listen,
                                        const struct status_providers *p, char *err, size_t errlen)
{
    char host[256];
    int port;
    if (status_parse_listen(listen, host, sizeof host, &port) < 0) {
        snprintf(err, errlen, "listen address \"%s\": expected host:port, [v6]:port or :port",
                 listen ? listen : "");
        return NULL;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_EPOLL;
    if (host[0] == '\0') {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
            snprintf(err, errlen, "listen address \"%s\": not an IP address", listen);
            return NULL;
        }
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (strcmp(host, "localhost") == 0)
            snprintf(host, sizeof host, "127.0.0.1");
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
            snprintf(err, errlen, "listen address \"%s\": not an IP address", listen);
            return NULL;
        }
    }
    struct status_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->loop = l;
    s->p = *p;
    s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                              (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, 64U,
                              MHD_OPTION_CONNECTION_TIMEOUT, 10U,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536, MHD_OPTION_END);
    if (s->mhd == NULL) {
        snprintf(err, errlen,
                 "status endpoint: cannot listen on %s (address in use or not "
                 "available)",
                 listen);
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pinfo = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->epoll_fd = info ? info->epoll_fd : -1;
    s->port = pinfo ? pinfo->port : port;
    s->timer = loop_timer_new(l, on_timer, s);
    if (s->epoll_fd < 0 || s->timer == NULL ||
        loop_fd_watch(l, s->epoll_fd, POLLIN, on_fd, s) < 0) {
        snprintf(err, errlen, "status endpoint: cannot attach to the event loop");
        status_server_free(s);
        return NULL;
    }
    if (strchr(host, ':'))
        snprintf(s->address, sizeof s->address, "[%s]:%d", host, s->port);
    else
        snprintf(s->address, sizeof s->address, "%s:%d", host[0] ? host : "0.0.0.0", s->port);
    arm(s);
    return s;
}

const char *status_server_address(const struct status_server *s)
{
    return s->address;
}

int status_server_port(const struct status_server *s)
{
    return s->port;
}

void status_server_free(struct status_server *s)
{
    if (s == NULL)
        return;
    if (s->epoll_fd >= 0)
        loop_fd_unwatch(s->loop, s->epoll_fd);
    loop_timer_free(s->timer);
    if (s->mhd)
        MHD_stop_daemon(s->mhd);
    free(s);
}
