/*
 * gateway_net.c - the gateway's client protocols: the native WebSocket
 * protocol on /v1/stream, the whisper_streaming-compatible raw TCP
 * protocol, the HTTP operations endpoints /health, /ready, /metrics and
 * /v1/models, and the live captions page on / (web.c).  It also routes
 * what belongs elsewhere: a WebSocket upgrade goes to the dialect its
 * path or port names (gateway_dialect.c), a Wyoming connection to that
 * dialect's framing, and /v1/audio/transcriptions to gateway_rest.c.
 * docs/protocol.md is the user-facing description.
 *
 * libwebsockets parses HTTP and WebSocket framing (and validates UTF-8 in
 * text frames, and control-frame rules); this file reads only what the
 * library hands over: the request path, whole WebSocket messages (which it
 * assembles under the max-frame limit), and raw TCP bytes.  Every length
 * is checked against a named limit before it is stored.
 *
 * Outbound, each client has a queue.  Partials are shed first when a slow
 * reader lets the queue grow past max-outbound; if finals alone still
 * exceed it, the client is disconnected with 1008 and the drop is logged,
 * since the alternative is unbounded memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>

#include "sotto.h"
#include "server/dialect.h"
#include "server/gateway.h"

/* Longest refusal message a dialect sends before closing. */
#define GW_MAX_REFUSAL 512

/* Longest close reason: a close frame's payload is at most 125 bytes, two
 * of them the code (RFC 6455, 5.5). */
#define GW_MAX_CLOSE_REASON 123

/* Seconds the gateway waits for a client to answer its close frame before
 * it drops the connection. */
#define GW_CLOSE_ACK_TIMEOUT 5

/* libwebsockets' write type for a close frame.  Its public header keeps
 * LWS_WRITE_CLOSE private and points to lws_close_reason() instead, but a
 * close made that way (4.1, Debian 12) sends the frame and shuts the socket
 * at once, without waiting for the client's close: a client still sending
 * audio then gets a TCP reset, and may lose the close frame and its code
 * (the Python websockets client reports 1006).  The gateway therefore
 * sends the frame itself and does the closing handshake (ws_close_*). */
#define GW_WRITE_CLOSE ((enum lws_write_protocol)4)

/* Per-connection data of the "sotto" protocol (HTTP and WebSocket). */
typedef struct gw_pss {
    gw_stream *st;            /* WebSocket streams */
    void *job;                /* a REST transcription (gateway_rest.c) */
    /* A WebSocket refused at admission: its dialect, why, and the message
     * to send before the close (refusal_len 0: none yet or none due). */
    const gw_dialect *refused_dl;
    const char *refused_why;
    char refusal[LWS_PRE + GW_MAX_REFUSAL];
    size_t refusal_len;
    /* The closing handshake (ws_close_*): GW_OPEN, then GW_CLOSE_DUE once
     * the gateway has decided to close (the frame goes out when the
     * socket is writable), then GW_CLOSE_SENT until the client answers. */
    enum { GW_OPEN, GW_CLOSE_DUE, GW_CLOSE_SENT } close_state;
    unsigned char close_frame[LWS_PRE + 2 + GW_MAX_CLOSE_REASON];
    size_t close_len;
    /* HTTP response waiting for HTTP_WRITEABLE. */
    char *body;               /* [LWS_PRE + body_len] */
    size_t body_len;
    int close_after;          /* end the connection after the body (a
                               * refusal whose request body is unread) */
} gw_pss;

/* The Content-Security-Policy of the captions page.  The page is one file
 * with its script and style inline, so those need 'unsafe-inline'; its
 * AudioWorklet module is a Blob URL made by that script (blob: in
 * script-src, which governs worklets); it connects only to /v1/stream on
 * its own host ('self', which matches ws: and wss: to the page's host and
 * port in CSP level 3); its icon is an empty data: URL.  Everything else
 * is refused: other scripts, frames, forms, plugins, and framing by
 * other sites. */
#define GW_PAGE_CSP "default-src 'none'; script-src 'unsafe-inline' blob:; " \
                    "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; " \
                    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static sotto__gateway *gw_of(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

void sotto__gw_want_write(gw_stream *s)
{
    if (s->wsi != NULL)
        lws_callback_on_writable(s->wsi);
}

/* ---- outbound queue ----------------------------------------------------- */

static void drop_partials(sotto__gateway *g, gw_stream *s)
{
    gw_out **pp = &s->out_head, *last = NULL;

    while (*pp != NULL) {
        gw_out *o = *pp;
        if (o->partial) {
            *pp = o->next;
            s->out_bytes -= o->len;
            g->m.partials_shed++;
            free(o);
        } else {
            last = o;
            pp = &o->next;
        }
    }
    s->out_tail = last;
}

void sotto__gw_send_json(sotto__gateway *g, gw_stream *s, const char *json,
                         size_t len, int partial)
{
    gw_out *o;

    if (s->wsi == NULL)
        return;
    if (len > SOTTO__GW_MAX_EVENT) {
        sotto__log(SOTTO_LOG_ERROR, s->id, "an event of %zu bytes is over the %u-byte "
                   "limit; not sent", len, (unsigned)SOTTO__GW_MAX_EVENT);
        return;
    }
    /* A newer partial replaces any older one still queued. */
    if (partial)
        drop_partials(g, s);
    if (s->out_bytes + len > g->c->max_outbound) {
        drop_partials(g, s);
        if (partial)
            return;
        if (s->out_bytes + len > g->c->max_outbound) {
            sotto__log(SOTTO_LOG_WARN, s->id,
                       "client does not read its finals (%zu bytes queued); "
                       "disconnecting it", s->out_bytes);
            g->m.slow_reader_drops++;
            s->close_code = 1008;
            snprintf(s->close_reason, sizeof s->close_reason, "slow reader");
            s->done = 1;
            lws_callback_on_writable(s->wsi);
            return;
        }
    }
    if ((o = malloc(sizeof *o + LWS_PRE + len)) == NULL)
        return;
    o->next = NULL;
    o->partial = partial;
    o->len = len;
    memcpy(o->buf + LWS_PRE, json, len);
    if (s->out_tail != NULL)
        s->out_tail->next = o;
    else
        s->out_head = o;
    s->out_tail = o;
    s->out_bytes += len;
    g->m.events_out++;
    lws_callback_on_writable(s->wsi);
}

void sotto__gw_send_cjson(sotto__gateway *g, gw_stream *s, cJSON *o, int partial)
{
    char *t;

    if (o == NULL)
        return;
    if ((t = cJSON_PrintUnformatted(o)) != NULL)
        sotto__gw_send_json(g, s, t, strlen(t), partial);
    free(t);
    cJSON_Delete(o);
}

/* An error event to a WebSocket client (the stream goes on). */
static void send_error(sotto__gateway *g, gw_stream *s, const char *code,
                       const char *message)
{
    cJSON *o = cJSON_CreateObject();
    char *t;

    sotto__log(SOTTO_LOG_WARN, s->id, "client error: %s: %s", code, message);
    cJSON_AddStringToObject(o, "type", "error");
    cJSON_AddNumberToObject(o, "seq", (double)++s->seq_out);
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "message", message);
    if ((t = cJSON_PrintUnformatted(o)) != NULL)
        sotto__gw_send_json(g, s, t, strlen(t), 0);
    free(t);
    cJSON_Delete(o);
}

/* ---- WebSocket: the native protocol ------------------------------------- */

static void send_ready(sotto__gateway *g, gw_stream *s)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf,
                     "{\"type\":\"ready\",\"seq\":%llu,\"stream\":%u,"
                     "\"sample_rate\":%d,\"format\":\"pcm_s16le\","
                     "\"max_frame\":%zu}",
                     (unsigned long long)++s->seq_out, s->id, s->rate,
                     g->c->max_frame);
    sotto__gw_send_json(g, s, buf, (size_t)n, 0);
}

/* A complete text message from the client (ignored after finish).  A
 * config is applied all of it or (on a bad field) none of it, and only
 * before any audio. */
static void ws_text(sotto__gateway *g, gw_stream *s, const char *t, size_t len)
{
    sotto__native_msg m;
    const char *code = NULL;
    char err[160];

    if (s->finishing || s->done)
        return;
    if (sotto__native_parse(t, len, &m, &code, err, sizeof err) != 0) {
        send_error(g, s, code, err);
        return;
    }
    if (m.kind == SOTTO__NATIVE_FINISH) {
        sotto__log(SOTTO_LOG_INFO, s->id, "client asked to finish");
        s->configured = 1;
        sotto__gw_finish(g, s, 1000, "");
        return;
    }
    /* Placement comes with the first audio. */
    if (s->configured) {
        send_error(g, s, "config_too_late", "config must come before any audio");
        return;
    }
    if (m.format != 0)
        s->format = m.format;
    if (m.sample_rate != 0)
        s->rate = m.sample_rate;
    if (m.has_language == 1)
        memcpy(s->language, m.language, sizeof m.language);
    if (m.partials >= 0)
        s->partials = m.partials;
    if (m.vad >= 0)
        s->vad = m.vad;
    s->configured = 1;
    sotto__log(SOTTO_LOG_DEBUG, s->id, "config: format %d, %d Hz, vad %d, partials %d",
               s->format, s->rate, s->vad, s->partials);
}

_Static_assert((int)SOTTO__NATIVE_S16 == (int)GW_S16 &&
                   (int)SOTTO__NATIVE_F32 == (int)GW_F32 &&
                   (int)SOTTO__NATIVE_OPUS == (int)GW_OPUS,
               "the native parser's formats are the gateway's");

static void ws_binary(sotto__gateway *g, gw_stream *s, const unsigned char *p, size_t len)
{
    if (s->finishing || s->done)
        send_error(g, s, "after_finish", "audio after finish is ignored");
    else
        sotto__gw_audio(g, s, p, len);
}

/* A worker event goes to the client as it is, renumbered. */
static void ws_event(sotto__gateway *g, gw_stream *s, cJSON *ev)
{
    char *out;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "type"));

    cJSON_DeleteItemFromObjectCaseSensitive(ev, "seq");
    cJSON_AddNumberToObject(ev, "seq", (double)++s->seq_out);
    if ((out = cJSON_PrintUnformatted(ev)) != NULL)
        sotto__gw_send_json(g, s, out, strlen(out),
                            type != NULL && strcmp(type, "partial") == 0);
    free(out);
}

static void send_warning(sotto__gateway *g, gw_stream *s, const char *code,
                         const char *message)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "type", "warning");
    cJSON_AddNumberToObject(o, "seq", (double)++s->seq_out);
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "message", message);
    sotto__gw_send_cjson(g, s, o, 0);
}

const gw_dialect sotto__gw_native = {
    .name = "native",
    .proto = GW_PROTO_NATIVE,
    .opened = send_ready,
    .text = ws_text,
    .binary = ws_binary,
    .event = ws_event,
    .warning = send_warning,
    .error = send_error,
};

/* ---- the WebSocket closing handshake ----------------------------------- */

/*
 * Closes a WebSocket the way RFC 6455 (7.1.2, 7.1.3) asks: the gateway
 * sends its close frame, then reads and drops what the client still sends
 * until the client's own close frame arrives, and only then closes the
 * TCP connection (or after GW_CLOSE_ACK_TIMEOUT seconds).  Closing the
 * socket while a client's audio is still arriving would reset the
 * connection, and the client could lose the close frame that tells it
 * why (1013 "try again", 1008 "too long").
 *
 * ws_close_soon() records the frame and asks for a writable callback;
 * ws_close_send() writes it from there.  The stream, if any, is released
 * when the frame goes out: nothing more is sent on it.
 */
static void ws_close_soon(struct lws *wsi, gw_pss *pss, int code, const char *reason)
{
    size_t n = strlen(reason);

    if (pss->close_state != GW_OPEN)
        return;
    if (n > GW_MAX_CLOSE_REASON)
        n = GW_MAX_CLOSE_REASON;
    pss->close_frame[LWS_PRE] = (unsigned char)((code >> 8) & 0xff);
    pss->close_frame[LWS_PRE + 1] = (unsigned char)(code & 0xff);
    memcpy(pss->close_frame + LWS_PRE + 2, reason, n);
    pss->close_len = 2 + n;
    pss->close_state = GW_CLOSE_DUE;
    lws_callback_on_writable(wsi);
}

/* From SERVER_WRITEABLE, with nothing else written in this callback. */
static int ws_close_send(struct lws *wsi, sotto__gateway *g, gw_pss *pss)
{
    if (lws_write(wsi, pss->close_frame + LWS_PRE, pss->close_len, GW_WRITE_CLOSE) <
        (int)pss->close_len)
        return -1;
    pss->close_state = GW_CLOSE_SENT;
    g->n_ws_closing++;
    if (pss->st != NULL) {
        sotto__gw_client_gone(g, pss->st);
        pss->st = NULL;
    }
    /* A paused stream's socket must be read again, or the client's close
     * would never be seen. */
    lws_rx_flow_control(wsi, 1);
    lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, GW_CLOSE_ACK_TIMEOUT);
    return 0;
}

static int ws_receive(struct lws *wsi, sotto__gateway *g, gw_pss *pss,
                      const void *in, size_t len)
{
    gw_stream *s = pss->st;
    size_t limit;

    if (lws_is_first_fragment(wsi)) {
        s->rx_n = 0;
        s->rx_over = 0;
        s->rx_binary = lws_frame_is_binary(wsi);
    }
    limit = s->rx_binary ? g->c->max_frame
            : s->dl->text_audio ? g->c->max_frame / 3 * 4 + SOTTO__SERVE_MAX_CONTROL
                                : SOTTO__SERVE_MAX_CONTROL;
    if (s->rx_n + len > limit) {
        sotto__log(SOTTO_LOG_WARN, s->id, "message over %zu bytes; closing with 1009", limit);
        ws_close_soon(wsi, pss, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too large");
        return 0;
    }
    if (sotto__gw_buf_add(&s->rx, &s->rx_n, &s->rx_cap, in, len) != 0)
        return -1;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
        return 0;
    if (s->rx_binary)
        s->dl->binary(g, s, s->rx, s->rx_n);
    else
        s->dl->text(g, s, (const char *)s->rx, s->rx_n);
    s->rx_n = 0;
    return 0;
}

static int ws_writeable(struct lws *wsi, sotto__gateway *g, gw_pss *pss)
{
    gw_stream *s = pss->st;
    gw_out *o = s->out_head;

    if (o != NULL) {
        int n = lws_write(wsi, o->buf + LWS_PRE, o->len, LWS_WRITE_TEXT);
        if (n < (int)o->len)
            return -1;
        g->m.bytes_out += o->len;
        s->out_head = o->next;
        if (s->out_head == NULL)
            s->out_tail = NULL;
        s->out_bytes -= o->len;
        free(o);
        if (s->out_head != NULL || s->done)
            lws_callback_on_writable(wsi);
        return 0;
    }
    if (s->done) {
        ws_close_soon(wsi, pss, s->close_code ? s->close_code : 1000, s->close_reason);
        return ws_close_send(wsi, g, pss);
    }
    return 0;
}

/* ---- HTTP operations endpoints ------------------------------------------ */

const double sotto__gw_commit_bounds[SOTTO__GW_HIST_BUCKETS] = {
    0.25, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 5, 7.5, 10, 20
};
const double sotto__gw_infer_bounds[SOTTO__GW_HIST_BUCKETS] = {
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30
};

static size_t put(char *buf, size_t cap, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static size_t put(char *buf, size_t cap, size_t n, const char *fmt, ...)
{
    va_list ap;
    int k;

    if (n >= cap)
        return n;
    va_start(ap, fmt);
    k = vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
    return k < 0 ? n : n + (size_t)k > cap ? cap : n + (size_t)k;
}

static size_t hist(char *b, size_t cap, size_t n, const char *name, const char *help,
                   const double *bounds, int nb, const uint64_t *h, uint64_t count,
                   double sum)
{
    n = put(b, cap, n, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < nb; i++)
        n = put(b, cap, n, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i],
                (unsigned long long)h[i]);
    n = put(b, cap, n, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n",
            name, (unsigned long long)count, name, sum, name,
            (unsigned long long)count);
    return n;
}

size_t sotto__gw_metrics_render(const sotto__gateway *g, char *b, size_t cap)
{
    const gw_metrics *m = &g->m;
    size_t n = 0;
    int ready = 0;

    for (int i = 0; i < g->n_workers; i++)
        ready += g->workers[i].wsi != NULL && g->workers[i].ready;
#define COUNTER(name, help, v) \
    n = put(b, cap, n, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n", \
            (unsigned long long)(v))
#define GAUGE(name, help, fmt, v) \
    n = put(b, cap, n, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " " fmt "\n", v)
    GAUGE("sotto_streams_active", "Streams open now.", "%d", g->n_streams);
    GAUGE("sotto_gateway_open_fds", "Descriptors open in the gateway (counted each second).",
          "%d", g->n_fds);
    GAUGE("sotto_gateway_fd_limit", "Descriptors the gateway may use for connections "
          "(0: no limit of its own).", "%u", g->fd_limit);
    COUNTER("sotto_streams_total", "Streams accepted.", m->streams_total);
    n = put(b, cap, n, "# HELP sotto_streams_rejected_total Streams refused.\n"
            "# TYPE sotto_streams_rejected_total counter\n"
            "sotto_streams_rejected_total{reason=\"capacity\"} %llu\n"
            "sotto_streams_rejected_total{reason=\"other\"} %llu\n",
            (unsigned long long)m->rejected_capacity, (unsigned long long)m->rejected_other);
    {
        static const char *const names[GW_N_PROTO] = {
            "native", "tcp", "vosk", "whisperlive", "realtime", "wyoming", "rest"
        };
        int active[GW_N_PROTO] = { 0 };
        for (const gw_stream *s = g->streams; s != NULL; s = s->next)
            active[s->proto]++;
        n = put(b, cap, n, "# HELP sotto_protocol_streams_active Streams open now, by "
                "protocol.\n# TYPE sotto_protocol_streams_active gauge\n");
        for (int i = 0; i < GW_N_PROTO; i++)
            n = put(b, cap, n, "sotto_protocol_streams_active{protocol=\"%s\"} %d\n",
                    names[i], active[i]);
        n = put(b, cap, n, "# HELP sotto_protocol_streams_total Streams accepted, by "
                "protocol.\n# TYPE sotto_protocol_streams_total counter\n");
        for (int i = 0; i < GW_N_PROTO; i++)
            n = put(b, cap, n, "sotto_protocol_streams_total{protocol=\"%s\"} %llu\n",
                    names[i], (unsigned long long)m->proto_streams[i]);
        n = put(b, cap, n, "# HELP sotto_protocol_rejected_total Streams refused, by "
                "protocol.\n# TYPE sotto_protocol_rejected_total counter\n");
        for (int i = 0; i < GW_N_PROTO; i++)
            n = put(b, cap, n, "sotto_protocol_rejected_total{protocol=\"%s\"} %llu\n",
                    names[i], (unsigned long long)m->proto_rejected[i]);
    }
    GAUGE("sotto_workers_ready", "Workers ready.", "%d", ready);
    GAUGE("sotto_workers_healthy", "Workers ready, beating and not stuck.", "%d",
          sotto__gw_workers_healthy(g));
    COUNTER("sotto_worker_restarts_total", "Workers started again after a death.",
            m->worker_restarts);
    n = put(b, cap, n, "# HELP sotto_worker_deaths_total Worker deaths, by signal "
            "(\"none\" for an exit).\n# TYPE sotto_worker_deaths_total counter\n");
    {
        uint64_t by_sig = 0;
        for (int sig = 1; sig < 65; sig++)
            if (m->deaths_by_signal[sig] > 0) {
                const char *nm = sigabbrev_np(sig);
                by_sig += m->deaths_by_signal[sig];
                n = put(b, cap, n, "sotto_worker_deaths_total{signal=\"SIG%s\"} %llu\n",
                        nm ? nm : "?", (unsigned long long)m->deaths_by_signal[sig]);
            }
        n = put(b, cap, n, "sotto_worker_deaths_total{signal=\"none\"} %llu\n",
                (unsigned long long)(m->worker_deaths - by_sig));
    }
    COUNTER("sotto_watchdog_kills_total", "Workers killed by the watchdog.", m->watchdog_kills);
    COUNTER("sotto_stream_recoveries_total", "Streams replayed on another worker.",
            m->recoveries);
    COUNTER("sotto_decode_errors_total", "Error events (bad audio, failed passes).",
            m->decode_errors);
    COUNTER("sotto_bytes_in_total", "Audio bytes received from clients.", m->bytes_in);
    COUNTER("sotto_bytes_out_total", "Bytes sent to clients.", m->bytes_out);
    COUNTER("sotto_events_out_total", "Events queued to clients.", m->events_out);
    COUNTER("sotto_partials_shed_total", "Partials dropped for slow readers.",
            m->partials_shed);
    COUNTER("sotto_slow_reader_disconnects_total", "Clients dropped for not reading finals.",
            m->slow_reader_drops);
    n = put(b, cap, n, "# HELP sotto_audio_seconds_total Seconds of audio received.\n"
            "# TYPE sotto_audio_seconds_total counter\nsotto_audio_seconds_total %.3f\n",
            m->audio_seconds);
    n = put(b, cap, n, "# HELP sotto_compute_seconds_total Seconds spent in inference.\n"
            "# TYPE sotto_compute_seconds_total counter\nsotto_compute_seconds_total %.3f\n",
            m->compute_seconds);
    GAUGE("sotto_real_time_factor", "Compute seconds per second of audio, since start.",
          "%.4f", m->audio_seconds > 0 ? m->compute_seconds / m->audio_seconds : 0.0);
    n = hist(b, cap, n, "sotto_inference_seconds", "Time of one feed with its passes.",
             sotto__gw_infer_bounds, SOTTO__GW_HIST_BUCKETS, m->infer_hist, m->infer_count,
             m->infer_sum);
    n = hist(b, cap, n, "sotto_commit_latency_seconds",
             "From a word's audio arriving to its final being queued.", sotto__gw_commit_bounds,
             SOTTO__GW_HIST_BUCKETS, m->commit_hist, m->commit_count, m->commit_sum);
#undef COUNTER
#undef GAUGE
    return n;
}

/* Copies the captions page into pss (lws_write wants LWS_PRE bytes of
 * headroom before what it sends, so the static bytes cannot go as they
 * are); returns the status. */
static int http_page(gw_pss *pss, const char **ctype)
{
    size_t len;
    const unsigned char *page = sotto__web_index(&len);
    char *b = malloc(LWS_PRE + len);

    if (b == NULL)
        return 500;
    memcpy(b + LWS_PRE, page, len);
    pss->body = b;
    pss->body_len = len;
    *ctype = "text/html; charset=utf-8";
    return 200;
}

/* Renders the response for path into pss; returns the status.  *page is
 * set for the captions page, which gets headers of its own. */
static int http_route(sotto__gateway *g, const char *path, gw_pss *pss,
                      const char **ctype, int *retry, int *page)
{
    size_t cap = 16384;
    char *b, *body;
    int status = 200;

    *ctype = "application/json";
    *retry = 0;
    *page = strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0;
    if (*page)
        return http_page(pss, ctype);
    if ((b = malloc(LWS_PRE + cap)) == NULL)
        return 500;
    body = b + LWS_PRE;
    if (strcmp(path, "/health") == 0) {
        pss->body_len = (size_t)snprintf(body, cap, "{\"status\":\"ok\"}\n");
    } else if (strcmp(path, "/ready") == 0) {
        int healthy = sotto__gw_workers_healthy(g), ready = 0;
        const char *reason = NULL;
        for (int i = 0; i < g->n_workers; i++)
            ready += g->workers[i].wsi != NULL && g->workers[i].ready;
        if (g->draining)
            reason = "draining";
        else if (strncmp(g->sup_reason, "crash_loop", 10) == 0 && healthy == 0)
            reason = "crash_loop";
        else if (g->sup_reason[0] != 0 && healthy == 0)
            reason = "fatal";
        else if (!g->ever_ready)
            reason = "starting";
        else if (healthy == 0)
            reason = "no_worker_ready";
        if (reason == NULL)
            pss->body_len = (size_t)snprintf(body, cap,
                "{\"ready\":true,\"workers_ready\":%d,\"workers_healthy\":%d,"
                "\"workers\":%d,\"streams\":%d,\"max_streams\":%d}\n",
                ready, healthy, g->c->workers, g->n_streams, g->c->max_streams);
        else {
            status = 503;
            *retry = 1;
            pss->body_len = (size_t)snprintf(body, cap,
                "{\"ready\":false,\"reason\":\"%s\",\"detail\":\"%s\","
                "\"workers_ready\":%d,\"workers\":%d,\"streams\":%d}\n",
                reason, g->sup_reason, ready, g->c->workers, g->n_streams);
        }
    } else if (strcmp(path, "/v1/models") == 0) {
        /* The OpenAI models list: the one model the workers load. */
        const char *model = strrchr(g->c->model, '/');
        cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data"), *m;
        char *t;
        model = model != NULL && model[1] != 0 ? model + 1 : g->c->model;
        cJSON_AddStringToObject(o, "object", "list");
        m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", model);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "sotto");
        cJSON_AddItemToArray(d, m);
        t = cJSON_PrintUnformatted(o);
        pss->body_len = (size_t)snprintf(body, cap, "%s\n", t != NULL ? t : "{}");
        free(t);
        cJSON_Delete(o);
    } else if (strcmp(path, "/metrics") == 0) {
        *ctype = "text/plain; version=0.0.4";
        pss->body_len = sotto__gw_metrics_render(g, body, cap);
    } else {
        status = 404;
        pss->body_len = (size_t)snprintf(body, cap,
            "{\"error\":\"not found\",\"endpoints\":[\"/\",\"/v1/stream\",\"/health\","
            "\"/ready\",\"/metrics\",\"/v1/models\",\"/v1/audio/transcriptions\","
            "\"/v1/realtime\",\"/vosk\",\"/whisperlive\"]}\n");
    }
    if (pss->body_len >= cap)
        pss->body_len = cap - 1;
    pss->body = b;
    return status;
}

/* Adds the header "name: value" (name with its colon); nonzero when the
 * headers do not fit. */
static int http_header(struct lws *wsi, const char *name, const char *value,
                       unsigned char **p, unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value,
                                       (int)strlen(value), p, end);
}

/* Answers GET and HEAD (the same headers, no body); other methods get
 * 405.  The body of a GET goes out on HTTP_WRITEABLE. */
static int http_request(struct lws *wsi, sotto__gateway *g, gw_pss *pss, const char *path)
{
    unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start,
                  *end = hdr + sizeof hdr - 1;
    const char *ctype = "application/json";
    int retry = 0, page = 0, status,
        head = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;

    if (!head && lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
        lws_return_http_status(wsi, 405, "only GET and HEAD are served here");
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    status = http_route(g, path, pss, &ctype, &retry, &page);
    if (pss->body == NULL)
        return -1;
    if (lws_add_http_common_headers(wsi, (unsigned int)status, ctype,
                                    (lws_filepos_t)pss->body_len, &p, end) ||
        (retry && http_header(wsi, "retry-after:", "1", &p, end)) ||
        http_header(wsi, "cache-control:", page ? "no-cache" : "no-store", &p, end) ||
        (page && (http_header(wsi, "content-security-policy:", GW_PAGE_CSP, &p, end) ||
                  http_header(wsi, "x-content-type-options:", "nosniff", &p, end) ||
                  http_header(wsi, "referrer-policy:", "no-referrer", &p, end))) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (head) {
        free(pss->body);
        pss->body = NULL;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

/* ---- the API key -------------------------------------------------------- */

/* Whether the request may go on: no key is set, or it carries the key as
 * "Authorization: Bearer KEY", or (a WebSocket upgrade) as a subprotocol
 * "bearer.KEY" beside a protocol the server speaks ("sotto"). */
static int authorized(const sotto__gateway *g, struct lws *wsi, int ws)
{
    char authz[SOTTO__SERVE_MAX_KEY + 256], protos[SOTTO__SERVE_MAX_KEY + 256];

    if (g->c->api_key[0] == 0)
        return 1;
    /* A header longer than the buffer cannot hold a valid key: absent. */
    if (lws_hdr_copy(wsi, authz, sizeof authz, WSI_TOKEN_HTTP_AUTHORIZATION) <= 0)
        authz[0] = 0;
    if (!ws || lws_hdr_copy(wsi, protos, sizeof protos, WSI_TOKEN_PROTOCOL) <= 0)
        protos[0] = 0;
    return sotto__auth_has_key(authz, protos, g->c->api_key);
}

/* The 401 answer, as JSON (OpenAI's error shape, which the other clients
 * read as a plain error).  In the HTTP callback: headers now, body when
 * writeable.  In CONFIRM_UPGRADE: all of it now. */
static int unauthorized(struct lws *wsi, gw_pss *pss, int now)
{
    static const char body[] =
        "{\"error\":{\"message\":\"missing or wrong API key (Authorization: Bearer)\","
        "\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}\n";
    unsigned char hdr[LWS_PRE + 512 + sizeof body], *start = hdr + LWS_PRE, *p = start,
                  *end = hdr + sizeof hdr - 1;
    size_t n = sizeof body - 1;

    sotto__log(SOTTO_LOG_WARN, 0, "request without a valid API key refused (401)");
    if (lws_add_http_common_headers(wsi, 401, "application/json", (lws_filepos_t)n, &p,
                                    end) ||
        http_header(wsi, "www-authenticate:", "Bearer", &p, end) ||
        http_header(wsi, "connection:", "close", &p, end))
        return -1;
    /* Before a WebSocket upgrade libwebsockets has not recorded the
     * request's HTTP version yet and writes "HTTP/1.0"; the upgrade was
     * HTTP/1.1 (RFC 6455 requires it), and strict clients refuse a 1.0
     * answer to it. */
    if (now && p - start > 8 && memcmp(start, "HTTP/1.0", 8) == 0)
        start[7] = '1';
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (now) {
        memcpy(start, body, n);
        return lws_write(wsi, start, n, LWS_WRITE_HTTP_FINAL) < (int)n ? -1 : 1;
    }
    if ((pss->body = malloc(LWS_PRE + n)) == NULL)
        return -1;
    memcpy(pss->body + LWS_PRE, body, n);
    pss->body_len = n;
    pss->close_after = 1;
    lws_callback_on_writable(wsi);
    return 0;
}

/* ---- the "sotto" protocol callback (HTTP and WebSocket) ----------------- */

/* The protocol of a WebSocket upgrade: by its port, else by its path;
 * NULL for none. */
static const gw_dialect *dialect_of(sotto__gateway *g, struct lws *wsi)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    char uri[128], intent[32];

    if (vh != NULL && vh == g->vh_vosk)
        return &sotto__gw_vosk;
    if (vh != NULL && vh == g->vh_wl)
        return &sotto__gw_whisperlive;
    if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0)
        return NULL;
    if (strcmp(uri, "/v1/stream") == 0)
        return &sotto__gw_native;
    if (strcmp(uri, "/vosk") == 0)
        return &sotto__gw_vosk;
    if (strcmp(uri, "/whisperlive") == 0)
        return &sotto__gw_whisperlive;
    if (strcmp(uri, "/v1/realtime") == 0) {
        /* Only transcription sessions: a conversation needs a language
         * model sotto does not have. */
        if (!sotto__rt_intent_ok(lws_get_urlarg_by_name(wsi, "intent=", intent,
                                                        sizeof intent)))
            return NULL;
        return &sotto__gw_realtime;
    }
    return NULL;
}

/* The close of a refused WebSocket: 1001 while draining, else 1013 (try
 * again later). */
static void close_refused(struct lws *wsi, gw_pss *pss, const char *why)
{
    ws_close_soon(wsi, pss, strcmp(why, "draining") == 0 ? LWS_CLOSE_STATUS_GOINGAWAY : 1013,
                  why);
}

/* A refusal message is rendered (refusal_len 0: the dialect has none to
 * send): it goes out when the socket is writable, then the close; or the
 * close comes at once. */
static void refusal_rendered(struct lws *wsi, gw_pss *pss)
{
    if (pss->refusal_len > 0)
        lws_callback_on_writable(wsi);
    else
        close_refused(wsi, pss, pss->refused_why);
}

/* A WebSocket the gateway cannot take: each dialect says "busy" its own
 * way (a message, then the close), or just closes with 1013 / 1001.
 *
 * Either way the connection is closed with the closing handshake
 * (ws_close_soon), so that a client already streaming audio still gets
 * the code that says "try again". */
static int refuse(struct lws *wsi, sotto__gateway *g, gw_pss *pss, const gw_dialect *dl,
                  const char *why)
{
    sotto__gw_count_refusal(g, dl->proto, why);
    sotto__log(SOTTO_LOG_WARN, 0, "stream refused (%s): %s", dl->name, why);
    pss->st = NULL;
    pss->refused_dl = dl;
    pss->refused_why = why;
    if (dl->refusal == NULL) {
        close_refused(wsi, pss, why);
        return 0;
    }
    if (dl->refuse_after_first) {
        /* Wait a little for the first message (its uid). */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, 5);
        return 0;
    }
    pss->refusal_len = dl->refusal(pss->refusal + LWS_PRE, GW_MAX_REFUSAL, why, NULL, 0);
    refusal_rendered(wsi, pss);
    return 0;
}

static int cb_sotto(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                    void *in, size_t len)
{
    sotto__gateway *g = gw_of(wsi);
    gw_pss *pss = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        /* /health answers anyone (a load balancer has no key), and so does
         * the page, which is static and holds nothing; its WebSocket does
         * need the key. */
        if (!authorized(g, wsi, 0) && strcmp(in, "/health") != 0 && strcmp(in, "/") != 0 &&
            strcmp(in, "/index.html") != 0)
            return unauthorized(wsi, pss, 0);
        if (sotto__gw_rest_request(wsi, g, &pss->job, (const char *)in,
                                   lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0))
            return 0;
        return http_request(wsi, g, pss, (const char *)in);
    case LWS_CALLBACK_HTTP_BODY:
        if (pss != NULL && pss->job != NULL)
            return sotto__gw_rest_body(wsi, g, pss->job, in, len);
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (pss != NULL && pss->job != NULL)
            return sotto__gw_rest_body_done(wsi, g, pss->job);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (pss != NULL && pss->job != NULL)
            return sotto__gw_rest_writeable(wsi, g, pss->job);
        if (pss == NULL || pss->body == NULL)
            return 0;
        if (lws_write(wsi, (unsigned char *)pss->body + LWS_PRE, pss->body_len,
                      LWS_WRITE_HTTP_FINAL) < (int)pss->body_len) {
            free(pss->body);
            pss->body = NULL;
            return -1;
        }
        free(pss->body);
        pss->body = NULL;
        if (pss->close_after)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return authorized(g, wsi, 1) ? 0 : unauthorized(wsi, pss, 1);
    case LWS_CALLBACK_CLOSED_HTTP:
        if (pss != NULL) {
            free(pss->body);
            pss->body = NULL;
            sotto__gw_rest_closed(g, pss->job);
            pss->job = NULL;
        }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (dialect_of(g, wsi) == NULL) {
            sotto__log(SOTTO_LOG_INFO, 0, "WebSocket upgrade for an unknown path refused");
            return 1;
        }
        return 0;
    case LWS_CALLBACK_ESTABLISHED: {
        const gw_dialect *dl = dialect_of(g, wsi);
        const char *why;
        if (dl == NULL)
            return -1;
        if (!sotto__gw_admit(g, &why))
            return refuse(wsi, g, pss, dl, why);
        pss->st = sotto__gw_stream_new(g, GW_WS, wsi, dl);
        if (pss->st == NULL)
            return -1;
        sotto__log(SOTTO_LOG_INFO, pss->st->id, "WebSocket stream opened (%s)", dl->name);
        if (dl->opened != NULL)
            dl->opened(g, pss->st);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        /* After the gateway's close, what the client sends is dropped
         * until its own close arrives. */
        if (pss->close_state != GW_OPEN)
            return 0;
        if (pss->st == NULL) {
            /* A refused WhisperLive client: its uid is in its first
             * message, and the refusal must echo it. */
            if (pss->refused_dl != NULL && pss->refused_dl->refuse_after_first &&
                pss->refusal_len == 0) {
                pss->refusal_len = pss->refused_dl->refusal(pss->refusal + LWS_PRE,
                                                            GW_MAX_REFUSAL, pss->refused_why,
                                                            in, len);
                refusal_rendered(wsi, pss);
                return 0;
            }
            /* A refused client's audio until its refusal goes out: dropped
             * (it never had a stream to go to). */
            return pss->refused_dl != NULL ? 0 : -1;
        }
        return ws_receive(wsi, g, pss, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (pss->close_state == GW_CLOSE_SENT)
            return 0;
        if (pss->close_state == GW_CLOSE_DUE)
            return ws_close_send(wsi, g, pss);
        if (pss->st == NULL) {
            if (pss->refused_dl == NULL)
                return -1;
            /* Nothing rendered yet: a WhisperLive client's first message
             * has not come. */
            if (pss->refusal_len == 0)
                return 0;
            /* The dialect's refusal message, then (next time) the close. */
            lws_write(wsi, (unsigned char *)pss->refusal + LWS_PRE, pss->refusal_len,
                      LWS_WRITE_TEXT);
            pss->refusal_len = 0;
            close_refused(wsi, pss, pss->refused_why);
            return 0;
        }
        return ws_writeable(wsi, g, pss);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* The client's answer to the gateway's close: the handshake is
         * done, and the connection can go. */
        if (pss->close_state == GW_CLOSE_SENT)
            return -1;
        if (pss->st != NULL)
            sotto__log(SOTTO_LOG_INFO, pss->st->id, "client closed the WebSocket");
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (pss->close_state == GW_CLOSE_SENT) {
            pss->close_state = GW_OPEN;
            g->n_ws_closing--;
        }
        if (pss->st != NULL) {
            sotto__gw_client_gone(g, pss->st);
            pss->st = NULL;
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- raw TCP (whisper_streaming, Wyoming) ------------------------------- */

/* Counts and logs a raw TCP connection closed for want of descriptors. */
static void refuse_no_fd(sotto__gateway *g, const gw_dialect *dl, const char *why)
{
    sotto__gw_count_refusal(g, dl != NULL ? dl->proto : GW_PROTO_TCP, "fd_limit");
    sotto__log(SOTTO_LOG_WARN, 0, "%s connection refused: %s (file descriptors, ulimit -n)",
               dl != NULL ? dl->name : "tcp", why);
}

void sotto__gw_tcp_accept(sotto__gateway *g, int listen_fd, const gw_dialect *dl)
{
    for (int k = 0; k < 16; k++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        int fd = accept4(listen_fd, (struct sockaddr *)&peer, &peer_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        int one = 1, idle = 30, intvl = 10, cnt = 3;
        char host[NI_MAXHOST], port[NI_MAXSERV];
        const char *why;
        lws_sock_file_fd_type u;
        struct lws *wsi;
        gw_stream *s;

        if (fd < 0 && (errno == EMFILE || errno == ENFILE) && g->spare_fd >= 0) {
            /* Out of descriptors: the connection would stay in the backlog
             * and the listener readable, the loop spinning on it.  Give
             * up the spare one to accept it and close it at once (the
             * client sees the connection end), then take the spare back. */
            close(g->spare_fd);
            fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                close(fd);
            g->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                return;
            refuse_no_fd(g, dl, "out of file descriptors");
            continue;
        }
        if (fd < 0)
            return;
        if (!sotto__gw_admit(g, &why)) {
            sotto__gw_count_refusal(g, dl != NULL ? dl->proto : GW_PROTO_TCP, why);
            sotto__log(SOTTO_LOG_WARN, 0, "%s stream refused: %s", dl ? dl->name : "tcp", why);
            if (dl != NULL && dl->refusal != NULL) {
                /* A small message to a fresh socket: it fits the send
                 * buffer, or the client does not get it. */
                char msg[GW_MAX_REFUSAL];
                size_t n = dl->refusal(msg, sizeof msg, why, NULL, 0);
                if (n > 0 && send(fd, msg, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                    sotto__log(SOTTO_LOG_DEBUG, 0, "refusal not sent: %s", strerror(errno));
            }
            close(fd);
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
        u.filefd = fd;
        wsi = lws_adopt_descriptor_vhost(g->vh_http, LWS_ADOPT_RAW_FILE_DESC, u,
                                         "sotto-tcp", NULL);
        if (wsi == NULL) {
            /* libwebsockets closes a descriptor it fails to adopt on some
             * paths but not when its table is full ("no space for new
             * conn", the descriptor limit): close it if it is still open
             * (nothing else opens one in between: one thread). */
            if (fcntl(fd, F_GETFD) != -1)
                close(fd);
            refuse_no_fd(g, dl, "no room for another connection");
            continue;
        }
        if ((s = sotto__gw_stream_new(g, GW_TCP, wsi, dl)) == NULL) {
            lws_set_timeout(wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
            continue;
        }
        /* whisper_streaming's clients send audio from the first byte;
         * Wyoming's say what it is first. */
        s->configured = dl == NULL;
        lws_set_opaque_user_data(wsi, s);
        /* The peer's address and port tie the stream to its client in
         * the log (raw TCP has no stream id on the wire). */
        if (getnameinfo((struct sockaddr *)&peer, peer_len, host, sizeof host, port,
                        sizeof port, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
            snprintf(host, sizeof host, "?"), snprintf(port, sizeof port, "?");
        sotto__log(SOTTO_LOG_INFO, s->id, "%s stream opened (from %s port %s)",
                   dl ? dl->name : "tcp", host, port);
        if (dl != NULL && dl->opened != NULL)
            dl->opened(g, s);
    }
}

static int tcp_rx(struct lws *wsi, sotto__gateway *g, gw_stream *s)
{
    unsigned char buf[SOTTO__GW_TCP_READ];
    int fd = lws_get_socket_fd(wsi);
    ssize_t n = recv(fd, buf, sizeof buf, 0);

    if (n > 0) {
        if (s->dl != NULL)
            s->dl->binary(g, s, buf, (size_t)n);   /* its framing */
        else if (!s->finishing)
            sotto__gw_audio(g, s, buf, (size_t)n);
        return 0;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n == 0) {
        /* EOF or half-close: flush, write the last lines, then close.  Stop
         * watching input (EOF stays readable); a reset will show up as a
         * failed write. */
        if (!s->eof) {
            sotto__log(SOTTO_LOG_INFO, s->id, "client finished sending");
            s->eof = 1;
            sotto__gw_finish(g, s, 1000, "");
        }
        s->paused = 1;
        lws_rx_flow_control(wsi, 0);
        return 0;
    }
    sotto__log(SOTTO_LOG_INFO, s->id, "tcp client error: %s", strerror(errno));
    return -1;
}

static int tcp_writeable(struct lws *wsi, sotto__gateway *g, gw_stream *s)
{
    int fd = lws_get_socket_fd(wsi);

    if (s->tcp_out_n > 0) {
        ssize_t n = send(fd, s->tcp_out, s->tcp_out_n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (n > 0) {
            memmove(s->tcp_out, s->tcp_out + n, s->tcp_out_n - (size_t)n);
            s->tcp_out_n -= (size_t)n;
        }
        if (s->tcp_out_n > g->c->max_outbound) {
            sotto__log(SOTTO_LOG_WARN, s->id, "tcp client does not read; disconnecting it");
            g->m.slow_reader_drops++;
            return -1;
        }
        if (s->tcp_out_n > 0 || s->done)
            sotto__gw_rearm(g);
        return 0;
    }
    if (s->done) {
        shutdown(fd, SHUT_WR);
        return -1;
    }
    return 0;
}

static int cb_tcp(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                  void *in, size_t len)
{
    sotto__gateway *g = gw_of(wsi);
    gw_stream *s = lws_get_opaque_user_data(wsi);

    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        if (wsi == g->tcp_listen_wsi) {
            sotto__gw_tcp_accept(g, g->tcp_listen_fd, NULL);
            return 0;
        }
        if (wsi == g->wy_listen_wsi) {
            sotto__gw_tcp_accept(g, g->wy_listen_fd, &sotto__gw_wyoming);
            return 0;
        }
        return s != NULL ? tcp_rx(wsi, g, s) : -1;
    case LWS_CALLBACK_RAW_WRITEABLE_FILE:
        return s != NULL ? tcp_writeable(wsi, g, s) : 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (s != NULL) {
            lws_set_opaque_user_data(wsi, NULL);
            sotto__gw_client_gone(g, s);
        }
        return 0;
    default:
        break;
    }
    return 0;
}

const struct lws_protocols sotto__gw_protocols[] = {
    { "sotto", cb_sotto, sizeof(gw_pss), 65536, 0, NULL, 0 },
    { "sotto-tcp", cb_tcp, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};
