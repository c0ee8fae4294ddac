/*
 * gateway.c - the gateway process: one libwebsockets event loop that owns
 * every client socket and every worker channel, places streams on
 * workers, replays a stream's audio when its worker dies, runs the
 * watchdog, and drains on shutdown.
 *
 * The gateway never runs inference and never decodes a codec: what a
 * client sends is checked for size and shape only, then handed to a
 * worker.  So a crash in the engine or in a decoder can only kill a worker,
 * and the gateway recovers the worker's streams (gateway.h describes how).
 *
 * All file descriptors (clients, worker channels, the control socket from
 * the supervisor and the life pipe) are in the one lws loop; the WebSocket
 * and HTTP side is in gateway_net.c.  Nothing here blocks: worker channels
 * are written from an output buffer when they are writeable, and a client
 * whose audio would grow a buffer past its limit is paused (lws rx flow
 * control) until the worker catches up.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>

#include "sotto.h"
#include "server/gateway.h"

/* ---- small helpers ------------------------------------------------------ */

int sotto__gw_buf_add(unsigned char **b, size_t *n, size_t *cap, const void *d,
                   size_t len)
{
    /* Nothing to add (an empty WebSocket message): the buffer may still be
     * NULL, and memcpy must not be given NULL even for no bytes. */
    if (len == 0)
        return 0;
    if (*n + len > *cap) {
        size_t nc = *cap ? *cap : 4096;
        unsigned char *nb;
        while (nc < *n + len)
            nc *= 2;
        if ((nb = realloc(*b, nc)) == NULL)
            return -1;
        *b = nb;
        *cap = nc;
    }
    memcpy(*b + *n, d, len);
    *n += len;
    return 0;
}

static int bytes_per_sample(int format)
{
    return format == GW_S16 ? 2 : format == GW_F32 ? 4 : 1;
}

static gw_stream *find_stream(sotto__gateway *g, uint32_t id)
{
    for (gw_stream *s = g->streams; s != NULL; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* ---- writeable callbacks on raw descriptors ----------------------------- */

/*
 * lws clears POLLOUT on a raw descriptor after its writeable callback
 * returns, so a request for another callback made inside it is lost.  A
 * callback that leaves bytes unwritten calls sotto__gw_rearm() instead,
 * which asks again from a timer on the next turn of the loop.
 */
static void rearm_cb(lws_sorted_usec_list_t *sul)
{
    sotto__gateway *g = lws_container_of(sul, sotto__gateway, rearm);

    g->rearm_due = 0;
    for (int i = 0; i < g->n_workers; i++)
        if (g->workers[i].wsi != NULL && g->workers[i].out_n > 0)
            lws_callback_on_writable(g->workers[i].wsi);
    for (gw_stream *s = g->streams; s != NULL; s = s->next)
        if (s->kind == GW_TCP && s->wsi != NULL && (s->tcp_out_n > 0 || s->done))
            lws_callback_on_writable(s->wsi);
}

void sotto__gw_rearm(sotto__gateway *g)
{
    if (!g->rearm_due) {
        g->rearm_due = 1;
        lws_sul_schedule(g->ctx, 0, &g->rearm, rearm_cb, 1000);
    }
}

/* ---- worker channels ---------------------------------------------------- */

int sotto__gw_worker_send(sotto__gateway *g, gw_worker *w, int type, uint32_t stream,
                          uint32_t seq, const void *payload, size_t len);

/* Queues one message to a worker; the loop writes it when it can. */
static int worker_send(sotto__gateway *g, gw_worker *w, int type,
                       uint32_t stream, uint32_t seq, const void *payload,
                       size_t len)
{
    unsigned char hdr[SOTTO__IPC_HDR_SIZE];

    if (w->wsi == NULL)
        return -1;
    sotto__ipc_pack(hdr, type, stream, seq, len);
    if (sotto__gw_buf_add(&w->out, &w->out_n, &w->out_cap, hdr, sizeof hdr) != 0 ||
        (len > 0 && sotto__gw_buf_add(&w->out, &w->out_n, &w->out_cap, payload, len) != 0)) {
        sotto__log(SOTTO_LOG_ERROR, stream, "out of memory queueing to worker%d",
                   w->slot);
        return -1;
    }
    lws_callback_on_writable(w->wsi);
    return 0;
}

int sotto__gw_worker_send(sotto__gateway *g, gw_worker *w, int type, uint32_t stream,
                          uint32_t seq, const void *payload, size_t len)
{
    return worker_send(g, w, type, stream, seq, payload, len);
}

static int send_cut(sotto__gateway *g, gw_worker *w, gw_stream *s, int how)
{
    const char *p = how == GW_CUT_CLEAR ? "{\"flush\":false}" : "{\"flush\":true}";
    return worker_send(g, w, SOTTO__IPC_CUT, s->id, 0, p, strlen(p));
}

/* Sends OPEN for s to its worker: the configuration, and the commit state
 * when the stream is being resumed. */
static int stream_open_on_worker(sotto__gateway *g, gw_stream *s)
{
    gw_worker *w = &g->workers[s->worker];
    cJSON *o = cJSON_CreateObject(), *arr;
    char *txt = NULL;
    int rc = -1, first = 0;

    if (o == NULL)
        goto fail;
    cJSON_AddStringToObject(o, "format", s->format == GW_S16 ? "s16"
                                         : s->format == GW_F32 ? "f32" : "opus");
    cJSON_AddNumberToObject(o, "rate", s->rate);
    if (s->language[0] != 0)
        cJSON_AddStringToObject(o, "language", s->language);
    cJSON_AddBoolToObject(o, "vad", s->vad);
    cJSON_AddBoolToObject(o, "partials", s->partials);
    cJSON_AddNumberToObject(o, "max_seconds", g->c->max_stream_seconds);
    /* The first stream cut its audio into 512-sample VAD frames from 0;
     * the replay drops the few samples that put the new stream on the
     * same frame grid, so its VAD opens the utterance at the same sample
     * and both transcribe the same buffer (exactly so at 16 kHz). */
    if (s->format != GW_OPUS && s->base_time > 0) {
        const double frame = 512.0 / SOTTO_SAMPLE_RATE;
        double aligned = ceil(s->base_time / frame - 1e-9) * frame;
        long skip = lround((aligned - s->base_time) * s->rate);
        cJSON_AddNumberToObject(o, "skip", (double)skip * bytes_per_sample(s->format));
        cJSON_AddNumberToObject(o, "time_offset", s->base_time + (double)skip / s->rate);
    } else {
        cJSON_AddNumberToObject(o, "time_offset", s->base_time);
    }
    /* Utterance ids go on where the client's left off; kept audio that
     * begins inside the last ended utterance (the replay margin) belongs
     * to it, and its repeated end is dropped in on_event. */
    cJSON_AddNumberToObject(o, "first_utterance",
                            s->ended_utt >= 0 && s->base_time < s->ended_end
                                ? s->ended_utt : s->ended_utt + 1);
    /* Resume words: the committed words inside the audio to be replayed,
     * so the new stream does not commit them again. */
    while (first < s->n_resume && s->resume[first].end <= s->base_time)
        first++;
    if (s->committed_n > 0) {
        /* The prompt is the committed text before the resume words. */
        size_t keep = s->committed_n;
        for (int i = first; i < s->n_resume && keep > 0; i++) {
            size_t l = strlen(s->resume[i].text);
            keep = keep >= l ? keep - l : 0;
        }
        char save = s->committed[keep];
        s->committed[keep] = 0;
        cJSON_AddStringToObject(o, "prompt", s->committed);
        s->committed[keep] = save;
    }
    if (s->n_resume > first) {
        arr = cJSON_AddArrayToObject(o, "resume_words");
        for (int i = first; arr != NULL && i < s->n_resume; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "text", s->resume[i].text);
            cJSON_AddNumberToObject(x, "start", s->resume[i].start);
            cJSON_AddNumberToObject(x, "end", s->resume[i].end);
            cJSON_AddNumberToObject(x, "probability", s->resume[i].probability);
            cJSON_AddItemToArray(arr, x);
        }
    }
    if ((txt = cJSON_PrintUnformatted(o)) == NULL)
        goto fail;
    if (worker_send(g, w, SOTTO__IPC_OPEN, s->id, 0, txt, strlen(txt)) != 0)
        goto fail;
    s->opened = 1;
    s->finish_sent = 0;
    /* Replay every chunk still kept, in order. */
    for (gw_chunk *c = s->head; c != NULL; c = c->next) {
        if (worker_send(g, w, SOTTO__IPC_AUDIO, s->id, c->seq, c->data, c->len) != 0)
            goto fail;
        if (c->cut && send_cut(g, w, s, c->cut) != 0)
            goto fail;
    }
    if (s->finishing) {
        worker_send(g, w, SOTTO__IPC_FINISH, s->id, 0, NULL, 0);
        s->finish_sent = 1;
    }
    rc = 0;
fail:
    free(txt);
    cJSON_Delete(o);
    return rc;
}

/* Places waiting streams on the least-loaded ready workers. */
static void assign_waiting(sotto__gateway *g)
{
    for (gw_stream *s = g->streams; s != NULL; s = s->next) {
        gw_worker *best = NULL;
        if (s->worker >= 0 || s->wsi == NULL || !s->configured)
            continue;
        for (int i = 0; i < g->n_workers; i++) {
            gw_worker *w = &g->workers[i];
            if (w->wsi != NULL && w->ready && !w->killed &&
                (best == NULL || w->n_streams < best->n_streams))
                best = w;
        }
        if (best == NULL)
            return;
        s->worker = best->slot;
        best->n_streams++;
        if (s->recoveries > 0)
            sotto__log(SOTTO_LOG_INFO, s->id,
                       "resuming on worker%d from %.2f s (%u chunks kept)",
                       best->slot, s->base_time, s->next_seq - 1 - s->acked);
        else
            sotto__log(SOTTO_LOG_DEBUG, s->id, "placed on worker%d", best->slot);
        if (stream_open_on_worker(g, s) != 0) {
            sotto__log(SOTTO_LOG_ERROR, s->id, "cannot open on worker%d", best->slot);
            s->worker = -1;
            best->n_streams--;
        }
    }
}

/* The stream leaves its worker (the worker is gone, or the stream is). */
static void unplace(sotto__gateway *g, gw_stream *s)
{
    if (s->worker >= 0 && g->workers[s->worker].n_streams > 0)
        g->workers[s->worker].n_streams--;
    s->worker = -1;
    s->opened = 0;
    s->finish_sent = 0;
}

static void stream_free(sotto__gateway *g, gw_stream *s)
{
    gw_stream **pp = &g->streams;

    while (*pp != NULL && *pp != s)
        pp = &(*pp)->next;
    if (*pp == s)
        *pp = s->next;
    unplace(g, s);
    for (gw_chunk *c = s->head, *n; c != NULL; c = n) {
        n = c->next;
        free(c);
    }
    for (gw_out *o = s->out_head, *n; o != NULL; o = n) {
        n = o->next;
        free(o);
    }
    free(s->tcp_out);
    free(s->rx);
    if (s->dl != NULL && s->dl->dx_free != NULL)
        s->dl->dx_free(s->dx);
    else
        free(s->dx);
    free(s);
    g->n_streams--;
}

/*
 * Ends a stream that no worker will take: an error event, then close
 * (WS: with code; TCP: after the lines already queued).  The words
 * committed so far have been sent; nothing else can be done for it.
 */
static void end_unplaced(sotto__gateway *g, gw_stream *s, const char *code,
                         const char *message, int close_code)
{
    if (s->done)
        return;
    if (s->dl != NULL && s->wsi != NULL)
        s->dl->error(g, s, code, message);
    s->finishing = 1;
    s->done = 1;
    s->close_code = close_code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s", code);
    if (s->wsi == NULL) {
        stream_free(g, s);
        return;
    }
    sotto__gw_want_write(s);
}

/* Ends every stream waiting for a worker when none can come: the
 * supervisor stopped restarting them (crash loop, fatal configuration). */
static void fail_waiting(sotto__gateway *g)
{
    if (g->sup_reason[0] == 0 || sotto__gw_workers_healthy(g) > 0)
        return;
    for (gw_stream *s = g->streams, *next; s != NULL; s = next) {
        next = s->next;
        if (s->worker < 0 && !s->done) {
            sotto__log(SOTTO_LOG_WARN, s->id, "no worker can take the stream (%s); ending it",
                       g->sup_reason);
            end_unplaced(g, s, "no_worker", "no engine process can run: the server "
                         "stopped restarting them (see /ready)", 1013);
        }
    }
}

/* A worker is gone (channel closed or process reaped): recover its
 * streams on the others, or on its successor once that is ready. */
static void worker_lost(sotto__gateway *g, gw_worker *w, const char *why)
{
    /* The stream or job in inference when it died: only that one's crash
     * count goes up (the others were only waiting their turn). */
    uint32_t busy = w->busy_stream;
    int n = 0;

    if (w->wsi == NULL && !w->ready && w->n_streams == 0 && w->n_jobs == 0)
        return;
    /* At the end of a drain the workers' channels close as expected. */
    sotto__log(g->draining && w->n_streams == 0 ? SOTTO_LOG_INFO : SOTTO_LOG_WARN, 0,
               "worker%d (pid %d) lost: %s", w->slot, w->pid, why);
    w->ready = 0;
    w->wsi = NULL;
    w->out_n = 0;
    w->busy_stream = 0;
    w->busy_ms = 0;
    w->lost_pid = w->pid;
    w->n_lost = 0;
    w->lost_busy = busy;
    snprintf(w->lost_why, sizeof w->lost_why, "%s", why);
    sotto__ipc_reader_free(&w->rd);
    for (gw_stream *s = g->streams, *next; s != NULL; s = next) {
        char msg[256];
        next = s->next;
        if (s->worker != w->slot)
            continue;
        if (w->n_lost < SOTTO__GW_CRASH_STREAMS)
            w->lost_streams[w->n_lost++] = s->id;
        unplace(g, s);
        if (s->id == busy && ++s->crashes >= SOTTO__GW_MAX_STREAM_CRASHES) {
            sotto__log(SOTTO_LOG_ERROR, s->id, "its worker died in its inference %d times; "
                       "ending the stream instead of replaying it again", s->crashes);
            end_unplaced(g, s, "stream_crashes", "this stream's audio made the engine "
                         "process fail repeatedly; it was ended", 1011);
            continue;
        }
        s->recoveries++;
        g->m.recoveries++;
        n++;
        snprintf(msg, sizeof msg, "the engine process serving this stream stopped (%s); "
                 "replaying %.1f s of audio on another", why,
                 s->audio_in - s->base_time > 0 ? s->audio_in - s->base_time : 0.0);
        if (s->dl != NULL && s->wsi != NULL && s->dl->warning != NULL)
            s->dl->warning(g, s, "worker_restart", msg);
        sotto__log(SOTTO_LOG_WARN, s->id, "recovering: worker%d gone", w->slot);
    }
    w->n_streams = 0;
    w->n_jobs = 0;
    if (n > 0)
        assign_waiting(g);
    sotto__gw_jobs_worker_lost(g, w->slot, busy);
    fail_waiting(g);
}

/* ---- events from workers ------------------------------------------------ */

static void committed_add(gw_stream *s, const char *text)
{
    size_t l = strlen(text);

    if (l > SOTTO__GW_COMMITTED_BYTES)
        text += l - SOTTO__GW_COMMITTED_BYTES, l = SOTTO__GW_COMMITTED_BYTES;
    if (s->committed_n + l > SOTTO__GW_COMMITTED_BYTES) {
        size_t drop = s->committed_n + l - SOTTO__GW_COMMITTED_BYTES;
        memmove(s->committed, s->committed + drop, s->committed_n - drop);
        s->committed_n -= drop;
    }
    memcpy(s->committed + s->committed_n, text, l);
    s->committed_n += l;
    s->committed[s->committed_n] = 0;
}

void sotto__gw_set_prompt(gw_stream *s, const char *text)
{
    s->committed_n = 0;
    s->committed[0] = 0;
    if (text != NULL && text[0] != 0)
        committed_add(s, text);
}

/* Keeps a committed word for a replay.  Words that end before the replay
 * would start (base_time, which only moves on) are no longer needed and go
 * first; the oldest goes only when every kept word is still inside the
 * replayable audio, which SOTTO__GW_RESUME_WORDS is sized never to see
 * (the log says so if it happens). */
static void resume_add(gw_stream *s, const char *text, double start,
                       double end, double prob)
{
    gw_word *w;
    int gone = 0;

    while (gone < s->n_resume && s->resume[gone].end <= s->base_time)
        gone++;
    if (gone == 0 && s->n_resume == SOTTO__GW_RESUME_WORDS) {
        sotto__log(SOTTO_LOG_WARN, s->id, "more than %d committed words in the "
                   "replayable audio; a replay may hear the oldest again",
                   SOTTO__GW_RESUME_WORDS);
        gone = 1;
    }
    if (gone > 0) {
        memmove(s->resume, s->resume + gone, sizeof s->resume[0] * (size_t)(s->n_resume - gone));
        s->n_resume -= gone;
    }
    w = &s->resume[s->n_resume++];
    snprintf(w->text, sizeof w->text, "%s", text);
    w->start = start;
    w->end = end;
    w->probability = (float)prob;
}

/* See gateway.h. */
double sotto__gw_event_num(const cJSON *o, const char *k, double dflt)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(x) && isfinite(x->valuedouble) ? x->valuedouble : dflt;
}

/* See gateway.h. */
int sotto__gw_event_int(const cJSON *o, const char *k, int dflt)
{
    double v = sotto__gw_event_num(o, k, dflt);
    return v >= INT_MIN && v <= INT_MAX ? (int)v : dflt;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* The arrival time of the audio at stream time t, or -1 if not kept. */
static double arrival_of(const gw_stream *s, double t)
{
    for (const gw_chunk *c = s->head; c != NULL; c = c->next)
        if (c->end_time >= t)
            return c->arrived;
    return -1.0;
}

static void observe(uint64_t *hist, uint64_t *count, double *sum,
                    const double *bounds, int nb, double v)
{
    for (int i = 0; i < nb; i++)
        if (v <= bounds[i])
            hist[i]++;
    (*count)++;
    *sum += v;
}

/* Formats one final as a whisper_streaming line: "beg_ms end_ms text". */
static void tcp_line(sotto__gateway *g, gw_stream *s, double start, double end,
                     const char *text)
{
    char line[SOTTO__GW_MAX_EVENT];
    double beg = start * 1000.0, fin = end * 1000.0;
    int n;

    if (beg < s->last_line_end)
        beg = s->last_line_end;
    if (fin < beg)
        fin = beg;
    s->last_line_end = fin;
    n = snprintf(line, sizeof line, "%.0f %.0f %s\n", beg, fin,
                 text[0] == ' ' ? text + 1 : text);
    if (n < 0 || (size_t)n >= sizeof line)
        return;
    sotto__gw_tcp_send(g, s, line, (size_t)n);
}

void sotto__gw_tcp_send(sotto__gateway *g, gw_stream *s, const void *p, size_t n)
{
    if (s->wsi == NULL || s->dropped)
        return;
    /* Checked here as well as when the socket is writable: a client that
     * never reads never makes it writable. */
    if (s->tcp_out_n + n > g->c->max_outbound) {
        sotto__log(SOTTO_LOG_WARN, s->id, "tcp client does not read (%zu bytes queued); "
                   "disconnecting it", s->tcp_out_n);
        g->m.slow_reader_drops++;
        s->dropped = 1;
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
        return;
    }
    if (sotto__gw_buf_add(&s->tcp_out, &s->tcp_out_n, &s->tcp_out_cap, p, n) != 0)
        return;
    g->m.bytes_out += (uint64_t)n;
    g->m.events_out++;
    sotto__gw_want_write(s);
}

static void on_event(sotto__gateway *g, gw_stream *s, const unsigned char *p,
                     size_t len)
{
    cJSON *ev = cJSON_ParseWithLength((const char *)p, len);
    const char *type, *text;
    int partial;

    if (ev == NULL || (type = str(ev, "type")) == NULL) {
        sotto__log(SOTTO_LOG_ERROR, s->id, "worker%d sent a malformed event", s->worker);
        goto done;
    }
    text = str(ev, "text");
    partial = strcmp(type, "partial") == 0;
    if (partial && sotto__gw_event_num(ev, "utterance", 0) <= s->ended_utt)
        goto done;   /* a replayed utterance whose end was already sent */
    if (strcmp(type, "final") == 0) {
        const cJSON *words = cJSON_GetObjectItemCaseSensitive(ev, "words"), *w;
        double now = sotto__now();
        s->utterance = sotto__gw_event_int(ev, "utterance", s->utterance);
        if (text != NULL)
            committed_add(s, text);
        cJSON_ArrayForEach(w, words) {
            const char *wt = str(w, "text");
            double we = sotto__gw_event_num(w, "end", 0), arr;
            if (wt == NULL)
                continue;
            resume_add(s, wt, sotto__gw_event_num(w, "start", 0), we,
                       sotto__gw_event_num(w, "probability", 0));
            if ((arr = arrival_of(s, we)) >= 0)
                observe(g->m.commit_hist, &g->m.commit_count, &g->m.commit_sum,
                        sotto__gw_commit_bounds, SOTTO__GW_HIST_BUCKETS, now - arr);
        }
        if (s->dl == NULL && text != NULL && text[0] != 0)
            tcp_line(g, s, sotto__gw_event_num(ev, "start", 0),
                     sotto__gw_event_num(ev, "end", 0), text);
    } else if (strcmp(type, "utterance_end") == 0) {
        int u = sotto__gw_event_int(ev, "utterance", s->utterance);
        /* A replay may end an utterance whose end was already sent. */
        if (u <= s->ended_utt)
            goto done;
        s->ended_utt = u;
        s->ended_end = sotto__gw_event_num(ev, "end", s->ended_end);
        s->utterance = u + 1;
    } else if (strcmp(type, "error") == 0) {
        g->m.decode_errors++;
        sotto__log(SOTTO_LOG_WARN, s->id, "stream error: %s",
                   str(ev, "message") ? str(ev, "message") : "?");
    }
    if (s->dl != NULL && s->wsi != NULL)
        s->dl->event(g, s, ev);
done:
    cJSON_Delete(ev);
}

/*
 * A worker acknowledges the stream's audio chunks up to seq.  A seq past
 * the last chunk sent is a protocol violation (-1: the worker is dropped):
 * taken as is, it would have vosk's reply-per-chunk loop run billions of
 * times and stall every client of the gateway.
 */
static int on_ack(sotto__gateway *g, gw_stream *s, uint32_t seq,
                  const unsigned char *p, size_t len)
{
    cJSON *a;
    double t, keep_from;
    int cut;

    if (seq >= s->next_seq) {
        sotto__log(SOTTO_LOG_ERROR, s->id, "worker%d acknowledged chunk %u, but only "
                   "%u were sent", s->worker, seq, s->next_seq - 1);
        return -1;
    }
    if ((a = cJSON_ParseWithLength((const char *)p, len)) == NULL)
        return 0;
    t = sotto__gw_event_num(a, "audio_time", -1);
    cut = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "cut"));
    /* Keep a small margin before what the stream says it may need, for the
     * resampler's delay.  Not more: audio from further back is the tail of
     * an ended utterance, and tiny.en turns such a fragment into loops. */
    keep_from = sotto__gw_event_num(a, "retained_from", 0) - SOTTO__GW_REPLAY_MARGIN;
    if (sotto__gw_event_num(a, "compute", -1) >= 0) {
        double c = sotto__gw_event_num(a, "compute", 0);
        g->m.compute_seconds += c;
        observe(g->m.infer_hist, &g->m.infer_count, &g->m.infer_sum,
                sotto__gw_infer_bounds, SOTTO__GW_HIST_BUCKETS, c);
    }
    cJSON_Delete(a);
    for (gw_chunk *c = s->head; c != NULL; c = c->next) {
        if (c->seq > seq)
            break;
        if (c->end_time < 0) {
            c->end_time = t;
            s->pending_bytes -= c->len < s->pending_bytes ? c->len : s->pending_bytes;
        }
    }
    if (seq > s->acked)
        s->acked = seq;
    /* Forget the chunks the stream can no longer need. */
    while (s->head != NULL && s->head->end_time >= 0 && s->head->end_time <= keep_from) {
        gw_chunk *c = s->head;
        s->base_time = c->end_time;
        s->head = c->next;
        if (s->head == NULL)
            s->tail = NULL;
        free(c);
    }
    if (s->dl != NULL && s->wsi != NULL) {
        if (s->dl->acked != NULL)
            s->dl->acked(g, s, seq);
        if (cut && s->dl->cut_done != NULL)
            s->dl->cut_done(g, s);
    }
    return 0;
}

static void on_closed(sotto__gateway *g, gw_stream *s, const unsigned char *p,
                      size_t len)
{
    cJSON *o = cJSON_ParseWithLength((const char *)p, len);
    const char *reason = o != NULL ? str(o, "reason") : NULL;

    sotto__log(SOTTO_LOG_INFO, s->id, "stream closed by worker%d: %s%s%s", s->worker,
               reason ? reason : "?", o && str(o, "message") ? ": " : "",
               o && str(o, "message") ? str(o, "message") : "");
    unplace(g, s);
    if (s->dl != NULL && s->wsi != NULL && s->dl->closing != NULL)
        s->dl->closing(g, s, reason ? reason : "?");
    cJSON_Delete(o);
    s->done = 1;
    if (s->wsi == NULL) {
        stream_free(g, s);
        return;
    }
    if (s->kind == GW_WS && s->close_code == 0)
        s->close_code = 1000;
    sotto__gw_want_write(s);
}

int sotto__gw_worker_message(sotto__gateway *g, gw_worker *w, const sotto__ipc_hdr *h,
                             const unsigned char *p)
{
    gw_stream *s;

    switch (h->type) {
    case SOTTO__IPC_READY: {
        cJSON *r = cJSON_ParseWithLength((const char *)p, h->len);
        g->multilingual = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "multilingual"));
        cJSON_Delete(r);
        w->ready = 1;
        w->last_beat = sotto__now();
        if (!g->ever_ready)
            sotto__log(SOTTO_LOG_INFO, 0, "first worker ready");
        g->ever_ready = 1;
        sotto__log(SOTTO_LOG_INFO, 0, "worker%d (pid %d) ready: %.*s", w->slot,
                   w->pid, (int)(h->len < 200 ? h->len : 200), (const char *)p);
        assign_waiting(g);
        sotto__gw_jobs_assign(g);
        return 0;
    }
    case SOTTO__IPC_BEAT:
        w->last_beat = sotto__now();
        w->busy_stream = h->stream;
        w->busy_ms = h->seq;
        return 0;
    case SOTTO__IPC_JOB_SEGMENTS:
    case SOTTO__IPC_JOB_DONE:
    case SOTTO__IPC_JOB_PIECE:
    case SOTTO__IPC_JOB_PIECE_DATA:
        sotto__gw_job_message(g, w, h, p);
        return 0;
    default:
        break;
    }
    s = find_stream(g, h->stream);
    /* Messages for a stream this worker no longer holds (dropped, or moved
     * after a false alarm) are stale: ignore them. */
    if (s == NULL || s->worker != w->slot)
        return 0;
    switch (h->type) {
    case SOTTO__IPC_EVENT:
        on_event(g, s, p, h->len);
        break;
    case SOTTO__IPC_ACK:
        if (on_ack(g, s, h->seq, p, h->len) != 0)
            return -1;
        break;
    case SOTTO__IPC_CLOSED:
        on_closed(g, s, p, h->len);
        break;
    default:
        sotto__log(SOTTO_LOG_ERROR, 0, "worker%d sent %s, which only the gateway sends",
                   w->slot, sotto__ipc_type_name(h->type));
        return -1;
    }
    return 0;
}

static gw_worker *worker_of(sotto__gateway *g, struct lws *wsi)
{
    for (int i = 0; i < g->n_workers; i++)
        if (g->workers[i].wsi == wsi)
            return &g->workers[i];
    return NULL;
}

/* lws callback of the worker channels (adopted raw file descriptors). */
static int cb_ipc(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                  void *in, size_t len)
{
    sotto__gateway *g = lws_context_user(lws_get_context(wsi));
    gw_worker *w = g != NULL ? worker_of(g, wsi) : NULL;

    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE: {
        unsigned char buf[65536];
        ssize_t n;
        sotto__ipc_hdr h;
        const unsigned char *p;
        char err[128];
        int r;
        if (w == NULL)
            return -1;
        n = read(w->fd, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            worker_lost(g, w, n == 0 ? "channel closed" : strerror(errno));
            return -1;
        }
        if (n < 0)
            return 0;
        if (sotto__ipc_reader_push(&w->rd, buf, (size_t)n) != 0) {
            worker_lost(g, w, "out of memory");
            return -1;
        }
        while ((r = sotto__ipc_reader_next(&w->rd, &h, &p, err, sizeof err)) == 1)
            if (sotto__gw_worker_message(g, w, &h, p) != 0) {
                r = -1;
                snprintf(err, sizeof err, "protocol violation");
                break;
            }
        if (r < 0) {
            sotto__log(SOTTO_LOG_ERROR, 0, "worker%d: %s; dropping it", w->slot, err);
            kill(w->pid, SIGKILL);
            worker_lost(g, w, "malformed message");
            return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_RAW_WRITEABLE_FILE: {
        ssize_t n;
        if (w == NULL || w->out_n == 0)
            return 0;
        n = send(w->fd, w->out, w->out_n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            worker_lost(g, w, strerror(errno));
            return -1;
        }
        if (n > 0) {
            memmove(w->out, w->out + n, w->out_n - (size_t)n);
            w->out_n -= (size_t)n;
        }
        if (w->out_n > 0)
            sotto__gw_rearm(g);
        else if (w->out_cap > SOTTO__GW_KEEP_OUT) {
            free(w->out);
            w->out = NULL;
            w->out_cap = 0;
        }
        return 0;
    }
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        if (w != NULL)
            worker_lost(g, w, "channel closed");
        return 0;
    default:
        break;
    }
    return 0;
}

/* ---- the supervisor channel --------------------------------------------- */

static const char *signame(int sig)
{
    const char *n = sig > 0 ? sigabbrev_np(sig) : NULL;
    return n != NULL ? n : "?";
}

static int on_ctl(sotto__gateway *g)
{
    sotto__ctl_msg m;
    int fd = -1, r = sotto__ctl_recv(g->ctl, &m, &fd);

    if (r == 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "supervisor gone; exiting");
        g->quit = 1;
        g->exit_code = 1;
        return -1;
    }
    if (r == -2) {
        sotto__log(SOTTO_LOG_ERROR, 0, "malformed record from the supervisor; ignored");
        return 0;
    }
    if (r < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    switch (m.type) {
    case SOTTO__CTL_WORKER_UP: {
        gw_worker *w;
        lws_sock_file_fd_type u;
        if (fd < 0 || m.slot < 0 || m.slot >= SOTTO__SERVE_MAX_WORKERS) {
            if (fd >= 0)
                close(fd);
            break;
        }
        w = &g->workers[m.slot];
        if (w->wsi != NULL) {
            struct lws *old = w->wsi;
            worker_lost(g, w, "replaced");
            lws_set_timeout(old, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
        }
        sotto__ipc_reader_free(&w->rd);
        w->slot = m.slot;
        w->pid = m.pid;
        w->generation = m.generation;
        w->ready = 0;
        w->killed = 0;
        w->out_n = 0;
        w->n_streams = 0;
        w->up_at = sotto__now();
        w->last_beat = w->up_at;
        w->fd = fd;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        if (m.slot >= g->n_workers)
            g->n_workers = m.slot + 1;
        if (m.generation > 1)
            g->m.worker_restarts++;
        u.filefd = fd;
        w->wsi = lws_adopt_descriptor_vhost(g->vh_raw, LWS_ADOPT_RAW_FILE_DESC, u,
                                            "sotto-ipc", NULL);
        if (w->wsi == NULL)
            sotto__log(SOTTO_LOG_ERROR, 0, "cannot watch worker%d's channel", m.slot);
        break;
    }
    case SOTTO__CTL_WORKER_DOWN: {
        gw_worker *w = m.slot >= 0 && m.slot < SOTTO__SERVE_MAX_WORKERS
                       ? &g->workers[m.slot] : NULL;
        char why[64];
        g->m.worker_deaths++;
        if (m.signal > 0 && m.signal < 65)
            g->m.deaths_by_signal[m.signal]++;
        if (m.signal > 0)
            snprintf(why, sizeof why, "killed by SIG%s", signame(m.signal));
        else
            snprintf(why, sizeof why, "exited with status %d", m.exit_status);
        if (w != NULL && w->pid == m.pid) {
            if (w->wsi != NULL) {
                struct lws *old = w->wsi;
                worker_lost(g, w, why);
                lws_set_timeout(old, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
            } else {
                sotto__log(SOTTO_LOG_INFO, 0, "worker%d (pid %d) %s", m.slot, m.pid, why);
            }
        }
        /* A death no handler recorded gets its record here: SIGKILL (the
         * watchdog's, an operator's, the kernel's OOM killer) or a failure
         * exit; a clean exit, a configuration error (78, logged by the
         * supervisor) and a stop the supervisor made are not crashes. */
        if (w != NULL && !m.expected && !g->draining &&
            !(m.signal == 0 && (m.exit_status == 0 || m.exit_status == SOTTO__EXIT_FATAL)) &&
            !sotto__crash_signal_recorded(m.signal)) {
            char role[32], detail[sizeof why + sizeof w->lost_why + 32];
            int held = w->lost_pid == m.pid;
            snprintf(role, sizeof role, "worker%d", m.slot);
            snprintf(detail, sizeof detail, "%s; the gateway lost it: %s", why,
                     held ? w->lost_why : "?");
            sotto__crash_record_death(g->c->state_dir, role, m.pid, m.exit_status,
                                      m.signal, detail, held ? w->lost_streams : NULL,
                                      held ? w->n_lost : 0, held ? w->lost_busy : 0);
        }
        break;
    }
    case SOTTO__CTL_STATE:
        m.reason[sizeof m.reason - 1] = 0;
        snprintf(g->sup_reason, sizeof g->sup_reason, "%s", m.reason);
        sotto__log(SOTTO_LOG_WARN, 0, "supervisor state: %s",
                   m.reason[0] ? m.reason : "normal");
        fail_waiting(g);
        break;
    case SOTTO__CTL_DRAIN:
        if (!g->draining) {
            g->draining = 1;
            g->drain_deadline = sotto__now() + g->c->drain_timeout;
            sotto__log(SOTTO_LOG_INFO, 0, "draining %d streams (deadline %.0f s)",
                       g->n_streams, g->c->drain_timeout);
            /* The raw TCP listeners close: their protocols have no way to
             * say "going away" before a stream starts. */
            if (g->tcp_listen_wsi != NULL) {
                lws_set_timeout(g->tcp_listen_wsi, PENDING_TIMEOUT_KILLED_BY_PARENT,
                                LWS_TO_KILL_ASYNC);
                g->tcp_listen_wsi = NULL;
            }
            if (g->wy_listen_wsi != NULL) {
                lws_set_timeout(g->wy_listen_wsi, PENDING_TIMEOUT_KILLED_BY_PARENT,
                                LWS_TO_KILL_ASYNC);
                g->wy_listen_wsi = NULL;
            }
            for (gw_stream *s = g->streams; s != NULL; s = s->next)
                sotto__gw_finish(g, s, 1001, "server shutting down");
        }
        break;
    default:
        if (fd >= 0)
            close(fd);
        break;
    }
    return 0;
}

static int cb_ctl(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                  void *in, size_t len)
{
    sotto__gateway *g = lws_context_user(lws_get_context(wsi));
    char b;

    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        if (lws_get_socket_fd(wsi) == g->life) {
            if (read(g->life, &b, 1) <= 0) {
                sotto__log(SOTTO_LOG_ERROR, 0, "supervisor gone; exiting");
                g->quit = 1;
                g->exit_code = 1;
                return -1;
            }
            return 0;
        }
        return on_ctl(g) < 0 ? -1 : 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        g->quit = 1;
        return 0;
    default:
        break;
    }
    return 0;
}

/* ---- streams (called by gateway_net.c) ---------------------------------- */

gw_stream *sotto__gw_stream_new(sotto__gateway *g, int kind, struct lws *wsi,
                                const gw_dialect *dl)
{
    gw_stream *s = calloc(1, sizeof *s);

    if (s == NULL)
        return NULL;
    s->id = ++g->next_id ? g->next_id : ++g->next_id;
    s->kind = kind;
    s->dl = dl;
    s->proto = dl != NULL ? dl->proto : GW_PROTO_TCP;
    g->m.proto_streams[s->proto]++;
    s->wsi = wsi;
    s->format = GW_S16;
    s->rate = SOTTO_SAMPLE_RATE;
    s->vad = g->c->vad;
    s->partials = g->c->partials;
    snprintf(s->language, sizeof s->language, "%s", g->c->language);
    s->worker = -1;
    s->ended_utt = -1;
    s->next_seq = 1;
    s->started = s->last_rx = sotto__now();
    s->next = g->streams;
    g->streams = s;
    g->n_streams++;
    g->m.streams_total++;
    return s;
}

void sotto__gw_client_gone(sotto__gateway *g, gw_stream *s)
{
    if (s == NULL)
        return;
    s->wsi = NULL;
    if (s->worker >= 0 && s->opened && !s->done) {
        sotto__log(SOTTO_LOG_INFO, s->id, "client gone; dropping the stream");
        worker_send(g, &g->workers[s->worker], SOTTO__IPC_DROP, s->id, 0, NULL, 0);
    } else {
        sotto__log(SOTTO_LOG_DEBUG, s->id, "client gone");
    }
    stream_free(g, s);
}

/* Whether s must stop reading: too much audio waiting for its worker, or
 * the client is too far ahead of real time. */
static int should_pause(const sotto__gateway *g, const gw_stream *s)
{
    double ahead = s->audio_in - (sotto__now() - s->started);
    return s->pending_bytes > g->c->max_pending_audio ||
           (s->format != GW_OPUS && ahead > g->c->max_ahead);
}

void sotto__gw_audio(sotto__gateway *g, gw_stream *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t bps = (size_t)bytes_per_sample(s->format), whole;
    gw_chunk *c;

    if (len == 0 || s->finishing || s->done)
        return;
    s->configured = 1;
    s->last_rx = sotto__now();
    s->bytes_in += len;
    g->m.bytes_in += len;
    /* Only whole samples go into a chunk, so that a replay from any chunk
     * starts on a sample boundary; a split sample waits for its rest. */
    whole = ((size_t)s->carry_n + len) / bps * bps;
    if (whole == 0) {
        memcpy(s->carry + s->carry_n, p, len);
        s->carry_n += (int)len;
        return;
    }
    c = malloc(sizeof *c + whole);
    if (c == NULL) {
        sotto__log(SOTTO_LOG_ERROR, s->id, "out of memory; ending the stream");
        sotto__gw_finish(g, s, 1011, "out of memory");
        return;
    }
    memcpy(c->data, s->carry, (size_t)s->carry_n);
    memcpy(c->data + s->carry_n, p, whole - (size_t)s->carry_n);
    {
        size_t used = whole - (size_t)s->carry_n, rest = len - used;
        memcpy(s->carry, p + used, rest);
        s->carry_n = (int)rest;
    }
    c->next = NULL;
    c->seq = s->next_seq++;
    c->arrived = s->last_rx;
    c->end_time = -1.0;
    c->cut = 0;
    c->len = whole;
    if (s->tail != NULL)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
    s->pending_bytes += whole;
    {
        double secs = s->format == GW_OPUS ? 0.02
                      : (double)whole / (double)bps / (double)s->rate;
        s->audio_in += secs;
        g->m.audio_seconds += secs;
    }
    if (s->worker < 0)
        assign_waiting(g);
    else if (s->opened)
        worker_send(g, &g->workers[s->worker], SOTTO__IPC_AUDIO, s->id, c->seq,
                    c->data, c->len);
    if (s->audio_in >= g->c->max_stream_seconds) {
        sotto__log(SOTTO_LOG_INFO, s->id, "reached max-stream-seconds (%.0f s)",
                   g->c->max_stream_seconds);
        sotto__gw_finish(g, s, 1008, "maximum stream duration reached");
        return;
    }
    if (!s->paused && s->wsi != NULL && should_pause(g, s)) {
        s->paused = 1;
        lws_rx_flow_control(s->wsi, 0);
    }
}

void sotto__gw_cut(sotto__gateway *g, gw_stream *s, int how)
{
    if (s->finishing || s->done)
        return;
    /* The mark makes a replay cut at the same place; with no chunk kept,
     * the audio before the cut is all committed or forgotten, and a
     * replay starts after it anyway. */
    if (s->tail != NULL)
        s->tail->cut = how;
    if (s->worker >= 0 && s->opened)
        send_cut(g, &g->workers[s->worker], s, how);
}

void sotto__gw_finish(sotto__gateway *g, gw_stream *s, int code, const char *reason)
{
    if (s->finishing || s->done)
        return;
    s->finishing = 1;
    if (s->close_code == 0 || code != 1000) {
        s->close_code = code;
        snprintf(s->close_reason, sizeof s->close_reason, "%s", reason ? reason : "");
    }
    if (s->paused && !s->eof && s->wsi != NULL) {
        s->paused = 0;
        lws_rx_flow_control(s->wsi, 1);
    }
    if (!s->configured || (s->head == NULL && s->next_seq == 1 && s->worker < 0)) {
        /* Nothing was ever sent: there is nothing to flush. */
        s->done = 1;
        sotto__gw_want_write(s);
        return;
    }
    if (s->worker >= 0 && s->opened && !s->finish_sent) {
        worker_send(g, &g->workers[s->worker], SOTTO__IPC_FINISH, s->id, 0, NULL, 0);
        s->finish_sent = 1;
    }
}

int sotto__gw_workers_healthy(const sotto__gateway *g)
{
    double now = sotto__now();
    int n = 0;

    for (int i = 0; i < g->n_workers; i++) {
        const gw_worker *w = &g->workers[i];
        if (w->wsi != NULL && w->ready && !w->killed &&
            now - w->last_beat <= g->c->heartbeat_timeout &&
            w->busy_ms <= g->c->inference_timeout * 1000.0)
            n++;
    }
    return n;
}

int sotto__gw_admit(const sotto__gateway *g, const char **reason)
{
    if (g->draining) {
        *reason = "draining";
        return 0;
    }
    if (g->n_streams + g->n_jobs >= g->c->max_streams) {
        *reason = "capacity";
        return 0;
    }
    if (g->sup_reason[0] != 0 && sotto__gw_workers_healthy(g) == 0) {
        *reason = g->sup_reason;
        return 0;
    }
    *reason = NULL;
    return 1;
}

void sotto__gw_count_refusal(sotto__gateway *g, int proto, const char *why)
{
    if (strcmp(why, "capacity") == 0)
        g->m.rejected_capacity++;
    else
        g->m.rejected_other++;
    g->m.proto_rejected[proto]++;
}

const char *sotto__gw_refusal_code(const char *why)
{
    return strcmp(why, "capacity") == 0   ? "server_busy"
           : strcmp(why, "draining") == 0 ? "server_shutting_down"
                                          : "no_worker";
}

const char *sotto__gw_refusal_text(const char *why)
{
    return strcmp(why, "capacity") == 0   ? "the server is at capacity; try again later"
           : strcmp(why, "draining") == 0 ? "the server is shutting down"
                                          : "no engine process can run now";
}

/* ---- the tick: watchdog, flow control, idle timeouts, drain ------------- */

/* Descriptors open in this process (/proc/self/fd, less the one reading
 * it); -1 if it cannot be read. */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/*
 * Once a second: how close the gateway is to its descriptor limit.  At the
 * limit libwebsockets stops accepting without a word, and new connections
 * wait in the listen backlog, so the operator learns of it here: a warning
 * when the open descriptors reach the limit, a note when a tenth of them
 * is free again, and the count in /metrics.  (Counting costs a directory
 * read per second, proportional to the connections open.)
 */
static void check_fds(sotto__gateway *g, double now)
{
    if (now - g->fds_checked < 1.0)
        return;
    g->fds_checked = now;
    if ((g->n_fds = count_fds()) < 0 || g->fd_limit == 0)
        return;
    if (!g->fds_full && (unsigned)g->n_fds + 2 >= g->fd_limit) {
        g->fds_full = 1;
        sotto__log(SOTTO_LOG_WARN, 0, "at the file descriptor limit (%d open, %u "
                   "for connections; ulimit -n): new connections wait in the "
                   "listen backlog until some close", g->n_fds, g->fd_limit);
    } else if (g->fds_full && (unsigned)g->n_fds < g->fd_limit - g->fd_limit / 10) {
        g->fds_full = 0;
        sotto__log(SOTTO_LOG_INFO, 0, "file descriptors free again (%d open); "
                   "accepting connections", g->n_fds);
    }
}

static void tick(lws_sorted_usec_list_t *sul)
{
    sotto__gateway *g = lws_container_of(sul, sotto__gateway, tick);
    double now = sotto__now();

    /* Once idle after work, give the heap's free memory back to the
     * system: the buffers of a busy spell (replay lists, queues, rx
     * reassembly) are freed, but glibc keeps the pages unless asked, and
     * the gateway's RSS would stay at its peak (make soak checks it). */
    if (g->n_streams > 0 || g->n_jobs > 0) {
        g->busy = 1;
    } else if (g->busy) {
        g->busy = 0;
        malloc_trim(0);
    }
    check_fds(g, now);

    for (int i = 0; i < g->n_workers; i++) {
        gw_worker *w = &g->workers[i];
        const char *why = NULL;
        char msg[96];
        if (w->wsi == NULL || !w->ready || w->killed)
            continue;
        if (now - w->last_beat > g->c->heartbeat_timeout)
            why = "no heartbeat";
        else if (w->busy_ms > g->c->inference_timeout * 1000.0)
            why = "stuck in one inference";
        if (why == NULL)
            continue;
        snprintf(msg, sizeof msg, "%s (%.1f s)", why,
                 w->busy_ms > g->c->inference_timeout * 1000.0 ? w->busy_ms / 1000.0
                                                               : now - w->last_beat);
        sotto__log(SOTTO_LOG_ERROR, w->busy_stream, "watchdog: worker%d (pid %d) %s; killing it",
                   w->slot, w->pid, msg);
        w->killed = 1;
        g->m.watchdog_kills++;
        {
            sotto__ctl_msg m;
            memset(&m, 0, sizeof m);
            m.type = SOTTO__CTL_KILL_WORKER;
            m.slot = w->slot;
            m.pid = w->pid;
            snprintf(m.reason, sizeof m.reason, "watchdog: %.80s", msg);
            sotto__ctl_send(g->ctl, &m, -1);
        }
        kill(w->pid, SIGKILL);
        /* SIGSTOPped processes die on SIGKILL too; recover at once rather
         * than wait for the reaping. */
        worker_lost(g, w, msg);
    }
    for (gw_stream *s = g->streams, *next; s != NULL; s = next) {
        next = s->next;
        if (s->paused && !s->eof && s->wsi != NULL && !should_pause(g, s)) {
            s->paused = 0;
            lws_rx_flow_control(s->wsi, 1);
        }
        if (!s->finishing && !s->done && s->wsi != NULL && !s->paused &&
            now - s->last_rx > g->c->idle_timeout) {
            sotto__log(SOTTO_LOG_INFO, s->id, "idle for %.0f s; ending the stream",
                       g->c->idle_timeout);
            sotto__gw_finish(g, s, 1008, "idle timeout");
        }
    }
    if (g->draining) {
        /* The clients' answers to the close frames are waited for, so
         * that exiting does not reset a connection the client is still
         * sending on (which can lose the frame); each waits at most
         * GW_CLOSE_ACK_TIMEOUT, and the deadline still holds. */
        if (g->n_streams == 0 && g->n_jobs == 0 && g->n_ws_closing == 0) {
            sotto__log(SOTTO_LOG_INFO, 0, "drained; exiting");
            g->quit = 1;
        } else if (now > g->drain_deadline) {
            sotto__log(SOTTO_LOG_WARN, 0, "drain deadline passed with %d streams and %d "
                       "unanswered closes; closing them", g->n_streams, g->n_ws_closing);
            for (gw_stream *s = g->streams; s != NULL; s = s->next)
                if (s->wsi != NULL) {
                    s->done = 1;
                    sotto__gw_want_write(s);
                }
            if (now > g->drain_deadline + 1.0)
                g->quit = 1;
        }
    }
    if (g->quit)
        lws_cancel_service(g->ctx);
    lws_sul_schedule(g->ctx, 0, &g->tick, tick, SOTTO__GW_TICK_US);
}

/* ---- setup -------------------------------------------------------------- */

static void lws_log_emit(int level, const char *line)
{
    char buf[512];
    size_t n = strlen(line);

    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, line, n);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = 0;
    sotto__log(level == LLL_ERR ? SOTTO_LOG_ERROR : SOTTO_LOG_WARN, 0, "lws: %s", buf);
}

/* Binds the raw TCP listener (our own socket, watched by lws). */
static int tcp_listen(sotto__gateway *g, const char *what, int port, int *fd_out,
                      int *bound, struct lws **wsi)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int fd, one = 1;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    lws_sock_file_fd_type u;

    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, g->c->listen, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        sl = sizeof *a4;
    } else if (inet_pton(AF_INET6, g->c->listen, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof *a6;
    } else {
        sotto__log(SOTTO_LOG_ERROR, 0, "listen address \"%s\" is not an IP address",
                   g->c->listen);
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 128) != 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "cannot listen on %s %s:%d: %s (--%s-port, -1 "
                   "turns it off)", what, g->c->listen, port, strerror(errno), what);
        close(fd);
        return -1;
    }
    sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound = ntohs(ss.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
    *fd_out = fd;
    u.filefd = fd;
    *wsi = lws_adopt_descriptor_vhost(g->vh_http, LWS_ADOPT_RAW_FILE_DESC, u, "sotto-tcp",
                                      NULL);
    return *wsi != NULL ? 0 : -1;
}

static const struct lws_protocols raw_protocols[] = {
    { "sotto-ipc", cb_ipc, 0, 0, 0, NULL, 0 },
    { "sotto-ctl", cb_ctl, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

static struct lws *adopt(sotto__gateway *g, int fd, const char *proto)
{
    lws_sock_file_fd_type u;
    u.filefd = fd;
    return lws_adopt_descriptor_vhost(g->vh_raw, LWS_ADOPT_RAW_FILE_DESC, u, proto, NULL);
}

/* With --tls-cert, the HTTP and WebSocket listeners speak TLS only
 * (OpenSSL through libwebsockets); the raw TCP ones never do. */
static void tls_info(const sotto__serve_config *c, struct lws_context_creation_info *info)
{
    if (c->tls_cert[0] == 0)
        return;
    /* libwebsockets turns TLS on for a vhost only with this option in
     * the vhost's own creation info too, not just the context's. */
    info->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info->ssl_cert_filepath = c->tls_cert;
    info->ssl_private_key_filepath = c->tls_key;
}

/* A listener whose WebSocket upgrades, on any path, speak one dialect
 * (dialect_of in gateway_net.c tells them by their vhost). */
static int dialect_vhost(sotto__gateway *g, const char *name, int port,
                         struct lws_vhost **vh, int *bound)
{
    struct lws_context_creation_info info;

    memset(&info, 0, sizeof info);
    info.vhost_name = name;
    info.port = port;
    info.iface = g->c->listen;
    info.protocols = sotto__gw_protocols;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.keepalive_timeout = 5;
    info.timeout_secs = 20;
    tls_info(g->c, &info);
    if ((*vh = lws_create_vhost(g->ctx, &info)) == NULL) {
        sotto__log(SOTTO_LOG_ERROR, 0, "cannot listen on %s:%d for the %s protocol "
                   "(--%s-port, -1 turns it off)", g->c->listen, port, name, name);
        return -1;
    }
    *bound = lws_get_vhost_listen_port(*vh);
    return 0;
}

/*
 * How many descriptors libwebsockets may use: the soft limit, raised to
 * the hard one first (a server with many clients needs them, as nginx's
 * worker_rlimit_nofile does), less SOTTO__GW_FD_RESERVE.  When its table
 * is full, libwebsockets stops accepting until a connection ends, so a
 * flood of connections waits in the backlog instead of running the
 * process out of descriptors.  0 (libwebsockets' default) when the limit
 * is unknown or infinite.
 */
static unsigned fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1u << 20)
        return 0;
    if (rl.rlim_cur < 2 * SOTTO__GW_FD_RESERVE) {
        sotto__log(SOTTO_LOG_WARN, 0, "only %lu file descriptors (ulimit -n); "
                   "few clients can connect", (unsigned long)rl.rlim_cur);
        return (unsigned)rl.rlim_cur / 2;
    }
    return (unsigned)(rl.rlim_cur - SOTTO__GW_FD_RESERVE);
}

int sotto__gateway_main(const sotto__serve_config *c, int ctl, int life)
{
    struct lws_context_creation_info info;
    sotto__gateway *g = calloc(1, sizeof *g);
    int rc = 1;

    signal(SIGPIPE, SIG_IGN);
    /* Ctrl+C reaches the whole process group; only the supervisor acts on
     * it (it tells the gateway to drain over the control channel). */
    signal(SIGINT, SIG_IGN);
    if (g == NULL)
        return 1;
    g->c = c;
    g->ctl = ctl;
    g->life = life;
    g->tcp_listen_fd = g->wy_listen_fd = -1;
    g->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);

    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (c->tls_cert[0] != 0)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.user = g;
    info.uid = -1;
    info.gid = -1;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.max_http_header_data = SOTTO__GW_MAX_HEADER_DATA;
    info.fd_limit_per_thread = g->fd_limit = fd_limit();
    if ((g->ctx = lws_create_context(&info)) == NULL) {
        sotto__log(SOTTO_LOG_ERROR, 0, "cannot create the event loop");
        goto fail;
    }
    /* The HTTP + WebSocket listener. */
    memset(&info, 0, sizeof info);
    info.vhost_name = "http";
    info.port = c->http_port;
    info.iface = c->listen;
    info.protocols = sotto__gw_protocols;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8;
    info.keepalive_timeout = 5;
    info.timeout_secs = 20;
    tls_info(c, &info);
    if ((g->vh_http = lws_create_vhost(g->ctx, &info)) == NULL) {
        sotto__log(SOTTO_LOG_ERROR, 0, "cannot listen on http %s:%d", c->listen, c->http_port);
        rc = SOTTO__EXIT_FATAL;
        goto fail;
    }
    g->http_port = lws_get_vhost_listen_port(g->vh_http);
    /* The dialects' own ports, for clients that cannot choose a path. */
    g->vosk_port = g->wl_port = -1;
    if ((c->vosk_port >= 0 && dialect_vhost(g, "vosk", c->vosk_port, &g->vh_vosk,
                                            &g->vosk_port) != 0) ||
        (c->whisperlive_port >= 0 &&
         dialect_vhost(g, "whisperlive", c->whisperlive_port, &g->vh_wl, &g->wl_port) != 0)) {
        rc = SOTTO__EXIT_FATAL;
        goto fail;
    }
    /* A vhost without a listener for the raw descriptors. */
    memset(&info, 0, sizeof info);
    info.vhost_name = "raw";
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = raw_protocols;
    if ((g->vh_raw = lws_create_vhost(g->ctx, &info)) == NULL)
        goto fail;
    g->wy_port = -1;
    if ((c->tcp_port >= 0 && tcp_listen(g, "tcp", c->tcp_port, &g->tcp_listen_fd,
                                        &g->tcp_port, &g->tcp_listen_wsi) != 0) ||
        (c->wyoming_port >= 0 && tcp_listen(g, "wyoming", c->wyoming_port, &g->wy_listen_fd,
                                            &g->wy_port, &g->wy_listen_wsi) != 0)) {
        rc = SOTTO__EXIT_FATAL;
        goto fail;
    }
    /* Every port is bound (and the TLS key read): root is no longer
     * needed. */
    if (sotto__drop_privileges(c) != 0) {
        rc = SOTTO__EXIT_FATAL;
        goto fail;
    }
    fcntl(ctl, F_SETFL, fcntl(ctl, F_GETFL) | O_NONBLOCK);
    if (adopt(g, ctl, "sotto-ctl") == NULL || adopt(g, life, "sotto-ctl") == NULL)
        goto fail;
    {
        sotto__ctl_msg m;
        memset(&m, 0, sizeof m);
        m.type = SOTTO__CTL_LISTENING;
        m.http_port = g->http_port;
        m.tcp_port = c->tcp_port >= 0 ? g->tcp_port : -1;
        m.vosk_port = g->vosk_port;
        m.whisperlive_port = g->wl_port;
        m.wyoming_port = g->wy_port;
        if (sotto__ctl_send(ctl, &m, -1) != 0)
            goto fail;
    }
    sotto__log(SOTTO_LOG_INFO, 0, "gateway up: http %s:%d, tcp %d, vosk %d, whisperlive %d, "
               "wyoming %d", c->listen, g->http_port, c->tcp_port >= 0 ? g->tcp_port : -1,
               g->vosk_port, g->wl_port, g->wy_port);
    lws_sul_schedule(g->ctx, 0, &g->tick, tick, SOTTO__GW_TICK_US);
    while (!g->quit)
        if (lws_service(g->ctx, 0) < 0)
            break;
    rc = g->exit_code;
fail:
    if (g->ctx != NULL) {
        lws_sul_cancel(&g->tick);
        lws_sul_cancel(&g->rearm);
        lws_context_destroy(g->ctx);
    }
    while (g->streams != NULL)
        stream_free(g, g->streams);
    sotto__gw_jobs_free(g);
    for (int i = 0; i < SOTTO__SERVE_MAX_WORKERS; i++) {
        sotto__ipc_reader_free(&g->workers[i].rd);
        free(g->workers[i].out);
    }
    if (g->spare_fd >= 0)
        close(g->spare_fd);
    free(g);
    return rc;
}
