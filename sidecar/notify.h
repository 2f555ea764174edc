/* systemd's readiness protocol (sd_notify(3)), without libsystemd: one
 * datagram to the socket named by $NOTIFY_SOCKET. Without it (not started
 * by systemd, or Type= is not notify) every call does nothing. */
#ifndef SIDECAR_NOTIFY_H
#define SIDECAR_NOTIFY_H

/* Whether $NOTIFY_SOCKET is set: someone listens for the states below. */
int notify_wanted(void);
/* Sends state ("READY=1\nSTATUS=..."): 0, or -1 (errno) when it could not
 * be sent. */
int notify_send(const char *state);

#endif
