/* Command line and environment; see cli.h. */
#include "sidecar/cli.h"

#include "consul/client.h"
#include "lib/dur.h"
#include "sidecar/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLI_MAX_CONFIGS 64

static const char usage[] =
    "Usage: consul-sidecar [flags]\n"
    "\n"
    "Registers this node's services with the local Consul agent, watches the\n"
    "catalog and keeps the local proxy's upstreams (Kong, HAProxy, nginx) in sync.\n"
    "\n"
    "Flags (flags override environment variables, which override config files):\n"
    "  -config PATH        JSON config file, or a directory of *.json files read in\n"
    "                      lexical order; repeatable, merged in order\n"
    "  -consul-addr ADDR   Consul agent: host:port, http://, https:// or unix:///path\n"
    "                      (default 127.0.0.1:8500)\n"
    "  -token-file PATH    read the Consul ACL token from this file\n"
    "  -datacenter DC      datacenter for catalog and health queries\n"
    "  -node NAME          this node's name (default: the host name)\n"
    "  -listen ADDR        status endpoint /health /status /metrics\n"
    "                      (default 127.0.0.1:9108; port 0 picks a free port)\n"
    "  -state-dir DIR      last known good upstreams (default /var/lib/consul-sidecar)\n"
    "  -log-level LEVEL    trace, debug, info, warn or error (default info)\n"
    "  -log-format FORMAT  text (Consul's classic lines) or json (default text)\n"
    "  -validate           check the configuration, print it with secrets redacted, exit\n"
    "  -once               register, sync every upstream once, exit\n"
    "  -once-timeout D     how long -once may take before it gives up (default 60s)\n"
    "  -version            print the version and exit\n"
    "  -help               print this help and exit\n"
    "\n"
    "Environment (as for the consul CLI):\n"
    "  CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_HTTP_SSL,\n"
    "  CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY,\n"
    "  CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL_VERIFY\n"
    "\n"
    "Signals: SIGTERM/SIGINT drain and deregister, SIGHUP reloads services, checks\n"
    "and probes (other settings need a restart), SIGUSR1 toggles maintenance.\n"
    "The README is the full manual.\n";

const char *cli_usage(void)
{
    return usage;
}

static const char *env_get(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

struct flag {
    const char *name;
    const char **value; /* NULL for boolean flags */
    int *set;
};

/* What the command line said. */
struct cli_args {
    const char *configs[CLI_MAX_CONFIGS];
    size_t n_configs;
    struct config_overrides flags;
    int validate, once, version, help;
    const char *once_timeout;
};

/* One flag and its value (the next argument, unless -flag=value); *i moves
 * past what it took. 0, or 2 with err. */
static int take_flag(struct cli_args *ca, struct flag *table, size_t n, int argc, char **argv,
                     int *i, const char *const *config_arg, char *err, size_t errlen)
{
    const char *a = argv[*i];
    if (a[0] != '-' || a[1] == '\0') {
        snprintf(err, errlen, "unexpected argument \"%.64s\" (see -help)", a);
        return 2;
    }
    a += a[1] == '-' ? 2 : 1; /* -flag or --flag */
    char name[64];
    const char *eq = strchr(a, '=');
    size_t nl = eq ? (size_t)(eq - a) : strlen(a);
    if (nl >= sizeof name)
        nl = sizeof name - 1;
    memcpy(name, a, nl);
    name[nl] = '\0';
    struct flag *f = NULL;
    for (size_t k = 0; k < n; k++)
        if (strcmp(table[k].name, name) == 0)
            f = &table[k];
    if (f == NULL) {
        snprintf(err, errlen, "flag provided but not defined: -%.60s (see -help)", name);
        return 2;
    }
    if (f->value == NULL) { /* boolean: -flag, -flag=true|1|false|0 */
        int on = !eq || !strcmp(eq + 1, "true") || !strcmp(eq + 1, "1");
        if (!on && strcmp(eq + 1, "false") && strcmp(eq + 1, "0")) {
            snprintf(err, errlen, "invalid boolean value \"%.32s\" for -%s", eq + 1, name);
            return 2;
        }
        *f->set = on;
        return 0;
    }
    const char *val = eq ? eq + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
    if (val == NULL) {
        snprintf(err, errlen, "flag needs an argument: -%s", name);
        return 2;
    }
    if (f->value != config_arg) {
        *f->value = val;
        return 0;
    }
    if (ca->n_configs == CLI_MAX_CONFIGS) {
        snprintf(err, errlen, "too many -config flags (at most %d)", CLI_MAX_CONFIGS);
        return 2;
    }
    ca->configs[ca->n_configs++] = val;
    return 0;
}

static int parse_flags(struct cli_args *ca, int argc, char **argv, char *err, size_t errlen)
{
    const char *config_arg = NULL;
    struct config_overrides *fl = &ca->flags;
    struct flag table[] = {
        {"config", &config_arg, NULL},
        {"consul-addr", &fl->consul_addr, NULL},
        {"token-file", &fl->token_file, NULL},
        {"datacenter", &fl->datacenter, NULL},
        {"node", &fl->node, NULL},
        {"listen", &fl->listen, NULL},
        {"state-dir", &fl->state_dir, NULL},
        {"log-level", &fl->log_level, NULL},
        {"log-format", &fl->log_format, NULL},
        {"validate", NULL, &ca->validate},
        {"once", NULL, &ca->once},
        {"once-timeout", &ca->once_timeout, NULL},
        {"version", NULL, &ca->version},
        {"help", NULL, &ca->help},
        {"h", NULL, &ca->help},
    };
    for (int i = 1; i < argc; i++) {
        int rc = take_flag(ca, table, sizeof table / sizeof table[0], argc, argv, &i, &config_arg,
                           err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

/* The consul CLI's environment variables. */
static void read_env(char **envp, struct config_overrides *env)
{
    env->consul_addr = env_get(envp, "CONSUL_HTTP_ADDR");
    env->token = env_get(envp, "CONSUL_HTTP_TOKEN");
    env->token_file = env_get(envp, "CONSUL_HTTP_TOKEN_FILE");
    env->cacert = env_get(envp, "CONSUL_CACERT");
    env->capath = env_get(envp, "CONSUL_CAPATH");
    env->client_cert = env_get(envp, "CONSUL_CLIENT_CERT");
    env->client_key = env_get(envp, "CONSUL_CLIENT_KEY");
    env->tls_server_name = env_get(envp, "CONSUL_TLS_SERVER_NAME");
    env->ssl_verify = env_get(envp, "CONSUL_HTTP_SSL_VERIFY");
    env->http_ssl = env_get(envp, "CONSUL_HTTP_SSL");
    /* An empty variable is as good as unset (as for the consul CLI). */
    const char **all[] = {&env->consul_addr, &env->token,           &env->token_file,
                          &env->cacert,      &env->capath,          &env->client_cert,
                          &env->client_key,  &env->tls_server_name, &env->ssl_verify,
                          &env->http_ssl};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
        if (*all[k] && **all[k] == '\0')
            *all[k] = NULL;
    /* As Consul's own client: a token file, when set, is used even if a
     * token is set too. */
    if (env->token_file)
        env->token = NULL;
}

/* Addresses are checked here, not at start: -validate must refuse what the
 * daemon would refuse. */
static int check_addresses(const struct config *cfg, char *err, size_t errlen)
{
    char base[512], sock[512], host[256];
    int tls = 0, port;
    if (cfg->consul_addr && consul_parse_address(cfg->consul_addr, base, sizeof base, sock,
                                                 sizeof sock, &tls, err, errlen) < 0)
        return -1;
    if (cfg->listen && *cfg->listen &&
        status_parse_listen(cfg->listen, host, sizeof host, &port) < 0) {
        snprintf(err, errlen, "listen address \"%.200s\": expected host:port, [v6]:port or :port",
                 cfg->listen);
        return -1;
    }
    return 0;
}

int cli_parse(int argc, char **argv, char **envp, enum cli_action *action, struct config *cfg,
              char *err, size_t errlen)
{
    struct cli_args ca;
    struct config_overrides env = {0};
    int64_t once_ms = 60000;
    int rc;
    memset(&ca, 0, sizeof ca);
    memset(cfg, 0, sizeof *cfg);
    *action = CLI_RUN;
    if ((rc = parse_flags(&ca, argc, argv, err, errlen)) != 0)
        return rc;
    if (ca.help || ca.version) {
        *action = ca.help ? CLI_HELP : CLI_VERSION;
        return 0;
    }
    read_env(envp, &env);
    if (ca.once_timeout && (dur_parse_ms(ca.once_timeout, &once_ms) < 0 || once_ms <= 0)) {
        snprintf(err, errlen, "-once-timeout: invalid duration \"%.64s\"", ca.once_timeout);
        return 2;
    }
    if (config_load(cfg, ca.configs, ca.n_configs, &env, &ca.flags, err, errlen) < 0)
        return 2;
    cfg->once_timeout_ms = once_ms;
    if (check_addresses(cfg, err, errlen) < 0) {
        config_free(cfg);
        return 2;
    }
    *action = ca.validate ? CLI_VALIDATE : ca.once ? CLI_ONCE : CLI_RUN;
    return 0;
}
