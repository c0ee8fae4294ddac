/*
 * gateway.h - the gateway's state, shared by its files (internal).
 *
 * gateway.c      the event loop, worker channels, streams, recovery,
 *                the watchdog and the drain;
 * gateway_net.c  the client protocols: WebSocket (/v1/stream), raw TCP,
 *                the HTTP operations endpoints (/health, /ready,
 *                /metrics) and the live captions page (/);
 * gateway_dialect.c  the other servers' WebSocket protocols (vosk,
 *                WhisperLive, OpenAI Realtime), each a gw_dialect, on
 *                their paths and (vosk, WhisperLive) their own ports;
 * dialect.c      the parsers of those protocols' client messages;
 * gateway_rest.c the OpenAI REST endpoint (POST /v1/audio/transcriptions,
 *                GET /v1/models): uploads become jobs run by a worker;
 * web.c          the page's bytes, built in from src/server/web/index.html.
 *
 * Everything here is touched by the gateway's one thread only.
 *
 * A stream's life: a client connects (WS upgrade or TCP accept) and a
 * gw_stream is made; it is assigned to the least-loaded ready worker,
 * which gets OPEN and then every audio chunk.  The gateway keeps each
 * chunk in the stream's replay list until the worker's ACKs say the stream
 * no longer needs it (retained_from), and keeps the committed words.  If
 * the worker dies, the stream is assigned again and the replay list is sent
 * to the new worker after an OPEN that carries the committed text, so the
 * client sees a warning and then the transcript it would have got.
 */
#ifndef SOTTO_SERVER_GATEWAY_H
#define SOTTO_SERVER_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <libwebsockets.h>

#include "sotto.h"
#include "server/ipc.h"
#include "server/server.h"

/* Committed words kept per stream to resume it: every committed word
 * inside the audio a replay sends again must be among them, or the resumed
 * stream would hear that audio with its text in the prompt instead of in
 * its committed words, which makes tiny.en loop and lose the rest of the
 * utterance.  The replayed audio is at most the stream's buffer
 * (SOTTO__STREAM_MAX_BUFFER_S, 28 s) and a margin; 256 words cover it at
 * over 9 words a second.  Words that end before the replay would start
 * are dropped as the ACKs move it on (resume_add).  Equal to the stream
 * API's SOTTO_MAX_RESUME_WORDS. */
#define SOTTO__GW_RESUME_WORDS SOTTO_MAX_RESUME_WORDS
/* Committed text kept per stream for the resumed stream's prompt: the
 * text of the resume words (up to 256 of them) and, before it, the tail
 * that becomes the prompt (Whisper's prompt holds at most 224 tokens).  It also holds
 * a client's prompt whole, up to SOTTO__DIALECT_MAX_PROMPT (dialect.h;
 * checked in gateway_dialect.c). */
#define SOTTO__GW_COMMITTED_BYTES 4096
/* Bytes of an HTTP request's headers (the request line included) that
 * libwebsockets holds: a request with more is dropped without a reply.
 * The library's default, named here so that it is a limit of ours. */
#define SOTTO__GW_MAX_HEADER_DATA 4096
/* Bytes read from a raw TCP client at a time (one chunk). */
#define SOTTO__GW_TCP_READ 32000
/* Longest event the gateway forwards to a client. */
#define SOTTO__GW_MAX_EVENT (64u * 1024)
/* A stream in inference when its worker died this many times is ended
 * with an error instead of being replayed again: its audio is what kills
 * the workers (a decoder crash, say), and replaying it would take the
 * others down too, and trip the crash-loop breaker for every client. */
#define SOTTO__GW_MAX_STREAM_CRASHES 2
/* Seconds of audio kept before the stream's retained_from (see on_ack). */
#define SOTTO__GW_REPLAY_MARGIN 0.1
/* Descriptors the gateway keeps out of libwebsockets' reach: its table of
 * connections holds the fd limit less these, so that accepting stops
 * (connections wait in the listen backlog) before the process runs out,
 * while files, pipes and the crash file still open. */
#define SOTTO__GW_FD_RESERVE 32
/* A worker's outbound queue larger than this is freed once drained: a
 * backlog (a slow worker, a burst of uploads) should not keep its peak
 * allocation for the life of the gateway. */
#define SOTTO__GW_KEEP_OUT (256u * 1024)
/* Period of the watchdog and flow-control tick. */
#define SOTTO__GW_TICK_US 100000

enum gw_kind { GW_WS = 1, GW_TCP = 2 };
/* The protocols, for /metrics' protocol label. */
enum gw_proto {
    GW_PROTO_NATIVE = 0, GW_PROTO_TCP, GW_PROTO_VOSK, GW_PROTO_WHISPERLIVE,
    GW_PROTO_REALTIME, GW_PROTO_WYOMING, GW_PROTO_REST, GW_N_PROTO
};
enum gw_format { GW_S16 = 1, GW_F32 = 2, GW_OPUS = 3 };
enum gw_cut { GW_CUT_FLUSH = 1, GW_CUT_CLEAR = 2 };

/* One audio chunk as the client sent it, kept until no stream needs it. */
typedef struct gw_chunk {
    struct gw_chunk *next;
    uint32_t seq;
    double arrived;           /* sotto__now() when it came in */
    double end_time;          /* stream time at its end (from the ACK);
                               * < 0 until acknowledged */
    int cut;                  /* the client ended the utterance after this
                               * chunk: 0 no, GW_CUT_FLUSH, GW_CUT_CLEAR
                               * (replayed as a CUT after it) */
    size_t len;
    unsigned char data[];
} gw_chunk;

/* One message queued to a client, with LWS_PRE bytes of headroom. */
typedef struct gw_out {
    struct gw_out *next;
    int partial;              /* may be shed under pressure */
    size_t len;
    unsigned char buf[];      /* [LWS_PRE + len] */
} gw_out;

typedef struct gw_word {
    double start, end;
    float probability;
    char text[64];
} gw_word;

struct gw_dialect;
typedef struct sotto__gateway sotto__gateway;

typedef struct gw_stream {
    struct gw_stream *next;   /* in gw->streams */
    uint32_t id;
    int kind;                 /* enum gw_kind */
    int proto;                /* enum gw_proto */
    const struct gw_dialect *dl;  /* the protocol spoken; NULL for the
                                   * whisper_streaming TCP one */
    void *dx;                 /* the dialect's state (dl->dx_free frees) */
    struct lws *wsi;          /* the client; NULL once it is gone */

    /* Configuration (WS: from the client's config message). */
    int format;               /* enum gw_format */
    int rate;
    int vad, partials;
    char language[16];
    int configured;           /* audio or config received: no more config */

    /* Placement. */
    int worker;               /* slot, or -1 while waiting for one */
    int opened;               /* OPEN sent to that worker */
    int recoveries;
    int crashes;              /* deaths of its worker while it was in
                               * inference (SOTTO__GW_MAX_STREAM_CRASHES) */

    /* Input. */
    double started;           /* sotto__now() at connect */
    double last_rx;
    double audio_in;          /* seconds of audio received */
    uint64_t bytes_in;
    unsigned char carry[4];   /* a partial sample awaiting its rest */
    int carry_n;
    int finishing;            /* FINISH due (client asked, EOF, limit) */
    int finish_sent;          /* FINISH sent to the current worker */
    int paused;               /* reading from the client is paused */
    int eof;                  /* TCP: the client sent EOF; never read again */
    int dropped;              /* TCP: disconnected for not reading */
    int close_code;           /* WS close code to send at the end */
    char close_reason[96];

    /* The replay list: chunks not yet known to be unneeded. */
    gw_chunk *head, *tail;
    uint32_t next_seq;        /* seq of the next chunk (from 1) */
    uint32_t acked;           /* last acknowledged seq */
    double base_time;         /* stream time at the first kept chunk */
    size_t pending_bytes;     /* bytes of unacknowledged chunks */

    /* Commit state, for a resume. */
    int utterance;            /* the open (or next) utterance */
    int ended_utt;            /* last utterance whose end was sent; -1 */
    double ended_end;         /* its end, stream time */
    char committed[SOTTO__GW_COMMITTED_BYTES + 1];
    size_t committed_n;
    gw_word resume[SOTTO__GW_RESUME_WORDS];
    int n_resume;
    double last_line_end;     /* TCP: end of the last line sent, ms */

    /* Output. */
    gw_out *out_head, *out_tail;
    size_t out_bytes;
    uint64_t seq_out;
    unsigned char *tcp_out;   /* TCP: bytes waiting to be written */
    size_t tcp_out_n, tcp_out_cap;
    int done;                 /* the worker closed it: close the client
                               * once the queue is written */

    /* WS receive: the message being assembled. */
    unsigned char *rx;
    size_t rx_n, rx_cap;
    int rx_binary, rx_over;
} gw_stream;

/*
 * A WebSocket protocol: how a client's messages become stream operations
 * and how the worker's events (the native JSON events, ipc.h) become the
 * client's messages.  Every dialect shares the rest: placement, replay
 * after a worker death, limits, the drain, and the metrics.
 */
typedef struct gw_dialect {
    const char *name;         /* "native", "vosk" ... (logs, /metrics) */
    int proto;                /* enum gw_proto */
    /* The connection is up and admitted: the greeting, if any. */
    void (*opened)(sotto__gateway *g, gw_stream *s);
    /* A whole text or binary message from the client. */
    void (*text)(sotto__gateway *g, gw_stream *s, const char *t, size_t len);
    void (*binary)(sotto__gateway *g, gw_stream *s, const unsigned char *p,
                   size_t len);
    /* A worker event, after the gateway's own bookkeeping. */
    void (*event)(sotto__gateway *g, gw_stream *s, cJSON *ev);
    /* The worker took the chunks up to seq, and sent their events first
     * (NULL: not needed). */
    void (*acked)(sotto__gateway *g, gw_stream *s, uint32_t seq);
    /* A CUT the client asked for is done, its events sent (NULL ok). */
    void (*cut_done)(sotto__gateway *g, gw_stream *s);
    /* The stream ended in the worker ("finished", "error" ...): the last
     * messages before the close (NULL ok). */
    void (*closing)(sotto__gateway *g, gw_stream *s, const char *reason);
    /* Tell the client that its worker died and the stream is being
     * replayed (code "worker_restart"); NULL: the dialect has no way to
     * say it unasked, and only the log does. */
    void (*warning)(sotto__gateway *g, gw_stream *s, const char *code,
                    const char *message);
    /* Tell the client that something it did failed; the stream goes on
     * unless the caller closes it. */
    void (*error)(sotto__gateway *g, gw_stream *s, const char *code,
                  const char *message);
    /* A refusal before any stream exists (capacity, draining): renders
     * the message to send before closing into buf, or returns 0 to close
     * at once.  first is the client's first message when the dialect
     * waits for it (refuse_after_first), else NULL. */
    size_t (*refusal)(char *buf, size_t cap, const char *why, const char *first,
                      size_t first_len);
    int refuse_after_first;   /* WhisperLive: its refusal echoes the uid */
    int text_audio;           /* audio comes base64 in text messages, so
                               * these may be as long as max-frame's
                               * base64 (Realtime) */
    void (*dx_free)(void *dx);
} gw_dialect;

extern const gw_dialect sotto__gw_native, sotto__gw_vosk, sotto__gw_whisperlive,
                        sotto__gw_realtime, sotto__gw_wyoming;

/* Streams named in a worker's crash record. */
#define SOTTO__GW_CRASH_STREAMS 16

typedef struct gw_worker {
    int slot;
    int pid, generation;
    struct lws *wsi;          /* the channel, NULL when down */
    int fd;
    sotto__ipc_reader rd;
    unsigned char *out;       /* bytes waiting to be written */
    size_t out_n, out_cap;
    int ready;
    double up_at, last_beat;
    uint32_t busy_stream, busy_ms;
    int n_streams;
    int n_jobs;               /* REST jobs placed on it */
    int killed;               /* the watchdog sent SIGKILL */
    /* What the worker held when the gateway lost it, for the crash record
     * written once the supervisor reports how it died. */
    int lost_pid;
    int n_lost;
    uint32_t lost_streams[SOTTO__GW_CRASH_STREAMS];
    uint32_t lost_busy;
    char lost_why[96];
} gw_worker;

/* Histogram buckets (upper bounds in seconds, in gateway_net.c). */
#define SOTTO__GW_HIST_BUCKETS 12
extern const double sotto__gw_commit_bounds[SOTTO__GW_HIST_BUCKETS];
extern const double sotto__gw_infer_bounds[SOTTO__GW_HIST_BUCKETS];

typedef struct gw_metrics {
    uint64_t streams_total, rejected_capacity, rejected_other;
    uint64_t worker_deaths, worker_restarts, watchdog_kills;
    uint64_t deaths_by_signal[65];
    uint64_t recoveries, decode_errors, bytes_in, bytes_out;
    uint64_t events_out, partials_shed, slow_reader_drops;
    double audio_seconds, compute_seconds;
    uint64_t infer_hist[SOTTO__GW_HIST_BUCKETS], infer_count;
    double infer_sum;
    uint64_t commit_hist[SOTTO__GW_HIST_BUCKETS], commit_count;
    double commit_sum;
    uint64_t proto_streams[GW_N_PROTO], proto_rejected[GW_N_PROTO];
} gw_metrics;

struct sotto__gateway {
    const sotto__serve_config *c;
    struct lws_context *ctx;
    struct lws_vhost *vh_http, *vh_raw;
    struct lws_vhost *vh_vosk, *vh_wl;   /* the dialects' own ports */
    int http_port, tcp_port, vosk_port, wl_port;
    int tcp_listen_fd, wy_listen_fd;
    int spare_fd;             /* /dev/null, given up to accept and close a
                               * raw TCP connection when out of fds */
    unsigned fd_limit;        /* descriptors libwebsockets may use
                               * (fd_limit_per_thread); 0 = its default */
    int n_fds;                /* descriptors open, counted each second */
    int fds_full;             /* warned that accepting has stopped */
    double fds_checked;       /* when n_fds was counted */
    struct lws *tcp_listen_wsi, *wy_listen_wsi;
    int wy_port;
    /* From the workers' READY: what /info-style answers describe. */
    int multilingual;
    int ctl, life;
    gw_worker workers[SOTTO__SERVE_MAX_WORKERS];
    int n_workers;
    gw_stream *streams;
    int n_streams;            /* client streams (admission counts these) */
    struct gw_job *jobs;      /* REST transcriptions (gateway_rest.c) */
    int n_jobs;               /* admission counts these too */
    int n_ws_closing;         /* WebSockets whose close frame is sent and
                               * whose client has not answered yet: a
                               * drain waits for them (gateway_net.c) */
    uint32_t next_id;
    int ever_ready;
    int draining;
    double drain_deadline;
    int quit, exit_code;
    char sup_reason[96];      /* from the supervisor: "crash_loop" ... */
    lws_sorted_usec_list_t tick;
    lws_sorted_usec_list_t rearm;  /* re-requests POLLOUT, see gateway.c */
    int rearm_due;
    int busy;                 /* streams or jobs since the last idle trim */
    gw_metrics m;
};

/* gateway.c: used by gateway_net.c. */
/* Appends len bytes to a growable buffer; 0, or -1 when out of memory. */
int sotto__gw_buf_add(unsigned char **b, size_t *n, size_t *cap, const void *d,
                      size_t len);
gw_stream *sotto__gw_stream_new(sotto__gateway *g, int kind, struct lws *wsi,
                                const gw_dialect *dl);
/* The client is gone: forget the stream (the worker is told to drop it). */
void sotto__gw_client_gone(sotto__gateway *g, gw_stream *s);
/* A number field of a worker's event; dflt when it is missing, not a
 * number, or not finite. */
double sotto__gw_event_num(const cJSON *o, const char *k, double dflt);
/* A whole-number field of a worker's event: a value outside int (a broken
 * or compromised worker could send 1e300) or no number gives dflt, since
 * converting it to int would be undefined behaviour. */
int sotto__gw_event_int(const cJSON *o, const char *k, int dflt);
/* Handles one complete message from worker w (its channel's reader, and
 * the gateway's tests); -1 on a protocol violation. */
int sotto__gw_worker_message(sotto__gateway *g, gw_worker *w, const sotto__ipc_hdr *h,
                             const unsigned char *p);
/* Audio bytes from the client. */
void sotto__gw_audio(sotto__gateway *g, gw_stream *s, const void *data,
                     size_t len);
/* Makes text the stream's prompt (a client's initial prompt): the text
 * "before" the stream, as the committed text is on a resume. */
void sotto__gw_set_prompt(gw_stream *s, const char *text);
/* Ends the current utterance after the audio received so far (a
 * client's commit, reset or clear; enum gw_cut) and goes on. */
void sotto__gw_cut(sotto__gateway *g, gw_stream *s, int how);
/* End of input: flush, then close with code/reason (WS). */
void sotto__gw_finish(sotto__gateway *g, gw_stream *s, int code,
                      const char *reason);
/* Queues a JSON event text (WS) for the client. */
void sotto__gw_send_json(sotto__gateway *g, gw_stream *s, const char *json,
                         size_t len, int partial);
/* The same for a cJSON object, which it deletes. */
void sotto__gw_send_cjson(sotto__gateway *g, gw_stream *s, cJSON *o, int partial);
/* Queues one message to a worker channel.  0, or -1 when it is down. */
int sotto__gw_worker_send(sotto__gateway *g, gw_worker *w, int type, uint32_t stream,
                          uint32_t seq, const void *payload, size_t len);
/* Number of ready, live workers that are not stuck. */
int sotto__gw_workers_healthy(const sotto__gateway *g);
/* Whether a new stream may be admitted; reason gets why not. */
int sotto__gw_admit(const sotto__gateway *g, const char **reason);
/* Counts a refusal (why from sotto__gw_admit) in /metrics. */
void sotto__gw_count_refusal(sotto__gateway *g, int proto, const char *why);
/* The words every protocol uses for a refusal: a short code
 * ("server_busy", "server_shutting_down", "no_worker") and a sentence. */
const char *sotto__gw_refusal_code(const char *why);
const char *sotto__gw_refusal_text(const char *why);

/* gateway_net.c */
extern const struct lws_protocols sotto__gw_protocols[];
/* Adopts the clients waiting on a raw TCP listener: whisper_streaming's
 * (dl NULL) or Wyoming's. */
void sotto__gw_tcp_accept(sotto__gateway *g, int listen_fd, const gw_dialect *dl);
/* Queues bytes to a TCP client. */
void sotto__gw_tcp_send(sotto__gateway *g, gw_stream *s, const void *p, size_t n);
/* Asks for another writeable callback on a raw descriptor from inside its
 * writeable callback (see sotto__gw_rearm in gateway.c). */
void sotto__gw_rearm(sotto__gateway *g);
/* Asks lws for a writeable callback on the client. */
void sotto__gw_want_write(gw_stream *s);
/* Renders /metrics into buf; returns the length. */
size_t sotto__gw_metrics_render(const sotto__gateway *g, char *buf, size_t cap);

/* gateway_rest.c */
/* An HTTP request for path: 1 if it is the REST endpoint's (then it
 * handled it: a response is under way), 0 if not. */
int sotto__gw_rest_request(struct lws *wsi, sotto__gateway *g, void **slot,
                           const char *path, int post);
/* Body bytes, the end of the body, a writeable callback, and the end of
 * the connection, for a request sotto__gw_rest_request took. */
int sotto__gw_rest_body(struct lws *wsi, sotto__gateway *g, void *job, const void *in,
                        size_t len);
int sotto__gw_rest_body_done(struct lws *wsi, sotto__gateway *g, void *job);
int sotto__gw_rest_writeable(struct lws *wsi, sotto__gateway *g, void *job);
void sotto__gw_rest_closed(sotto__gateway *g, void *job);
/* Places waiting jobs on free workers. */
void sotto__gw_jobs_assign(sotto__gateway *g);
/* Worker slot died, with job or stream busy (0: none) in inference: its
 * jobs run again elsewhere; the busy one fails after its
 * SOTTO__GW_MAX_STREAM_CRASHES-th such death. */
void sotto__gw_jobs_worker_lost(sotto__gateway *g, int slot, uint32_t busy);
/* JOB_SEGMENTS or JOB_DONE from worker w. */
void sotto__gw_job_message(sotto__gateway *g, gw_worker *w, const sotto__ipc_hdr *h,
                           const unsigned char *p);
/* Frees every job (the gateway is exiting). */
void sotto__gw_jobs_free(sotto__gateway *g);

/* web.c */
/* The live captions page (src/server/web/index.html as it was at build
 * time): its bytes, static and not NUL-terminated; len gets their number. */
const unsigned char *sotto__web_index(size_t *len);

#endif
