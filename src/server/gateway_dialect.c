/*
 * gateway_dialect.c - the other servers' protocols, spoken by the gateway
 * on top of the same streams as the native one: vosk-server, WhisperLive
 * and OpenAI's Realtime API in transcription mode over WebSocket, and
 * Wyoming (Home Assistant) over its own TCP port.  (The OpenAI REST
 * endpoint is gateway_rest.c.)
 * docs/protocol.md describes each as a client sees it.
 *
 * A dialect is a gw_dialect (gateway.h): it turns the client's messages
 * into stream operations (audio, a cut, finish) and the worker's native
 * events (partial, final, utterance_end, error) into the client's
 * messages.  Everything else is shared with the native protocol: worker
 * placement, the replay after a worker death, the limits, the drain and
 * the final flush, the metrics.  The parsing of what clients send is in
 * dialect.c, apart from the sockets, so that it can be fuzzed.
 *
 * Each dialect keeps a little state per stream (s->dx): the committed
 * words of the open utterance or segment, and what it owes the client.
 * Every list in it has a named limit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sotto.h"
#include "server/dialect.h"
#include "server/gateway.h"

_Static_assert(SOTTO__GW_COMMITTED_BYTES >= SOTTO__DIALECT_MAX_PROMPT,
               "a client's prompt must fit the stream's prompt buffer whole");

/* Most words a dialect holds for one vosk result or WhisperLive segment;
 * at the limit the words so far are sent as a result or completed segment
 * of their own.  500 words with their times render to about 40 KB, under
 * the gateway's event limit (SOTTO__GW_MAX_EVENT, 64 KiB). */
#define GW_DIALECT_MAX_WORDS 500
/* Longest Realtime transcript in a completed event (the deltas carry
 * every word whatever the length; past this the completed event's
 * transcript stops growing, so that the event stays under 64 KiB). */
#define GW_RT_MAX_TRANSCRIPT 60000
/* Most vosk results waiting for a client message to answer; past it the
 * oldest goes unasked, so a client that stops sending cannot make the
 * gateway hold results without bound. */
#define GW_VOSK_MAX_QUEUED 16
/* Longest partial text kept (an utterance's uncommitted words). */
#define GW_DIALECT_MAX_PARTIAL 8192

/* ---- shared: the words of the open utterance ----------------------------- */

typedef struct dword {
    double start, end;
    float probability;
    char text[64];
} dword;

typedef struct dwords {
    dword *v;
    int n, cap;
} dwords;

static int dwords_push(dwords *w, const cJSON *x)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(x, "text");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(x, "start");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(x, "end");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(x, "probability");
    dword *d;

    if (!cJSON_IsString(t))
        return 0;
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 32;
        dword *nv = realloc(w->v, (size_t)cap * sizeof *nv);
        if (nv == NULL)
            return -1;
        w->v = nv;
        w->cap = cap;
    }
    d = &w->v[w->n++];
    snprintf(d->text, sizeof d->text, "%s", t->valuestring);
    d->start = cJSON_IsNumber(a) ? a->valuedouble : 0;
    d->end = cJSON_IsNumber(b) ? b->valuedouble : d->start;
    d->probability = cJSON_IsNumber(p) ? (float)p->valuedouble : 0.0f;
    return 0;
}

/* The words' text joined as Whisper writes it, without the leading
 * space; the caller frees it. */
static char *dwords_text(const dwords *w, const char *tail)
{
    size_t n = 1 + (tail ? strlen(tail) : 0);
    char *s, *p;

    for (int i = 0; i < w->n; i++)
        n += strlen(w->v[i].text);
    if ((s = malloc(n)) == NULL)
        return NULL;
    p = s;
    for (int i = 0; i < w->n; i++)
        p = stpcpy(p, w->v[i].text);
    if (tail != NULL)
        p = stpcpy(p, tail);
    *p = 0;
    p = s + strspn(s, " ");
    memmove(s, p, strlen(p) + 1);
    return s;
}

static const char *ev_str(const cJSON *ev, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, k));
}

/* Copies an event's partial text, bounded. */
static void keep_partial(char **slot, const char *text)
{
    free(*slot);
    *slot = NULL;
    if (text != NULL)
        *slot = strndup(text, GW_DIALECT_MAX_PARTIAL);
}

/* Appends text to a transcript kept for a "completed" or "transcript"
 * event, up to GW_RT_MAX_TRANSCRIPT bytes (the pieces sent meanwhile carry
 * every word, so past the limit only the summary stops growing). */
static void transcript_add(char **t, size_t *n, const char *text)
{
    size_t l = strlen(text);
    char *nt;

    if (*n + l > GW_RT_MAX_TRANSCRIPT || (nt = realloc(*t, *n + l + 1)) == NULL)
        return;
    *t = nt;
    memcpy(*t + *n, text, l + 1);
    *n += l;
}

static double round3(double t)
{
    return round(t * 1000.0) / 1000.0;
}

/* ---- vosk-server --------------------------------------------------------- */

/*
 * vosk-server answers every client message with exactly one message, and
 * its example clients depend on that: they send a chunk, then wait for
 * one reply.  So does sotto, after the worker has taken the chunk (its
 * ACK): the reply is a result when an utterance ended since the last
 * reply, else the open utterance's text as a partial.  {"eof": 1} is
 * answered with one final result holding every word not yet sent in a
 * result, then the close.
 */

typedef struct vres {
    struct vres *next;
    dwords words;             /* one utterance's words */
} vres;

typedef struct vosk_state {
    int words;                /* results carry the word list; on */
    int eof;                  /* the client sent eof */
    uint32_t replied;         /* chunks answered (their seq) */
    int resets_owed;          /* resets waiting for their cut */
    dwords utt;               /* committed words of the open utterance */
    char *partial;            /* its uncommitted text */
    vres *head, *tail;        /* results not yet sent */
    int n_queued;
    int final_sent;
} vosk_state;

static void vosk_free(void *p)
{
    vosk_state *v = p;

    if (v == NULL)
        return;
    for (vres *r = v->head, *n; r != NULL; r = n) {
        n = r->next;
        free(r->words.v);
        free(r);
    }
    free(v->utt.v);
    free(v->partial);
    free(v);
}

static vosk_state *vosk_of(gw_stream *s)
{
    if (s->dx == NULL && (s->dx = calloc(1, sizeof(vosk_state))) != NULL)
        ((vosk_state *)s->dx)->words = 1;
    return s->dx;
}

/* Renders {"result": [...], "text": "..."} for the words w. */
static char *vosk_result(const vosk_state *v, const dwords *w)
{
    cJSON *o = cJSON_CreateObject(), *arr;
    char *text = dwords_text(w, NULL), *out = NULL;

    if (o == NULL || text == NULL)
        goto fail;
    if (v->words && w->n > 0 && (arr = cJSON_AddArrayToObject(o, "result")) != NULL)
        for (int i = 0; i < w->n; i++) {
            cJSON *x = cJSON_CreateObject();
            const char *t = w->v[i].text + strspn(w->v[i].text, " ");
            cJSON_AddNumberToObject(x, "conf", round(w->v[i].probability * 1e6) / 1e6);
            cJSON_AddNumberToObject(x, "end", round3(w->v[i].end));
            cJSON_AddNumberToObject(x, "start", round3(w->v[i].start));
            cJSON_AddStringToObject(x, "word", t);
            cJSON_AddItemToArray(arr, x);
        }
    cJSON_AddStringToObject(o, "text", text);
    out = cJSON_PrintUnformatted(o);
fail:
    free(text);
    cJSON_Delete(o);
    return out;
}

static void vosk_send_raw(sotto__gateway *g, gw_stream *s, char *json)
{
    if (json != NULL)
        sotto__gw_send_json(g, s, json, strlen(json), 0);
    free(json);
}

/* One reply: the oldest queued result, else the partial. */
static void vosk_reply(sotto__gateway *g, gw_stream *s, vosk_state *v)
{
    if (v->head != NULL) {
        vres *r = v->head;
        v->head = r->next;
        if (v->head == NULL)
            v->tail = NULL;
        v->n_queued--;
        vosk_send_raw(g, s, vosk_result(v, &r->words));
        free(r->words.v);
        free(r);
        return;
    }
    {
        char *text = dwords_text(&v->utt, v->partial);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "partial", text ? text : "");
        free(text);
        sotto__gw_send_cjson(g, s, o, 0);
    }
}

/* The open utterance's words become a queued result. */
static void vosk_close_utt(sotto__gateway *g, gw_stream *s, vosk_state *v)
{
    vres *r;

    keep_partial(&v->partial, NULL);
    if (v->utt.n == 0)
        return;
    if ((r = calloc(1, sizeof *r)) == NULL) {
        v->utt.n = 0;
        return;
    }
    /* The result takes the words; the next utterance starts empty. */
    r->words = v->utt;
    memset(&v->utt, 0, sizeof v->utt);
    if (v->tail != NULL)
        v->tail->next = r;
    else
        v->head = r;
    v->tail = r;
    if (++v->n_queued > GW_VOSK_MAX_QUEUED)
        vosk_reply(g, s, v);
}

static void vosk_text(sotto__gateway *g, gw_stream *s, const char *t, size_t len)
{
    vosk_state *v = vosk_of(s);
    sotto__vosk_msg m;
    char err[160];

    if (v == NULL || s->finishing || s->done)
        return;
    if (sotto__vosk_parse(t, len, &m, err, sizeof err) != 0) {
        cJSON *o = cJSON_CreateObject();
        sotto__log(SOTTO_LOG_WARN, s->id, "vosk client: %s", err);
        /* Still one reply per message, so a lock-step client goes on. */
        cJSON_AddStringToObject(o, "partial", "");
        cJSON_AddStringToObject(o, "error", err);
        sotto__gw_send_cjson(g, s, o, 0);
        return;
    }
    switch (m.kind) {
    case SOTTO__VOSK_CONFIG:
        /* vosk-server answers a config with nothing. */
        if (s->configured) {
            sotto__log(SOTTO_LOG_WARN, s->id, "vosk config after audio ignored");
            return;
        }
        if (m.sample_rate > 0)
            s->rate = m.sample_rate;
        if (m.words >= 0)
            v->words = m.words;
        if (m.ignored)
            sotto__log(SOTTO_LOG_INFO, s->id, "vosk config: max_alternatives, "
                       "phrase_list and model are not used");
        sotto__log(SOTTO_LOG_DEBUG, s->id, "vosk config: %d Hz, words %d", s->rate, v->words);
        return;
    case SOTTO__VOSK_EOF:
        sotto__log(SOTTO_LOG_INFO, s->id, "client sent eof");
        v->eof = 1;
        sotto__gw_finish(g, s, 1000, "");
        if (s->done && !v->final_sent) {
            /* Nothing was sent: there is no flush to wait for. */
            v->final_sent = 1;
            vosk_send_raw(g, s, vosk_result(v, &v->utt));
        }
        return;
    case SOTTO__VOSK_RESET:
        if (!s->configured) {
            vosk_send_raw(g, s, vosk_result(v, &v->utt));
            return;
        }
        v->resets_owed++;
        sotto__gw_cut(g, s, GW_CUT_FLUSH);
        return;
    }
}

static void vosk_binary(sotto__gateway *g, gw_stream *s, const unsigned char *p, size_t len)
{
    vosk_state *v = vosk_of(s);
    uint32_t before = s->next_seq;

    if (v == NULL || s->finishing || s->done)
        return;
    sotto__gw_audio(g, s, p, len);
    /* No chunk came of it (empty, or less than a sample): no ACK will
     * come either, so answer now. */
    if (s->next_seq == before && !s->done)
        vosk_reply(g, s, v);
}

static void vosk_event(sotto__gateway *g, gw_stream *s, cJSON *ev)
{
    vosk_state *v = vosk_of(s);
    const char *type = ev_str(ev, "type");
    const cJSON *w;

    if (v == NULL || type == NULL)
        return;
    if (strcmp(type, "partial") == 0) {
        keep_partial(&v->partial, ev_str(ev, "text"));
    } else if (strcmp(type, "final") == 0) {
        keep_partial(&v->partial, NULL);
        cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(ev, "words"))
            if (dwords_push(&v->utt, w) != 0 || v->utt.n >= GW_DIALECT_MAX_WORDS)
                vosk_close_utt(g, s, v);
    } else if (strcmp(type, "utterance_end") == 0) {
        vosk_close_utt(g, s, v);
    }
}

static void vosk_acked(sotto__gateway *g, gw_stream *s, uint32_t seq)
{
    vosk_state *v = vosk_of(s);

    if (v == NULL)
        return;
    /* A replay after a worker death acknowledges chunks again: only new
     * ones are answered. */
    while (v->replied < seq) {
        v->replied++;
        vosk_reply(g, s, v);
    }
}

static void vosk_cut_done(sotto__gateway *g, gw_stream *s)
{
    vosk_state *v = vosk_of(s);

    if (v == NULL || v->resets_owed == 0)
        return;
    v->resets_owed--;
    /* The reset's answer is the result of the utterance it ended. */
    vosk_close_utt(g, s, v);
    if (v->head != NULL)
        vosk_reply(g, s, v);
    else
        vosk_send_raw(g, s, vosk_result(v, &v->utt));
}

/* The stream ended: one final result with every word not yet sent in a
 * result (after eof, even an empty one: the client waits for it). */
static void vosk_closing(sotto__gateway *g, gw_stream *s, const char *reason)
{
    vosk_state *v = vosk_of(s);
    dwords all = { 0 };
    int n = v != NULL ? v->utt.n : 0;

    if (v == NULL || v->final_sent)
        return;
    /* The queued results and the open utterance, merged in order; when
     * that would pass the word limit, the queued results go first on
     * their own. */
    for (vres *r = v->head; r != NULL; r = r->next)
        n += r->words.n;
    if (n > GW_DIALECT_MAX_WORDS) {
        while (v->head != NULL)
            vosk_reply(g, s, v);
        n = v->utt.n;
    }
    if (n > 0 && (all.v = malloc((size_t)n * sizeof *all.v)) != NULL) {
        for (vres *r = v->head; r != NULL; r = r->next)
            for (int i = 0; i < r->words.n; i++)
                all.v[all.n++] = r->words.v[i];
        for (int i = 0; i < v->utt.n; i++)
            all.v[all.n++] = v->utt.v[i];
        all.cap = n;
    }
    if (v->eof || all.n > 0) {
        v->final_sent = 1;
        vosk_send_raw(g, s, vosk_result(v, &all));
    }
    free(all.v);
    (void)reason;
}

static void vosk_error(sotto__gateway *g, gw_stream *s, const char *code,
                       const char *message)
{
    cJSON *o = cJSON_CreateObject();

    sotto__log(SOTTO_LOG_WARN, s->id, "vosk client error: %s: %s", code, message);
    cJSON_AddStringToObject(o, "error", message);
    cJSON_AddStringToObject(o, "code", code);
    sotto__gw_send_cjson(g, s, o, 0);
}

const gw_dialect sotto__gw_vosk = {
    .name = "vosk",
    .proto = GW_PROTO_VOSK,
    .text = vosk_text,
    .binary = vosk_binary,
    .event = vosk_event,
    .acked = vosk_acked,
    .cut_done = vosk_cut_done,
    .closing = vosk_closing,
    .error = vosk_error,
    .dx_free = vosk_free,
};

/* ---- WhisperLive --------------------------------------------------------- */

/*
 * WhisperLive sends, after each update, the last N completed segments
 * and the segment in progress, with times as strings.  sotto's segments
 * are its committed words up to a sentence end or the end of an
 * utterance; the segment in progress is the rest of the committed words
 * and the partial.  Its own client keeps completed segments only when the
 * server says its backend is "faster_whisper", so sotto says so.
 */

typedef struct wl_state {
    sotto__wl_options opt;
    int ready;                /* options taken, SERVER_READY sent */
    cJSON *done;              /* array: the last opt.last_n segments */
    dwords cur;               /* committed words of the open segment */
    char *partial;
    double p_start, p_end;
    double last_end;          /* end of the last completed segment */
} wl_state;

static void wl_free(void *p)
{
    wl_state *w = p;

    if (w == NULL)
        return;
    cJSON_Delete(w->done);
    free(w->cur.v);
    free(w->partial);
    free(w);
}

static wl_state *wl_of(gw_stream *s)
{
    if (s->dx == NULL) {
        wl_state *w = calloc(1, sizeof *w);
        if (w == NULL || (w->done = cJSON_CreateArray()) == NULL) {
            free(w);
            return NULL;
        }
        s->dx = w;
    }
    return s->dx;
}

static void add_time(cJSON *o, const char *k, double t)
{
    char b[32];
    snprintf(b, sizeof b, "%.3f", t < 0 ? 0.0 : t);
    cJSON_AddStringToObject(o, k, b);
}

static cJSON *wl_segment(const wl_state *w, const dwords *d, const char *tail,
                         double start, double end, int completed)
{
    cJSON *seg = cJSON_CreateObject();
    char *text = dwords_text(d, tail);

    if (start < w->last_end)
        start = w->last_end;
    if (end < start)
        end = start;
    add_time(seg, "start", start);
    add_time(seg, "end", end);
    /* WhisperLive's texts begin with Whisper's space; its client strips it. */
    {
        char *sp = malloc(strlen(text ? text : "") + 2);
        if (sp != NULL) {
            sprintf(sp, " %s", text ? text : "");
            cJSON_AddStringToObject(seg, "text", sp);
            free(sp);
        }
    }
    cJSON_AddBoolToObject(seg, "completed", completed);
    if (w->opt.word_timestamps && d->n > 0) {
        cJSON *arr = cJSON_AddArrayToObject(seg, "words");
        for (int i = 0; arr != NULL && i < d->n; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "word", d->v[i].text);
            add_time(x, "start", d->v[i].start);
            add_time(x, "end", d->v[i].end);
            cJSON_AddNumberToObject(x, "probability",
                                    round(d->v[i].probability * 1e4) / 1e4);
            cJSON_AddItemToArray(arr, x);
        }
    }
    free(text);
    return seg;
}

static void wl_complete(wl_state *w)
{
    if (w->cur.n == 0)
        return;
    cJSON_AddItemToArray(w->done, wl_segment(w, &w->cur, NULL, w->cur.v[0].start,
                                             w->cur.v[w->cur.n - 1].end, 1));
    w->last_end = w->cur.v[w->cur.n - 1].end;
    w->cur.n = 0;
    while (cJSON_GetArraySize(w->done) > w->opt.last_n)
        cJSON_DeleteItemFromArray(w->done, 0);
}

static void wl_send(sotto__gateway *g, gw_stream *s, cJSON *o)
{
    sotto__gw_send_cjson(g, s, o, 0);
}

static cJSON *wl_msg(const wl_state *w)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "uid", w->opt.uid);
    return o;
}

static void wl_update(sotto__gateway *g, gw_stream *s, wl_state *w, int partial)
{
    cJSON *o = wl_msg(w), *segs = cJSON_Duplicate(w->done, 1);

    if (w->cur.n > 0 || (w->partial != NULL && w->partial[0] != 0)) {
        double a = w->cur.n > 0 ? w->cur.v[0].start : w->p_start;
        double b = w->partial != NULL && w->partial[0] != 0 ? w->p_end
                   : w->cur.v[w->cur.n - 1].end;
        cJSON_AddItemToArray(segs, wl_segment(w, &w->cur, w->partial, a, b, 0));
    }
    if (cJSON_GetArraySize(segs) == 0) {
        cJSON_Delete(segs);
        cJSON_Delete(o);
        return;
    }
    cJSON_AddItemToObject(o, "segments", segs);
    /* Long segments with words may not all fit in one event: the oldest
     * completed ones go first (the client has them already). */
    for (;;) {
        char *t = cJSON_PrintUnformatted(o);
        size_t n = t != NULL ? strlen(t) : 0;
        if (t == NULL || n <= SOTTO__GW_MAX_EVENT || cJSON_GetArraySize(segs) <= 1) {
            if (t != NULL)
                sotto__gw_send_json(g, s, t, n, partial);
            free(t);
            break;
        }
        free(t);
        cJSON_DeleteItemFromArray(segs, 0);
    }
    cJSON_Delete(o);
}

static void wl_status(sotto__gateway *g, gw_stream *s, wl_state *w, const char *status,
                      const char *message)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "uid", w != NULL ? w->opt.uid : "");
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddStringToObject(o, "message", message);
    wl_send(g, s, o);
}

static void wl_text(sotto__gateway *g, gw_stream *s, const char *t, size_t len)
{
    wl_state *w = wl_of(s);
    char err[200];

    if (w == NULL || s->finishing || s->done)
        return;
    if (sotto__wl_is_end(t, len)) {
        sotto__log(SOTTO_LOG_INFO, s->id, "client sent END_OF_AUDIO");
        sotto__gw_finish(g, s, 1000, "");
        return;
    }
    if (w->ready) {
        sotto__log(SOTTO_LOG_WARN, s->id, "whisperlive: text message after the options "
                   "ignored");
        wl_status(g, s, w, "WARNING", "only END_OF_AUDIO is expected as text after the "
                  "options");
        return;
    }
    if (sotto__wl_parse_options(t, len, &w->opt, err, sizeof err) != 0) {
        sotto__log(SOTTO_LOG_WARN, s->id, "whisperlive options refused: %s", err);
        wl_status(g, s, w, "ERROR", err);
        sotto__gw_finish(g, s, 1008, "bad options");
        return;
    }
    s->format = w->opt.format == SOTTO__WL_S16 ? GW_S16 : GW_F32;
    s->rate = SOTTO_SAMPLE_RATE;
    s->vad = w->opt.use_vad;
    if (w->opt.language[0] != 0)
        snprintf(s->language, sizeof s->language, "%s", w->opt.language);
    sotto__gw_set_prompt(s, w->opt.prompt);
    s->configured = 1;
    w->ready = 1;
    sotto__log(SOTTO_LOG_INFO, s->id, "whisperlive session %s: %s, vad %d", w->opt.uid,
               s->format == GW_S16 ? "int16" : "float32", s->vad);
    {
        cJSON *o = wl_msg(w);
        cJSON_AddStringToObject(o, "message", "SERVER_READY");
        cJSON_AddStringToObject(o, "backend", "faster_whisper");
        wl_send(g, s, o);
    }
}

static void wl_binary(sotto__gateway *g, gw_stream *s, const unsigned char *p, size_t len)
{
    wl_state *w = wl_of(s);

    if (w == NULL || s->finishing || s->done)
        return;
    if (sotto__wl_is_end(p, len)) {
        sotto__log(SOTTO_LOG_INFO, s->id, "client sent END_OF_AUDIO");
        sotto__gw_finish(g, s, 1000, "");
        return;
    }
    if (!w->ready) {
        sotto__log(SOTTO_LOG_WARN, s->id, "whisperlive: audio before the options ignored");
        wl_status(g, s, w, "WARNING", "audio before the options message is ignored");
        return;
    }
    sotto__gw_audio(g, s, p, len);
}

static void wl_event(sotto__gateway *g, gw_stream *s, cJSON *ev)
{
    wl_state *w = wl_of(s);
    const char *type = ev_str(ev, "type");
    const cJSON *x;

    if (w == NULL || type == NULL)
        return;
    if (strcmp(type, "partial") == 0) {
        keep_partial(&w->partial, ev_str(ev, "text"));
        w->p_start = sotto__gw_event_num(ev, "start", 0);
        w->p_end = sotto__gw_event_num(ev, "end", w->p_start);
        wl_update(g, s, w, 1);
    } else if (strcmp(type, "final") == 0) {
        keep_partial(&w->partial, NULL);
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(ev, "words")) {
            const char *t;
            size_t n;
            int had = w->cur.n;
            /* A word without a text is skipped, and pushes nothing. */
            if (dwords_push(&w->cur, x) != 0 || w->cur.n == had)
                continue;
            t = w->cur.v[w->cur.n - 1].text;
            n = strlen(t);
            /* A sentence end, or too many words, completes a segment. */
            if ((n > 0 && strchr(".?!", t[n - 1]) != NULL) ||
                w->cur.n >= GW_DIALECT_MAX_WORDS)
                wl_complete(w);
        }
        wl_update(g, s, w, 0);
    } else if (strcmp(type, "utterance_end") == 0) {
        keep_partial(&w->partial, NULL);
        if (w->cur.n > 0) {
            wl_complete(w);
            wl_update(g, s, w, 0);
        }
    } else if (strcmp(type, "error") == 0) {
        wl_status(g, s, w, "WARNING", ev_str(ev, "message") ? ev_str(ev, "message")
                                                            : "audio refused");
    }
}

static void wl_warning(sotto__gateway *g, gw_stream *s, const char *code,
                       const char *message)
{
    wl_status(g, s, wl_of(s), "WARNING", message);
}

static void wl_error(sotto__gateway *g, gw_stream *s, const char *code, const char *message)
{
    sotto__log(SOTTO_LOG_WARN, s->id, "whisperlive client error: %s: %s", code, message);
    wl_status(g, s, wl_of(s), "ERROR", message);
}

static size_t wl_refusal(char *buf, size_t cap, const char *why, const char *first,
                         size_t first_len)
{
    sotto__wl_options o;
    char err[64], *t;
    cJSON *m = cJSON_CreateObject();
    size_t n = 0;

    if (first == NULL || sotto__wl_parse_options(first, first_len, &o, err, sizeof err) != 0)
        o.uid[0] = 0;
    cJSON_AddStringToObject(m, "uid", o.uid);
    if (strcmp(why, "capacity") == 0) {
        /* WhisperLive's "server full": the wait, in minutes. */
        cJSON_AddStringToObject(m, "status", "WAIT");
        cJSON_AddNumberToObject(m, "message", 1);
    } else {
        cJSON_AddStringToObject(m, "status", "ERROR");
        cJSON_AddStringToObject(m, "message", sotto__gw_refusal_text(why));
    }
    if ((t = cJSON_PrintUnformatted(m)) != NULL && strlen(t) < cap) {
        n = strlen(t);
        memcpy(buf, t, n);
    }
    free(t);
    cJSON_Delete(m);
    return n;
}

const gw_dialect sotto__gw_whisperlive = {
    .name = "whisperlive",
    .proto = GW_PROTO_WHISPERLIVE,
    .text = wl_text,
    .binary = wl_binary,
    .event = wl_event,
    .warning = wl_warning,
    .error = wl_error,
    .refusal = wl_refusal,
    .refuse_after_first = 1,
    .dx_free = wl_free,
};

/* ---- OpenAI Realtime (transcription) -------------------------------------- */

/*
 * One utterance is one conversation item ("item_<stream>_<utterance>").
 * With server_vad (the default) the VAD's utterances drive
 * speech_started, speech_stopped and committed; with turn_detection null
 * the VAD is off and the client's input_audio_buffer.commit ends the
 * item.  Each final's words go out at once as a transcription delta, so
 * the deltas are real increments of committed text (a partial may still
 * change, and a delta cannot be taken back, so partials are not sent);
 * completed carries the item's whole transcript.
 */

typedef struct rt_state {
    int turn;                 /* 1 server_vad, 0 none */
    int started_utt;          /* last utterance with speech_started sent */
    int committed_utt;        /* last utterance with committed sent */
    int prev_utt;             /* the previous item's utterance, -1 */
    size_t since_commit;      /* audio bytes since the last commit/clear */
    char *transcript;         /* the open item's text */
    size_t n;
    uint64_t events;          /* server event ids */
    unsigned char *audio;     /* decode buffer, max-frame bytes */
    size_t audio_cap;
    char language[SOTTO__DIALECT_MAX_LANGUAGE + 1];
    char prompt[SOTTO__DIALECT_MAX_PROMPT + 1];
} rt_state;

static void rt_free(void *p)
{
    rt_state *r = p;

    if (r == NULL)
        return;
    free(r->transcript);
    free(r->audio);
    free(r);
}

static rt_state *rt_of(gw_stream *s)
{
    if (s->dx == NULL) {
        rt_state *r = calloc(1, sizeof *r);
        if (r == NULL)
            return NULL;
        r->turn = 1;
        r->started_utt = r->committed_utt = r->prev_utt = -1;
        s->dx = r;
    }
    return s->dx;
}

static cJSON *rt_event(rt_state *r, const char *type)
{
    cJSON *o = cJSON_CreateObject();
    char id[40];

    snprintf(id, sizeof id, "event_%llu", (unsigned long long)++r->events);
    cJSON_AddStringToObject(o, "event_id", id);
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static void item_id(const gw_stream *s, int utt, char *out, size_t cap)
{
    snprintf(out, cap, "item_%u_%d", s->id, utt);
}

static void rt_add_item(cJSON *o, const gw_stream *s, const char *key, int utt)
{
    char id[48];

    if (utt < 0) {
        cJSON_AddNullToObject(o, key);
        return;
    }
    item_id(s, utt, id, sizeof id);
    cJSON_AddStringToObject(o, key, id);
}

static cJSON *rt_turn_detection(const rt_state *r)
{
    cJSON *td;

    if (!r->turn)
        return cJSON_CreateNull();
    td = cJSON_CreateObject();
    cJSON_AddStringToObject(td, "type", "server_vad");
    cJSON_AddNumberToObject(td, "threshold", 0.5);
    cJSON_AddNumberToObject(td, "prefix_padding_ms", 300);
    cJSON_AddNumberToObject(td, "silence_duration_ms", 600);
    return td;
}

static cJSON *rt_transcription(const sotto__gateway *g, const rt_state *r)
{
    cJSON *t = cJSON_CreateObject();
    const char *model = strrchr(g->c->model, '/');

    cJSON_AddStringToObject(t, "model", model != NULL ? model + 1 : g->c->model);
    if (r->language[0] != 0)
        cJSON_AddStringToObject(t, "language", r->language);
    else
        cJSON_AddNullToObject(t, "language");
    cJSON_AddStringToObject(t, "prompt", r->prompt);
    return t;
}

/* The session in both shapes: the beta one (input_audio_format ...) and
 * the GA one (audio.input ...), so either kind of client finds its
 * fields. */
static cJSON *rt_session(const sotto__gateway *g, const gw_stream *s, const rt_state *r)
{
    cJSON *o = cJSON_CreateObject(), *audio, *in, *fmt;
    char id[32];

    snprintf(id, sizeof id, "sess_%u", s->id);
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "realtime.transcription_session");
    cJSON_AddStringToObject(o, "type", "transcription");
    cJSON_AddStringToObject(o, "input_audio_format", "pcm16");
    cJSON_AddItemToObject(o, "input_audio_transcription", rt_transcription(g, r));
    cJSON_AddItemToObject(o, "turn_detection", rt_turn_detection(r));
    audio = cJSON_AddObjectToObject(o, "audio");
    in = cJSON_AddObjectToObject(audio, "input");
    fmt = cJSON_AddObjectToObject(in, "format");
    cJSON_AddStringToObject(fmt, "type", "audio/pcm");
    cJSON_AddNumberToObject(fmt, "rate", s->rate);
    cJSON_AddItemToObject(in, "transcription", rt_transcription(g, r));
    cJSON_AddItemToObject(in, "turn_detection", rt_turn_detection(r));
    return o;
}

static void rt_opened(sotto__gateway *g, gw_stream *s)
{
    rt_state *r = rt_of(s);
    cJSON *o;

    if (r == NULL)
        return;
    /* The Realtime API's audio: 16-bit PCM at 24 kHz, mono. */
    s->format = GW_S16;
    s->rate = 24000;
    s->vad = 1;
    o = rt_event(r, "session.created");
    cJSON_AddItemToObject(o, "session", rt_session(g, s, r));
    sotto__gw_send_cjson(g, s, o, 0);
}

static void rt_error_ev(sotto__gateway *g, gw_stream *s, rt_state *r, const char *type,
                        const char *code, const char *message, const char *client_event)
{
    cJSON *o = rt_event(r, "error"), *e = cJSON_AddObjectToObject(o, "error");

    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", message);
    if (client_event != NULL && client_event[0] != 0)
        cJSON_AddStringToObject(e, "event_id", client_event);
    else
        cJSON_AddNullToObject(e, "event_id");
    sotto__gw_send_cjson(g, s, o, 0);
}

static void rt_text(sotto__gateway *g, gw_stream *s, const char *t, size_t len)
{
    rt_state *r = rt_of(s);
    sotto__rt_msg m;
    const char *code;
    char err[200];
    cJSON *o;

    if (r == NULL || s->finishing || s->done)
        return;
    if (r->audio == NULL) {
        r->audio_cap = g->c->max_frame + 4;
        if ((r->audio = malloc(r->audio_cap)) == NULL)
            return;
    }
    if (sotto__rt_parse(t, len, &m, r->audio, r->audio_cap, &code, err, sizeof err) != 0) {
        sotto__log(SOTTO_LOG_WARN, s->id, "realtime client: %s", err);
        rt_error_ev(g, s, r, "invalid_request_error", code, err, m.event_id);
        return;
    }
    switch (m.kind) {
    case SOTTO__RT_SESSION_UPDATE:
        if (s->configured) {
            rt_error_ev(g, s, r, "invalid_request_error", "session_update_after_audio",
                        "the session can only be updated before the first audio",
                        m.event_id);
            return;
        }
        if (m.rate > 0)
            s->rate = m.rate;
        if (m.turn_detection >= 0)
            r->turn = m.turn_detection;
        s->vad = r->turn;
        if (m.language_set) {
            snprintf(r->language, sizeof r->language, "%s", m.language);
            snprintf(s->language, sizeof s->language, "%s",
                     m.language[0] ? m.language : g->c->language);
        }
        if (m.prompt_set) {
            snprintf(r->prompt, sizeof r->prompt, "%s", m.prompt);
            sotto__gw_set_prompt(s, m.prompt);
        }
        sotto__log(SOTTO_LOG_DEBUG, s->id, "realtime session: %d Hz, turn detection %s",
                   s->rate, r->turn ? "server_vad" : "none");
        o = rt_event(r, m.legacy ? "transcription_session.updated" : "session.updated");
        cJSON_AddItemToObject(o, "session", rt_session(g, s, r));
        sotto__gw_send_cjson(g, s, o, 0);
        return;
    case SOTTO__RT_APPEND:
        if (m.audio_n > g->c->max_frame) {
            rt_error_ev(g, s, r, "invalid_request_error", "audio_too_large",
                        "one append carries at most max-frame bytes of audio", m.event_id);
            return;
        }
        r->since_commit += m.audio_n;
        sotto__gw_audio(g, s, r->audio, m.audio_n);
        return;
    case SOTTO__RT_COMMIT:
        if (r->since_commit == 0) {
            rt_error_ev(g, s, r, "invalid_request_error", "input_audio_buffer_commit_empty",
                        "the input audio buffer is empty", m.event_id);
            return;
        }
        r->since_commit = 0;
        o = rt_event(r, "input_audio_buffer.committed");
        rt_add_item(o, s, "previous_item_id", r->prev_utt);
        rt_add_item(o, s, "item_id", s->utterance);
        r->committed_utt = s->utterance;
        sotto__gw_send_cjson(g, s, o, 0);
        sotto__gw_cut(g, s, GW_CUT_FLUSH);
        return;
    case SOTTO__RT_CLEAR:
        r->since_commit = 0;
        sotto__gw_cut(g, s, GW_CUT_CLEAR);
        sotto__gw_send_cjson(g, s, rt_event(r, "input_audio_buffer.cleared"), 0);
        return;
    }
}

static void rt_binary(sotto__gateway *g, gw_stream *s, const unsigned char *p, size_t len)
{
    rt_state *r = rt_of(s);

    if (r != NULL)
        rt_error_ev(g, s, r, "invalid_request_error", "binary_not_supported",
                    "send audio as input_audio_buffer.append events", NULL);
}

static void rt_speech_started(sotto__gateway *g, gw_stream *s, rt_state *r, int u,
                              double start)
{
    cJSON *o;

    if (!r->turn || u <= r->started_utt)
        return;
    r->started_utt = u;
    o = rt_event(r, "input_audio_buffer.speech_started");
    cJSON_AddNumberToObject(o, "audio_start_ms", round(start * 1000.0));
    rt_add_item(o, s, "item_id", u);
    sotto__gw_send_cjson(g, s, o, 0);
}

static void rt_event_in(sotto__gateway *g, gw_stream *s, cJSON *ev)
{
    rt_state *r = rt_of(s);
    const char *type = ev_str(ev, "type");
    int u = sotto__gw_event_int(ev, "utterance", s->utterance);
    cJSON *o;

    if (r == NULL || type == NULL)
        return;
    if (strcmp(type, "partial") == 0) {
        rt_speech_started(g, s, r, u, sotto__gw_event_num(ev, "start", 0));
    } else if (strcmp(type, "final") == 0) {
        const char *text = ev_str(ev, "text");
        rt_speech_started(g, s, r, u, sotto__gw_event_num(ev, "start", 0));
        if (text == NULL || text[0] == 0)
            return;
        /* The item's first words lose Whisper's leading space. */
        if (r->n == 0)
            text += strspn(text, " ");
        transcript_add(&r->transcript, &r->n, text);
        o = rt_event(r, "conversation.item.input_audio_transcription.delta");
        rt_add_item(o, s, "item_id", u);
        cJSON_AddNumberToObject(o, "content_index", 0);
        cJSON_AddStringToObject(o, "delta", text);
        sotto__gw_send_cjson(g, s, o, 0);
    } else if (strcmp(type, "utterance_end") == 0) {
        double end = sotto__gw_event_num(ev, "end", 0);
        if (r->turn) {
            rt_speech_started(g, s, r, u, end);
            o = rt_event(r, "input_audio_buffer.speech_stopped");
            cJSON_AddNumberToObject(o, "audio_end_ms", round(end * 1000.0));
            rt_add_item(o, s, "item_id", u);
            sotto__gw_send_cjson(g, s, o, 0);
        }
        if (u > r->committed_utt) {
            r->committed_utt = u;
            o = rt_event(r, "input_audio_buffer.committed");
            rt_add_item(o, s, "previous_item_id", r->prev_utt);
            rt_add_item(o, s, "item_id", u);
            sotto__gw_send_cjson(g, s, o, 0);
        }
        o = rt_event(r, "conversation.item.input_audio_transcription.completed");
        rt_add_item(o, s, "item_id", u);
        cJSON_AddNumberToObject(o, "content_index", 0);
        cJSON_AddStringToObject(o, "transcript", r->transcript ? r->transcript : "");
        sotto__gw_send_cjson(g, s, o, 0);
        r->prev_utt = u;
        r->n = 0;
        if (r->transcript != NULL)
            r->transcript[0] = 0;
    } else if (strcmp(type, "error") == 0) {
        rt_error_ev(g, s, r, "invalid_request_error", "invalid_audio",
                    ev_str(ev, "message") ? ev_str(ev, "message") : "audio refused", NULL);
    }
}

static void rt_error(sotto__gateway *g, gw_stream *s, const char *code, const char *message)
{
    rt_state *r = rt_of(s);

    sotto__log(SOTTO_LOG_WARN, s->id, "realtime error: %s: %s", code, message);
    if (r != NULL)
        rt_error_ev(g, s, r, "server_error", code, message, NULL);
}

static size_t rt_refusal(char *buf, size_t cap, const char *why, const char *first,
                         size_t first_len)
{
    int n = snprintf(buf, cap,
                     "{\"event_id\":\"event_0\",\"type\":\"error\",\"error\":"
                     "{\"type\":\"server_error\",\"code\":\"%s\",\"message\":\"%s\","
                     "\"event_id\":null}}",
                     sotto__gw_refusal_code(why), sotto__gw_refusal_text(why));
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

const gw_dialect sotto__gw_realtime = {
    .name = "realtime",
    .proto = GW_PROTO_REALTIME,
    .opened = rt_opened,
    .text = rt_text,
    .binary = rt_binary,
    .event = rt_event_in,
    .error = rt_error,
    .refusal = rt_refusal,
    .text_audio = 1,
    .dx_free = rt_free,
};

/* ---- Wyoming (Home Assistant) --------------------------------------------- */

/*
 * Wyoming on its own raw TCP port: events framed as a JSON header line,
 * an optional JSON data block and an optional binary payload (dialect.c
 * reads them).  A connection answers describe with info, and transcribes
 * the audio between audio-start and audio-stop: transcript-start, then a
 * transcript-chunk for every final as it is committed, and after the
 * flush transcript-stop and transcript with the whole text, then the
 * close (as wyoming-faster-whisper does, one transcription per
 * connection).  Malformed framing ends the connection after an error
 * event; a refused connection gets an error event before the close.
 */

typedef struct wy_state {
    sotto__wy_reader rd;
    int started;              /* audio-start seen */
    int rate;                 /* of audio-start */
    int streaming;            /* transcript-start sent */
    int stopped;              /* transcript sent */
    char *text;               /* the transcript so far */
    size_t n;
} wy_state;

static void wy_free(void *p)
{
    wy_state *w = p;

    if (w == NULL)
        return;
    sotto__wy_reader_free(&w->rd);
    free(w->text);
    free(w);
}

static wy_state *wy_of(sotto__gateway *g, gw_stream *s)
{
    if (s->dx == NULL) {
        wy_state *w = calloc(1, sizeof *w);
        if (w == NULL)
            return NULL;
        sotto__wy_reader_init(&w->rd, g->c->max_frame);
        s->dx = w;
    }
    return s->dx;
}

/* Sends one event (data may be NULL; it is deleted). */
static void wy_send(sotto__gateway *g, gw_stream *s, const char *type, cJSON *data)
{
    size_t n = 0;
    unsigned char *b = sotto__wy_render(type, data, NULL, 0, &n);

    if (b != NULL)
        sotto__gw_tcp_send(g, s, b, n);
    free(b);
    cJSON_Delete(data);
}

static cJSON *wy_attribution(const char *name, const char *url)
{
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "name", name);
    cJSON_AddStringToObject(a, "url", url);
    return a;
}

static void wy_info(sotto__gateway *g, gw_stream *s)
{
    cJSON *d = cJSON_CreateObject(), *asr = cJSON_AddArrayToObject(d, "asr");
    cJSON *prog = cJSON_CreateObject(), *models, *m, *langs;
    const char *model = strrchr(g->c->model, '/');

    model = model != NULL ? model + 1 : g->c->model;
    cJSON_AddStringToObject(prog, "name", "sotto");
    cJSON_AddItemToObject(prog, "attribution",
                          wy_attribution("sotto", ""));
    cJSON_AddBoolToObject(prog, "installed", 1);
    cJSON_AddStringToObject(prog, "description",
                            "Streaming Whisper speech-to-text in C, with crash isolation");
    cJSON_AddStringToObject(prog, "version", SOTTO_VERSION);
    models = cJSON_AddArrayToObject(prog, "models");
    m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "name", model);
    cJSON_AddItemToObject(m, "attribution",
                          wy_attribution("OpenAI Whisper", "https://github.com/openai/whisper"));
    cJSON_AddBoolToObject(m, "installed", 1);
    cJSON_AddStringToObject(m, "description", "Whisper (CTranslate2 model folder)");
    cJSON_AddNullToObject(m, "version");
    langs = cJSON_AddArrayToObject(m, "languages");
    if (g->c->language[0] != 0)
        cJSON_AddItemToArray(langs, cJSON_CreateString(g->c->language));
    else if (!g->multilingual)
        cJSON_AddItemToArray(langs, cJSON_CreateString("en"));
    else {
        /* Whisper's languages: a multilingual model takes any of them. */
        static const char *const all[] = {
            "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl",
            "ar", "sv", "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro",
            "da", "hu", "ta", "no", "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy",
            "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br", "eu",
            "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km",
            "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo",
            "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl", "mg",
            "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue"
        };
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            cJSON_AddItemToArray(langs, cJSON_CreateString(all[i]));
    }
    cJSON_AddItemToArray(models, m);
    cJSON_AddBoolToObject(prog, "supports_transcript_streaming", 1);
    /* The client (Home Assistant) decides when speech ends and sends
     * audio-stop; sotto's VAD only gates what reaches the model. */
    cJSON_AddBoolToObject(prog, "requires_external_vad", 1);
    cJSON_AddItemToArray(asr, prog);
    cJSON_AddArrayToObject(d, "tts");
    cJSON_AddArrayToObject(d, "handle");
    cJSON_AddArrayToObject(d, "intent");
    cJSON_AddArrayToObject(d, "wake");
    cJSON_AddArrayToObject(d, "mic");
    cJSON_AddArrayToObject(d, "snd");
    wy_send(g, s, "info", d);
}

static void wy_error_ev(sotto__gateway *g, gw_stream *s, const char *code, const char *text)
{
    cJSON *d = cJSON_CreateObject();

    cJSON_AddStringToObject(d, "text", text);
    cJSON_AddStringToObject(d, "code", code);
    wy_send(g, s, "error", d);
}

/* The audio format of audio-start or audio-chunk: 16-bit mono PCM at a
 * rate the gateway takes.  0, or -1 with why. */
static int wy_format(const cJSON *d, int *rate, const char **why)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(d, "rate");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(d, "width");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "channels");

    if (!cJSON_IsNumber(r) || r->valuedouble < 8000 || r->valuedouble > 192000 ||
        r->valuedouble != floor(r->valuedouble)) {
        *why = "rate must be a whole number of Hz, 8000 .. 192000";
        return -1;
    }
    if (!cJSON_IsNumber(w) || w->valuedouble != 2) {
        *why = "only 16-bit samples (width 2) are supported";
        return -1;
    }
    if (!cJSON_IsNumber(c) || c->valuedouble != 1) {
        *why = "only mono audio (channels 1) is supported";
        return -1;
    }
    *rate = (int)r->valuedouble;
    return 0;
}

/* One event from the client. */
static void wy_event_in(sotto__gateway *g, gw_stream *s, wy_state *w, const sotto__wy_event *e)
{
    const char *why;
    int rate;

    if (strcmp(e->type, "describe") == 0) {
        wy_info(g, s);
    } else if (strcmp(e->type, "transcribe") == 0) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(e->data, "language");
        if (!w->started && cJSON_IsString(l) && l->valuestring[0] != 0 &&
            strlen(l->valuestring) < sizeof s->language &&
            strspn(l->valuestring, "abcdefghijklmnopqrstuvwxyz") == strlen(l->valuestring))
            snprintf(s->language, sizeof s->language, "%s", l->valuestring);
    } else if (strcmp(e->type, "audio-start") == 0 ||
               (strcmp(e->type, "audio-chunk") == 0 && !w->started)) {
        if (s->finishing)
            return;
        if (wy_format(e->data, &rate, &why) != 0) {
            sotto__log(SOTTO_LOG_WARN, s->id, "wyoming %s refused: %s", e->type, why);
            wy_error_ev(g, s, "unsupported_audio", why);
            sotto__gw_finish(g, s, 1000, "");
            return;
        }
        w->started = 1;
        w->rate = rate;
        s->format = GW_S16;
        s->rate = rate;
        s->configured = 1;
        if (strcmp(e->type, "audio-chunk") == 0 && e->payload_n > 0)
            sotto__gw_audio(g, s, e->payload, e->payload_n);
    } else if (strcmp(e->type, "audio-chunk") == 0) {
        if (s->finishing)
            return;
        if (wy_format(e->data, &rate, &why) != 0 || rate != w->rate) {
            wy_error_ev(g, s, "unsupported_audio",
                        "an audio-chunk's format differs from audio-start's; chunk ignored");
            return;
        }
        if (e->payload_n > 0)
            sotto__gw_audio(g, s, e->payload, e->payload_n);
    } else if (strcmp(e->type, "audio-stop") == 0) {
        sotto__log(SOTTO_LOG_INFO, s->id, "client sent audio-stop");
        sotto__gw_finish(g, s, 1000, "");
        if (s->done && !w->stopped) {
            /* Nothing was sent: an empty transcript at once. */
            cJSON *d = cJSON_CreateObject();
            w->stopped = 1;
            cJSON_AddStringToObject(d, "text", "");
            wy_send(g, s, "transcript", d);
        }
    } else if (strcmp(e->type, "ping") == 0) {
        cJSON *d = cJSON_CreateObject();
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e->data, "text");
        if (cJSON_IsString(t))
            cJSON_AddStringToObject(d, "text", t->valuestring);
        wy_send(g, s, "pong", d);
    } else {
        sotto__log(SOTTO_LOG_DEBUG, s->id, "wyoming event %s ignored", e->type);
    }
}

/* Bytes from the client: every complete event in them. */
static void wy_bytes(sotto__gateway *g, gw_stream *s, const unsigned char *p, size_t len)
{
    wy_state *w = wy_of(g, s);
    sotto__wy_event e = { 0 };
    char err[160];
    int rc;

    if (w == NULL || s->done)
        return;
    if (sotto__wy_reader_push(&w->rd, p, len) != 0) {
        sotto__gw_finish(g, s, 1011, "out of memory");
        return;
    }
    while (!s->done && (rc = sotto__wy_next(&w->rd, &e, err, sizeof err)) == 1)
        wy_event_in(g, s, w, &e);
    sotto__wy_event_clear(&e);
    if (rc < 0 && !s->done) {
        sotto__log(SOTTO_LOG_WARN, s->id, "wyoming client: %s; closing", err);
        wy_error_ev(g, s, "bad_event", err);
        /* Whatever came before is flushed; the connection cannot go on. */
        s->paused = 1;
        s->eof = 1;
        lws_rx_flow_control(s->wsi, 0);
        sotto__gw_finish(g, s, 1000, "");
    }
}

static void wy_event(sotto__gateway *g, gw_stream *s, cJSON *ev)
{
    wy_state *w = wy_of(g, s);
    const char *type = ev_str(ev, "type"), *text = ev_str(ev, "text");
    cJSON *d;

    if (w == NULL || type == NULL)
        return;
    if (strcmp(type, "error") == 0) {
        wy_error_ev(g, s, "invalid_audio", ev_str(ev, "message") ? ev_str(ev, "message")
                                                                 : "audio refused");
        return;
    }
    if (strcmp(type, "final") != 0 || text == NULL || text[0] == 0)
        return;
    if (!w->streaming) {
        w->streaming = 1;
        d = cJSON_CreateObject();
        if (s->language[0] != 0)
            cJSON_AddStringToObject(d, "language", s->language);
        wy_send(g, s, "transcript-start", d);
    }
    if (w->n == 0)
        text += strspn(text, " ");
    d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "text", text);
    wy_send(g, s, "transcript-chunk", d);
    transcript_add(&w->text, &w->n, text);
}

static void wy_closing(sotto__gateway *g, gw_stream *s, const char *reason)
{
    wy_state *w = wy_of(g, s);
    cJSON *d;

    if (w == NULL || w->stopped || !s->configured)
        return;
    w->stopped = 1;
    if (w->streaming)
        wy_send(g, s, "transcript-stop", NULL);
    d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "text", w->text != NULL ? w->text : "");
    if (s->language[0] != 0)
        cJSON_AddStringToObject(d, "language", s->language);
    wy_send(g, s, "transcript", d);
}

static void wy_error(sotto__gateway *g, gw_stream *s, const char *code, const char *message)
{
    sotto__log(SOTTO_LOG_WARN, s->id, "wyoming error: %s: %s", code, message);
    wy_error_ev(g, s, code, message);
}

static size_t wy_refusal(char *buf, size_t cap, const char *why, const char *first,
                         size_t first_len)
{
    cJSON *d = cJSON_CreateObject();
    unsigned char *b;
    size_t n = 0;

    cJSON_AddStringToObject(d, "text", sotto__gw_refusal_text(why));
    cJSON_AddStringToObject(d, "code", sotto__gw_refusal_code(why));
    b = sotto__wy_render("error", d, NULL, 0, &n);
    if (b == NULL || n > cap)
        n = 0;
    else
        memcpy(buf, b, n);
    free(b);
    cJSON_Delete(d);
    return n;
}

const gw_dialect sotto__gw_wyoming = {
    .name = "wyoming",
    .proto = GW_PROTO_WYOMING,
    .binary = wy_bytes,
    .event = wy_event,
    .closing = wy_closing,
    .error = wy_error,
    .refusal = wy_refusal,
    .dx_free = wy_free,
};
