/*
 * Propagation latency probe for `make bench`: flips one instance's TTL check
 * in the Consul double (fail, then pass) and measures, for each flip, the
 * time from Consul's answer to the PUT (the change is committed) to HAProxy
 * showing the new server count in `show servers state` (polled every 200 us
 * on the admin socket). Prints one latency per line (ms) and a summary.
 *
 * propagate AGENT_URL CHECK_ID HAPROXY_SOCK BACKEND COUNT UP_SERVERS DOWN_SERVERS
 * propagate --wait-total HAPROXY_SOCK TOTAL
 * propagate --http FRONT_URL AGENT_URL CHECK_ID NAME COUNT
 *   COUNT additions observed as a client sees them: the instance NAME's
 *   check passes and requests go through the proxy in front (fresh
 *   connections) until NAME answers. Between two, the check fails and the
 *   probe waits, untimed, until eight answers in a row are not NAME. Used to
 *   compare proxies whatever their admin interface.
 *
 * PROPAGATE_GAP_MS / PROPAGATE_JITTER_MS: quiet time before each timed
 * change, fixed and uniformly random (a poller's phase); default none.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static size_t sink(char *p, size_t s, size_t n, void *u)
{
    (void)p;
    (void)u;
    return s * n;
}

static int servers(const char *sock, const char *backend)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char cmd[256];
    int n = backend[0] ? snprintf(cmd, sizeof cmd, "show servers state %s\n", backend)
                       : snprintf(cmd, sizeof cmd, "show servers state\n");
    if (write(fd, cmd, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    shutdown(fd, SHUT_WR);
    static char buf[16 << 20];
    size_t len = 0;
    ssize_t r;
    while ((r = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)r;
    close(fd);
    buf[len] = '\0';
    int count = 0;
    char *save = NULL;
    int first = 1;
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (first || *l == '#') { /* the format version line, the header */
            first = 0;
            continue;
        }
        /* be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ... */
        char name[256];
        int admin = 0;
        if (sscanf(l, "%*d %*s %*d %255s %*s %*d %d", name, &admin) == 2 &&
            strncmp(name, "cs-", 3) == 0 && !(admin & 1))
            count++;
    }
    return count;
}

struct body {
    char text[256];
    size_t len;
};

static size_t keep(char *p, size_t s, size_t n, void *u)
{
    struct body *b = u;
    size_t take = s * n;
    if (take > sizeof b->text - 1 - b->len)
        take = sizeof b->text - 1 - b->len;
    memcpy(b->text + b->len, p, take);
    b->len += take;
    b->text[b->len] = '\0';
    return s * n;
}

/* 1 when NAME answered, 0 another, -1 no answer. A fresh connection each
 * time, so a reloaded proxy's new configuration is what answers. */
static int answered_by(CURL *g, const char *url, const char *name)
{
    struct body b = {{0}, 0};
    curl_easy_setopt(g, CURLOPT_URL, url);
    curl_easy_setopt(g, CURLOPT_WRITEFUNCTION, keep);
    curl_easy_setopt(g, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(g, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(g, CURLOPT_TIMEOUT_MS, 2000L);
    if (curl_easy_perform(g) != CURLE_OK)
        return -1;
    return strncmp(b.text, name, strlen(name)) == 0 &&
           (b.text[strlen(name)] == '\0' || b.text[strlen(name)] == '\n');
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One line on stderr for the person running it; the latencies went to stdout. */
static int summary(double *lat, int count)
{
    qsort(lat, (size_t)count, sizeof *lat, cmp);
    fprintf(stderr, "propagate: n=%d p50=%.2f ms p99=%.2f ms max=%.2f ms\n", count, lat[count / 2],
            lat[(int)(count * 0.99)], lat[count - 1]);
    free(lat);
    return 0;
}

/* PUT /v1/agent/check/{pass,fail}/CHECK on one agent; 0 or -1. */
static int put_check(CURL *e, const char *agent, const char *check, int fail)
{
    char url[512];
    snprintf(url, sizeof url, "%s/v1/agent/check/%s/%s", agent, fail ? "fail" : "pass", check);
    curl_easy_setopt(e, CURLOPT_URL, url);
    if (curl_easy_perform(e) != CURLE_OK) {
        fprintf(stderr, "propagate: PUT %s failed\n", url);
        return -1;
    }
    return 0;
}

/* --wait-total SOCK TOTAL: waits until every backend together holds TOTAL
 * servers of ours; prints the elapsed milliseconds. */
static int wait_total(const char *sock, long total)
{
    double t0 = now_ms();
    while (servers(sock, "") != total) {
        if (now_ms() - t0 > 300000) {
            fprintf(stderr, "propagate: %ld servers not reached in 300 s (have %d)\n", total,
                    servers(sock, ""));
            return 1;
        }
        usleep(20000);
    }
    printf("%.0f\n", now_ms() - t0);
    return 0;
}

/* --http FRONT AGENT CHECK NAME COUNT: as a client sees it, through the
 * front proxy: from the PUT that passes NAME's check until NAME answers. */
static int as_client(const char *front, const char *agent, const char *check, const char *name,
                     int count)
{
    double *lat = calloc((size_t)count, sizeof *lat);
    CURL *e = curl_easy_init(), *g = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    for (int i = 0; i < count; i++) {
        for (int step = 0; step < 2; step++) {
            int fail = step == 0;
            if (put_check(e, agent, check, fail) < 0)
                return 1;
            double t0 = now_ms();
            for (int others = 0;;) {
                int by = answered_by(g, front, name);
                if (!fail && by == 1)
                    break;
                others = fail && by == 0 ? others + 1 : 0;
                if (fail && others == 8)
                    break;
                if (now_ms() - t0 > 20000) {
                    fprintf(stderr, "propagate: change %d not served within 20 s\n", i);
                    return 1;
                }
            }
            if (fail) {
                usleep(200000); /* let a reload finish: untimed */
                continue;
            }
            lat[i] = now_ms() - t0;
            printf("%.3f\n", lat[i]);
        }
    }
    return summary(lat, count);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--wait-total") == 0)
        return wait_total(argv[2], strtol(argv[3], NULL, 10));
    if (argc == 7 && strcmp(argv[1], "--http") == 0)
        return as_client(argv[2], argv[3], argv[4], argv[5], (int)strtol(argv[6], NULL, 10));
    if (argc != 8) {
        fprintf(stderr, "usage: propagate AGENT_URL CHECK_ID HAPROXY_SOCK BACKEND COUNT UP DOWN\n");
        return 2;
    }
    const char *agent = argv[1], *check = argv[2], *sock = argv[3], *backend = argv[4];
    int count = (int)strtol(argv[5], NULL, 10), up = (int)strtol(argv[6], NULL, 10),
        down = (int)strtol(argv[7], NULL, 10);
    double *lat = calloc((size_t)count, sizeof *lat);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    /* PROPAGATE_GAP_MS: quiet time before each change (isolated changes,
     * as a quiescence window sees them); default none (back to back). */
    const char *gap_env = getenv("PROPAGATE_GAP_MS"), *jit_env = getenv("PROPAGATE_JITTER_MS");
    long gap_ms = gap_env ? strtol(gap_env, NULL, 10) : 0;
    long jitter_ms = jit_env ? strtol(jit_env, NULL, 10) : 0;
    srand((unsigned)now_ms());
    for (int i = 0; i < count; i++) {
        int fail = i % 2 == 0;
        long quiet = gap_ms + (jitter_ms > 0 ? rand() % (jitter_ms + 1) : 0);
        if (quiet > 0)
            usleep((useconds_t)quiet * 1000);
        if (put_check(e, agent, check, fail) < 0)
            return 1;
        double t0 = now_ms();
        int want = fail ? down : up;
        while (servers(sock, backend) != want) {
            if (now_ms() - t0 > 30000) {
                fprintf(stderr, "propagate: change %d not applied within 30 s\n", i);
                return 1;
            }
            usleep(200);
        }
        lat[i] = now_ms() - t0;
        printf("%.3f\n", lat[i]);
    }
    return summary(lat, count);
}
