/*
 * test_gateway.c - the gateway's limits on what it sends and keeps per
 * stream (src/server/gateway_net.c, gateway_dialect.c), driven in process:
 * a real gateway state around a libwebsockets context that never listens,
 * one ready worker and one client connection, both socketpairs that are
 * never serviced.  A test opens a stream in a dialect, hands it the worker
 * events a worker would send (through the dialect's own event callback,
 * as the gateway does after its bookkeeping), and reads the messages the
 * gateway queued for the client.  These are the limits a client only
 * meets with hours of speech or a reader that stops reading, which the
 * end-to-end tests cannot reach in reasonable time:
 *
 *  - SOTTO__GW_MAX_EVENT: an event over 64 KiB is not sent;
 *  - --max-outbound: a newer partial replaces a queued one, partials are
 *    shed, and finals past the limit disconnect the reader with 1008;
 *  - GW_DIALECT_MAX_WORDS: vosk results and WhisperLive segments are cut
 *    at 500 words;
 *  - GW_VOSK_MAX_QUEUED: the 17th unanswered vosk result sends the oldest;
 *  - GW_DIALECT_MAX_PARTIAL: a partial is kept to 8192 bytes;
 *  - GW_RT_MAX_TRANSCRIPT: a Realtime "completed" transcript stops at
 *    60000 bytes while its deltas carry every word;
 *  - --max-ahead and --max-pending-audio: reading from the client pauses;
 *  - SOTTO__GW_RESUME_WORDS and SOTTO__GW_COMMITTED_BYTES: the replay
 *    state keeps the newest words and text.
 */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <libwebsockets.h>

#include "sotto.h"
#include "server/gateway.h"

static int cb_idle(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                   void *in, size_t len)
{
    return 0;
}

static const struct lws_protocols protocols[] = {
    { "test-raw", cb_idle, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

typedef struct harness {
    sotto__serve_config cfg;
    sotto__gateway gw;
    struct lws *client;
    int far[2];               /* the unserviced ends of the socketpairs */
} harness;

/* A raw connection on one end of a socketpair whose other end is kept
 * open and never read. */
static struct lws *pair(struct lws_vhost *vh, int *far)
{
    int sv[2];
    lws_sock_file_fd_type u;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return NULL;
    *far = sv[1];
    u.filefd = sv[0];
    return lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, u, "test-raw", NULL);
}

static int harness_init(harness *h)
{
    struct lws_context_creation_info info;
    struct lws_vhost *vh;

    memset(h, 0, sizeof *h);
    sotto__log_init("test", -1);
    lws_set_log_level(0, NULL);
    sotto__serve_config_defaults(&h->cfg);
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = &h->gw;
    if ((h->gw.ctx = lws_create_context(&info)) == NULL ||
        (vh = lws_get_vhost_by_name(h->gw.ctx, "default")) == NULL)
        return -1;
    h->gw.c = &h->cfg;
    h->gw.vh_http = h->gw.vh_raw = vh;
    h->gw.n_workers = 1;
    h->gw.workers[0].fd = -1;
    h->gw.workers[0].ready = 1;
    h->gw.workers[0].last_beat = 1e300;
    h->gw.ever_ready = 1;
    if ((h->gw.workers[0].wsi = pair(vh, &h->far[0])) == NULL ||
        (h->client = pair(vh, &h->far[1])) == NULL)
        return -1;
    return 0;
}

static void harness_free(harness *h)
{
    lws_context_destroy(h->gw.ctx);
    sotto__ipc_reader_free(&h->gw.workers[0].rd);
    free(h->gw.workers[0].out);
    close(h->far[0]);
    close(h->far[1]);
}

/* A stream of dialect dl, opened and configured as its client would, and
 * placed on the worker by its first sample of audio (which the worker
 * never acknowledges). */
static gw_stream *open_stream(harness *h, const gw_dialect *dl, const char *first)
{
    static const float sample = 0.0f;   /* one f32 sample, or two s16 ones */
    gw_stream *s = sotto__gw_stream_new(&h->gw, GW_WS, h->client, dl);

    if (s == NULL)
        return NULL;
    if (dl->opened != NULL)
        dl->opened(&h->gw, s);
    if (first != NULL)
        dl->text(&h->gw, s, first, strlen(first));
    sotto__gw_audio(&h->gw, s, &sample, sizeof sample);
    CHECK_INT_EQ(s->worker, 0);
    return s;
}

static void close_stream(harness *h, gw_stream *s)
{
    sotto__gw_client_gone(&h->gw, s);
    h->gw.workers[0].out_n = 0;
}

/* Drops what is queued for the client. */
static void drain(gw_stream *s)
{
    while (s->out_head != NULL) {
        gw_out *o = s->out_head;
        s->out_head = o->next;
        free(o);
    }
    s->out_tail = NULL;
    s->out_bytes = 0;
}

static int n_queued(const gw_stream *s)
{
    int n = 0;
    for (const gw_out *o = s->out_head; o != NULL; o = o->next)
        n++;
    return n;
}

/* The i-th queued message, parsed (NULL if there is none). */
static cJSON *queued(const gw_stream *s, int i)
{
    const gw_out *o = s->out_head;

    while (o != NULL && i-- > 0)
        o = o->next;
    return o != NULL ? cJSON_ParseWithLength((const char *)o->buf + LWS_PRE, o->len)
                     : NULL;
}

/* A worker event: type, utterance 0, and for finals n words "w<i>" of
 * text (or the given text when n is 0). */
static cJSON *event(const char *type, const char *text, int n_words)
{
    cJSON *ev = cJSON_CreateObject(), *words;

    cJSON_AddStringToObject(ev, "type", type);
    cJSON_AddNumberToObject(ev, "utterance", 0);
    cJSON_AddNumberToObject(ev, "start", 0.0);
    cJSON_AddNumberToObject(ev, "end", 1.0);
    if (text != NULL)
        cJSON_AddStringToObject(ev, "text", text);
    if (n_words > 0) {
        words = cJSON_AddArrayToObject(ev, "words");
        for (int i = 0; i < n_words; i++) {
            cJSON *w = cJSON_CreateObject();
            char t[32];
            snprintf(t, sizeof t, " w%d", i);
            cJSON_AddStringToObject(w, "text", t);
            cJSON_AddNumberToObject(w, "start", i * 0.1);
            cJSON_AddNumberToObject(w, "end", i * 0.1 + 0.1);
            cJSON_AddNumberToObject(w, "probability", 0.9);
            cJSON_AddItemToArray(words, w);
        }
    }
    return ev;
}

/* Hands ev to the gateway as its worker would send it: an EVENT message
 * on the channel, through the gateway's bookkeeping into the dialect. */
static void deliver(harness *h, gw_stream *s, cJSON *ev)
{
    char *t = cJSON_PrintUnformatted(ev);
    sotto__ipc_hdr hdr;

    memset(&hdr, 0, sizeof hdr);
    hdr.type = SOTTO__IPC_EVENT;
    hdr.stream = s->id;
    hdr.len = t != NULL ? (uint32_t)strlen(t) : 0;
    CHECK(s->worker == 0);
    CHECK_INT_EQ(sotto__gw_worker_message(&h->gw, &h->gw.workers[0], &hdr,
                                          (const unsigned char *)t), 0);
    free(t);
    cJSON_Delete(ev);
}

static char *repeat(char c, size_t n)
{
    char *t = malloc(n + 1);
    memset(t, c, n);
    t[n] = 0;
    return t;
}

/* Native protocol: the 64 KiB event limit, and --max-outbound. */
static void test_native(harness *h)
{
    gw_stream *s = open_stream(h, &sotto__gw_native, NULL);
    char *big = repeat('a', SOTTO__GW_MAX_EVENT + 10);
    cJSON *m;

    CHECK(s != NULL);
    if (s == NULL)
        return;
    drain(s);
    /* An event over the limit is not sent; the next one is. */
    deliver(h, s, event("final", big, 0));
    CHECK_INT_EQ(n_queued(s), 0);
    deliver(h, s, event("final", " small", 0));
    CHECK_INT_EQ(n_queued(s), 1);
    drain(s);

    /* A reader that stops reading: partials replace each other ... */
    h->cfg.max_outbound = 4096;
    deliver(h, s, event("partial", " one", 0));
    deliver(h, s, event("partial", " two", 0));
    CHECK_INT_EQ(n_queued(s), 1);
    m = queued(s, 0);
    CHECK_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "text")), " two");
    cJSON_Delete(m);
    /* ... finals are queued while they fit ... */
    free(big);
    big = repeat('b', 1500);
    deliver(h, s, event("final", big, 0));
    deliver(h, s, event("final", big, 0));
    CHECK_INT_EQ(n_queued(s), 3);
    CHECK(!s->done);
    /* ... a partial that does not fit is dropped, and the queued one with
     * it (a newer partial replaces it anyway) ... */
    {
        char *mid = repeat('c', 1200);
        deliver(h, s, event("partial", mid, 0));
        free(mid);
    }
    CHECK_INT_EQ(n_queued(s), 2);
    CHECK(!s->done);
    /* ... and a final that does not fit disconnects the reader. */
    deliver(h, s, event("final", big, 0));
    CHECK(s->done);
    CHECK_INT_EQ(s->close_code, 1008);
    CHECK_STR_EQ(s->close_reason, "slow reader");
    CHECK_INT_EQ((int)h->gw.m.slow_reader_drops, 1);
    h->cfg.max_outbound = 1u << 20;
    free(big);
    close_stream(h, s);
}

/* The "result" word arrays of the queued vosk results, in order. */
static int vosk_results(const gw_stream *s, int *sizes, int cap)
{
    int n = 0;

    for (int i = 0; i < n_queued(s); i++) {
        cJSON *m = queued(s, i);
        const cJSON *r = cJSON_GetObjectItem(m, "result");
        if (cJSON_IsArray(r) && n < cap)
            sizes[n++] = cJSON_GetArraySize(r);
        cJSON_Delete(m);
    }
    return n;
}

static void test_vosk(harness *h)
{
    const char *cfg = "{\"config\":{\"sample_rate\":16000,\"words\":1}}";
    gw_stream *s = open_stream(h, &sotto__gw_vosk, cfg);
    int sizes[32], n;
    char *big;
    cJSON *m;

    CHECK(s != NULL);
    if (s == NULL)
        return;
    drain(s);
    /* 501 words in one utterance: a result of 500, then one of 1. */
    deliver(h, s, event("final", NULL, 501));
    deliver(h, s, event("utterance_end", NULL, 0));
    CHECK_INT_EQ(n_queued(s), 0);          /* results wait for the client */
    s->dl->closing(&h->gw, s, "finished");
    n = vosk_results(s, sizes, 32);
    CHECK_INT_EQ(n, 2);
    CHECK_INT_EQ(sizes[0], 500);
    CHECK_INT_EQ(n > 1 ? sizes[1] : 0, 1);
    close_stream(h, s);

    /* Seventeen results nobody asked for: the oldest goes out unasked. */
    s = open_stream(h, &sotto__gw_vosk, cfg);
    drain(s);
    for (int u = 0; u < 17; u++) {
        cJSON *ev = event("final", NULL, 1);
        cJSON_ReplaceItemInObject(ev, "utterance", cJSON_CreateNumber(u));
        deliver(h, s, ev);
        ev = event("utterance_end", NULL, 0);
        cJSON_ReplaceItemInObject(ev, "utterance", cJSON_CreateNumber(u));
        deliver(h, s, ev);
        CHECK_INT_EQ(n_queued(s), u < 16 ? 0 : 1);
    }
    close_stream(h, s);

    /* A partial longer than 8192 bytes is kept cut; a client message (an
     * empty audio message: no chunk, so the reply comes at once) gets it. */
    s = open_stream(h, &sotto__gw_vosk, cfg);
    drain(s);
    big = repeat('p', 9000);
    deliver(h, s, event("partial", big, 0));
    s->dl->binary(&h->gw, s, (const unsigned char *)"", 0);
    CHECK_INT_EQ(n_queued(s), 1);
    m = queued(s, 0);
    CHECK_INT_EQ((int)strlen(cJSON_GetStringValue(cJSON_GetObjectItem(m, "partial"))
                             ? cJSON_GetStringValue(cJSON_GetObjectItem(m, "partial"))
                             : ""), 8192);
    cJSON_Delete(m);
    free(big);
    close_stream(h, s);
}

/* WhisperLive: a segment is completed at 500 words. */
static void test_whisperlive(harness *h)
{
    const char *opts = "{\"uid\":\"t1\",\"language\":\"en\",\"task\":\"transcribe\","
                       "\"model\":\"tiny.en\",\"use_vad\":true}";
    gw_stream *s = open_stream(h, &sotto__gw_whisperlive, opts);
    cJSON *m, *segs;

    CHECK(s != NULL);
    if (s == NULL)
        return;
    drain(s);
    deliver(h, s, event("final", NULL, 501));
    CHECK(n_queued(s) >= 1);
    m = queued(s, n_queued(s) - 1);
    segs = cJSON_GetObjectItem(m, "segments");
    CHECK_INT_EQ(cJSON_GetArraySize(segs), 2);
    if (cJSON_GetArraySize(segs) == 2) {
        const cJSON *a = cJSON_GetArrayItem(segs, 0), *b = cJSON_GetArrayItem(segs, 1);
        const char *ta = cJSON_GetStringValue(cJSON_GetObjectItem(a, "text"));
        const char *tb = cJSON_GetStringValue(cJSON_GetObjectItem(b, "text"));
        int words = 0;
        for (const char *p = ta; p != NULL && *p; p++)
            words += *p == 'w';
        CHECK_INT_EQ(words, 500);
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(a, "completed")));
        CHECK(tb != NULL && strcmp(tb + strspn(tb, " "), "w500") == 0);
    }
    cJSON_Delete(m);
    close_stream(h, s);
}

/* Realtime: the completed transcript stops growing at 60000 bytes; the
 * deltas carry everything. */
static void test_realtime(harness *h)
{
    gw_stream *s = open_stream(h, &sotto__gw_realtime, NULL);
    char *piece = repeat('r', 1000);
    size_t delta_bytes = 0, completed = 0;

    CHECK(s != NULL);
    if (s == NULL)
        return;
    piece[0] = ' ';
    drain(s);
    for (int i = 0; i < 70; i++)
        deliver(h, s, event("final", piece, 0));
    deliver(h, s, event("utterance_end", NULL, 0));
    for (int i = 0; i < n_queued(s); i++) {
        cJSON *m = queued(s, i);
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(m, "type"));
        if (type != NULL && strcmp(type, "conversation.item.input_audio_transcription.delta") == 0)
            delta_bytes += strlen(cJSON_GetStringValue(cJSON_GetObjectItem(m, "delta")));
        if (type != NULL && strcmp(type, "conversation.item.input_audio_transcription.completed") == 0)
            completed = strlen(cJSON_GetStringValue(cJSON_GetObjectItem(m, "transcript")));
        cJSON_Delete(m);
    }
    CHECK_INT_EQ((int)delta_bytes, 70 * 1000 - 1);   /* the first loses its space */
    CHECK(completed > 59000 && completed <= 60000);
    free(piece);
    close_stream(h, s);
}

/* The replay state kept per stream: every committed word of the audio a
 * replay would send again, up to SOTTO__GW_RESUME_WORDS (the words before
 * the replay's start are dropped as it moves on), and the last
 * SOTTO__GW_COMMITTED_BYTES of committed text. */
static void test_resume_state(harness *h)
{
    gw_stream *s = open_stream(h, &sotto__gw_native, NULL);
    char *text = repeat('t', 3000);

    CHECK(s != NULL);
    if (s == NULL)
        return;
    /* 300 words ("w0" at 0.0-0.1 s ...) with nothing acknowledged: the
     * newest 256 are kept. */
    deliver(h, s, event("final", NULL, 300));
    CHECK_INT_EQ(s->n_resume, SOTTO__GW_RESUME_WORDS);
    CHECK_INT_EQ(SOTTO__GW_RESUME_WORDS, 256);
    CHECK_STR_EQ(s->resume[0].text, " w44");
    CHECK_STR_EQ(s->resume[SOTTO__GW_RESUME_WORDS - 1].text, " w299");
    /* Once the replay would start at 20 s, the words that end by then go. */
    s->base_time = 20.0;
    deliver(h, s, event("final", NULL, 1));
    CHECK_INT_EQ(s->n_resume, 101);
    CHECK_STR_EQ(s->resume[0].text, " w200");
    text[2999] = 'x';
    deliver(h, s, event("final", text, 0));
    deliver(h, s, event("final", text, 0));
    CHECK_INT_EQ((int)s->committed_n, SOTTO__GW_COMMITTED_BYTES);
    CHECK_INT_EQ((int)strlen(s->committed), SOTTO__GW_COMMITTED_BYTES);
    CHECK(s->committed[SOTTO__GW_COMMITTED_BYTES - 1] == 'x');
    free(text);
    close_stream(h, s);
}

/* A raw TCP (whisper_streaming) stream: s16le at 16 kHz from the first
 * byte, as sotto__gw_tcp_accept makes it. */
static gw_stream *open_tcp(harness *h)
{
    gw_stream *s = sotto__gw_stream_new(&h->gw, GW_TCP, h->client, NULL);

    if (s != NULL)
        s->configured = 1;
    return s;
}

/* Flow control: the gateway stops reading a client that is more than
 * --max-ahead seconds ahead of real time, or whose audio not yet taken
 * by its worker passes --max-pending-audio.  (The worker here never
 * acknowledges, so everything sent stays pending.) */
static void test_flow(harness *h)
{
    static short pcm[16000];     /* 1 s of silence */
    gw_stream *s;

    h->cfg.max_ahead = 1.0;
    s = open_tcp(h);
    CHECK(s != NULL);
    if (s == NULL)
        return;
    sotto__gw_audio(&h->gw, s, pcm, sizeof pcm / 2);          /* 0.5 s */
    CHECK(!s->paused);
    sotto__gw_audio(&h->gw, s, pcm, sizeof pcm);              /* 1.5 s */
    CHECK(s->paused);
    close_stream(h, s);
    h->cfg.max_ahead = 86400.0;

    h->cfg.max_pending_audio = 8000;
    s = open_tcp(h);
    sotto__gw_audio(&h->gw, s, pcm, 4000);
    CHECK(!s->paused);
    CHECK_INT_EQ((int)s->pending_bytes, 4000);
    sotto__gw_audio(&h->gw, s, pcm, 6000);
    CHECK(s->paused);
    /* Finishing reads again (the client's EOF or close must get through). */
    sotto__gw_finish(&h->gw, s, 1000, "");
    CHECK(!s->paused);
    close_stream(h, s);
    h->cfg.max_pending_audio = 4u << 20;
}

/* Raw TCP lines: one over SOTTO__GW_MAX_EVENT is dropped; past
 * --max-outbound the client that does not read is disconnected. */
static void test_tcp_outbound(harness *h)
{
    static const float sample = 0.0f;
    gw_stream *s = open_tcp(h);
    char *big = repeat('a', SOTTO__GW_MAX_EVENT + 10);
    uint64_t drops = h->gw.m.slow_reader_drops;

    CHECK(s != NULL);
    if (s == NULL)
        return;
    sotto__gw_audio(&h->gw, s, &sample, sizeof sample);
    deliver(h, s, event("final", big, 0));
    CHECK_INT_EQ((int)s->tcp_out_n, 0);
    deliver(h, s, event("final", " small", 0));
    CHECK(s->tcp_out_n > 7 && s->tcp_out_n < 32 &&
          memcmp(s->tcp_out + s->tcp_out_n - 7, " small\n", 7) == 0);
    free(big);
    h->cfg.max_outbound = 4096;
    big = repeat('b', 1000);
    for (int i = 0; i < 4; i++)
        deliver(h, s, event("final", big, 0));
    CHECK(!s->dropped);
    deliver(h, s, event("final", big, 0));
    CHECK(s->dropped);
    CHECK_INT_EQ((int)(h->gw.m.slow_reader_drops - drops), 1);
    h->cfg.max_outbound = 1u << 20;
    free(big);
    close_stream(h, s);
}

int main(void)
{
    harness h;

    if (harness_init(&h) != 0) {
        fprintf(stderr, "test_gateway: cannot set up libwebsockets\n");
        return 1;
    }
    test_native(&h);
    test_vosk(&h);
    test_whisperlive(&h);
    test_realtime(&h);
    test_flow(&h);
    test_resume_state(&h);
    test_tcp_outbound(&h);
    harness_free(&h);
    return test_main_exit("test_gateway");
}
