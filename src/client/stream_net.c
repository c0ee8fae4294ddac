/*
 * stream_net.c - the session of `sotto stream`: one libwebsockets event
 * loop that connects to `sotto serve`, sends the journal's audio (as PCM or
 * as 20 ms Opus packets), prints the events that come back, reconnects
 * when asked to, and ends on the two-speed Ctrl+C.
 *
 * Transports.  ws:// and wss:// speak the native WebSocket protocol
 * (docs/protocol.md): a config message, binary audio, {"type":"finish"},
 * then events until the server closes with 1000.  tcp:// speaks the raw
 * whisper_streaming protocol through libwebsockets' raw client role: s16le
 * bytes out, "<beg_ms> <end_ms> <text>" lines back, and a half-close
 * (shutdown(SHUT_WR)) asks for the final flush; the server's EOF ends it.
 *
 * Positions.  Audio is counted in absolute samples of the source at 16 kHz.
 * `confirmed` is the end of the last committed word (a final's `end`, or an
 * utterance_end's); each connection starts its stream at `confirmed`, so
 * after a reconnection the audio from the first unconfirmed sample on is
 * sent again, and the new stream's times are shifted by that start.  Words
 * committed before the cut are never sent again, words after it are never
 * lost: the cut is exactly where the server's commitments ended.
 *
 * Ctrl+C.  A thread takes SIGINT and SIGTERM with sigwait().  The first
 * one wakes the loop, which stops sending, asks for the final flush and
 * waits at most NET_FLUSH_DEADLINE_S for the last words; the second one
 * ends the process at once from that thread (_exit), whatever the loop is
 * doing, and so does NET_EXIT_DEADLINE_S passing after the first one
 * (exit 1) if the loop is stuck where no timer reaches it.  The loop itself never blocks: it waits only inside
 * lws_service(), which a 20 ms timer, socket activity and
 * lws_cancel_service() (from the source and signal threads) wake.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <opus/opus.h>

#include "client/stream_client.h"

/* The loop's timer period. */
#define NET_TICK_US 20000
/* PCM is sent in messages of up to 100 ms (fewer when the source ends). */
#define NET_PCM_CHUNK 1600
/* Opus frames are 20 ms. */
#define NET_OPUS_FRAME 320
/* The largest Opus packet we produce (the recommended bound for one frame). */
#define NET_OPUS_MAX_PACKET 1276
/* After the first Ctrl+C, the last words must arrive within this long, so
 * that the client has exited within 2 s of the key press. */
#define NET_FLUSH_DEADLINE_S 1.5
/* However the loop fares, the process has ended this long after the first
 * Ctrl+C (the signal thread's own bound, in whole seconds). */
#define NET_EXIT_DEADLINE_S 2
/* Reconnection backoff: doubling from the first to the last. */
#define NET_BACKOFF_FIRST_S 0.25
#define NET_BACKOFF_MAX_S 8.0
/* How long a TCP connect or a WebSocket handshake may take. */
#define NET_CONNECT_TIMEOUT_S 10
/* The progress line is redrawn at most this often. */
#define NET_PROGRESS_PERIOD_S 0.25
/* Without --realtime, audio goes out at most this far ahead of what the
 * server has shown it has taken in (an event's audio_time, a committed
 * word's end), or of real time if that is further: the server would
 * otherwise hold minutes of a file (socket buffers, --max-ahead) that it
 * cannot transcribe within the deadline after a Ctrl+C.  Two seconds is
 * two passes of the stream at most, and more than one pass's worth, so
 * the stream always has the audio for its next pass. */
#define NET_AHEAD_S 2.0
/* A WebSocket server that has ended the utterance (utterance_end) and sent
 * nothing since for this long is in silence, where it keeps up with any
 * rate: the window moves on to what has been sent.  While an utterance is
 * open the server sends an event per pass, and the window waits for it. */
#define NET_QUIET_S 0.5

enum phase {
    PH_CONNECTING,   /* a connection attempt is in flight */
    PH_OPEN,         /* connected: sending audio, reading events */
    PH_RETRY,        /* waiting for retry_at to reconnect */
    PH_DONE          /* finished: rc holds the exit code */
};

typedef struct net {
    const sotto_cli_stream_opts *o;
    sotto_cli_source *src;
    sotto_cli_journal *j;
    sotto_cli_out *out;
    struct lws_context *ctx;
    struct lws *wsi;
    lws_sorted_usec_list_t tick;
    pthread_t sig_thread;
    atomic_int signals;       /* SIGINT/SIGTERM received (signal thread) */

    int tcp, ssl, port;
    char host[256], path[512];

    enum phase phase;
    int rc;                   /* exit code once PH_DONE */
    int connections;          /* connections that opened */
    int attempts;             /* failed attempts since the last good one */
    double retry_at;

    /* Positions, in absolute samples. */
    int64_t total;            /* a file's length; 0 for live sources */
    int64_t conn_start;       /* where this connection's stream starts */
    int64_t sent;             /* sent on this connection, up to here */
    int64_t confirmed;        /* committed by the server up to here */
    int64_t progress;         /* taken in by the server up to here, as far
                               * as its events show (NET_AHEAD_S) */
    double progress_at;       /* monotonic time progress last moved */
    int utt_open;             /* a partial or final since the last
                               * utterance_end (WebSocket only) */

    /* The connection. */
    int config_sent, finish_sent, got_ready;
    int close_code;           /* from the server's close frame, 0 if none */
    char close_reason[128];
    int stalled;              /* we gave up on a silent server */
    double last_activity;     /* monotonic time bytes last moved */
    unsigned char *rx;        /* an event or line being assembled */
    char text[65536];         /* the printable text of the current event */
    size_t rxlen;
    OpusEncoder *enc;

    double t0;                /* monotonic time of the first connection */
    double conn_t0;           /* monotonic time this connection started */
    int interrupted;          /* the loop has acted on the first signal */
    double flush_deadline;
    int server_errors;        /* error events received */
    double last_progress;

    unsigned char tx[LWS_PRE + 4 * NET_PCM_CHUNK];
} net;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double secs(int64_t samples)
{
    return (double)samples / SOTTO_CLI_RATE;
}

static void finish_run(net *n, int rc)
{
    if (n->phase != PH_DONE) {
        n->phase = PH_DONE;
        n->rc = rc;
        /* lws_service() may go on to poll after this callback returns:
         * wake it, so that the loop sees PH_DONE now. */
        lws_cancel_service(n->ctx);
    }
}

/* ------------------------------------------------------------------------
 * Signals
 * ------------------------------------------------------------------------ */

static void *signal_main(void *arg)
{
    net *n = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    for (;;) {
        int sig;
        if (atomic_load(&n->signals) == 0) {
            if (sigwait(&set, &sig) != 0)
                continue;
        } else {
            /* After the first signal the loop has NET_EXIT_DEADLINE_S to
             * end the run; if it has not (a write to a stalled terminal or
             * pipe blocks it, say), the process ends here. */
            struct timespec left = { (time_t)NET_EXIT_DEADLINE_S, 0 };
            if ((sig = sigtimedwait(&set, NULL, &left)) < 0) {
                if (errno != EAGAIN)
                    continue;
                _exit(SOTTO_EXIT_FAIL);
            }
        }
        if (atomic_fetch_add(&n->signals, 1) == 0) {
            lws_cancel_service(n->ctx);
        } else {
            /* The second one means now: leave the terminal tidy and go. */
            static const char reset[] = "\033[0m\n";
            if (isatty(STDOUT_FILENO))
                (void)!write(STDOUT_FILENO, reset, sizeof reset - 1);
            _exit(130);
        }
    }
    return NULL;
}

static void wake_loop(void *user)
{
    net *n = user;
    lws_cancel_service(n->ctx);
}

/* ------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------ */

/* The server has shown that it took in the audio up to sample at. */
static void progressed(net *n, int64_t at)
{
    if (at > n->sent)
        at = n->sent;
    if (at > n->progress) {
        n->progress = at;
        n->progress_at = now_s();
    }
}

/* The sample up to which audio may be sent now. */
static int64_t due_until(net *n, int *eof)
{
    int64_t end, lim;
    int err;
    sotto_cli_journal_state(n->j, &end, eof, &err);
    if (n->interrupted)
        return n->sent;
    if (n->o->realtime && n->src->kind == SOTTO_SRC_FILE && n->t0 > 0) {
        int64_t t = (int64_t)((now_s() - n->t0) * SOTTO_CLI_RATE);
        if (t < end) {
            end = t;
            *eof = 0;
        }
    }
    if (!n->o->realtime && n->t0 > 0) {
        double t = now_s();
        int64_t rt = n->conn_start + (int64_t)((t - n->conn_t0) * SOTTO_CLI_RATE);
        if (!n->tcp && !n->utt_open && n->progress < n->sent &&
            t - n->progress_at > NET_QUIET_S) {
            n->progress = n->sent;
            n->progress_at = t;
        }
        lim = (n->progress > rt ? n->progress : rt) +
              (int64_t)(NET_AHEAD_S * SOTTO_CLI_RATE);
        if (lim < end) {
            end = lim;
            *eof = 0;
        }
    }
    return end;
}

/* What the connection should write next. */
enum next_write { W_NONE, W_CONFIG, W_AUDIO, W_FINISH };

static enum next_write next_write(net *n, int64_t *due, int *eof)
{
    int64_t batch = n->o->opus ? NET_OPUS_FRAME : NET_PCM_CHUNK;
    /* Nothing goes out before the server's `ready`: a server that refuses
     * the stream closes at once, and data of ours arriving at a socket it
     * has closed would make its kernel answer with a reset, which can
     * destroy the close frame (and its reason) before we read it. */
    if (!n->tcp && !n->got_ready)
        return W_NONE;
    if (!n->tcp && !n->config_sent)
        return W_CONFIG;
    if (n->finish_sent)
        return W_NONE;
    *due = due_until(n, eof);
    /* A whole message of audio, or what is left at the end. */
    if (*due - n->sent >= batch || (*eof && *due > n->sent))
        return W_AUDIO;
    /* Everything is sent, or the user asked to stop: the final flush. */
    if ((*eof && *due <= n->sent) || n->interrupted)
        return W_FINISH;
    return W_NONE;
}

static int want_write(net *n)
{
    int64_t due;
    int eof;
    return next_write(n, &due, &eof) != W_NONE;
}

static int write_config(net *n, struct lws *wsi)
{
    cJSON *c = cJSON_CreateObject();
    char *s;
    size_t len;
    int rc = -1;
    if (c == NULL)
        return -1;
    cJSON_AddStringToObject(c, "type", "config");
    cJSON_AddStringToObject(c, "format", n->o->opus ? "opus" : "pcm_s16le");
    cJSON_AddNumberToObject(c, "sample_rate", SOTTO_CLI_RATE);
    if (n->o->language)
        cJSON_AddStringToObject(c, "language", n->o->language);
    if (n->o->partials >= 0)
        cJSON_AddBoolToObject(c, "partials", n->o->partials);
    if (n->o->vad >= 0)
        cJSON_AddBoolToObject(c, "vad", n->o->vad);
    s = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    if (s == NULL)
        return -1;
    len = strlen(s);
    if (len <= sizeof n->tx - LWS_PRE) {
        memcpy(n->tx + LWS_PRE, s, len);
        rc = lws_write(wsi, n->tx + LWS_PRE, len, LWS_WRITE_TEXT) < (int)len ? -1 : 0;
    }
    cJSON_free(s);
    n->config_sent = 1;
    return rc;
}

/* Writes one message (or one chunk of TCP bytes): audio is sent in PCM
 * messages of up to NET_PCM_CHUNK samples or in Opus packets of
 * NET_OPUS_FRAME (the last one padded with silence).  Returns 0, or -1 to
 * drop the connection. */
static int write_some(net *n, struct lws *wsi)
{
    int eof = 0;
    int64_t due = 0;
    unsigned char *p = n->tx + LWS_PRE;
    int16_t pcm[NET_PCM_CHUNK];
    size_t i, got;

    switch (next_write(n, &due, &eof)) {
    case W_NONE:
        return 0;
    case W_CONFIG:
        if (write_config(n, wsi) != 0)
            return -1;
        break;
    case W_AUDIO:
        got = sotto_cli_journal_read(n->j, n->sent, pcm,
                                     n->o->opus ? NET_OPUS_FRAME : NET_PCM_CHUNK);
        if ((int64_t)got > due - n->sent)
            got = (size_t)(due - n->sent);
        if (got == 0)
            return 0;
        if (n->o->opus) {
            opus_int32 len;
            memset(pcm + got, 0, (NET_OPUS_FRAME - got) * sizeof *pcm);
            len = opus_encode(n->enc, pcm, NET_OPUS_FRAME, p, NET_OPUS_MAX_PACKET);
            if (len < 0) {
                sotto_cli_out_note(n->out, "opus: %s", opus_strerror(len));
                finish_run(n, SOTTO_EXIT_FAIL);
                return -1;
            }
            if (lws_write(wsi, p, (size_t)len, LWS_WRITE_BINARY) < len)
                return -1;
        } else {
            for (i = 0; i < got; i++) {
                p[2 * i] = (unsigned char)(pcm[i] & 0xff);
                p[2 * i + 1] = (unsigned char)((uint16_t)pcm[i] >> 8);
            }
            if (lws_write(wsi, p, 2 * got, n->tcp ? LWS_WRITE_RAW : LWS_WRITE_BINARY) <
                (int)(2 * got))
                return -1;
        }
        n->sent += (int64_t)got;
        n->last_activity = now_s();
        break;
    case W_FINISH:
        if (eof && due == 0 && !n->interrupted) {
            sotto_cli_out_note(n->out, "the source ended without a single sample");
            finish_run(n, SOTTO_EXIT_USAGE);
            return -1;
        }
        if (n->tcp) {
            /* lws has flushed any partial write before calling us, so the
             * half-close cannot cut audio. */
            if (shutdown(lws_get_socket_fd(wsi), SHUT_WR) != 0)
                return -1;
        } else {
            static const char fin[] = "{\"type\":\"finish\"}";
            memcpy(p, fin, sizeof fin - 1);
            if (lws_write(wsi, p, sizeof fin - 1, LWS_WRITE_TEXT) < (int)sizeof fin - 1)
                return -1;
        }
        n->finish_sent = 1;
        return 0;
    }
    if (want_write(n))
        lws_callback_on_writable(wsi);
    return 0;
}

/* ------------------------------------------------------------------------
 * Receiving
 * ------------------------------------------------------------------------ */

static void confirm(net *n, double end_s)
{
    int64_t at = n->conn_start + (int64_t)llround(end_s * SOTTO_CLI_RATE);
    if (at > n->sent)
        at = n->sent;
    if (at > n->confirmed) {
        n->confirmed = at;
        sotto_cli_journal_release(n->j, at);
    }
    progressed(n, at);
}

/* One event of the WebSocket protocol. */
static void on_event(net *n, const char *msg, size_t len)
{
    sotto_cli_event ev;
    double off = secs(n->conn_start);

    if (sotto_cli_event_parse(msg, len, &ev, n->text, sizeof n->text) != 0) {
        sotto_cli_out_note(n->out, "ignoring a message from the server that is not a JSON object");
        return;
    }
    {
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(ev.json, "audio_time");
        if (cJSON_IsNumber(at) && at->valuedouble >= 0 &&
            at->valuedouble <= SOTTO_MAX_AUDIO_SECONDS)
            progressed(n, n->conn_start + (int64_t)llround(at->valuedouble * SOTTO_CLI_RATE));
    }
    switch (ev.kind) {
    case SOTTO_CLI_EV_READY:
        n->got_ready = 1;
        n->attempts = 0;
        if (n->wsi != NULL)
            lws_callback_on_writable(n->wsi);
        if (n->connections > 1)
            sotto_cli_out_note(n->out, "reconnected: resending the audio from %.2f s", off);
        break;
    case SOTTO_CLI_EV_FINAL:
        n->utt_open = 1;
        if (!n->o->json)
            sotto_cli_out_final(n->out, ev.start + off, ev.end + off, n->text);
        confirm(n, ev.end);
        break;
    case SOTTO_CLI_EV_PARTIAL:
        n->utt_open = 1;
        if (!n->o->json)
            sotto_cli_out_partial(n->out, n->text);
        break;
    case SOTTO_CLI_EV_UTTERANCE_END:
        n->utt_open = 0;
        if (!n->o->json)
            sotto_cli_out_partial(n->out, "");
        confirm(n, ev.end);
        break;
    case SOTTO_CLI_EV_WARNING:
        if (!n->o->json)
            sotto_cli_out_note(n->out, "server warning: %s", n->text);
        break;
    case SOTTO_CLI_EV_ERROR:
        n->server_errors++;
        sotto_cli_out_note(n->out, "server error: %s", n->text);
        break;
    case SOTTO_CLI_EV_OTHER:
        break;
    }
    if (n->o->json) {
        char *s = sotto_cli_event_json(&ev, off);
        if (s != NULL) {
            sotto_cli_out_json(n->out, s);
            cJSON_free(s);
        }
    }
    sotto_cli_event_clear(&ev);
}

/* One line of the raw TCP protocol. */
static void on_line(net *n, const char *line)
{
    double beg, end, off = secs(n->conn_start);
    if (sotto_cli_line_parse(line, &beg, &end, n->text + 1, sizeof n->text - 1) != 0) {
        sotto_cli_out_note(n->out, "ignoring a malformed line from the server");
        return;
    }
    if (n->o->json) {
        /* The line as the WebSocket protocol's final, text with its space. */
        cJSON *ev = cJSON_CreateObject();
        char *s;
        if (ev == NULL)
            return;
        n->text[0] = ' ';
        cJSON_AddStringToObject(ev, "type", "final");
        cJSON_AddNumberToObject(ev, "start", round((beg + off) * 1000.0) / 1000.0);
        cJSON_AddNumberToObject(ev, "end", round((end + off) * 1000.0) / 1000.0);
        cJSON_AddStringToObject(ev, "text", n->text);
        s = cJSON_PrintUnformatted(ev);
        if (s != NULL)
            sotto_cli_out_json(n->out, s);
        cJSON_free(s);
        cJSON_Delete(ev);
    } else {
        sotto_cli_out_final(n->out, beg + off, end + off, n->text + 1);
    }
    confirm(n, end);
}

/* Appends received bytes to the assembly buffer; -1 past the limit. */
static int rx_append(net *n, const void *in, size_t len)
{
    if (n->rxlen + len > SOTTO_CLI_MAX_EVENT) {
        sotto_cli_out_note(n->out, "the server sent an event over %d bytes", SOTTO_CLI_MAX_EVENT);
        return -1;
    }
    memcpy(n->rx + n->rxlen, in, len);
    n->rxlen += len;
    n->last_activity = now_s();
    return 0;
}

static int on_tcp_bytes(net *n, const void *in, size_t len)
{
    const char *p = in;
    while (len > 0) {
        const char *nl = memchr(p, '\n', len);
        size_t k = nl ? (size_t)(nl - p) : len;
        if (rx_append(n, p, k) != 0)
            return -1;
        if (nl == NULL)
            return 0;
        n->rx[n->rxlen] = '\0';
        on_line(n, (char *)n->rx);
        n->rxlen = 0;
        p += k + 1;
        len -= k + 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Connecting and losing the connection
 * ------------------------------------------------------------------------ */

static void connect_now(net *n);

/* Whether a server close code allows trying again. */
static int close_retryable(int code)
{
    return code == 0 || code == 1001 || code == 1006 || code == 1011 ||
           code == 1012 || code == 1013 || code == 1014;
}

/* The connection ended (closed, failed or given up on). */
static void conn_ended(net *n, const char *why)
{
    char desc[256];

    n->wsi = NULL;
    if (n->phase == PH_DONE)
        return;
    if (n->finish_sent && why == NULL &&
        (n->tcp ? n->close_code == 0 : n->close_code == 1000)) {
        /* The normal end: the server flushed everything we sent. */
        n->confirmed = n->sent;
        finish_run(n, n->server_errors ? SOTTO_EXIT_FAIL : SOTTO_EXIT_OK);
        return;
    }
    if (n->stalled)
        snprintf(desc, sizeof desc, "the server sent nothing and took nothing for %.0f s",
                 n->o->timeout);
    else if (n->close_code != 0)
        snprintf(desc, sizeof desc, "the server closed the stream: %d %s", n->close_code,
                 n->close_reason[0] ? n->close_reason : "(no reason)");
    else if (why != NULL)
        snprintf(desc, sizeof desc, "%s", why);
    else if (n->tcp && n->phase == PH_OPEN && n->sent == n->conn_start)
        snprintf(desc, sizeof desc, "the server closed the connection at once "
                 "(at capacity, or no worker can run)");
    else
        snprintf(desc, sizeof desc, "the connection was lost");

    if (n->interrupted) {
        sotto_cli_out_note(n->out, "%s; %.2f s of audio were not confirmed", desc,
                           secs(n->sent - n->confirmed));
        finish_run(n, SOTTO_EXIT_FAIL);
        return;
    }
    if (n->o->reconnect && close_retryable(n->close_code) &&
        n->attempts < n->o->max_attempts) {
        double wait = NET_BACKOFF_FIRST_S * (double)(1 << (n->attempts < 6 ? n->attempts : 6));
        if (wait > NET_BACKOFF_MAX_S)
            wait = NET_BACKOFF_MAX_S;
        n->attempts++;
        n->phase = PH_RETRY;
        n->retry_at = now_s() + wait;
        sotto_cli_out_note(n->out, "%s; reconnecting in %.2f s (attempt %d of %d), "
                           "%.2f s of audio to resend", desc, wait, n->attempts,
                           n->o->max_attempts, secs(n->sent - n->confirmed));
        return;
    }
    sotto_cli_out_note(n->out, "%s", desc);
    finish_run(n, SOTTO_EXIT_FAIL);
}

static void connect_now(net *n)
{
    struct lws_client_connect_info ci;

    memset(&ci, 0, sizeof ci);
    ci.context = n->ctx;
    ci.address = n->host;
    ci.port = n->port;
    ci.path = n->path;
    ci.host = n->host;
    ci.origin = n->host;
    ci.ssl_connection = n->ssl ? LCCSCF_USE_SSL : 0;
    ci.pwsi = &n->wsi;
    if (n->tcp) {
        ci.method = "RAW";
        ci.local_protocol_name = "sotto-raw";
    } else {
        ci.local_protocol_name = "sotto-ws";
    }
    n->phase = PH_CONNECTING;
    n->conn_start = n->confirmed;
    n->sent = n->confirmed;
    n->progress = n->confirmed;
    n->progress_at = n->conn_t0 = now_s();
    n->utt_open = 0;
    n->config_sent = n->finish_sent = n->got_ready = 0;
    n->close_code = 0;
    n->close_reason[0] = '\0';
    n->stalled = 0;
    n->rxlen = 0;
    n->last_activity = now_s();
    if (n->enc != NULL)
        opus_encoder_ctl(n->enc, OPUS_RESET_STATE);
    if (lws_client_connect_via_info(&ci) == NULL && n->phase == PH_CONNECTING)
        conn_ended(n, "cannot connect");
}

static void opened(net *n, struct lws *wsi)
{
    n->phase = PH_OPEN;
    n->wsi = wsi;
    n->connections++;
    if (n->tcp)
        n->attempts = 0;
    if (n->t0 == 0)
        n->t0 = now_s();
    n->last_activity = now_s();
    if (n->tcp && n->connections > 1)
        sotto_cli_out_note(n->out, "reconnected: resending the audio from %.2f s",
                           secs(n->conn_start));
    lws_callback_on_writable(wsi);
}

/* ------------------------------------------------------------------------
 * The loop's periodic work
 * ------------------------------------------------------------------------ */

static void service(net *n)
{
    double t = now_s();
    int err;

    if (n->phase == PH_DONE)
        return;
    if (atomic_load(&n->signals) > 0 && !n->interrupted) {
        n->interrupted = 1;
        n->flush_deadline = t + NET_FLUSH_DEADLINE_S;
        if (n->phase != PH_OPEN) {
            /* Nothing is connected to flush. */
            if (n->connections > 0)
                sotto_cli_out_note(n->out, "interrupted while disconnected; %.2f s of "
                                   "audio were not confirmed", secs(n->sent - n->confirmed));
            finish_run(n, n->connections == 0 ? SOTTO_EXIT_OK : SOTTO_EXIT_FAIL);
            return;
        }
    }
    sotto_cli_journal_state(n->j, NULL, NULL, &err);
    if (err) {
        sotto_cli_out_note(n->out, "%s", n->j->err);
        finish_run(n, err);
        return;
    }
    if (n->phase == PH_RETRY && t >= n->retry_at)
        connect_now(n);
    if (n->phase == PH_OPEN && n->wsi != NULL) {
        if (want_write(n))
            lws_callback_on_writable(n->wsi);
        if (t - n->last_activity > n->o->timeout && !n->stalled) {
            n->stalled = 1;
            lws_set_timeout(n->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        }
    }
    if (n->interrupted && t > n->flush_deadline) {
        sotto_cli_out_note(n->out, "the server did not send the last words within %.1f s; "
                           "%.2f s of audio were not confirmed", NET_FLUSH_DEADLINE_S,
                           secs(n->sent - n->confirmed));
        finish_run(n, SOTTO_EXIT_FAIL);
        return;
    }
    if (n->o->progress && t - n->last_progress >= NET_PROGRESS_PERIOD_S) {
        n->last_progress = t;
        sotto_cli_out_progress(n->out, secs(n->sent), secs(n->confirmed), secs(n->total));
    }
}

static void on_tick(lws_sorted_usec_list_t *sul)
{
    net *n = lws_container_of(sul, net, tick);
    service(n);
    if (n->phase != PH_DONE)
        lws_sul_schedule(n->ctx, 0, &n->tick, on_tick, NET_TICK_US);
}

/* ------------------------------------------------------------------------
 * libwebsockets callbacks
 * ------------------------------------------------------------------------ */

/* A connection attempt failed; lws gives its reason in `in` (or NULL). */
static void connect_failed(net *n, const void *in)
{
    char why[300];
    snprintf(why, sizeof why, "cannot connect to %s:%d: %s", n->host, n->port,
             in ? (const char *)in : "connection failed");
    if (n->phase == PH_CONNECTING)
        conn_ended(n, why);
}

/*
 * libwebsockets 4.1 (Debian 12's) replaces the close codes 1012 to 1015 it
 * receives with 1002 before the callback sees them, so the server's 1013
 * ("try again later") arrives as 1002.  sotto serve never closes with 1002
 * itself and names the cause of each 1013 in the reason text: a 1002 that
 * carries one of those reasons was a 1013.
 */
static int restore_close_code(int code, const char *reason)
{
    static const char *const try_later[] = { "capacity", "no_worker", "crash_loop",
                                             "fatal" };
    size_t i;
    if (code != 1002)
        return code;
    for (i = 0; i < sizeof try_later / sizeof try_later[0]; i++)
        if (strncmp(reason, try_later[i], strlen(try_later[i])) == 0)
            return 1013;
    return code;
}

static int cb_ws(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                 void *in, size_t len)
{
    net *n = lws_context_user(lws_get_context(wsi));

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        service(n);
        return 0;
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        /* The server's API key, if it has one (never logged). */
        if (n->o->api_key != NULL && n->o->api_key[0] != 0) {
            char h[512];
            unsigned char **p = in, *end = *p + len;
            int l = snprintf(h, sizeof h, "Bearer %s", n->o->api_key);
            if (l < 0 || (size_t)l >= sizeof h ||
                lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
                                             (unsigned char *)h, l, p, end))
                return -1;
        }
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        opened(n, wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        connect_failed(n, in);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (lws_frame_is_binary(wsi))
            return 0;
        if (rx_append(n, in, len) != 0) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
            return -1;
        }
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            on_event(n, (const char *)n->rx, n->rxlen);
            n->rxlen = 0;
        }
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (n->phase == PH_DONE) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY, NULL, 0);
            return -1;
        }
        return write_some(n, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        const unsigned char *p = in;
        if (len >= 2) {
            size_t k = len - 2 < sizeof n->close_reason - 1 ? len - 2 : sizeof n->close_reason - 1;
            size_t i;
            n->close_code = p[0] << 8 | p[1];
            for (i = 0; i < k; i++)
                n->close_reason[i] = (p[2 + i] >= 0x20 && p[2 + i] != 0x7f) ? (char)p[2 + i] : '?';
            n->close_reason[k] = '\0';
        } else {
            n->close_code = 1005;
        }
        n->close_code = restore_close_code(n->close_code, n->close_reason);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (n->wsi == wsi || n->phase == PH_OPEN)
            conn_ended(n, NULL);
        return 0;
    default:
        return 0;
    }
}

static int cb_raw(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                  void *in, size_t len)
{
    net *n = lws_context_user(lws_get_context(wsi));

    switch (reason) {
    case LWS_CALLBACK_RAW_CONNECTED:
        opened(n, wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        connect_failed(n, in);
        return 0;
    case LWS_CALLBACK_RAW_RX:
        n->last_activity = now_s();
        return on_tcp_bytes(n, in, len);
    case LWS_CALLBACK_RAW_WRITEABLE:
        if (n->phase == PH_DONE)
            return -1;
        return write_some(n, wsi);
    case LWS_CALLBACK_RAW_CLOSE:
        if (n->phase == PH_CONNECTING)
            conn_ended(n, "cannot connect");
        else if (n->wsi == wsi)
            conn_ended(n, NULL);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    { "sotto-ws", cb_ws, 0, 65536, 0, NULL, 0 },
    { "sotto-raw", cb_raw, 0, 65536, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 },
};

/* ------------------------------------------------------------------------
 * The run
 * ------------------------------------------------------------------------ */

/* Splits the URL into the transport, host, port and path. */
static int parse_url(net *n, const char *url)
{
    char buf[1024];
    const char *prot, *ads, *path;
    int port;
    const char *after;

    if (strlen(url) >= sizeof buf)
        return -1;
    snprintf(buf, sizeof buf, "%s", url);
    if (lws_parse_uri(buf, &prot, &ads, &port, &path) != 0 || !*ads)
        return -1;
    if (strcmp(prot, "ws") == 0) {
        n->tcp = 0;
    } else if (strcmp(prot, "wss") == 0) {
        n->tcp = 0;
        n->ssl = 1;
    } else if (strcmp(prot, "tcp") == 0) {
        n->tcp = 1;
        /* lws_parse_uri defaults an unknown scheme to port 80. */
        after = strstr(url, "://") + 3;
        if (strchr(after, ':') == NULL)
            port = 43007;
    } else {
        return -1;
    }
    if (port <= 0 || port > 65535 || strlen(ads) >= sizeof n->host)
        return -1;
    snprintf(n->host, sizeof n->host, "%s", ads);
    n->port = port;
    /* lws_parse_uri drops the leading '/' (and gives "/" for no path). */
    while (*path == '/')
        path++;
    snprintf(n->path, sizeof n->path, "/%s", *path ? path : "v1/stream");
    return 0;
}

int sotto_cli_stream_run(const sotto_cli_stream_opts *o, sotto_cli_source *src,
                         sotto_cli_out *out)
{
    struct lws_context_creation_info info;
    net *n = calloc(1, sizeof *n);
    sigset_t set;
    char err[512];
    int rc = SOTTO_EXIT_FAIL, sig_started = 0;

    if (n == NULL) {
        sotto_cli_out_note(out, "out of memory");
        return SOTTO_EXIT_FAIL;
    }
    n->o = o;
    n->src = src;
    n->j = src->journal;
    n->out = out;
    if (parse_url(n, o->url) != 0) {
        sotto_cli_out_note(out, "bad --url \"%s\": use ws://HOST:PORT/PATH or tcp://HOST:PORT",
                           o->url);
        rc = SOTTO_EXIT_USAGE;
        goto fail;
    }
    if (n->tcp && o->opus) {
        sotto_cli_out_note(out, "--format opus needs a ws:// URL: the raw TCP protocol "
                           "carries 16 kHz s16le PCM only");
        rc = SOTTO_EXIT_USAGE;
        goto fail;
    }
    n->rx = malloc(SOTTO_CLI_MAX_EVENT + 1);
    if (n->rx == NULL)
        goto fail;
    if (o->opus) {
        int e;
        n->enc = opus_encoder_create(SOTTO_CLI_RATE, 1, OPUS_APPLICATION_VOIP, &e);
        if (n->enc == NULL) {
            sotto_cli_out_note(out, "opus: %s", opus_strerror(e));
            goto fail;
        }
        opus_encoder_ctl(n->enc, OPUS_SET_BITRATE(o->bitrate));
        opus_encoder_ctl(n->enc, OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE));
    }
    if (src->kind == SOTTO_SRC_FILE)
        sotto_cli_journal_state(n->j, &n->total, NULL, NULL);

    /* Every thread made from here on inherits the blocked signals; only
     * the signal thread takes them. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    lws_set_log_level(o->verbose ? LLL_ERR | LLL_WARN : 0, NULL);
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.gid = (gid_t)-1;
    info.uid = (uid_t)-1;
    info.user = n;
    info.timeout_secs = NET_CONNECT_TIMEOUT_S;
    info.connect_timeout_secs = NET_CONNECT_TIMEOUT_S;
    info.fd_limit_per_thread = 16;
    if (n->ssl) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.client_ssl_ca_filepath = o->cacert;
    }
    n->ctx = lws_create_context(&info);
    if (n->ctx == NULL) {
        sotto_cli_out_note(out, "cannot create the network context");
        goto fail;
    }
    if (pthread_create(&n->sig_thread, NULL, signal_main, n) != 0) {
        sotto_cli_out_note(out, "cannot start the signal thread");
        goto fail;
    }
    sig_started = 1;

    n->j->wake_user = n;
    n->j->wake = wake_loop;
    if ((rc = sotto_cli_source_start(src, err, sizeof err)) != 0) {
        sotto_cli_out_note(out, "%s", err);
        goto fail;
    }
    connect_now(n);
    lws_sul_schedule(n->ctx, 0, &n->tick, on_tick, NET_TICK_US);
    while (n->phase != PH_DONE)
        lws_service(n->ctx, 0);
    rc = n->rc;
    /* A connection still open is dropped now: closing it politely would
     * wait for the close handshake of a server that may not answer. */
    if (n->wsi != NULL)
        lws_set_timeout(n->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);

fail:
    /* The source thread and the signal thread use the context: stop them
     * before it goes. */
    sotto_cli_source_stop(src);
    if (sig_started) {
        pthread_cancel(n->sig_thread);
        pthread_join(n->sig_thread, NULL);
    }
    n->j->wake = NULL;
    if (n->ctx != NULL) {
        lws_sul_cancel(&n->tick);
        lws_context_destroy(n->ctx);
    }
    if (n->enc != NULL)
        opus_encoder_destroy(n->enc);
    sotto_cli_out_end(out);
    free(n->rx);
    free(n);
    return rc;
}
