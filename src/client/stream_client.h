/*
 * stream_client.h - the pieces of `sotto stream`, the client of
 * `sotto serve` (not part of libsotto).
 *
 * The client has three parts, joined by this header:
 *  - stream_proto.c: parsing the server's events and lines;
 *  - stream_src.c: the sources (a file, raw PCM on stdin, the microphone)
 *    and the journal, the audio a source produced and the server has not
 *    yet confirmed, at 16 kHz mono s16;
 *  - stream_net.c: one libwebsockets event loop that owns the connection
 *    (WebSocket or raw TCP), paces and encodes the audio, reads events,
 *    reconnects, and implements the two-speed Ctrl+C;
 *  - stream_cmd.c: the command line and the terminal output.
 *
 * Threads: the event loop runs on the main thread.  A live source (stdin,
 * microphone) reads on its own thread and appends to the journal under its
 * mutex, then wakes the loop through a callback.  Signals are taken by a
 * thread that waits for them with sigwait(), so no signal handler exists.
 * No call on any thread blocks without a bound: the source threads poll
 * with a 100 ms timeout and check their stop flag, and the loop only waits
 * in lws_service(), which a 20 ms timer and lws_cancel_service() wake.
 */
#ifndef SOTTO_STREAM_CLIENT_H
#define SOTTO_STREAM_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "client/client.h"

/* The audio on the wire is always 16 kHz mono. */
#define SOTTO_CLI_RATE 16000

/* A live source keeps at most this much unconfirmed audio; older audio is
 * dropped (and counted) beyond it.  Ten minutes of s16 is 19 MB. */
#define SOTTO_CLI_MAX_BACKLOG_S 600

/* The largest event (WebSocket message) or line (raw TCP) accepted from
 * the server; a longer one ends the connection as a protocol error. */
#define SOTTO_CLI_MAX_EVENT (1 << 20)

/* Times read from the server lie in [0, SOTTO_CLI_MAX_TIME_S] seconds:
 * the server's longest stream is 4 hours; anything else reads as 0. */
#define SOTTO_CLI_MAX_TIME_S (4.0 * 3600.0 * 2.0)

/* ------------------------------------------------------------------------
 * What the server sends (stream_proto.c): no network code, no state.
 * ------------------------------------------------------------------------ */
enum sotto_cli_event_kind {
    SOTTO_CLI_EV_OTHER, SOTTO_CLI_EV_READY, SOTTO_CLI_EV_PARTIAL,
    SOTTO_CLI_EV_FINAL, SOTTO_CLI_EV_UTTERANCE_END, SOTTO_CLI_EV_WARNING,
    SOTTO_CLI_EV_ERROR
};

typedef struct sotto_cli_event {
    enum sotto_cli_event_kind kind;
    double start, end;     /* seconds of the connection's stream, checked */
    cJSON *json;           /* the whole event, owned */
} sotto_cli_event;

/* Copies src into dst (capacity cap, cap > 0), replacing control
 * characters with '?' and never cutting a UTF-8 sequence in two. */
void sotto_cli_printable(const char *src, char *dst, size_t cap);
/* Parses one WebSocket event.  Returns 0 with ev filled (release it with
 * sotto_cli_event_clear) and its "text" (or "message") copied printable
 * into text (capacity cap), or -1 when msg is not a JSON object. */
int sotto_cli_event_parse(const char *msg, size_t len, sotto_cli_event *ev,
                          char *text, size_t cap);
void sotto_cli_event_clear(sotto_cli_event *ev);
/* The event as one line of JSON with its times shifted by off seconds;
 * free it with cJSON_free; NULL when out of memory. */
char *sotto_cli_event_json(sotto_cli_event *ev, double off);
/* Parses a raw TCP line "<beg_ms> <end_ms> <text>" (without its newline):
 * 0 with the times in seconds and the text copied printable, or -1. */
int sotto_cli_line_parse(const char *line, double *start, double *end,
                         char *text, size_t cap);

/* ------------------------------------------------------------------------
 * The journal: audio at 16 kHz s16, indexed by absolute sample number.
 * ------------------------------------------------------------------------ */
typedef struct sotto_cli_journal {
    pthread_mutex_t mu;
    int16_t *pcm;          /* pcm[i] is sample base + i */
    size_t cap;            /* capacity of pcm, in samples */
    int64_t base, end;     /* samples [base, end) are held */
    int64_t limit;         /* most samples held, 0 = no limit (files) */
    int64_t dropped;       /* samples dropped beyond the limit */
    int eof;               /* the source has ended */
    int error;             /* the source failed: exit code, message in err */
    char err[512];
    void (*wake)(void *);  /* called (unlocked) after each append */
    void *wake_user;
} sotto_cli_journal;

int sotto_cli_journal_init(sotto_cli_journal *j, int64_t limit);
void sotto_cli_journal_free(sotto_cli_journal *j);
/* Appends n samples; returns 0 or -1 when out of memory. */
int sotto_cli_journal_append(sotto_cli_journal *j, const int16_t *x, size_t n);
/* Copies up to max samples starting at absolute sample `from` into dst;
 * returns how many (0 when from is not held yet).  Samples below base read
 * as silence (they were dropped). */
size_t sotto_cli_journal_read(sotto_cli_journal *j, int64_t from, int16_t *dst,
                              size_t max);
/* Lets go of the samples before `upto` (they are confirmed). */
void sotto_cli_journal_release(sotto_cli_journal *j, int64_t upto);
/* Snapshot of end, eof and error. */
void sotto_cli_journal_state(sotto_cli_journal *j, int64_t *end, int *eof,
                             int *error);
/* Marks the end of the source, or a failure (code != 0) with a message. */
void sotto_cli_journal_close(sotto_cli_journal *j, int code, const char *msg);

/* ------------------------------------------------------------------------
 * Sources
 * ------------------------------------------------------------------------ */
enum sotto_cli_source_kind { SOTTO_SRC_FILE, SOTTO_SRC_STDIN, SOTTO_SRC_MIC };

typedef struct sotto_cli_source {
    enum sotto_cli_source_kind kind;
    int rate;              /* stdin: its sample rate */
    const char *device;    /* mic: the ALSA device name */
    sotto_cli_journal *journal;
    pthread_t thread;      /* stdin and mic */
    int thread_started;
    atomic_int stop;
    void *priv;            /* the capture handle of the mic */
} sotto_cli_source;

/* Opens the source named by `name` ("-", "mic" or a path).  A file is
 * decoded completely here; stdin and the microphone are opened, and read
 * once sotto_cli_source_start() is called.  Returns 0, or an exit code
 * with a message in err. */
int sotto_cli_source_open(sotto_cli_source *s, const char *name,
                          char *err, size_t errcap);
int sotto_cli_source_start(sotto_cli_source *s, char *err, size_t errcap);
/* Stops and joins the reader thread (within about 100 ms) and closes the
 * source.  Accepts a source that was never opened or started. */
void sotto_cli_source_stop(sotto_cli_source *s);

/* ------------------------------------------------------------------------
 * The session (stream_net.c) and its output (stream_cmd.c)
 * ------------------------------------------------------------------------ */
typedef struct sotto_cli_stream_opts {
    const char *url;       /* ws://, wss:// or tcp:// */
    const char *api_key;   /* sent as "Authorization: Bearer" (WebSocket) */
    const char *cacert;    /* PEM file of the CA (or self-signed
                            * certificate) that wss:// must chain to;
                            * NULL for the system's */
    int opus;              /* send Opus packets (WebSocket only) */
    int bitrate;           /* Opus bits per second */
    int realtime;          /* pace a file at the speed of speech */
    int reconnect;         /* reconnect after a dropped connection */
    int max_attempts;      /* connection attempts in a row before giving up */
    double timeout;        /* seconds without progress before giving up */
    const char *language;  /* NULL for the server's default */
    int partials, vad;     /* -1 for the server's default */
    int json;              /* print events as JSON lines */
    int timestamps;        /* prefix finals with their times */
    int progress;          /* show progress on stderr */
    int verbose;
} sotto_cli_stream_opts;

/* Terminal output of events (stream_cmd.c).  Times are seconds of the
 * source from its first sample. */
typedef struct sotto_cli_out sotto_cli_out;
void sotto_cli_out_partial(sotto_cli_out *o, const char *text);
void sotto_cli_out_final(sotto_cli_out *o, double start, double end,
                         const char *text);
void sotto_cli_out_json(sotto_cli_out *o, const char *line);
void sotto_cli_out_progress(sotto_cli_out *o, double sent, double confirmed,
                            double total);
/* Prints a notice on stderr without tearing the status line. */
void sotto_cli_out_note(sotto_cli_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sotto_cli_out_end(sotto_cli_out *o);

/* Streams the journal's audio to the server and prints its events until
 * the source ends and the server has flushed, the user interrupts, or the
 * connection fails for good.  Returns the exit code. */
int sotto_cli_stream_run(const sotto_cli_stream_opts *o, sotto_cli_source *src,
                         sotto_cli_out *out);

/* `sotto stream ...`; returns an exit code. */
int sotto_cli_stream_main(int argc, char **argv);

#endif
