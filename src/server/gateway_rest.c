/*
 * gateway_rest.c - the OpenAI-compatible REST endpoint of the gateway:
 * POST /v1/audio/transcriptions and GET /v1/models (docs/protocol.md).
 *
 * libwebsockets parses the HTTP request and its multipart/form-data body
 * (lws_spa); this file checks the fields (sotto__rest_parse in dialect.c),
 * keeps the uploaded file, bounded by --max-upload, and makes it a job.
 * The gateway never decodes it: the job goes to a worker (JOB, JOB_DATA,
 * JOB_RUN in ipc.h), which decodes the file and transcribes it as `sotto
 * transcribe` does, sending the segments of each 30-second window as they
 * are done.  The gateway renders them in the response format asked for,
 * or streams them as Server-Sent Events with stream=true.
 *
 * A job counts as a stream for --max-streams; at capacity, draining, or
 * with no worker able to run, the request gets 503 with Retry-After.  If
 * the worker dies during a job, the job runs again on another worker (the
 * gateway kept the file), up to SOTTO__GW_MAX_STREAM_CRASHES times; an
 * SSE client gets only the segments it has not had yet.  Errors are
 * OpenAI's JSON: {"error": {"message", "type", "param", "code"}}.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sotto.h"
#include "server/dialect.h"
#include "server/gateway.h"

/* Bytes of form fields (all but the file) kept per request. */
#define GW_REST_MAX_FIELDS 8192
/* Multipart overhead allowed over --max-upload in Content-Length (the
 * boundaries, part headers and the small fields). */
#define GW_REST_FORM_SLACK (64u * 1024)
/* Bytes written to the client per writeable callback. */
#define GW_REST_WRITE 16384

/* Most pieces a long recording is split into (one per free worker). */
#define GW_REST_MAX_PIECES 16

typedef struct gw_job {
    struct gw_job *next;
    uint32_t id;
    /* A piece of a split recording: its parent job, index and offset.
     * Pieces are jobs of their own (placement, rerun after a worker
     * death), but not streams: the parent alone counts for admission. */
    struct gw_job *parent;
    int index;
    double offset;
    size_t expect;            /* bytes of PCM the piece will have */
    struct gw_job *pieces[GW_REST_MAX_PIECES];
    int n_pieces;             /* the parent's pieces (0: not split) */
    int pieces_asked;         /* pieces the parent was allowed */
    int own_done;             /* the parent's own piece (0) is done */
    int piece_done;           /* a piece: its transcription is done */
    int next_emit;            /* SSE: the next piece to stream */
    struct lws *wsi;          /* the HTTP client; NULL once it is gone */
    struct lws_spa *spa;
    unsigned char *file;      /* the upload, kept for a rerun */
    size_t file_n, file_cap;
    int file_parts;
    sotto__rest_req req;
    int worker;               /* slot, -1 while waiting */
    int crashes;
    double started;
    /* The result. */
    cJSON *segments;          /* every segment so far */
    int sent;                 /* segments sent as SSE deltas */
    int run_segments;         /* segments of the current run */
    char *text;               /* the text so far */
    size_t text_n;
    double duration;
    char language[SOTTO__DIALECT_MAX_LANGUAGE + 1];
    /* The response. */
    int status;               /* 0 until known */
    int error;                /* an error response is set (body ignored) */
    int headers_sent, finished, complete;
    const char *ctype;
    int retry_after;
    unsigned char *out;       /* bytes waiting to be written */
    size_t out_n, out_cap, out_off;
} gw_job;

static const char *format_ctype(int f)
{
    return f == SOTTO__REST_JSON || f == SOTTO__REST_VERBOSE_JSON
           ? "application/json" : "text/plain; charset=utf-8";
}

static void job_out(gw_job *j, const void *p, size_t n)
{
    (void)sotto__gw_buf_add(&j->out, &j->out_n, &j->out_cap, p, n);
}

static void want_write(gw_job *j)
{
    if (j->wsi != NULL)
        lws_callback_on_writable(j->wsi);
}

/* Sets an OpenAI error as the response. */
static void job_fail(gw_job *j, int status, const char *param, const char *code,
                     const char *message)
{
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    char *t;

    sotto__log(status >= 500 ? SOTTO_LOG_WARN : SOTTO_LOG_INFO, j->id,
               "transcription request: %d %s", status, message);
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", status >= 500 ? "server_error"
                                                     : "invalid_request_error");
    if (param != NULL)
        cJSON_AddStringToObject(e, "param", param);
    else
        cJSON_AddNullToObject(e, "param");
    if (code != NULL)
        cJSON_AddStringToObject(e, "code", code);
    else
        cJSON_AddNullToObject(e, "code");
    j->out_n = j->out_off = 0;
    if ((t = cJSON_PrintUnformatted(o)) != NULL) {
        job_out(j, t, strlen(t));
        job_out(j, "\n", 1);
    }
    free(t);
    cJSON_Delete(o);
    j->status = status;
    j->error = 1;
    j->ctype = "application/json";
    j->retry_after = status == 503;
    j->complete = 1;
    want_write(j);
}

static gw_job *job_find(sotto__gateway *g, uint32_t id)
{
    for (gw_job *j = g->jobs; j != NULL; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

static void job_free(sotto__gateway *g, gw_job *j)
{
    gw_job **pp = &g->jobs;

    while (*pp != NULL && *pp != j)
        pp = &(*pp)->next;
    if (*pp == j) {
        *pp = j->next;
        if (j->parent == NULL)
            g->n_jobs--;
    }
    /* Its pieces are orphans now: those on a worker are freed when they
     * end, the others at once. */
    for (int i = 1; i < j->n_pieces; i++)
        if (j->pieces[i] != NULL) {
            gw_job *p = j->pieces[i];
            p->parent = NULL;
            p->wsi = NULL;
            if (p->worker < 0)
                job_free(g, p);
        }
    if (j->parent != NULL)
        j->parent->pieces[j->index] = NULL;
    if (j->worker >= 0 && g->workers[j->worker].n_jobs > 0)
        g->workers[j->worker].n_jobs--;
    if (j->spa != NULL)
        lws_spa_destroy(j->spa);
    cJSON_Delete(j->segments);
    free(j->file);
    free(j->text);
    free(j->out);
    free(j);
}

/* ---- the request ---------------------------------------------------------- */

static int file_cb(void *data, const char *name, const char *filename, char *buf, int len,
                   enum lws_spa_fileupload_states state)
{
    gw_job *j = data;
    sotto__gateway *g = j->wsi != NULL ? lws_context_user(lws_get_context(j->wsi)) : NULL;

    if (j->error || g == NULL || name == NULL || strcmp(name, "file") != 0)
        return 0;
    if (state == LWS_UFS_OPEN) {
        if (++j->file_parts > 1)
            job_fail(j, 400, "file", NULL, "send one file");
        return 0;
    }
    if ((state == LWS_UFS_CONTENT || state == LWS_UFS_FINAL_CONTENT) && len > 0) {
        if (j->file_n + (size_t)len > g->c->max_upload) {
            char msg[128];
            snprintf(msg, sizeof msg, "the file is larger than the limit of %zu bytes",
                     g->c->max_upload);
            job_fail(j, 413, "file", "file_too_large", msg);
            return 0;
        }
        if (sotto__gw_buf_add(&j->file, &j->file_n, &j->file_cap, buf, (size_t)len) != 0)
            job_fail(j, 500, NULL, NULL, "out of memory");
    }
    return 0;
}

int sotto__gw_rest_request(struct lws *wsi, sotto__gateway *g, void **slot, const char *path,
                           int post)
{
    char cl[32], ct[128];
    const char *why;
    gw_job *j;
    lws_spa_create_info_t si;

    if (strcmp(path, "/v1/audio/transcriptions") != 0)
        return 0;
    if ((j = calloc(1, sizeof *j)) == NULL)
        return 0;
    j->id = ++g->next_id ? g->next_id : ++g->next_id;
    j->wsi = wsi;
    j->worker = -1;
    j->started = sotto__now();
    j->next = g->jobs;
    g->jobs = j;
    g->n_jobs++;
    *slot = j;
    if (!post) {
        job_fail(j, 405, NULL, NULL, "POST a multipart/form-data request here");
        return 1;
    }
    if (lws_hdr_copy(wsi, ct, sizeof ct, WSI_TOKEN_HTTP_CONTENT_TYPE) <= 0 ||
        strncmp(ct, "multipart/form-data", 19) != 0) {
        job_fail(j, 400, NULL, NULL, "the request must be multipart/form-data");
        return 1;
    }
    if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
        strtod(cl, NULL) > (double)(g->c->max_upload + GW_REST_FORM_SLACK)) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request is larger than the limit of %zu bytes",
                 g->c->max_upload);
        job_fail(j, 413, "file", "file_too_large", msg);
        return 1;
    }
    /* The job is one more stream: admission counts it (n_jobs). */
    g->n_jobs--;
    if (!sotto__gw_admit(g, &why)) {
        g->n_jobs++;
        sotto__gw_count_refusal(g, GW_PROTO_REST, why);
        job_fail(j, 503, NULL, sotto__gw_refusal_code(why), sotto__gw_refusal_text(why));
        return 1;
    }
    g->n_jobs++;
    g->m.streams_total++;
    g->m.proto_streams[GW_PROTO_REST]++;
    memset(&si, 0, sizeof si);
    si.param_names = sotto__rest_field_names;
    si.count_params = SOTTO__REST_N_FIELDS;
    si.max_storage = GW_REST_MAX_FIELDS;
    si.opt_cb = file_cb;
    si.opt_data = j;
    if ((j->spa = lws_spa_create_via_info(wsi, &si)) == NULL)
        job_fail(j, 500, NULL, NULL, "out of memory");
    sotto__log(SOTTO_LOG_INFO, j->id, "transcription request (%s bytes)", cl[0] ? cl : "?");
    return 1;
}

int sotto__gw_rest_body(struct lws *wsi, sotto__gateway *g, void *job, const void *in,
                        size_t len)
{
    gw_job *j = job;

    if (j == NULL || j->error || j->spa == NULL)
        return 0;             /* an error is on its way; the rest is dropped */
    if (lws_spa_process(j->spa, in, (int)len) < 0)
        job_fail(j, 400, NULL, NULL, "the multipart/form-data body is malformed");
    return 0;
}

/* Sends the job (file and all) to a worker. */
static int job_dispatch(sotto__gateway *g, gw_job *j, gw_worker *w)
{
    cJSON *o = cJSON_CreateObject();
    char *t;
    int rc = -1;
    uint32_t seq = 1;

    if (j->req.language[0] != 0)
        cJSON_AddStringToObject(o, "language", j->req.language);
    if (j->req.prompt[0] != 0)
        cJSON_AddStringToObject(o, "prompt", j->req.prompt);
    cJSON_AddNumberToObject(o, "temperature", j->req.temperature);
    cJSON_AddBoolToObject(o, "words", j->req.words);
    if (j->parent != NULL) {
        cJSON_AddBoolToObject(o, "pcm", 1);
    } else {
        /* A long recording is split across the workers free now (the
         * worker decides whether it is long enough); a rerun splits as
         * the first run did. */
        if (j->pieces_asked == 0) {
            int free_workers = 0;
            for (int i = 0; i < g->n_workers; i++)
                free_workers += g->workers[i].wsi != NULL && g->workers[i].ready &&
                                !g->workers[i].killed && g->workers[i].n_jobs == 0 &&
                                g->workers[i].n_streams == 0;
            j->pieces_asked = free_workers < 1 ? 1 : free_workers > GW_REST_MAX_PIECES
                                                     ? GW_REST_MAX_PIECES : free_workers;
        }
        cJSON_AddNumberToObject(o, "pieces", j->pieces_asked);
        cJSON_AddNumberToObject(o, "max_seconds", g->c->max_stream_seconds);
    }
    if ((t = cJSON_PrintUnformatted(o)) != NULL &&
        sotto__gw_worker_send(g, w, SOTTO__IPC_JOB, j->id, 0, t, strlen(t)) == 0) {
        rc = 0;
        for (size_t at = 0; rc == 0 && at < j->file_n; at += SOTTO__IPC_MAX_PAYLOAD) {
            size_t k = j->file_n - at < SOTTO__IPC_MAX_PAYLOAD ? j->file_n - at
                                                               : SOTTO__IPC_MAX_PAYLOAD;
            rc = sotto__gw_worker_send(g, w, SOTTO__IPC_JOB_DATA, j->id, seq++,
                                       j->file + at, k);
        }
        if (rc == 0) {
            char run[48];
            snprintf(run, sizeof run, "{\"bytes\":%zu}", j->file_n);
            rc = sotto__gw_worker_send(g, w, SOTTO__IPC_JOB_RUN, j->id, 0, run, strlen(run));
        }
    }
    free(t);
    cJSON_Delete(o);
    if (rc == 0) {
        j->worker = w->slot;
        j->run_segments = 0;
        w->n_jobs++;
        sotto__log(SOTTO_LOG_DEBUG, j->id, "job placed on worker%d", w->slot);
    }
    return rc;
}

void sotto__gw_jobs_assign(sotto__gateway *g)
{
    for (gw_job *j = g->jobs; j != NULL; j = j->next) {
        gw_worker *best = NULL;
        if (j->worker >= 0 || j->error || j->spa != NULL || j->file_n == 0 || j->complete ||
            j->piece_done || (j->parent != NULL && j->file_n < j->expect))
            continue;
        /* The least busy worker: jobs block a worker for their length. */
        for (int i = 0; i < g->n_workers; i++) {
            gw_worker *w = &g->workers[i];
            if (w->wsi != NULL && w->ready && !w->killed &&
                (best == NULL || w->n_streams + 4 * w->n_jobs <
                                 best->n_streams + 4 * best->n_jobs))
                best = w;
        }
        if (best == NULL)
            return;
        if (job_dispatch(g, j, best) != 0)
            job_fail(j->parent != NULL ? j->parent : j, 500, NULL, NULL,
                     "cannot reach an engine process");
    }
}

int sotto__gw_rest_body_done(struct lws *wsi, sotto__gateway *g, void *job)
{
    gw_job *j = job;
    const char *v[SOTTO__REST_N_FIELDS], *param;
    char err[200];

    if (j == NULL || j->error)
        return 0;
    lws_spa_finalize(j->spa);
    for (int i = 0; i < SOTTO__REST_N_FIELDS; i++)
        v[i] = lws_spa_get_length(j->spa, i) > 0 ? lws_spa_get_string(j->spa, i) : NULL;
    if (sotto__rest_parse(v, &j->req, &param, err, sizeof err) != 0) {
        job_fail(j, 400, param, "invalid_value", err);
        return 0;
    }
    lws_spa_destroy(j->spa);
    j->spa = NULL;
    if (j->file_parts == 0) {
        job_fail(j, 400, "file", NULL, "the request has no file field");
        return 0;
    }
    if (j->file_n == 0) {
        job_fail(j, 400, "file", "empty_file", "the file is empty");
        return 0;
    }
    j->ctype = j->req.stream ? "text/event-stream" : format_ctype(j->req.format);
    if ((j->segments = cJSON_CreateArray()) == NULL) {
        job_fail(j, 500, NULL, NULL, "out of memory");
        return 0;
    }
    sotto__log(SOTTO_LOG_INFO, j->id, "transcribing an upload of %zu bytes%s", j->file_n,
               j->req.stream ? " (SSE)" : "");
    /* The reply takes as long as the file does: no HTTP timeout now. */
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    sotto__gw_jobs_assign(g);
    return 0;
}

/* ---- the result ----------------------------------------------------------- */

static void sse(gw_job *j, cJSON *o)
{
    char *t = cJSON_PrintUnformatted(o);

    if (t != NULL) {
        job_out(j, "data: ", 6);
        job_out(j, t, strlen(t));
        job_out(j, "\n\n", 2);
    }
    free(t);
    cJSON_Delete(o);
}

static void add_text(gw_job *j, const char *t)
{
    size_t l = strlen(t);
    char *nt = realloc(j->text, j->text_n + l + 1);

    if (nt == NULL)
        return;
    j->text = nt;
    memcpy(j->text + j->text_n, t, l + 1);
    j->text_n += l;
}

/* The text without Whisper's leading space. */
static const char *full_text(const gw_job *j)
{
    const char *t = j->text != NULL ? j->text : "";
    return t + strspn(t, " ");
}

static void timestamp(char *b, size_t cap, double t, char sep)
{
    long ms = lround(t * 1000.0);
    if (ms < 0)
        ms = 0;
    snprintf(b, cap, "%02ld:%02ld:%02ld%c%03ld", ms / 3600000, ms / 60000 % 60,
             ms / 1000 % 60, sep, ms % 1000);
}

static const char *language_name(const char *code)
{
    /* verbose_json names the language as OpenAI does; English is what a
     * .en model speaks, other codes are given as they are. */
    return strcmp(code, "en") == 0 ? "english" : code;
}

/* Renders the whole response body for a non-streaming request. */
static void render(gw_job *j)
{
    const cJSON *s;
    char a[32], b[32];
    int i = 0;

    switch (j->req.format) {
    case SOTTO__REST_TEXT:
        job_out(j, full_text(j), strlen(full_text(j)));
        job_out(j, "\n", 1);
        return;
    case SOTTO__REST_SRT:
    case SOTTO__REST_VTT: {
        int vtt = j->req.format == SOTTO__REST_VTT;
        if (vtt)
            job_out(j, "WEBVTT\n\n", 8);
        cJSON_ArrayForEach(s, j->segments) {
            const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "text"));
            char head[96];
            int n;
            timestamp(a, sizeof a, cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "start")),
                      vtt ? '.' : ',');
            timestamp(b, sizeof b, cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "end")),
                      vtt ? '.' : ',');
            if (vtt)
                n = snprintf(head, sizeof head, "%s --> %s\n", a, b);
            else
                n = snprintf(head, sizeof head, "%d\n%s --> %s\n", ++i, a, b);
            job_out(j, head, (size_t)n);
            t = t != NULL ? t + strspn(t, " ") : "";
            job_out(j, t, strlen(t));
            job_out(j, "\n\n", 2);
        }
        return;
    }
    case SOTTO__REST_VERBOSE_JSON: {
        cJSON *o = cJSON_CreateObject(), *segs, *words = NULL;
        char *t;
        cJSON_AddStringToObject(o, "task", "transcribe");
        cJSON_AddStringToObject(o, "language", language_name(j->language));
        cJSON_AddNumberToObject(o, "duration", j->duration);
        cJSON_AddStringToObject(o, "text", full_text(j));
        segs = cJSON_AddArrayToObject(o, "segments");
        if (j->req.words)
            words = cJSON_AddArrayToObject(o, "words");
        cJSON_ArrayForEach(s, j->segments) {
            cJSON *x = cJSON_CreateObject(), *w;
            double st = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "start"));
            cJSON_AddNumberToObject(x, "id", i++);
            cJSON_AddNumberToObject(x, "seek", floor(st * 100.0));
            cJSON_AddNumberToObject(x, "start", st);
            cJSON_AddNumberToObject(x, "end",
                cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "end")));
            cJSON_AddItemToObject(x, "text", cJSON_Duplicate(
                cJSON_GetObjectItemCaseSensitive(s, "text"), 1));
            cJSON_AddItemToObject(x, "tokens", cJSON_Duplicate(
                cJSON_GetObjectItemCaseSensitive(s, "tokens"), 1));
            cJSON_AddNumberToObject(x, "temperature",
                cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "temperature")));
            cJSON_AddNumberToObject(x, "avg_logprob",
                cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "avg_logprob")));
            cJSON_AddNumberToObject(x, "compression_ratio",
                cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "compression_ratio")));
            cJSON_AddNumberToObject(x, "no_speech_prob",
                cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "no_speech_prob")));
            cJSON_AddItemToArray(segs, x);
            cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(s, "words")) {
                const char *wt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(w, "word"));
                cJSON *y;
                if (words == NULL || wt == NULL)
                    continue;
                y = cJSON_CreateObject();
                cJSON_AddStringToObject(y, "word", wt + strspn(wt, " "));
                cJSON_AddNumberToObject(y, "start",
                    cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(w, "start")));
                cJSON_AddNumberToObject(y, "end",
                    cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(w, "end")));
                cJSON_AddItemToArray(words, y);
            }
        }
        if ((t = cJSON_PrintUnformatted(o)) != NULL)
            job_out(j, t, strlen(t));
        free(t);
        cJSON_Delete(o);
        return;
    }
    default: {
        cJSON *o = cJSON_CreateObject(), *u;
        char *t;
        cJSON_AddStringToObject(o, "text", full_text(j));
        u = cJSON_AddObjectToObject(o, "usage");
        cJSON_AddStringToObject(u, "type", "duration");
        cJSON_AddNumberToObject(u, "seconds", ceil(j->duration));
        if ((t = cJSON_PrintUnformatted(o)) != NULL)
            job_out(j, t, strlen(t));
        free(t);
        cJSON_Delete(o);
        return;
    }
    }
}

/* Streams one segment as an SSE delta. */
static void emit_delta(gw_job *j, const char *t)
{
    cJSON *e = cJSON_CreateObject();

    cJSON_AddStringToObject(e, "type", "transcript.text.delta");
    cJSON_AddStringToObject(e, "delta", j->sent == 0 ? t + strspn(t, " ") : t);
    sse(j, e);
    j->sent++;
    j->status = 200;
    want_write(j);
}

/* Moves a time of a piece's segment to the recording's time line. */
static void shift(cJSON *o, const char *key, double offset)
{
    cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);

    if (cJSON_IsNumber(x))
        cJSON_SetNumberValue(x, round((x->valuedouble + offset) * 1000.0) / 1000.0);
}

static void on_segments(gw_job *j, const unsigned char *p, size_t len)
{
    cJSON *o = cJSON_ParseWithLength((const char *)p, len), *s, *w;

    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(o, "segments")) {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "text"));
        cJSON *copy;
        /* A rerun after a worker death sends the segments again: the
         * engine is deterministic, so the first ones are those kept. */
        if (++j->run_segments <= cJSON_GetArraySize(j->segments) || t == NULL)
            continue;
        if ((copy = cJSON_Duplicate(s, 1)) == NULL)
            continue;
        if (j->parent != NULL) {
            shift(copy, "start", j->offset);
            shift(copy, "end", j->offset);
            cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(copy, "words")) {
                shift(w, "start", j->offset);
                shift(w, "end", j->offset);
            }
        }
        cJSON_AddItemToArray(j->segments, copy);
        if (j->parent != NULL)
            continue;         /* the parent streams it in its turn */
        add_text(j, t);
        if (j->req.stream)
            emit_delta(j, t);
    }
    cJSON_Delete(o);
}

/* Everything is in: the response's end. */
static void job_finish(sotto__gateway *g, gw_job *j)
{
    g->m.audio_seconds += j->duration;
    if (j->req.stream) {
        cJSON *e = cJSON_CreateObject(), *u;
        cJSON_AddStringToObject(e, "type", "transcript.text.done");
        cJSON_AddStringToObject(e, "text", full_text(j));
        u = cJSON_AddObjectToObject(e, "usage");
        cJSON_AddStringToObject(u, "type", "duration");
        cJSON_AddNumberToObject(u, "seconds", ceil(j->duration));
        sse(j, e);
    } else {
        render(j);
    }
    sotto__log(SOTTO_LOG_INFO, j->id, "transcribed %.1f s in %.1f s%s", j->duration,
               sotto__now() - j->started, j->n_pieces > 1 ? " (split)" : "");
    j->status = 200;
    j->complete = 1;
    want_write(j);
}

/* The parent takes its done pieces' segments in order (streaming them),
 * and finishes when its own piece and all the others are done. */
static void parent_progress(sotto__gateway *g, gw_job *j)
{
    const cJSON *s;

    if (j->error || j->complete || !j->own_done)
        return;
    if (j->next_emit < 1)
        j->next_emit = 1;
    while (j->next_emit < j->n_pieces) {
        gw_job *p = j->pieces[j->next_emit];
        if (p == NULL || !p->piece_done)
            return;
        cJSON_ArrayForEach(s, p->segments) {
            const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "text"));
            if (t == NULL)
                continue;
            cJSON_AddItemToArray(j->segments, cJSON_Duplicate(s, 1));
            add_text(j, t);
            if (j->req.stream)
                emit_delta(j, t);
        }
        j->next_emit++;
    }
    job_finish(g, j);
}

static void on_done(sotto__gateway *g, gw_job *j, const unsigned char *p, size_t len)
{
    cJSON *o = cJSON_ParseWithLength((const char *)p, len);
    const cJSON *x;
    gw_job *err_to = j->parent != NULL ? j->parent : j;

    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ok"))) {
        int status = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "status"));
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "message"));
        const char *code = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "code"));
        static const char *const file_codes[] = { "empty_file", "file_too_large",
                                                  "unsupported_audio" };
        const char *param = NULL, *known = NULL;
        if (status < 400 || status > 599 || j->parent != NULL)
            status = 500;     /* a piece the gateway made cannot be the client's fault */
        /* Only codes the gateway knows go out (a worker is not trusted
         * to write the client's answer): those about the file name it as
         * the param; invalid_value is about the other fields. */
        for (size_t i = 0; code != NULL && status != 500 && i < 3; i++)
            if (strcmp(code, file_codes[i]) == 0)
                known = file_codes[i], param = "file";
        if (code != NULL && status == 400 && strcmp(code, "invalid_value") == 0)
            known = "invalid_value";
        job_fail(err_to, status, param, known,
                 msg != NULL ? msg : "the transcription failed");
        cJSON_Delete(o);
        return;
    }
    if (j->parent != NULL) {
        cJSON_Delete(o);
        j->piece_done = 1;
        free(j->file);        /* a rerun is no longer possible or needed */
        j->file = NULL;
        j->file_n = j->file_cap = 0;
        parent_progress(g, j->parent);
        return;
    }
    j->duration = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "duration"));
    if (!isfinite(j->duration))
        j->duration = 0;
    x = cJSON_GetObjectItemCaseSensitive(o, "language");
    snprintf(j->language, sizeof j->language, "%s",
             j->req.language[0] ? j->req.language
             : cJSON_IsString(x) && x->valuestring[0] ? x->valuestring : "en");
    x = cJSON_GetObjectItemCaseSensitive(o, "pieces");
    if (cJSON_IsNumber(x) && x->valuedouble > 1 && x->valuedouble <= GW_REST_MAX_PIECES &&
        (int)x->valuedouble != j->n_pieces) {
        /* It said it split, but the pieces did not all come. */
        cJSON_Delete(o);
        job_fail(j, 500, NULL, NULL, "the engine split the recording inconsistently");
        return;
    }
    cJSON_Delete(o);
    j->own_done = 1;
    parent_progress(g, j);
}

/* JOB_PIECE: the parent's worker split the recording; piece k (its PCM
 * follows in JOB_PIECE_DATA) becomes a job of its own. */
static void on_piece(sotto__gateway *g, gw_job *j, uint32_t k, const unsigned char *p,
                     size_t len)
{
    cJSON *o = cJSON_ParseWithLength((const char *)p, len);
    double of = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "of"));
    double off = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "offset"));
    double bytes = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, "bytes"));
    gw_job *c;

    cJSON_Delete(o);
    if (j->parent != NULL || !(of >= 2 && of <= GW_REST_MAX_PIECES) || k < 1 ||
        k >= (uint32_t)of || !(off >= 0 && off <= SOTTO_MAX_AUDIO_SECONDS) ||
        !(bytes >= 2 && bytes <= SOTTO__IPC_MAX_PIECE_BYTES) ||
        (j->n_pieces != 0 && j->n_pieces != (int)of)) {
        sotto__log(SOTTO_LOG_ERROR, j->id, "a worker sent a malformed piece; ignored");
        return;
    }
    j->n_pieces = (int)of;
    if (j->pieces[k] != NULL)
        return;               /* a rerun's split: the piece exists */
    if ((c = calloc(1, sizeof *c)) == NULL || (c->segments = cJSON_CreateArray()) == NULL) {
        free(c);
        job_fail(j, 500, NULL, NULL, "out of memory");
        return;
    }
    c->id = ++g->next_id ? g->next_id : ++g->next_id;
    c->parent = j;
    c->index = (int)k;
    c->offset = off;
    c->expect = (size_t)bytes;
    c->worker = -1;
    c->req = j->req;
    c->req.stream = 0;
    c->started = sotto__now();
    c->next = g->jobs;
    g->jobs = c;
    j->pieces[k] = c;
}

static void on_piece_data(sotto__gateway *g, gw_job *j, uint32_t k, const unsigned char *p,
                          size_t len)
{
    gw_job *c = k >= 1 && k < GW_REST_MAX_PIECES ? j->pieces[k] : NULL;

    if (c == NULL || c->piece_done || c->file_n + len > c->expect)
        return;
    if (sotto__gw_buf_add(&c->file, &c->file_n, &c->file_cap, p, len) != 0) {
        job_fail(j, 500, NULL, NULL, "out of memory");
        return;
    }
    if (c->file_n == c->expect)
        sotto__gw_jobs_assign(g);
}

void sotto__gw_job_message(sotto__gateway *g, gw_worker *w, const sotto__ipc_hdr *h,
                           const unsigned char *p)
{
    gw_job *j = job_find(g, h->stream);

    /* A job whose client left, or that moved: nothing to do. */
    if (j == NULL || j->worker != w->slot)
        return;
    switch (h->type) {
    case SOTTO__IPC_JOB_SEGMENTS:
        on_segments(j, p, h->len);
        return;
    case SOTTO__IPC_JOB_PIECE:
        on_piece(g, j, h->seq, p, h->len);
        return;
    case SOTTO__IPC_JOB_PIECE_DATA:
        on_piece_data(g, j, h->seq, p, h->len);
        return;
    default:
        break;
    }
    w->n_jobs--;
    j->worker = -1;
    if (j->wsi == NULL && j->parent == NULL) {
        job_free(g, j);
        return;
    }
    on_done(g, j, p, h->len);
}

void sotto__gw_jobs_worker_lost(sotto__gateway *g, int slot, uint32_t busy)
{
    for (gw_job *j = g->jobs, *next; j != NULL; j = next) {
        next = j->next;
        if (j->worker != slot)
            continue;
        j->worker = -1;
        if (j->wsi == NULL && j->parent == NULL) {
            job_free(g, j);
            continue;
        }
        if (j->id == busy && ++j->crashes >= SOTTO__GW_MAX_STREAM_CRASHES) {
            job_fail(j->parent != NULL ? j->parent : j, 500, NULL, "engine_crash",
                     "the engine process died transcribing this file, each time it "
                     "was tried");
            continue;
        }
        sotto__log(SOTTO_LOG_WARN, j->id, "worker%d died during the job; running it again",
                   slot);
    }
    sotto__gw_jobs_assign(g);
}

/* ---- writing the response -------------------------------------------------- */

int sotto__gw_rest_writeable(struct lws *wsi, sotto__gateway *g, void *job)
{
    gw_job *j = job;
    unsigned char buf[LWS_PRE + GW_REST_WRITE];
    size_t left, k;
    int sse_mode;

    if (j == NULL || j->status == 0)
        return 0;
    sse_mode = !j->error && j->req.stream;
    if (!j->headers_sent) {
        unsigned char hdr[LWS_PRE + 1024], *start = hdr + LWS_PRE, *p = start,
                      *end = hdr + sizeof hdr - 1;
        /* A streamed body has no length: it ends with the connection.
         * Every response of this endpoint closes the connection after it,
         * so that the job lives exactly as long as its connection. */
        if (lws_add_http_common_headers(wsi, (unsigned int)j->status, j->ctype,
                                        sse_mode ? LWS_ILLEGAL_HTTP_CONTENT_LEN
                                                 : (lws_filepos_t)j->out_n, &p, end) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-store", 8, &p, end) ||
            (j->retry_after &&
             lws_add_http_header_by_name(wsi, (const unsigned char *)"retry-after:",
                                         (const unsigned char *)"1", 1, &p, end)) ||
            lws_add_http_header_by_name(wsi, (const unsigned char *)"connection:",
                                        (const unsigned char *)"close", 5, &p, end) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        /* The stream lasts as long as the file takes: no idle timeout. */
        if (sse_mode)
            lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
        j->headers_sent = 1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    left = j->out_n - j->out_off;
    if (left == 0)
        return j->complete ? -1 : 0;
    k = left < GW_REST_WRITE ? left : GW_REST_WRITE;
    memcpy(buf + LWS_PRE, j->out + j->out_off, k);
    if (lws_write(wsi, buf + LWS_PRE, k,
                  !sse_mode && j->complete && k == left ? LWS_WRITE_HTTP_FINAL
                                                        : LWS_WRITE_HTTP) < (int)k)
        return -1;
    g->m.bytes_out += k;
    j->out_off += k;
    if (j->out_off == j->out_n)
        j->out_off = j->out_n = 0;
    lws_callback_on_writable(wsi);
    return 0;
}

void sotto__gw_rest_closed(sotto__gateway *g, void *job)
{
    gw_job *j = job;

    if (j == NULL)
        return;
    j->wsi = NULL;
    if (j->spa != NULL) {
        lws_spa_destroy(j->spa);
        j->spa = NULL;
    }
    /* A job running on a worker is freed when its JOB_DONE comes. */
    if (j->worker < 0)
        job_free(g, j);
    else
        sotto__log(SOTTO_LOG_INFO, j->id, "client gone during the transcription");
}

void sotto__gw_jobs_free(sotto__gateway *g)
{
    while (g->jobs != NULL)
        job_free(g, g->jobs);
}
