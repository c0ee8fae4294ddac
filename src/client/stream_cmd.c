/*
 * stream_cmd.c - `sotto stream`: the command line of the streaming client
 * and its terminal output.
 *
 *   sotto stream [--url ws://HOST:8080/v1/stream | tcp://HOST:43007]
 *                [--format pcm|opus] [--realtime | --as-fast-as-possible]
 *                [--json] [--reconnect] ... FILE | - | mic
 *
 * Output.  Finals go to stdout, one line each, as they are committed; with
 * --json every event goes there as one JSON object per line instead.  When
 * stdout is a terminal, a status line under the finals shows the current
 * partial in grey, rewritten in place, and (for a file) the progress:
 * seconds sent against seconds confirmed.  When only stderr is a terminal,
 * the progress goes there.  Notices (reconnections, server errors) go to
 * stderr as whole lines that never tear the status line.
 *
 * Exit codes: 0 when every word came back (or after the first Ctrl+C, once
 * the last words did); 1 for a server error, a refusal or a lost
 * connection (the reason is printed); 2 for bad usage or an unreadable
 * source; 130 for the second Ctrl+C.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "client/stream_client.h"

/* The status line holds at most this many bytes of partial text. */
#define OUT_MAX_LINE 4096

struct sotto_cli_out {
    int json, timestamps;
    int status_fd;            /* where the status line goes, -1 for none */
    int progress_only;        /* the status line is on stderr: no partials */
    int shown;                /* the status line is on screen */
    char partial[OUT_MAX_LINE];
    char progress[96];
};

static int term_cols(int fd)
{
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 8)
        return ws.ws_col;
    return 80;
}

/* Writes all of buf to fd, ignoring failures (a closed terminal). */
static void put(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t k = write(fd, buf, len);
        if (k <= 0) {
            if (k < 0 && errno == EINTR)
                continue;
            return;
        }
        buf += k;
        len -= (size_t)k;
    }
}

static void status_clear(sotto_cli_out *o)
{
    if (o->shown) {
        put(o->status_fd, "\r\033[K", 4);
        o->shown = 0;
    }
}

/* Redraws the status line: the progress, then as much of the end of the
 * partial as fits in the terminal's width (cut at a character). */
static void status_draw(sotto_cli_out *o)
{
    char line[OUT_MAX_LINE + 160];
    const char *p = o->progress_only ? "" : o->partial;
    size_t plen, room, i, chars = 0;
    int cols, len;

    if (o->status_fd < 0)
        return;
    while (*p == ' ')
        p++;
    if (!o->progress[0] && !*p) {
        status_clear(o);
        return;
    }
    cols = term_cols(o->status_fd);
    room = (size_t)cols - 1 - strlen(o->progress) - (o->progress[0] ? 1 : 0);
    plen = strlen(p);
    /* Count characters from the end (UTF-8 continuation bytes do not). */
    for (i = plen; i > 0; i--) {
        if (((unsigned char)p[i - 1] & 0xc0) != 0x80 && ++chars > room)
            break;
    }
    len = snprintf(line, sizeof line, "\r\033[K\033[2m%s%s%s\033[0m", o->progress,
                   o->progress[0] && *p ? " " : "", p + i);
    if (len > 0)
        put(o->status_fd, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    o->shown = 1;
}

void sotto_cli_out_partial(sotto_cli_out *o, const char *text)
{
    snprintf(o->partial, sizeof o->partial, "%s", text);
    if (!o->progress_only)
        status_draw(o);
}

void sotto_cli_out_final(sotto_cli_out *o, double start, double end,
                         const char *text)
{
    while (*text == ' ')
        text++;
    if (o->status_fd == STDOUT_FILENO)
        status_clear(o);
    if (o->timestamps)
        printf("[%8.2f -> %8.2f] %s\n", start, end, text);
    else
        printf("%s\n", text);
    fflush(stdout);
    o->partial[0] = '\0';
    if (o->status_fd == STDOUT_FILENO)
        status_draw(o);
}

void sotto_cli_out_json(sotto_cli_out *o, const char *line)
{
    if (o->status_fd == STDOUT_FILENO)
        status_clear(o);
    printf("%s\n", line);
    fflush(stdout);
    if (o->status_fd == STDOUT_FILENO)
        status_draw(o);
}

void sotto_cli_out_progress(sotto_cli_out *o, double sent, double confirmed,
                            double total)
{
    if (o->status_fd < 0)
        return;
    if (total > 0)
        snprintf(o->progress, sizeof o->progress, "[sent %.1f / confirmed %.1f of %.1f s]",
                 sent, confirmed, total);
    else
        snprintf(o->progress, sizeof o->progress, "[sent %.1f / confirmed %.1f s]",
                 sent, confirmed);
    status_draw(o);
}

void sotto_cli_out_note(sotto_cli_out *o, const char *fmt, ...)
{
    char msg[1024];
    int len;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    status_clear(o);
    fflush(stdout);
    {
        char line[1100];
        len = snprintf(line, sizeof line, "sotto: %s\n", msg);
        put(STDERR_FILENO, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    }
    status_draw(o);
}

void sotto_cli_out_end(sotto_cli_out *o)
{
    status_clear(o);
    o->status_fd = -1;
    fflush(stdout);
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: sotto stream [options] FILE | - | mic\n"
        "Streams audio to a running `sotto serve` and prints the transcript live.\n"
        "  FILE                      any file `sotto transcribe` reads (WAV, FLAC, Ogg\n"
        "                            Vorbis, Ogg/Opus ...), sent as fast as the\n"
        "                            server takes it unless --realtime\n"
        "  -                         raw s16le mono on stdin, at --rate Hz\n"
        "  mic                       the ALSA capture device (--device)\n"
        "  -u, --url URL             ws://HOST:PORT[/PATH], wss://... or tcp://HOST:PORT\n"
        "                            (default ws://127.0.0.1:8080/v1/stream)\n"
        "  -F, --format pcm|opus     how audio travels: 16 kHz s16le, or 20 ms Opus\n"
        "                            packets (WebSocket only; default pcm)\n"
        "      --bitrate N           Opus bitrate in bit/s (default 32000)\n"
        "      --realtime            send a file at the speed of speech\n"
        "      --as-fast-as-possible send a file as fast as the server takes it\n"
        "      --rate N              sample rate of stdin (default 16000)\n"
        "      --device NAME         ALSA capture device for mic (default \"default\")\n"
        "  -l, --language CODE       language of the speech (multilingual models)\n"
        "      --no-partials         finals only\n"
        "      --no-vad              ask the server not to gate the audio with its VAD\n"
        "      --json                print every event as one JSON object per line\n"
        "      --timestamps          prefix each final with its start and end\n"
        "      --reconnect           after a dropped connection, reconnect with backoff\n"
        "                            and resend the audio from the first unconfirmed word\n"
        "      --api-key KEY         the server's API key (default $SOTTO_API_KEY)\n"
        "      --cacert FILE         wss://: trust this PEM certificate (a self-signed one)\n"
        "      --attempts N          connection attempts in a row (default 10)\n"
        "      --timeout S           give up on a server that neither reads nor writes\n"
        "                            for S seconds (default 30)\n"
        "  -q, --quiet               no progress line\n"
        "  -v, --verbose             log the network library's warnings\n"
        "Ctrl+C once: stop sending, print the last words, exit (within 2 s).\n"
        "Ctrl+C twice: exit at once.\n"
        "Exit codes: 0 done, 1 server error, refusal or lost connection, 2 bad usage\n"
        "or unreadable input.\n");
}

/* Reads --name's number, which must lie in lo..hi; prints why not and
 * returns -1 otherwise. */
static int opt_num(const char *name, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "sotto: --%s must be a number in %g..%g\n", name, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int sotto_cli_stream_main(int argc, char **argv)
{
    enum { OPT_BITRATE = 256, OPT_REALTIME, OPT_FAST, OPT_RATE, OPT_DEVICE,
           OPT_NO_PARTIALS, OPT_NO_VAD, OPT_JSON, OPT_TS, OPT_RECONNECT,
           OPT_ATTEMPTS, OPT_TIMEOUT, OPT_KEY, OPT_CACERT };
    static const struct option opts[] = {
        { "url", required_argument, NULL, 'u' },
        { "format", required_argument, NULL, 'F' },
        { "bitrate", required_argument, NULL, OPT_BITRATE },
        { "realtime", no_argument, NULL, OPT_REALTIME },
        { "as-fast-as-possible", no_argument, NULL, OPT_FAST },
        { "rate", required_argument, NULL, OPT_RATE },
        { "device", required_argument, NULL, OPT_DEVICE },
        { "language", required_argument, NULL, 'l' },
        { "no-partials", no_argument, NULL, OPT_NO_PARTIALS },
        { "no-vad", no_argument, NULL, OPT_NO_VAD },
        { "json", no_argument, NULL, OPT_JSON },
        { "timestamps", no_argument, NULL, OPT_TS },
        { "reconnect", no_argument, NULL, OPT_RECONNECT },
        { "attempts", required_argument, NULL, OPT_ATTEMPTS },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "api-key", required_argument, NULL, OPT_KEY },
        { "cacert", required_argument, NULL, OPT_CACERT },
        { "quiet", no_argument, NULL, 'q' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    sotto_cli_stream_opts o;
    sotto_cli_out out;
    sotto_cli_journal journal;
    sotto_cli_source src;
    char err[1024] = "";
    int c, rc, quiet = 0, journal_ready = 0;
    double v;

    memset(&o, 0, sizeof o);
    memset(&out, 0, sizeof out);
    memset(&src, 0, sizeof src);
    o.url = "ws://127.0.0.1:8080/v1/stream";
    o.api_key = getenv("SOTTO_API_KEY");
    o.bitrate = 32000;
    o.max_attempts = 10;
    o.timeout = 30;
    o.partials = -1;
    o.vad = -1;
    src.rate = SOTTO_CLI_RATE;
    src.device = "default";
    out.status_fd = -1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "u:F:l:qvh", opts, NULL)) != -1) {
        switch (c) {
        case 'u': o.url = optarg; break;
        case 'F':
            if (strcmp(optarg, "pcm") == 0)
                o.opus = 0;
            else if (strcmp(optarg, "opus") == 0)
                o.opus = 1;
            else {
                fprintf(stderr, "sotto: --format must be pcm or opus\n");
                return SOTTO_EXIT_USAGE;
            }
            break;
        case OPT_BITRATE:
            if (opt_num("bitrate", optarg, 6000, 510000, &v) != 0)
                return SOTTO_EXIT_USAGE;
            o.bitrate = (int)v;
            break;
        case OPT_REALTIME: o.realtime = 1; break;
        case OPT_FAST: o.realtime = 0; break;
        case OPT_RATE:
            if (opt_num("rate", optarg, 8000, 192000, &v) != 0)
                return SOTTO_EXIT_USAGE;
            src.rate = (int)v;
            break;
        case OPT_DEVICE: src.device = optarg; break;
        case 'l': o.language = optarg; break;
        case OPT_NO_PARTIALS: o.partials = 0; break;
        case OPT_NO_VAD: o.vad = 0; break;
        case OPT_JSON: o.json = 1; break;
        case OPT_TS: o.timestamps = 1; break;
        case OPT_RECONNECT: o.reconnect = 1; break;
        case OPT_ATTEMPTS:
            if (opt_num("attempts", optarg, 1, 1000, &v) != 0)
                return SOTTO_EXIT_USAGE;
            o.max_attempts = (int)v;
            break;
        case OPT_TIMEOUT:
            if (opt_num("timeout", optarg, 1, 3600, &v) != 0)
                return SOTTO_EXIT_USAGE;
            o.timeout = v;
            break;
        case OPT_KEY: o.api_key = optarg; break;
        case OPT_CACERT: o.cacert = optarg; break;
        case 'q': quiet = 1; break;
        case 'v': o.verbose = 1; break;
        case 'h': usage(stdout); return SOTTO_EXIT_OK;
        default: usage(stderr); return SOTTO_EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return SOTTO_EXIT_USAGE;
    }

    out.json = o.json;
    out.timestamps = o.timestamps;
    if (isatty(STDOUT_FILENO)) {
        out.status_fd = STDOUT_FILENO;
    } else if (isatty(STDERR_FILENO)) {
        out.status_fd = STDERR_FILENO;
        out.progress_only = 1;
    }
    if (o.json && out.status_fd == STDOUT_FILENO)
        out.progress_only = 1;

    if (sotto_cli_journal_init(&journal, strcmp(argv[optind], "-") == 0 ||
                                         strcmp(argv[optind], "mic") == 0
                                   ? (int64_t)SOTTO_CLI_MAX_BACKLOG_S * SOTTO_CLI_RATE : 0) != 0) {
        fprintf(stderr, "sotto: out of memory\n");
        return SOTTO_EXIT_FAIL;
    }
    journal_ready = 1;
    src.journal = &journal;
    rc = sotto_cli_source_open(&src, argv[optind], err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "sotto: %s: %s\n", argv[optind], err);
        goto done;
    }
    o.progress = !quiet && src.kind == SOTTO_SRC_FILE && out.status_fd >= 0;
    rc = sotto_cli_stream_run(&o, &src, &out);
done:
    sotto_cli_source_stop(&src);
    if (journal_ready)
        sotto_cli_journal_free(&journal);
    return rc;
}
