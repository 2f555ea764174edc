/*
 * Prints N free TCP ports on 127.0.0.1 (default 1), one per line, for the
 * programs that cannot report the port they bound themselves (haproxy,
 * nginx, prometheus).
 *
 * The ports are drawn at random from below the kernel's ephemeral range
 * (/proc/sys/net/ipv4/ip_local_port_range), never from inside it: a port in
 * that range can be taken between this program's close and the proxy's bind
 * by any outgoing connection on the machine (connect() picks its local port
 * there), and a listener cannot bind a port that a connected socket holds.
 * Parallel scenarios make hundreds of connections a second, so that race was
 * real (a demo gateway whose HAProxy never listened). Below the range, only
 * another explicit bind can take the port. All sockets are held until every
 * port is chosen, so the ports are distinct.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { LOWEST = 10000, TRIES = 200 };

/* The first port of the ephemeral range (32768 where it cannot be read). */
static int ephemeral_low(void)
{
    int lo = 32768, hi = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d %d", &lo, &hi) != 2)
            lo = 32768;
        fclose(f);
    }
    return lo;
}

/* A socket bound to 127.0.0.1:port (0: the kernel picks), or -1. */
static int bind_port(int port, int *bound)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    socklen_t len = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        close(fd);
        return -1;
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 1;
    if (n < 1 || n > 64) {
        fprintf(stderr, "usage: freeport [COUNT<=64]\n");
        return 2;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    srandom((unsigned)(ts.tv_nsec ^ (getpid() << 16)));
    int span = ephemeral_low() - LOWEST;
    int fds[64];
    for (int i = 0; i < n; i++) {
        int port = 0;
        fds[i] = -1;
        for (int t = 0; span > 0 && t < TRIES && fds[i] < 0; t++)
            fds[i] = bind_port(LOWEST + (int)(random() % span), &port);
        if (fds[i] < 0) /* no room below the range: the kernel's choice */
            fds[i] = bind_port(0, &port);
        if (fds[i] < 0) {
            perror("freeport");
            return 1;
        }
        printf("%d\n", port);
    }
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return 0;
}
