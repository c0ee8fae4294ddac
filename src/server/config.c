/*
 * config.c - the configuration of `sotto serve`: defaults, the INI file
 * and the one function that sets an option by its key.
 *
 * Every option has one key, spelled with dashes ("max-streams"), which is
 * both its INI key (in section [serve]) and its long flag ("--max-streams").
 * sotto__serve_config_set() is the single place where a key is mapped to a
 * field and its value is range-checked, so the file and the flags cannot
 * disagree.  The ranges below are the named limits of this file; a value
 * outside them is refused with a message naming the key, the value and the
 * accepted range, never clamped.
 *
 * Value syntax:
 *   integers      decimal ("8", "-1")
 *   seconds       decimal with a fraction ("0.1", "30")
 *   sizes         bytes, optionally with a binary suffix K, M or G
 *                 ("1048576", "1M", "512K")
 *   booleans      1/0, true/false, yes/no, on/off (any case)
 *   strings       as given; bounded by the size of their field
 *
 * The INI file is read with libinih through a line reader of our own, so
 * that each error can name its line: a syntax error, an unknown section or
 * key, a bad value, or a line longer than the line buffer libinih was built
 * with (which is refused rather than silently cut).
 */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sotto.h"
#include "server/server.h"

/* Ranges of the options (inclusive). */
#define CFG_MAX_THREADS 256
#define CFG_MAX_STREAMS 4096
#define CFG_MIN_FRAME 1024
#define CFG_MIN_BUFFER 4096                  /* max-outbound, max-pending-audio */
#define CFG_MAX_BUFFER ((size_t)1 << 30)     /* 1 GiB */
#define CFG_MAX_SECONDS 86400.0              /* any timeout: one day */
#define CFG_MIN_HEARTBEAT 1.0                /* two worker beats */
#define CFG_MIN_BACKOFF 0.01
#define CFG_MAX_BACKOFF 600.0
#define CFG_MAX_CRASH_DEATHS 10000
/* --worker-memory: below this the model and one stream cannot fit. */
#define CFG_MIN_WORKER_MEMORY ((size_t)128 << 20)
#define CFG_MAX_WORKER_MEMORY ((size_t)1 << 40)
/* Longest language code: Whisper's codes are two or three letters. */
#define CFG_MAX_LANGUAGE 3

/* Writes a message into err (which may be NULL) and returns -1. */
static int fail(char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errcap, const char *fmt, ...)
{
    va_list ap;

    if (err != NULL && errcap > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errcap, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Fills the default state directory: $XDG_STATE_HOME/sotto, else
 * $HOME/.local/state/sotto, else /tmp/sotto-<uid>.  Relative XDG paths are
 * ignored, as the XDG specification asks. */
static void default_state_dir(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n = -1;

    if (xdg != NULL && xdg[0] == '/')
        n = snprintf(buf, cap, "%s/sotto", xdg);
    else if (home != NULL && home[0] == '/')
        n = snprintf(buf, cap, "%s/.local/state/sotto", home);
    if (n < 0 || (size_t)n >= cap)
        snprintf(buf, cap, "/tmp/sotto-%u", (unsigned)getuid());
}

void sotto__serve_config_defaults(sotto__serve_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->model, sizeof c->model, "%s", "tiny.en");
    c->vad_model[0] = '\0';
    c->workers = 2;
    c->threads = 1;
    snprintf(c->listen, sizeof c->listen, "%s", "127.0.0.1");
    c->http_port = 8080;
    c->tcp_port = 43007;
    c->vosk_port = 2700;
    c->whisperlive_port = 9090;
    c->wyoming_port = 10300;
    default_state_dir(c->state_dir, sizeof c->state_dir);
    c->max_streams = 8;
    c->max_frame = SOTTO__SERVE_MAX_FRAME;
    c->idle_timeout = 30.0;
    c->max_stream_seconds = SOTTO_MAX_AUDIO_SECONDS;
    c->max_ahead = 30.0;
    c->max_outbound = (size_t)1 << 20;
    c->max_pending_audio = (size_t)4 << 20;
    c->max_upload = (size_t)25 << 20;
    c->inference_timeout = 30.0;
    c->heartbeat_timeout = 5.0;
    c->restart_backoff_min = 0.1;
    c->restart_backoff_max = 5.0;
    c->crash_loop_deaths = 5;
    c->crash_loop_window = 30.0;
    c->drain_timeout = 10.0;
    c->partials = 1;
    c->vad = 1;
    c->language[0] = '\0';
    c->log_level = SOTTO_LOG_INFO;
}

/* ---- value parsers: each returns 0, or -1 with a message ---------------- */

static int parse_int(const char *key, const char *v, long lo, long hi,
                     int *out, char *err, size_t errcap)
{
    char *end;
    long x;

    errno = 0;
    x = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi)
        return fail(err, errcap, "%s: bad value \"%s\" (expected an integer "
                    "from %ld to %ld)", key, v, lo, hi);
    *out = (int)x;
    return 0;
}

static int parse_seconds(const char *key, const char *v, double lo, double hi,
                         double *out, char *err, size_t errcap)
{
    char *end;
    double x;

    errno = 0;
    x = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !isfinite(x) ||
        x < lo || x > hi)
        return fail(err, errcap, "%s: bad value \"%s\" (expected seconds "
                    "from %g to %g)", key, v, lo, hi);
    *out = x;
    return 0;
}

static int parse_size(const char *key, const char *v, size_t lo, size_t hi,
                      size_t *out, char *err, size_t errcap)
{
    char *end;
    unsigned long long x, mul = 1;

    errno = 0;
    /* strtoull accepts a sign; sizes never have one. */
    if (!isdigit((unsigned char)v[0]))
        goto bad;
    x = strtoull(v, &end, 10);
    if (errno != 0 || end == v)
        goto bad;
    if (*end == 'K' || *end == 'k')
        mul = 1ull << 10;
    else if (*end == 'M' || *end == 'm')
        mul = 1ull << 20;
    else if (*end == 'G' || *end == 'g')
        mul = 1ull << 30;
    if (mul != 1)
        end++;
    if (*end != '\0' || x > hi / mul || x * mul < lo)
        goto bad;
    *out = (size_t)(x * mul);
    return 0;
bad:
    return fail(err, errcap, "%s: bad value \"%s\" (expected bytes from %zu "
                "to %zu, optionally with a K, M or G suffix)", key, v, lo, hi);
}

static int parse_bool(const char *key, const char *v, int *out,
                      char *err, size_t errcap)
{
    static const char *const yes[] = { "1", "true", "yes", "on" };
    static const char *const no[] = { "0", "false", "no", "off" };

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return fail(err, errcap, "%s: bad value \"%s\" (expected 1/0, true/false, "
                "yes/no or on/off)", key, v);
}

/* Copies a string option into a field of capacity cap; empty values are
 * refused unless allow_empty. */
static int parse_string(const char *key, const char *v, char *field,
                        size_t cap, int allow_empty, char *err, size_t errcap)
{
    size_t n = strlen(v);

    if (n == 0 && !allow_empty)
        return fail(err, errcap, "%s: must not be empty", key);
    if (n >= cap)
        return fail(err, errcap, "%s: value is %zu bytes long (limit %zu)",
                    key, n, cap - 1);
    memcpy(field, v, n + 1);
    return 0;
}

static int parse_language(const char *key, const char *v, char *field,
                          size_t cap, char *err, size_t errcap)
{
    size_t n = strlen(v);

    /* "" and "auto" both mean the model's default (detection). */
    if (n == 0 || strcmp(v, "auto") == 0) {
        field[0] = '\0';
        return 0;
    }
    if (n < 2 || n > CFG_MAX_LANGUAGE || n >= cap)
        goto bad;
    for (size_t i = 0; i < n; i++)
        if (!islower((unsigned char)v[i]))
            goto bad;
    memcpy(field, v, n + 1);
    return 0;
bad:
    return fail(err, errcap, "%s: bad value \"%s\" (expected a language code "
                "such as en or de, or auto)", key, v);
}

static int parse_log_level(const char *key, const char *v, int *out,
                           char *err, size_t errcap)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };

    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
        if (strcasecmp(v, names[i]) == 0) {
            *out = SOTTO_LOG_ERROR + i;
            return 0;
        }
    }
    return fail(err, errcap, "%s: bad value \"%s\" (expected error, warn, "
                "info or debug)", key, v);
}

int sotto__serve_config_set(sotto__serve_config *c, const char *key,
                            const char *value, char *err, size_t errcap)
{
    const char *k = key, *v = value;

    if (k == NULL || v == NULL)
        return fail(err, errcap, "missing option name or value");

    /* Model and engine. */
    if (strcmp(k, "model") == 0)
        return parse_string(k, v, c->model, sizeof c->model, 0, err, errcap);
    if (strcmp(k, "vad-model") == 0)
        return parse_string(k, v, c->vad_model, sizeof c->vad_model, 1,
                            err, errcap);
    if (strcmp(k, "workers") == 0)
        return parse_int(k, v, 1, SOTTO__SERVE_MAX_WORKERS, &c->workers,
                         err, errcap);
    if (strcmp(k, "threads") == 0)
        return parse_int(k, v, 1, CFG_MAX_THREADS, &c->threads, err, errcap);
    if (strcmp(k, "worker-memory") == 0) {
        /* 0 turns the limit off; any other value is a real limit. */
        if (strcmp(v, "0") == 0) {
            c->worker_memory = 0;
            return 0;
        }
        return parse_size(k, v, CFG_MIN_WORKER_MEMORY, CFG_MAX_WORKER_MEMORY,
                          &c->worker_memory, err, errcap);
    }

    /* Listeners. */
    if (strcmp(k, "listen") == 0)
        return parse_string(k, v, c->listen, sizeof c->listen, 0, err, errcap);
    if (strcmp(k, "http-port") == 0)
        return parse_int(k, v, 0, 65535, &c->http_port, err, errcap);
    if (strcmp(k, "tcp-port") == 0) {
        c->tcp_port_set = 1;
        return parse_int(k, v, -1, 65535, &c->tcp_port, err, errcap);
    }
    if (strcmp(k, "vosk-port") == 0)
        return parse_int(k, v, -1, 65535, &c->vosk_port, err, errcap);
    if (strcmp(k, "whisperlive-port") == 0)
        return parse_int(k, v, -1, 65535, &c->whisperlive_port, err, errcap);
    if (strcmp(k, "wyoming-port") == 0) {
        c->wyoming_port_set = 1;
        return parse_int(k, v, -1, 65535, &c->wyoming_port, err, errcap);
    }

    /* Security. */
    if (strcmp(k, "api-key") == 0) {
        /* The characters of an HTTP token68 (RFC 7235), so that the key
         * fits an Authorization header and a WebSocket subprotocol. */
        static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789-._~+/=";
        if (strspn(v, ok) != strlen(v))
            return fail(err, errcap, "%s: use letters, digits and -._~+/= only", k);
        return parse_string(k, v, c->api_key, sizeof c->api_key, 1, err, errcap);
    }
    if (strcmp(k, "user") == 0)
        return parse_string(k, v, c->user, sizeof c->user, 1, err, errcap);
    if (strcmp(k, "tls-cert") == 0)
        return parse_string(k, v, c->tls_cert, sizeof c->tls_cert, 1, err, errcap);
    if (strcmp(k, "tls-key") == 0)
        return parse_string(k, v, c->tls_key, sizeof c->tls_key, 1, err, errcap);
    if (strcmp(k, "state-dir") == 0)
        return parse_string(k, v, c->state_dir, sizeof c->state_dir, 0,
                            err, errcap);

    /* Admission and per-connection limits. */
    if (strcmp(k, "max-streams") == 0)
        return parse_int(k, v, 1, CFG_MAX_STREAMS, &c->max_streams,
                         err, errcap);
    if (strcmp(k, "max-frame") == 0)
        return parse_size(k, v, CFG_MIN_FRAME, SOTTO__SERVE_MAX_FRAME,
                          &c->max_frame, err, errcap);
    if (strcmp(k, "idle-timeout") == 0)
        return parse_seconds(k, v, 0.1, CFG_MAX_SECONDS, &c->idle_timeout,
                             err, errcap);
    if (strcmp(k, "max-stream-seconds") == 0)
        return parse_seconds(k, v, 1.0, SOTTO_MAX_AUDIO_SECONDS,
                             &c->max_stream_seconds, err, errcap);
    if (strcmp(k, "max-ahead") == 0)
        return parse_seconds(k, v, 0.1, CFG_MAX_SECONDS, &c->max_ahead,
                             err, errcap);
    if (strcmp(k, "max-outbound") == 0)
        return parse_size(k, v, CFG_MIN_BUFFER, CFG_MAX_BUFFER,
                          &c->max_outbound, err, errcap);
    if (strcmp(k, "max-pending-audio") == 0)
        return parse_size(k, v, CFG_MIN_BUFFER, CFG_MAX_BUFFER,
                          &c->max_pending_audio, err, errcap);
    if (strcmp(k, "max-upload") == 0)
        return parse_size(k, v, CFG_MIN_BUFFER, CFG_MAX_BUFFER, &c->max_upload, err,
                          errcap);

    /* Watchdog and restarts. */
    if (strcmp(k, "inference-timeout") == 0)
        return parse_seconds(k, v, 1.0, CFG_MAX_SECONDS,
                             &c->inference_timeout, err, errcap);
    if (strcmp(k, "heartbeat-timeout") == 0)
        return parse_seconds(k, v, CFG_MIN_HEARTBEAT, CFG_MAX_SECONDS,
                             &c->heartbeat_timeout, err, errcap);
    if (strcmp(k, "restart-backoff-min") == 0)
        return parse_seconds(k, v, CFG_MIN_BACKOFF, CFG_MAX_BACKOFF,
                             &c->restart_backoff_min, err, errcap);
    if (strcmp(k, "restart-backoff-max") == 0)
        return parse_seconds(k, v, CFG_MIN_BACKOFF, CFG_MAX_BACKOFF,
                             &c->restart_backoff_max, err, errcap);
    if (strcmp(k, "crash-loop-deaths") == 0)
        return parse_int(k, v, 1, CFG_MAX_CRASH_DEATHS, &c->crash_loop_deaths,
                         err, errcap);
    if (strcmp(k, "crash-loop-window") == 0)
        return parse_seconds(k, v, 1.0, CFG_MAX_SECONDS,
                             &c->crash_loop_window, err, errcap);
    if (strcmp(k, "drain-timeout") == 0)
        return parse_seconds(k, v, 0.0, CFG_MAX_SECONDS, &c->drain_timeout,
                             err, errcap);

    /* Stream defaults. */
    if (strcmp(k, "partials") == 0)
        return parse_bool(k, v, &c->partials, err, errcap);
    if (strcmp(k, "vad") == 0)
        return parse_bool(k, v, &c->vad, err, errcap);
    if (strcmp(k, "language") == 0)
        return parse_language(k, v, c->language, sizeof c->language,
                              err, errcap);

    if (strcmp(k, "log-level") == 0)
        return parse_log_level(k, v, &c->log_level, err, errcap);

    return fail(err, errcap, "unknown option \"%.64s\"", k);
}

/* ---- the INI file ------------------------------------------------------- */

/* State of one load: the file, the line being parsed, the first error. */
typedef struct ini_state {
    FILE *f;
    char *line;             /* getline() buffer */
    size_t line_cap;
    int lineno;             /* line last handed to libinih, from 1 */
    sotto__serve_config *c;
    int err_line;           /* line of the first error we found; 0 = none */
    char err[512];
} ini_state;

static void note_error(ini_state *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note_error(ini_state *s, const char *fmt, ...)
{
    va_list ap;

    if (s->err_line != 0)
        return;
    s->err_line = s->lineno;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
}

/* The length of a line without its line ending. */
static size_t line_length(const char *line, size_t n)
{
    if (n > 0 && line[n - 1] == '\n')
        n--;
    if (n > 0 && line[n - 1] == '\r')
        n--;
    return n;
}

/*
 * The fgets-style reader libinih calls.  It reads whole lines itself so
 * that it knows each line's number, and refuses (as an error on that line,
 * handing libinih an empty line instead) a line that does not fit the
 * num bytes libinih offers or that holds a NUL byte.
 */
static char *ini_read_line(char *str, int num, void *stream)
{
    ini_state *s = stream;
    ssize_t n = getline(&s->line, &s->line_cap, s->f);

    if (n < 0 || num < 4)
        return NULL;
    s->lineno++;
    if ((size_t)n != strlen(s->line)) {
        note_error(s, "NUL byte in the line");
        str[0] = '\0';
    } else if (line_length(s->line, (size_t)n) > (size_t)num - 3) {
        /* libinih needs room for "\r\n\0" after the longest line. */
        note_error(s, "line is %zu bytes long (limit %d)",
                   line_length(s->line, (size_t)n), num - 3);
        str[0] = '\0';
    } else {
        memcpy(str, s->line, (size_t)n + 1);
    }
    return str;
}

static int ini_handler_fn(void *user, const char *section, const char *name,
                          const char *value)
{
    ini_state *s = user;
    char err[400];

    if (section[0] == '\0') {
        note_error(s, "%.64s: key outside a section (expected [serve] first)",
                   name);
        return 0;
    }
    if (strcmp(section, "serve") != 0) {
        note_error(s, "unknown section [%.64s] (expected [serve])", section);
        return 0;
    }
    if (sotto__serve_config_set(s->c, name, value, err, sizeof err) != 0) {
        note_error(s, "%s", err);
        return 0;
    }
    return 1;
}

int sotto__serve_config_load(sotto__serve_config *c, const char *path,
                             char *err, size_t errcap)
{
    ini_state s;
    int rc, ret = -1;

    memset(&s, 0, sizeof s);
    s.c = c;
    s.f = fopen(path, "re");
    if (s.f == NULL) {
        fail(err, errcap, "%s: %s", path, strerror(errno));
        goto fail;
    }
    rc = ini_parse_stream(ini_read_line, &s, ini_handler_fn, &s);
    if (rc == -2) {
        fail(err, errcap, "%s: out of memory", path);
        goto fail;
    }
    if (ferror(s.f)) {
        fail(err, errcap, "%s: read error", path);
        goto fail;
    }
    /* libinih reports the first line with any error, ours or its own;
     * a line it reports before our first one is a syntax error. */
    if (rc > 0 && (s.err_line == 0 || rc < s.err_line)) {
        fail(err, errcap, "%s:%d: syntax error (expected [section], "
             "key = value or a comment)", path, rc);
        goto fail;
    }
    if (s.err_line != 0) {
        fail(err, errcap, "%s:%d: %s", path, s.err_line, s.err);
        goto fail;
    }
    ret = 0;
fail:
    free(s.line);
    if (s.f != NULL)
        fclose(s.f);
    return ret;
}
