/*
 * nginx driver: open-source nginx has no runtime upstream API, so the
 * sidecar renders one include file per upstream,
 *
 *   <upstream_dir>/consul-<name>.conf:   upstream <name> { server ip:port weight=N ...; }
 *
 * writes it atomically (the previous version kept as .bak), runs test_cmd,
 * and only if that passes, reload_cmd. A failing test puts the previous
 * bytes back and never signals nginx. Rendering is deterministic, so an
 * unchanged set neither rewrites the file nor reloads. Never renders an
 * upstream without servers; weight 0 is rendered as "down"; only IP literals
 * are written (a host name would fail nginx's whole configuration).
 */
#ifndef PROXY_NGINX_H
#define PROXY_NGINX_H

#include "lib/buf.h"
#include "proxy/proxy.h"

struct nginx_opts {
    const char *upstream_dir;  /* default /etc/nginx/conf.d */
    const char *test_cmd;      /* default "nginx -t -q" */
    const char *reload_cmd;    /* default "nginx -s reload" */
    const char *server_params; /* default "max_fails=1 fail_timeout=10s" */
    long cmd_timeout_ms;       /* default 10000 */
};

struct proxy *nginx_new(struct loop *l, const struct nginx_opts *o, char *err, size_t errlen);

/* Pure: the file's text for a set (IP literals only; others skipped). */
int nginx_render(const char *name, const struct proxy_target_set *set, const char *params,
                 struct buf *out);
/* Pure: reads back a file the driver rendered. */
int nginx_parse(const char *text, struct proxy_target_set *out, char *err, size_t errlen);
/* Commands run so far (tests: "no change, no reload"). */
unsigned long nginx_commands_run(const struct proxy *p);

#endif
