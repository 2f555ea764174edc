/* Async HTTP over curl multi; see http.h. */
#include "lib/http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/rand.h"

/* A request refused a new connection (another of its pool is being set up)
 * is put back after this long, jittered, to share that one once it is up. */
#define HTTP_POOL_WAIT_MS 40

struct pool {
    int conns;      /* open now */
    int connecting; /* opened, not yet ready for a request */
    int h2;         /* its last answer came over HTTP/2 */
};

struct http_call {
    struct loop *loop;
    CURL *easy;
    struct curl_slist *headers;
    struct curl_slist *connect_to;
    char *body;
    http_done_fn fn;
    void *arg;
    struct http_response resp;
    size_t max_body;
    int truncate_body;
    int tls_without_client_cert; /* https and no client certificate given */
    int cancelled;
    struct pool *pool; /* NULL: not counted */
    int multiplex;
    int connecting; /* sockets it opened, not yet ready */
    int refused;    /* a new connection was refused: wait, retry */
    struct loop_timer *retry;
};

static int inflight;
/* Connections per pool; index 0 is never counted. Static, so a connection
 * libcurl closes after its opener is gone still has a counter. */
static struct pool pools[HTTP_POOLS + 1];

int http_inflight(void)
{
    return inflight;
}

int http_connections(int pool)
{
    return pool >= 1 && pool <= HTTP_POOLS ? pools[pool].conns : 0;
}

/* Its connections are ready, or it is gone: they no longer count as being
 * set up. */
static void settle(struct http_call *c)
{
    if (c->pool && c->connecting) {
        c->pool->connecting -= c->connecting;
        c->connecting = 0;
    }
}

/*
 * libcurl 7.x shares a connection still being set up only while it does not
 * know whether the server multiplexes (CURLOPT_PIPEWAIT). Once it knows, a
 * request that finds every h2 connection full or closing opens one of its
 * own: a thousand streams cut at once (a GOAWAY, then the old connection
 * gone) come back as hundreds of connections. So, for a pool that speaks
 * h2, a multiplexed request may not open a connection while another is
 * being set up; it is refused here, and put back shortly (on_done), when it
 * shares the new one or, that one full, opens the next.
 */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    (void)purpose;
    struct http_call *c = clientp;
    if (c->multiplex && c->pool->h2 && c->pool->connecting > 0) {
        c->refused = 1;
        return CURL_SOCKET_BAD;
    }
    curl_socket_t fd = socket(a->family, a->socktype, a->protocol);
    if (fd != CURL_SOCKET_BAD) {
        c->pool->conns++;
        c->pool->connecting++;
        c->connecting++;
    }
    return fd;
}

/* libcurl keeps this callback and its pointer (the pool, static) with the
 * connection, so the close is counted where the open was. */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
    ((struct pool *)clientp)->conns--;
    return close(fd);
}

/* Called once the connection is ready (TLS and ALPN done), or reused. */
static int on_prereq(void *clientp, char *conn_primary_ip, char *conn_local_ip,
                     int conn_primary_port, int conn_local_port)
{
    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    settle(clientp);
    return CURL_PREREQFUNC_OK;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_call *c = userp;
    size_t n = size * nmemb;
    if (c->resp.body.cap == 0) {
        /* A large answer announced by its Content-Length is given its room
         * at once, not grown (and copied) a dozen times on the way. */
        curl_off_t want = -1;
        curl_easy_getinfo(c->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &want);
        if (want > (curl_off_t)n && c->max_body && (size_t)want <= c->max_body)
            buf_reserve(&c->resp.body, (size_t)want);
    }
    if (buf_append(&c->resp.body, data, n) < 0) {
        if (c->truncate_body && c->resp.body.len < c->max_body) {
            buf_append(&c->resp.body, data, c->max_body - c->resp.body.len);
            c->resp.body.overflow = 1; /* the last piece that fits, then stop */
        }
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    struct http_call *c = userp;
    size_t n = size * nmemb;
    /* A new status line starts a new header block (redirects, 100-continue):
     * keep only the final response's headers. */
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
        buf_reset(&c->resp.headers);
    if (buf_append(&c->resp.headers, data, n) < 0)
        return 0;
    return n;
}

static void call_free(struct http_call *c)
{
    settle(c);
    loop_timer_free(c->retry);
    if (c->easy)
        curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->headers);
    curl_slist_free_all(c->connect_to);
    free(c->body);
    buf_free(&c->resp.body);
    buf_free(&c->resp.headers);
    free(c);
    inflight--;
}

static enum http_error classify(CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return HTTP_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return HTTP_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return HTTP_ERR_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return HTTP_ERR_TLS;
    default:
        return HTTP_ERR_OTHER;
    }
}

static void on_retry(void *arg)
{
    struct http_call *c = arg;
    if (curl_multi_add_handle(loop_curl_multi(c->loop), c->easy) == CURLM_OK)
        return;
    c->resp.err = HTTP_ERR_OTHER;
    snprintf(c->resp.error, sizeof c->resp.error, "curl_multi_add_handle failed");
    if (!c->cancelled)
        c->fn(&c->resp, c->arg);
    call_free(c);
}

/* Refused a connection while another of its pool was being set up: the same
 * transfer is started again shortly, unseen by the caller. Returns 1 then. */
static int wait_for_pool(struct http_call *c, CURLcode rc)
{
    if (!c->refused || rc != CURLE_COULDNT_CONNECT)
        return 0;
    if (c->retry == NULL && (c->retry = loop_timer_new(c->loop, on_retry, c)) == NULL)
        return 0;
    settle(c);
    c->refused = 0;
    c->resp.error[0] = '\0';
    buf_reset(&c->resp.body);
    buf_reset(&c->resp.headers);
    loop_timer_start(c->retry, HTTP_POOL_WAIT_MS / 2 + rand_below(HTTP_POOL_WAIT_MS));
    return 1;
}

static void on_done(void *easy, int result)
{
    struct http_call *c = NULL;
    curl_easy_getinfo((CURL *)easy, CURLINFO_PRIVATE, (char **)&c);
    if (c == NULL)
        return;
    CURLcode rc = (CURLcode)result;
    if (wait_for_pool(c, rc))
        return;
    double t = 0;
    curl_easy_getinfo(c->easy, CURLINFO_TOTAL_TIME, &t);
    c->resp.elapsed_ms = (long)(t * 1000);
    curl_off_t first = 0, total = 0;
    curl_easy_getinfo(c->easy, CURLINFO_STARTTRANSFER_TIME_T, &first);
    curl_easy_getinfo(c->easy, CURLINFO_TOTAL_TIME_T, &total);
    c->resp.body_us = total > first ? (long)(total - first) : 0;
    long connects = 0;
    curl_easy_getinfo(c->easy, CURLINFO_NUM_CONNECTS, &connects);
    c->resp.new_connection = connects > 0;
    long version = 0;
    curl_easy_getinfo(c->easy, CURLINFO_HTTP_VERSION, &version);
    c->resp.http_version = version == CURL_HTTP_VERSION_2_0 ? 2
                           : version == CURL_HTTP_VERSION_3 ? 3
                           : version                        ? 1
                                                            : 0;
    if (rc == CURLE_OK && c->pool)
        c->pool->h2 = c->resp.http_version == 2;
    if (rc == CURLE_WRITE_ERROR && c->resp.body.overflow && c->truncate_body) {
        /* Enough read: the first max_body bytes and the status stand. */
        rc = CURLE_OK;
        c->resp.truncated = 1;
    }
    if (rc == CURLE_WRITE_ERROR && c->resp.body.overflow) {
        c->resp.err = HTTP_ERR_TOO_LARGE;
        snprintf(c->resp.error, sizeof c->resp.error,
                 "response body larger than %zu bytes, refused", c->max_body);
    } else if (rc != CURLE_OK) {
        c->resp.err = classify(rc);
        /* curl keeps its first message only: when a TLS server drops the
         * connection right after the handshake (TLS 1.3 servers refuse a
         * missing client certificate that way), that first message is a
         * getpeername() failure that hides the cause. */
        int tls_refusal = strncmp(c->resp.error, "getpeername()", 13) == 0 ||
                          strstr(c->resp.error, "SSL") || strstr(c->resp.error, "alert");
        if (c->resp.error[0] == '\0' || strncmp(c->resp.error, "getpeername()", 13) == 0)
            snprintf(c->resp.error, sizeof c->resp.error, "%s", curl_easy_strerror(rc));
        /* The peer closed (or reset) the connection; a TLS layer that ended
         * the session with a reason (an alert: a certificate required or
         * refused) is a refusal, not a bare close. */
        c->resp.closed_by_peer =
            (rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR) &&
            !tls_refusal;
        if (c->tls_without_client_cert &&
            (rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR || rc == CURLE_GOT_NOTHING ||
             rc == CURLE_SSL_CONNECT_ERROR) &&
            strlen(c->resp.error) < 160) {
            char with_hint[sizeof c->resp.error];
            snprintf(with_hint, sizeof with_hint,
                     "%s (the TLS server ended the session: it may require a client "
                     "certificate, and none is configured)",
                     c->resp.error);
            memcpy(c->resp.error, with_hint, sizeof c->resp.error);
        }
    } else {
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->resp.status);
        c->resp.error[0] = '\0';
    }
    if (c->resp.err != HTTP_OK)
        c->resp.status = 0;
    if (!c->cancelled)
        c->fn(&c->resp, c->arg);
    call_free(c);
}

/* How the request reaches its server: timeouts, a unix socket, HTTP/2
 * multiplexing, the connection pool, a connect-to override. */
static int set_transport(struct http_call *c, CURL *e, const struct http_request *req)
{
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     req->connect_timeout_ms > 0 ? req->connect_timeout_ms : 5000L);
    if (req->timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    if (req->unix_socket)
        curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, req->unix_socket);
    if (req->user_agent)
        curl_easy_setopt(e, CURLOPT_USERAGENT, req->user_agent);
    if (req->connect_only)
        curl_easy_setopt(e, CURLOPT_CONNECT_ONLY, 1L);
    if (req->multiplex) {
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    }
    if (req->pool >= 1 && req->pool <= HTTP_POOLS) {
        c->pool = &pools[req->pool];
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, c);
        curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
        curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, c->pool);
        curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
        curl_easy_setopt(e, CURLOPT_PREREQDATA, c);
    }
    if (req->connect_to) {
        if ((c->connect_to = curl_slist_append(NULL, req->connect_to)) == NULL)
            return -1;
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, c->connect_to);
    }
    return 0;
}

/* The method, the body (copied: the caller's may go) and the headers. */
static int set_message(struct http_call *c, CURL *e, const struct http_request *req)
{
    const char *method = req->method ? req->method : "GET";
    if (strcmp(method, "GET") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (req->body || strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0 ||
        strcmp(method, "PATCH") == 0) {
        size_t n = req->body ? req->body_len : 0;
        if ((c->body = malloc(n + 1)) == NULL)
            return -1;
        if (n)
            memcpy(c->body, req->body, n);
        c->body[n] = '\0';
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
    }
    /* curl adds "Expect: 100-continue" to large bodies; Consul and Kong do
     * not need the extra round trip. */
    c->headers = curl_slist_append(NULL, "Expect:");
    for (const char *const *h = req->headers; h && *h; h++) {
        struct curl_slist *n = curl_slist_append(c->headers, *h);
        if (n == NULL)
            return -1;
        c->headers = n;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    return 0;
}

static void set_tls(struct http_call *c, CURL *e, const struct http_request *req)
{
    const struct http_tls *tls = req->tls;
    c->tls_without_client_cert = strncasecmp(req->url, "https://", 8) == 0 &&
                                 !(tls && tls->client_cert && tls->client_cert[0]);
    if (tls == NULL)
        return;
    if (tls->cacert)
        curl_easy_setopt(e, CURLOPT_CAINFO, tls->cacert);
    if (tls->capath)
        curl_easy_setopt(e, CURLOPT_CAPATH, tls->capath);
    if (tls->client_cert)
        curl_easy_setopt(e, CURLOPT_SSLCERT, tls->client_cert);
    if (tls->client_key)
        curl_easy_setopt(e, CURLOPT_SSLKEY, tls->client_key);
    if (tls->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
}

struct http_call *http_start(struct loop *l, const struct http_request *req, http_done_fn fn,
                             void *arg, char *err, size_t errlen)
{
    struct http_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    inflight++;
    c->loop = l;
    c->fn = fn;
    c->arg = arg;
    c->max_body = req->max_body ? req->max_body : HTTP_DEFAULT_MAX_BODY;
    c->truncate_body = req->truncate_body;
    c->multiplex = req->multiplex;
    buf_init(&c->resp.body, c->max_body);
    buf_init(&c->resp.headers, 64 * 1024);
    loop_set_curl_done(l, on_done);

    CURL *e = c->easy = curl_easy_init();
    if (e == NULL) {
        snprintf(err, errlen, "curl_easy_init failed");
        goto fail;
    }
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->resp.error);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (set_transport(c, e, req) < 0 || set_message(c, e, req) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    set_tls(c, e, req);
    if (curl_multi_add_handle(loop_curl_multi(l), e) != CURLM_OK) {
        snprintf(err, errlen, "curl_multi_add_handle failed");
        goto fail;
    }
    return c;
fail:
    call_free(c);
    return NULL;
}

void http_cancel(struct http_call *c)
{
    if (c == NULL)
        return;
    curl_multi_remove_handle(loop_curl_multi(c->loop), c->easy);
    call_free(c);
}

const char *http_header(const struct http_response *r, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = r->headers.data;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            const char *end = p + len;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == ' '))
                end--;
            size_t vl = (size_t)(end - v);
            if (vl >= outlen)
                vl = outlen - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return out;
        }
        p = eol ? eol + 1 : NULL;
    }
    return NULL;
}

char *http_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}
