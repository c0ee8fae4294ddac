/*
 * fuzz_gateway.c - libFuzzer target for what the gateway does with a
 * client's bytes once libwebsockets has framed them: the native protocol's
 * text messages (config, finish) and binary audio on /v1/stream, the raw
 * TCP path (whisper_streaming's s16le byte stream, split anywhere), and the
 * dialects' streams (vosk, WhisperLive, Realtime, Wyoming), through the
 * same gw_dialect entry points the event loop calls, into the stream's
 * replay list and the queue to its worker.  It also drives the two things
 * the gateway reads from a request itself: the API key (Authorization and
 * Sec-WebSocket-Protocol values) and the Realtime intent.
 *
 * The harness is a real gateway state (src/server/gateway*.c as built for
 * the server) around a real libwebsockets context that never listens:
 * two workers whose channels are socketpairs, marked ready, so that a
 * stream is placed, opened and sent its audio as in the server; and one
 * client connection (also a socketpair) that every stream uses.  Nothing
 * is ever written to a socket (the loop is not serviced): what would go
 * out is queued, and dropped before the next input.
 *
 * Input: byte 0 below 0xe0 picks the protocol (modulo 7: native, tcp,
 * vosk, whisperlive, realtime, wyoming, request headers).  Then messages,
 * each an op byte (even: text, odd: binary; 0xff: the client ends), a
 * 16-bit little-endian length, and that many bytes (cut short at the end
 * of the input).  For request headers the rest is "authorization\0
 * protocols\0intent".  Each input's stream is freed as a client
 * disconnect frees it, so a leak shows up at once.
 *
 * Byte 0 from 0xe0 up fuzzes the other side of the gateway: what a broken
 * or compromised worker sends back (events, acknowledgements, closes,
 * REST job results, READY and BEAT) for a stream of protocol (byte 0 &
 * 0x1f) % 6, placed on worker 0.  Messages are a type byte (modulo 10: the
 * nine types a worker sends, and OPEN, which only the gateway sends; bit
 * 0x80 addresses a stream that does not exist), a 32-bit little-endian
 * seq, a 16-bit length and the payload, handed to sotto__gw_worker_message
 * as the channel reader would hand them over.
 *
 * Seeds: fuzz/seeds/gateway (made by fuzz/make_gateway_seeds.py).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "sotto.h"
#include "server/dialect.h"
#include "server/gateway.h"
#include "server/ipc.h"

#define FUZZ_KEY "sk-fuzz-key-0123456789"

static int cb_none(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                   void *in, size_t len)
{
    return 0;
}

static const struct lws_protocols fuzz_protocols[] = {
    { "fuzz-raw", cb_none, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* The harness's state, made once (LLVMFuzzerInitialize). */
static sotto__serve_config cfg;
static sotto__gateway gw;
static struct lws *client_wsi;

static struct lws *adopt_pair(struct lws_vhost *vh)
{
    int sv[2];
    lws_sock_file_fd_type u;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    u.filefd = sv[0];
    /* sv[1], the far end, stays open and unread for the whole run. */
    return lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, u, "fuzz-raw", NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct lws_context_creation_info info;
    struct lws_vhost *vh;

    sotto__log_init("fuzz", -1);   /* below SOTTO_LOG_ERROR: silent */
    lws_set_log_level(0, NULL);
    sotto__serve_config_defaults(&cfg);
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = fuzz_protocols;
    info.user = &gw;
    if ((gw.ctx = lws_create_context(&info)) == NULL ||
        (vh = lws_get_vhost_by_name(gw.ctx, "default")) == NULL)
        abort();
    gw.c = &cfg;
    gw.vh_http = gw.vh_raw = vh;
    gw.n_workers = 2;
    for (int i = 0; i < gw.n_workers; i++) {
        gw_worker *w = &gw.workers[i];
        w->slot = i;
        w->fd = -1;
        if ((w->wsi = adopt_pair(vh)) == NULL)
            abort();
        w->ready = 1;
        w->last_beat = 1e300;   /* never stale */
    }
    gw.ever_ready = 1;
    if ((client_wsi = adopt_pair(vh)) == NULL)
        abort();
    return 0;
}

static const gw_dialect *dialect(int proto)
{
    switch (proto) {
    case 0: return &sotto__gw_native;
    case 2: return &sotto__gw_vosk;
    case 3: return &sotto__gw_whisperlive;
    case 4: return &sotto__gw_realtime;
    case 5: return &sotto__gw_wyoming;
    default: return NULL;   /* 1: whisper_streaming's raw TCP */
    }
}

/* The longest message ws_receive passes on (gateway_net.c). */
static size_t ws_limit(const gw_dialect *dl, int binary)
{
    return binary ? cfg.max_frame
           : dl->text_audio ? cfg.max_frame / 3 * 4 + SOTTO__SERVE_MAX_CONTROL
                            : SOTTO__SERVE_MAX_CONTROL;
}

/* Request headers: "authorization\0protocols\0intent", each possibly
 * absent (fewer NULs) and then NULL. */
static void request(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    const char *part[3] = { NULL, NULL, NULL };
    size_t at = 0;

    if (copy == NULL)
        return;
    memcpy(copy, data, size);
    copy[size] = 0;
    for (int i = 0; i < 3 && at <= size; i++) {
        part[i] = copy + at;
        at += strlen(copy + at) + 1;
    }
    (void)sotto__auth_has_key(part[0], part[1], FUZZ_KEY);
    (void)sotto__rt_intent_ok(part[2]);
    /* The exact forms of the key must pass, whatever else is around. */
    if (!sotto__auth_has_key("Bearer " FUZZ_KEY, part[1], FUZZ_KEY) ||
        !sotto__auth_has_key(part[0], "sotto, bearer." FUZZ_KEY, FUZZ_KEY))
        abort();
    free(copy);
}

static void reset_queues(void)
{
    for (int i = 0; i < gw.n_workers; i++) {
        gw.workers[i].out_n = 0;
        if (gw.workers[i].n_streams != 0)
            abort();   /* a stream freed without leaving its worker */
    }
}

/* What a worker sends back, for a stream of protocol proto. */
static void worker_replies(int proto, const uint8_t *data, size_t size)
{
    static const uint16_t types[10] = {
        SOTTO__IPC_EVENT, SOTTO__IPC_ACK, SOTTO__IPC_CLOSED, SOTTO__IPC_READY,
        SOTTO__IPC_BEAT, SOTTO__IPC_JOB_SEGMENTS, SOTTO__IPC_JOB_DONE,
        SOTTO__IPC_JOB_PIECE, SOTTO__IPC_JOB_PIECE_DATA, SOTTO__IPC_OPEN
    };
    const gw_dialect *dl = dialect(proto);
    sotto__ipc_hdr h;
    gw_stream *s;
    size_t at = 0;

    s = sotto__gw_stream_new(&gw, proto == 1 || proto == 5 ? GW_TCP : GW_WS, client_wsi, dl);
    if (s == NULL)
        return;
    s->configured = 1;
    if (dl != NULL && dl->opened != NULL)
        dl->opened(&gw, s);
    /* A READY from worker 0 places the waiting stream there. */
    memset(&h, 0, sizeof h);
    h.type = SOTTO__IPC_READY;
    h.len = 2;
    gw.workers[1].ready = 0;
    (void)sotto__gw_worker_message(&gw, &gw.workers[0], &h, (const unsigned char *)"{}");
    gw.workers[1].ready = 1;
    while (at + 7 <= size) {
        const uint8_t *p = data + at + 7;
        size_t n = (size_t)data[at + 5] | (size_t)data[at + 6] << 8;

        if (n > size - at - 7)
            n = size - at - 7;
        memset(&h, 0, sizeof h);
        h.type = types[(data[at] & 0x7f) % 10];
        h.stream = data[at] & 0x80 ? s->id + 1 : s->id;
        h.seq = (uint32_t)data[at + 1] | (uint32_t)data[at + 2] << 8 |
                (uint32_t)data[at + 3] << 16 | (uint32_t)data[at + 4] << 24;
        h.len = (uint32_t)n;
        at += 7 + n;
        if (sotto__gw_worker_message(&gw, &gw.workers[0], &h, p) != 0)
            break;    /* the gateway would kill the worker here */
        if (gw.streams == NULL)
            abort();  /* the client still holds its stream */
    }
    sotto__gw_client_gone(&gw, s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int proto;
    const gw_dialect *dl;
    gw_stream *s;
    size_t at = 1;

    if (size < 1)
        return 0;
    if (data[0] >= 0xe0) {
        worker_replies((data[0] & 0x1f) % 6, data + 1, size - 1);
        reset_queues();
        if (gw.streams != NULL || gw.n_streams != 0)
            abort();
        return 0;
    }
    proto = data[0] % 7;
    if (proto == 6) {
        request(data + 1, size - 1);
        return 0;
    }
    dl = dialect(proto);
    s = sotto__gw_stream_new(&gw, proto == 1 || proto == 5 ? GW_TCP : GW_WS, client_wsi, dl);
    if (s == NULL)
        return 0;
    /* As sotto__gw_tcp_accept: raw TCP sends audio from the first byte. */
    s->configured = proto == 1;
    if (dl != NULL && dl->opened != NULL)
        dl->opened(&gw, s);
    while (at + 3 <= size && !s->done) {
        int op = data[at];
        size_t n = (size_t)data[at + 1] | (size_t)data[at + 2] << 8;
        const uint8_t *p = data + at + 3;
        if (n > size - at - 3)
            n = size - at - 3;
        at += 3 + n;
        if (op == 0xff) {
            /* The client ends: EOF on TCP, finish otherwise. */
            s->eof = s->kind == GW_TCP;
            sotto__gw_finish(&gw, s, 1000, "");
            break;
        }
        if (s->kind == GW_TCP && n > SOTTO__GW_TCP_READ)
            n = SOTTO__GW_TCP_READ;   /* one recv() at most */
        if (s->kind == GW_WS && n > ws_limit(dl, op & 1))
            break;                    /* the gateway closes with 1009 */
        if (dl != NULL && (op & 1) == 0 && dl->text != NULL) {
            /* As ws_receive hands it over: not NUL-terminated. */
            dl->text(&gw, s, (const char *)p, n);
        } else if (dl != NULL && dl->binary != NULL) {
            dl->binary(&gw, s, p, n);
        } else if (dl == NULL && !s->finishing) {
            sotto__gw_audio(&gw, s, p, n);
        }
    }
    sotto__gw_client_gone(&gw, s);
    reset_queues();
    if (gw.streams != NULL || gw.n_streams != 0)
        abort();
    return 0;
}
