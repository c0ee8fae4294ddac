/*
 * serve_cli.c - the command line of `sotto serve`.
 *
 *   sotto serve [--config FILE] [--KEY VALUE ...]
 *
 * The configuration is built in three layers, each overriding the one
 * before: the defaults (config.c), the INI file given with --config, and
 * the flags, in the order given.  Every flag is a configuration key with a
 * value ("--workers 4"); the keys, their meanings and defaults are the
 * table below, which also drives --help.  Parsing and range checks are
 * sotto__serve_config_set()'s, so a flag and the same key in the file
 * accept exactly the same values.
 *
 * Before anything is spawned, the model is resolved and checked: a value
 * of --model that is not an existing folder is an installed model name
 * under $XDG_DATA_HOME/sotto/models (or ~/.local/share/sotto/models), as
 * `sotto model fetch` installs them, and the folder must hold model.bin.
 * The VAD weights default to the installed silero-vad; they must exist
 * when --vad-model is given or the VAD is on by default.  Any problem here
 * is a usage error: a one-line message and exit status 2, with no process
 * started.  Then the supervisor runs and its exit status is returned.
 *
 * This file shares nothing with the client's sources (src/client): the
 * little path logic it needs is repeated here on purpose, so that the
 * server does not depend on the tool's internals.
 */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sotto.h"
#include "server/server.h"

/* Exit status for bad usage, as for the rest of the tool. */
#define SERVE_EXIT_USAGE 2
/* The line after a usage error. */
#define SERVE_HINT "Run 'sotto serve --help' for the options.\n"
/* getopt_long values of the keys start here (above any short option). */
#define SERVE_OPT_BASE 256

enum opt_kind { K_STR, K_INT, K_SEC, K_SIZE, K_BOOL, K_LANG, K_LEVEL };

/* One configuration key: its flag, how --help shows it, and its field
 * (for showing the default only; setting goes through config.c). */
typedef struct serve_opt {
    const char *group;      /* starts a new group in --help when not NULL */
    const char *key;
    const char *metavar;
    const char *help;
    enum opt_kind kind;
    size_t offset;          /* of the field in sotto__serve_config */
    const char *if_empty;   /* how --help shows an empty default */
} serve_opt;

#define F(field) offsetof(sotto__serve_config, field)

static const serve_opt serve_opts[] = {
    { "model and engine", "model", "DIR|NAME",
      "model folder, or name of an installed model", K_STR, F(model), NULL },
    { NULL, "vad-model", "FILE",
      "Silero VAD weights", K_STR, F(vad_model),
      "the installed silero-vad" },
    { NULL, "workers", "N", "engine processes", K_INT, F(workers), NULL },
    { NULL, "threads", "N", "inference threads per worker", K_INT,
      F(threads), NULL },
    { NULL, "worker-memory", "BYTES",
      "address-space limit of each worker (RLIMIT_AS; 0: none)", K_SIZE,
      F(worker_memory), NULL },

    { "listeners", "listen", "ADDR", "address to bind", K_STR, F(listen), NULL },
    { NULL, "http-port", "PORT", "HTTP and WebSocket port (0: any free port)",
      K_INT, F(http_port), NULL },
    { NULL, "tcp-port", "PORT",
      "raw TCP port, whisper_streaming protocol (0: any, -1: off)", K_INT,
      F(tcp_port), NULL },
    { NULL, "vosk-port", "PORT",
      "vosk-server WebSocket protocol on any path (0: any, -1: off)", K_INT,
      F(vosk_port), NULL },
    { NULL, "whisperlive-port", "PORT",
      "WhisperLive WebSocket protocol on any path (0: any, -1: off)", K_INT,
      F(whisperlive_port), NULL },
    { NULL, "wyoming-port", "PORT",
      "Wyoming protocol (Home Assistant) on raw TCP (0: any, -1: off)", K_INT,
      F(wyoming_port), NULL },
    { NULL, "state-dir", "DIR", "where crash records are written", K_STR,
      F(state_dir), NULL },

    { "security", "api-key", "KEY",
      "require \"Authorization: Bearer KEY\" (also $SOTTO_API_KEY); turns the raw "
      "TCP ports off unless they are given", K_STR, F(api_key), "none" },
    { NULL, "tls-cert", "FILE", "PEM certificate: serve HTTPS and WSS", K_STR,
      F(tls_cert), "none" },
    { NULL, "tls-key", "FILE", "PEM private key of --tls-cert", K_STR, F(tls_key),
      "none" },
    { NULL, "user", "NAME", "started as root: the gateway and workers run as NAME",
      K_STR, F(user), "none" },

    { "limits", "max-streams", "N", "concurrent streams", K_INT,
      F(max_streams), NULL },
    { NULL, "max-frame", "BYTES", "largest WebSocket message or Wyoming payload",
      K_SIZE, F(max_frame), NULL },
    { NULL, "idle-timeout", "SEC", "close a stream with no input this long",
      K_SEC, F(idle_timeout), NULL },
    { NULL, "max-stream-seconds", "SEC", "most audio in one stream or upload", K_SEC,
      F(max_stream_seconds), NULL },
    { NULL, "max-ahead", "SEC",
      "audio a client may send ahead of real time before reading pauses",
      K_SEC, F(max_ahead), NULL },
    { NULL, "max-outbound", "BYTES", "output queued to a slow reader",
      K_SIZE, F(max_outbound), NULL },
    { NULL, "max-upload", "BYTES",
      "largest file POSTed to /v1/audio/transcriptions (413 beyond)", K_SIZE,
      F(max_upload), NULL },
    { NULL, "max-pending-audio", "BYTES",
      "audio queued for a worker before reading pauses", K_SIZE,
      F(max_pending_audio), NULL },

    { "watchdog and restarts", "inference-timeout", "SEC",
      "longest inference before the worker is killed", K_SEC,
      F(inference_timeout), NULL },
    { NULL, "heartbeat-timeout", "SEC",
      "silence from a worker before it is killed", K_SEC,
      F(heartbeat_timeout), NULL },
    { NULL, "restart-backoff-min", "SEC",
      "first restart delay, doubled per quick death", K_SEC,
      F(restart_backoff_min), NULL },
    { NULL, "restart-backoff-max", "SEC", "longest restart delay", K_SEC,
      F(restart_backoff_max), NULL },
    { NULL, "crash-loop-deaths", "N",
      "more deaths than this within the window stop restarts", K_INT,
      F(crash_loop_deaths), NULL },
    { NULL, "crash-loop-window", "SEC", "the crash-loop window", K_SEC,
      F(crash_loop_window), NULL },
    { NULL, "drain-timeout", "SEC",
      "time to finish streams after SIGTERM/SIGINT", K_SEC,
      F(drain_timeout), NULL },

    { "stream defaults (a client may override them)", "partials", "BOOL",
      "send partial results", K_BOOL, F(partials), NULL },
    { NULL, "vad", "BOOL", "gate audio with the Silero VAD", K_BOOL, F(vad), NULL },
    { NULL, "language", "CODE", "language, or auto for the model's default",
      K_LANG, F(language), "auto" },

    { "logging", "log-level", "LEVEL", "error, warn, info or debug", K_LEVEL,
      F(log_level), NULL },
};

#undef F

#define SERVE_NOPTS ((int)(sizeof serve_opts / sizeof serve_opts[0]))

/* Formats a size with the largest binary suffix that divides it. */
static void format_size(size_t v, char *buf, size_t cap)
{
    if (v != 0 && v % ((size_t)1 << 30) == 0)
        snprintf(buf, cap, "%zuG", v >> 30);
    else if (v != 0 && v % ((size_t)1 << 20) == 0)
        snprintf(buf, cap, "%zuM", v >> 20);
    else if (v != 0 && v % ((size_t)1 << 10) == 0)
        snprintf(buf, cap, "%zuK", v >> 10);
    else
        snprintf(buf, cap, "%zu", v);
}

/* The value of option o in c, as --help shows it. */
static void format_value(const sotto__serve_config *c, const serve_opt *o,
                         char *buf, size_t cap)
{
    static const char *const levels[] = { "error", "warn", "info", "debug" };
    const char *p = (const char *)c + o->offset;
    int i;
    double d;
    size_t z;

    switch (o->kind) {
    case K_STR:
    case K_LANG:
        snprintf(buf, cap, "%s", p[0] || o->if_empty == NULL ? p : o->if_empty);
        break;
    case K_INT:
        memcpy(&i, p, sizeof i);
        snprintf(buf, cap, "%d", i);
        break;
    case K_BOOL:
        memcpy(&i, p, sizeof i);
        snprintf(buf, cap, "%s", i ? "on" : "off");
        break;
    case K_LEVEL:
        memcpy(&i, p, sizeof i);
        snprintf(buf, cap, "%s", i >= 0 && i < 4 ? levels[i] : "?");
        break;
    case K_SEC:
        memcpy(&d, p, sizeof d);
        snprintf(buf, cap, "%g", d);
        break;
    case K_SIZE:
        memcpy(&z, p, sizeof z);
        format_size(z, buf, cap);
        break;
    }
}

static void serve_usage(FILE *f)
{
    sotto__serve_config d;
    char def[SOTTO__SERVE_MAX_PATH + 16];

    sotto__serve_config_defaults(&d);
    fprintf(f,
        "usage: sotto serve [--config FILE] [--KEY VALUE ...]\n"
        "Runs the streaming transcription server: a supervisor, a gateway\n"
        "(HTTP, WebSocket and raw TCP) and engine workers.  Settings come from\n"
        "the defaults, then FILE (an INI file whose [serve] section uses the\n"
        "keys below), then the flags.  Sizes take K, M or G; booleans 1/0,\n"
        "true/false, yes/no or on/off.  SIGTERM or SIGINT drains; a second one\n"
        "stops at once.\n"
        "  --config FILE               read settings from FILE\n"
        "  -h, --help                  show this help\n");
    for (int i = 0; i < SERVE_NOPTS; i++) {
        const serve_opt *o = &serve_opts[i];
        char flag[64];

        if (o->group != NULL)
            fprintf(f, "%s:\n", o->group);
        snprintf(flag, sizeof flag, "--%s %s", o->key, o->metavar);
        format_value(&d, o, def, sizeof def);
        fprintf(f, "  %-27s %s (default %s)\n", flag, o->help, def);
    }
}

/* ---- model and VAD paths ----------------------------------------------- */

/* $XDG_DATA_HOME/sotto/models or ~/.local/share/sotto/models, as
 * `sotto model fetch` uses them. */
static int models_dir(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    int n;

    if (xdg != NULL && xdg[0] == '/')
        n = snprintf(buf, cap, "%s/sotto/models", xdg);
    else
        n = snprintf(buf, cap, "%s/.local/share/sotto/models",
                     home != NULL && home[0] != '\0' ? home : ".");
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Replaces c->model by the folder it names, and checks that it holds
 * model.bin.  Returns 0, or -1 after printing why. */
static int resolve_model(sotto__serve_config *c)
{
    char dir[SOTTO__SERVE_MAX_PATH], path[SOTTO__SERVE_MAX_PATH + 16];
    struct stat st;
    int n;

    if (is_dir(c->model) || strchr(c->model, '/') != NULL) {
        n = snprintf(dir, sizeof dir, "%s", c->model);
    } else {
        char root[SOTTO__SERVE_MAX_PATH];
        if (models_dir(root, sizeof root) != 0)
            goto toolong;
        n = snprintf(dir, sizeof dir, "%s/%s", root, c->model);
        if (n >= 0 && (size_t)n < sizeof dir && !is_dir(dir)) {
            fprintf(stderr, "sotto: model %s is not installed (looked in %s); "
                    "run: sotto model fetch %s\n", c->model, dir, c->model);
            return -1;
        }
    }
    if (n < 0 || (size_t)n >= sizeof dir)
        goto toolong;
    if (!is_dir(dir)) {
        fprintf(stderr, "sotto: model folder %s does not exist\n", dir);
        return -1;
    }
    snprintf(path, sizeof path, "%s/model.bin", dir);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "sotto: %s is not a model folder: no model.bin in "
                "it\n", dir);
        return -1;
    }
    memcpy(c->model, dir, strlen(dir) + 1);
    return 0;
toolong:
    fprintf(stderr, "sotto: model path too long (limit %d bytes)\n",
            SOTTO__SERVE_MAX_PATH - 1);
    return -1;
}

/* Fills in the installed silero-vad when no --vad-model was given, and
 * checks that the weights are there when they are needed.  Returns 0, or
 * -1 after printing why. */
static int resolve_vad(sotto__serve_config *c)
{
    char root[SOTTO__SERVE_MAX_PATH], path[SOTTO__SERVE_MAX_PATH];
    int n;

    if (c->vad_model[0] != '\0') {
        if (access(c->vad_model, R_OK) != 0) {
            fprintf(stderr, "sotto: VAD weights %s: %s\n", c->vad_model,
                    strerror(errno));
            return -1;
        }
        return 0;
    }
    if (models_dir(root, sizeof root) != 0 ||
        (n = snprintf(path, sizeof path,
                      "%s/silero-vad/silero_vad_16k.safetensors", root)) < 0 ||
        (size_t)n >= sizeof path) {
        fprintf(stderr, "sotto: VAD path too long (limit %d bytes)\n",
                SOTTO__SERVE_MAX_PATH - 1);
        return -1;
    }
    if (access(path, R_OK) == 0) {
        memcpy(c->vad_model, path, (size_t)n + 1);
        return 0;
    }
    if (c->vad) {
        fprintf(stderr, "sotto: the Silero VAD weights are not installed "
                "(looked for %s); run: sotto model fetch silero-vad, or pass "
                "--vad-model FILE or --vad off\n", path);
        return -1;
    }
    return 0;   /* no VAD: streams run without it */
}

/* Checks between options, which one key alone cannot, and settles the
 * ones that depend on others. */
static int check_config(sotto__serve_config *c)
{
    const char *env = getenv("SOTTO_API_KEY");
    char err[256];

    if (c->api_key[0] == 0 && env != NULL && env[0] != 0 &&
        sotto__serve_config_set(c, "api-key", env, err, sizeof err) != 0) {
        fprintf(stderr, "sotto: SOTTO_API_KEY: %s\n", err);
        return -1;
    }
    if (c->api_key[0] != 0) {
        /* whisper_streaming's and Wyoming's protocols have no way to
         * carry a key: with one, their ports open only when asked for. */
        if (!c->tcp_port_set)
            c->tcp_port = -1;
        if (!c->wyoming_port_set)
            c->wyoming_port = -1;
    }
    if (c->user[0] != 0) {
        struct passwd *pw = getpwnam(c->user);
        if (pw == NULL) {
            fprintf(stderr, "sotto: --user %s: no such user\n", c->user);
            return -1;
        }
        if (geteuid() != 0 && pw->pw_uid != geteuid()) {
            fprintf(stderr, "sotto: --user %s needs sotto serve to start as root\n", c->user);
            return -1;
        }
        c->user_uid = (int)pw->pw_uid;
        c->user_gid = (int)pw->pw_gid;
    }
    if ((c->tls_cert[0] != 0) != (c->tls_key[0] != 0)) {
        fprintf(stderr, "sotto: --tls-cert and --tls-key go together\n");
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        const char *f = i == 0 ? c->tls_cert : c->tls_key;
        if (f[0] != 0 && access(f, R_OK) != 0) {
            fprintf(stderr, "sotto: %s: %s\n", f, strerror(errno));
            return -1;
        }
    }
    if (c->restart_backoff_min > c->restart_backoff_max) {
        fprintf(stderr, "sotto: restart-backoff-min (%g) is above "
                "restart-backoff-max (%g)\n", c->restart_backoff_min,
                c->restart_backoff_max);
        return -1;
    }
    return 0;
}

/* ---- main --------------------------------------------------------------- */

int sotto__serve_main(int argc, char **argv)
{
    struct option opts[SERVE_NOPTS + 3];
    const char **keys = NULL, **values = NULL;
    const char *config_path = NULL;
    sotto__serve_config c;
    char err[1024];
    int nset = 0, opt, status = SERVE_EXIT_USAGE;

    for (int i = 0; i < SERVE_NOPTS; i++) {
        opts[i].name = serve_opts[i].key;
        opts[i].has_arg = required_argument;
        opts[i].flag = NULL;
        opts[i].val = SERVE_OPT_BASE + i;
    }
    opts[SERVE_NOPTS] = (struct option){ "config", required_argument, NULL, 'c' };
    opts[SERVE_NOPTS + 1] = (struct option){ "help", no_argument, NULL, 'h' };
    opts[SERVE_NOPTS + 2] = (struct option){ NULL, 0, NULL, 0 };

    /* Flags are applied after the file, so collect them first. */
    keys = calloc((size_t)argc + 1, sizeof *keys);
    values = calloc((size_t)argc + 1, sizeof *values);
    if (keys == NULL || values == NULL) {
        fprintf(stderr, "sotto: out of memory\n");
        status = 1;
        goto fail;
    }
    optind = 0;     /* full re-initialization of getopt */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (opt == 'h') {
            serve_usage(stdout);
            status = 0;
            goto fail;
        } else if (opt == 'c') {
            config_path = optarg;
        } else if (opt >= SERVE_OPT_BASE && opt < SERVE_OPT_BASE + SERVE_NOPTS) {
            keys[nset] = serve_opts[opt - SERVE_OPT_BASE].key;
            values[nset++] = optarg;
        } else if (opt == ':') {
            fprintf(stderr, "sotto serve: option %s needs a value\n%s",
                    argv[optind - 1], SERVE_HINT);
            goto fail;
        } else {
            fprintf(stderr, "sotto serve: unknown option %s\n%s",
                    argv[optind - 1], SERVE_HINT);
            goto fail;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sotto serve: unexpected argument \"%s\"\n%s",
                argv[optind], SERVE_HINT);
        goto fail;
    }

    sotto__serve_config_defaults(&c);
    if (config_path != NULL &&
        sotto__serve_config_load(&c, config_path, err, sizeof err) != 0) {
        fprintf(stderr, "sotto: %s\n", err);
        goto fail;
    }
    for (int i = 0; i < nset; i++) {
        if (sotto__serve_config_set(&c, keys[i], values[i], err,
                                    sizeof err) != 0) {
            fprintf(stderr, "sotto: --%s\n", err);
            goto fail;
        }
    }
    if (check_config(&c) != 0 || resolve_model(&c) != 0 ||
        resolve_vad(&c) != 0)
        goto fail;

    status = sotto__supervisor_run(&c);
fail:
    free(keys);
    free(values);
    return status;
}
