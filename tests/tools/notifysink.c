/* notifysink PATH: listens on a unix datagram socket at PATH, as systemd
 * does for Type=notify services, and prints each datagram on one line
 * (newlines shown as '|'), flushed, until killed. For t_systemd. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char msg[4096];
    if (argc != 2 || strlen(argv[1]) >= sizeof sa.sun_path) {
        fprintf(stderr, "usage: notifysink PATH\n");
        return 2;
    }
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", argv[1]);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    unlink(argv[1]);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("notifysink: bind");
        return 1;
    }
    for (;;) {
        ssize_t n = recv(fd, msg, sizeof msg - 1, 0);
        if (n < 0)
            continue;
        msg[n] = '\0';
        for (char *p = msg; *p; p++)
            if (*p == '\n')
                *p = '|';
        printf("%s\n", msg);
        fflush(stdout);
    }
}
