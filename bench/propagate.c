/*
 * Propagation latency probe for `make bench`: flips one instance's TTL check
 * in the Consul double (fail, then pass) and measures, for each flip, the
 * time from Consul's answer to the PUT (the change is committed) to HAProxy
 * showing the new server count in `show servers state` (polled every 200 us
 * on the admin socket). Prints one latency per line (ms) and a summary.
 *
 * propagate AGENT_URL CHECK_ID HAPROXY_SOCK BACKEND COUNT UP_SERVERS DOWN_SERVERS
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
        if (first || *l == '#') {   /* the format version line, the header */
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

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--wait-total") == 0) {
        /* Waits until every backend together holds TOTAL servers of ours;
         * prints the elapsed milliseconds. */
        long total = strtol(argv[3], NULL, 10);
        double t0 = now_ms();
        while (servers(argv[2], "") != total) {
            if (now_ms() - t0 > 300000) {
                fprintf(stderr, "propagate: %ld servers not reached in 300 s (have %d)\n", total,
                        servers(argv[2], ""));
                return 1;
            }
            usleep(20000);
        }
        printf("%.0f\n", now_ms() - t0);
        return 0;
    }
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
    for (int i = 0; i < count; i++) {
        int fail = i % 2 == 0;
        char url[512];
        snprintf(url, sizeof url, "%s/v1/agent/check/%s/%s", agent, fail ? "fail" : "pass", check);
        curl_easy_setopt(e, CURLOPT_URL, url);
        if (curl_easy_perform(e) != CURLE_OK) {
            fprintf(stderr, "propagate: PUT %s failed\n", url);
            return 1;
        }
        double t0 = now_ms();
        int want = fail ? down : up;
        while (servers(sock, backend) != want) {
            if (now_ms() - t0 > 10000) {
                fprintf(stderr, "propagate: change %d not applied within 10 s\n", i);
                return 1;
            }
            usleep(200);
        }
        lat[i] = now_ms() - t0;
        printf("%.3f\n", lat[i]);
    }
    qsort(lat, (size_t)count, sizeof *lat, cmp);
    fprintf(stderr, "propagate: n=%d p50=%.2f ms p99=%.2f ms max=%.2f ms\n", count,
            lat[count / 2], lat[(int)(count * 0.99)], lat[count - 1]);
    return 0;
}
