/*
 * worker.c - an engine worker of `sotto serve`: loads the model and runs
 * the streams the gateway assigns to it (server.h, ipc.h).
 *
 * The worker is the only kind of process that runs inference or decodes a
 * codec, so it is the one that may crash or hang on bad input or a bug;
 * the supervisor restarts it and the gateway replays its streams
 * elsewhere.  It therefore trusts nothing it is sent: every message is
 * checked (ipc.c), every OPEN is parsed field by field against named
 * limits (sotto__worker_parse_open), and a bad stream configuration or
 * bad audio costs that stream an error event, never the process.
 *
 * Threads: the main thread reads the channel and runs every stream, one
 * inference at a time; a heartbeat thread sends BEAT every
 * SOTTO__IPC_BEAT_MS, naming the stream in inference and for how long, so
 * that the gateway's watchdog can tell a long pass from a hung one, and
 * watches the life pipe.  The two share only the channel (every write goes
 * through one mutex, so messages never interleave) and the "in inference"
 * state (C11 atomics), both in a struct passed to the thread.
 *
 * Per message (gateway -> worker):
 *   OPEN    parse, create the sotto_stream, or answer error EVENT + CLOSED
 *   AUDIO   convert (s16le / f32le with partial samples carried over, or
 *           one Opus packet), feed, send the stream's events, then ACK
 *   FINISH  finish, send the last events, CLOSED "finished", destroy
 *   DROP    cancel without flushing, destroy, CLOSED "dropped"
 * Messages for a stream the worker does not hold are stale (the stream
 * was closed here while the gateway was still sending) and are ignored.
 * A message of a type only workers send, or bytes that do not parse as
 * messages, mean the gateway is broken: the worker logs it and exits 1.
 */
#include "server/worker.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <opus/opus.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/ipc.h"
#include "server/server.h"
#include "sotto.h"

/* Bytes read from the channel at a time. */
#define WORKER_READ_CHUNK (64 * 1024)
/* Length of error messages built here. */
#define WORKER_ERR 256
/* Most audio fed to a stream in one library call; a backlog is fed in
 * slices this long, each watched by the inference limit on its own. */
#define SOTTO__WORKER_FEED_SLICE_S 4.0

/* ---- the OPEN configuration -------------------------------------------- */

void sotto__worker_open_init(sotto__worker_open *o)
{
    memset(o, 0, sizeof *o);
    o->format = SOTTO__WORKER_S16;
    o->rate = SOTTO_SAMPLE_RATE;
    o->vad = 1;
    o->partials = 1;
}

void sotto__worker_open_free(sotto__worker_open *o)
{
    free(o->prompt);
    free(o->resume_words);
    free(o->resume_text);
    o->prompt = NULL;
    o->resume_words = NULL;
    o->resume_text = NULL;
    o->n_resume_words = 0;
}

/* A number field: absent leaves *out alone; otherwise it must be a finite
 * number within [lo, hi] (and whole when integral is set). */
static int get_num(const cJSON *root, const char *key, double lo, double hi,
                   int integral, double *out, char *err, size_t cap)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, key);
    double v;

    if (x == NULL)
        return 0;
    if (!cJSON_IsNumber(x)) {
        snprintf(err, cap, "\"%s\" must be a number", key);
        return -1;
    }
    v = x->valuedouble;
    if (!isfinite(v) || v < lo || v > hi || (integral && v != floor(v))) {
        snprintf(err, cap, "\"%s\" must be %s from %g to %g", key,
                 integral ? "a whole number" : "a number", lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* A boolean field: absent leaves *out alone; otherwise true or false. */
static int get_bool(const cJSON *root, const char *key, int *out, char *err,
                    size_t cap)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, key);

    if (x == NULL)
        return 0;
    if (!cJSON_IsBool(x)) {
        snprintf(err, cap, "\"%s\" must be true or false", key);
        return -1;
    }
    *out = cJSON_IsTrue(x) ? 1 : 0;
    return 0;
}

/* "language": null, "", "auto" (the model's default) or lowercase letters,
 * 2 to SOTTO__WORKER_MAX_LANGUAGE of them. */
static int get_language(const cJSON *root, sotto__worker_open *o, char *err,
                        size_t cap)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, "language");
    const char *v;
    size_t n;

    if (x == NULL)
        return 0;
    if (cJSON_IsNull(x)) {
        o->language[0] = 0;
        return 0;
    }
    if (!cJSON_IsString(x)) {
        snprintf(err, cap, "\"language\" must be a string or null");
        return -1;
    }
    v = x->valuestring;
    n = strlen(v);
    if (n == 0 || strcmp(v, "auto") == 0) {
        o->language[0] = 0;
        return 0;
    }
    if (n < 2 || n > SOTTO__WORKER_MAX_LANGUAGE)
        goto bad;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 'a' || v[i] > 'z')
            goto bad;
    memcpy(o->language, v, n + 1);
    return 0;
bad:
    snprintf(err, cap, "\"language\" must be a language code such as "
             "\"en\" (2 to %d lowercase letters)", SOTTO__WORKER_MAX_LANGUAGE);
    return -1;
}

/* "resume_words": an array of {"text","start","end"[,"probability"]}. */
static int get_resume_words(const cJSON *root, sotto__worker_open *o,
                            char *err, size_t cap)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "resume_words");
    const cJSON *w;
    size_t text_bytes = 0, at = 0;
    int n, i = 0;

    if (arr == NULL || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr)) {
        snprintf(err, cap, "\"resume_words\" must be an array");
        return -1;
    }
    n = cJSON_GetArraySize(arr);
    if (n > SOTTO__WORKER_MAX_RESUME_WORDS) {
        snprintf(err, cap, "\"resume_words\" has %d entries (limit %d)", n,
                 SOTTO__WORKER_MAX_RESUME_WORDS);
        return -1;
    }
    if (n == 0)
        return 0;
    /* First pass: check every entry and size the texts. */
    cJSON_ArrayForEach(w, arr) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(w, "text");
        double start = 0, end = 0, prob = 0;
        size_t l;

        if (!cJSON_IsObject(w) || !cJSON_IsString(t) ||
            cJSON_GetObjectItemCaseSensitive(w, "start") == NULL ||
            cJSON_GetObjectItemCaseSensitive(w, "end") == NULL) {
            snprintf(err, cap, "\"resume_words\"[%d] must be an object with "
                     "\"text\", \"start\" and \"end\"", i);
            return -1;
        }
        if (get_num(w, "start", 0, SOTTO__WORKER_MAX_TIME, 0, &start, err, cap) ||
            get_num(w, "end", 0, SOTTO__WORKER_MAX_TIME, 0, &end, err, cap) ||
            get_num(w, "probability", 0, 1, 0, &prob, err, cap)) {
            size_t l0 = strlen(err);
            snprintf(err + l0, cap > l0 ? cap - l0 : 0, " in \"resume_words\"[%d]", i);
            return -1;
        }
        if (end < start) {
            snprintf(err, cap, "\"resume_words\"[%d] ends before it starts", i);
            return -1;
        }
        l = strlen(t->valuestring);
        if (l > SOTTO__WORKER_MAX_WORD) {
            snprintf(err, cap, "\"resume_words\"[%d] has %zu bytes of text "
                     "(limit %d)", i, l, SOTTO__WORKER_MAX_WORD);
            return -1;
        }
        text_bytes += l + 1;
        i++;
    }
    o->resume_words = calloc((size_t)n, sizeof *o->resume_words);
    o->resume_text = malloc(text_bytes);
    if (o->resume_words == NULL || o->resume_text == NULL) {
        snprintf(err, cap, "out of memory for \"resume_words\"");
        return -1;
    }
    /* Second pass: copy; the checks above make these reads safe. */
    i = 0;
    cJSON_ArrayForEach(w, arr) {
        const char *t = cJSON_GetObjectItemCaseSensitive(w, "text")->valuestring;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(w, "probability");
        size_t l = strlen(t);

        memcpy(o->resume_text + at, t, l + 1);
        o->resume_words[i].text = o->resume_text + at;
        o->resume_words[i].start = cJSON_GetObjectItemCaseSensitive(w, "start")->valuedouble;
        o->resume_words[i].end = cJSON_GetObjectItemCaseSensitive(w, "end")->valuedouble;
        o->resume_words[i].probability = p != NULL ? (float)p->valuedouble : 1.0f;
        at += l + 1;
        i++;
    }
    o->n_resume_words = n;
    return 0;
}

int sotto__worker_parse_open(const char *json, size_t len,
                             sotto__worker_open *o, char *err, size_t cap)
{
    cJSON *root = NULL;
    const cJSON *x;
    double v;
    int rc = -1;

    /* Only what this call allocates is owned by o on return. */
    o->prompt = NULL;
    o->resume_words = NULL;
    o->resume_text = NULL;
    o->n_resume_words = 0;
    if (len > SOTTO__IPC_MAX_PAYLOAD) {
        snprintf(err, cap, "stream configuration of %zu bytes (limit %u)",
                 len, (unsigned)SOTTO__IPC_MAX_PAYLOAD);
        goto fail;
    }
    root = cJSON_ParseWithLength(json, len);
    if (root == NULL || !cJSON_IsObject(root)) {
        snprintf(err, cap, "stream configuration is not a JSON object");
        goto fail;
    }

    x = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (x != NULL) {
        if (!cJSON_IsString(x))
            goto bad_format;
        if (strcmp(x->valuestring, "s16") == 0)
            o->format = SOTTO__WORKER_S16;
        else if (strcmp(x->valuestring, "f32") == 0)
            o->format = SOTTO__WORKER_F32;
        else if (strcmp(x->valuestring, "opus") == 0)
            o->format = SOTTO__WORKER_OPUS;
        else
            goto bad_format;
    }
    /* The rate is checked for PCM only: Opus decodes to 16 kHz whatever
     * it was encoded at, so its "rate" is ignored (but must be a number). */
    v = o->rate;
    if (o->format == SOTTO__WORKER_OPUS) {
        if (get_num(root, "rate", -1e300, 1e300, 0, &v, err, cap) != 0)
            goto fail;
        o->rate = SOTTO_SAMPLE_RATE;
    } else {
        if (get_num(root, "rate", 8000, 192000, 1, &v, err, cap) != 0)
            goto fail;
        o->rate = (int)v;
    }
    if (get_language(root, o, err, cap) != 0 ||
        get_bool(root, "vad", &o->vad, err, cap) != 0 ||
        get_bool(root, "partials", &o->partials, err, cap) != 0 ||
        get_num(root, "max_seconds", 0, SOTTO_MAX_AUDIO_SECONDS, 0,
                &o->max_seconds, err, cap) != 0 ||
        get_num(root, "time_offset", 0, SOTTO__WORKER_MAX_TIME, 0,
                &o->time_offset, err, cap) != 0)
        goto fail;
    v = o->first_utterance;
    if (get_num(root, "first_utterance", 0, SOTTO__WORKER_MAX_UTTERANCE, 1,
                &v, err, cap) != 0)
        goto fail;
    o->first_utterance = (int)v;
    v = 0;
    if (get_num(root, "skip", 0, SOTTO__WORKER_MAX_SKIP, 1, &v, err, cap) != 0)
        goto fail;
    o->skip = (size_t)v;

    x = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (x != NULL && !cJSON_IsNull(x)) {
        size_t l;

        if (!cJSON_IsString(x)) {
            snprintf(err, cap, "\"prompt\" must be a string or null");
            goto fail;
        }
        l = strlen(x->valuestring);
        if (l > SOTTO__WORKER_MAX_PROMPT) {
            snprintf(err, cap, "\"prompt\" has %zu bytes (limit %d)", l,
                     SOTTO__WORKER_MAX_PROMPT);
            goto fail;
        }
        if (l > 0 && (o->prompt = strdup(x->valuestring)) == NULL) {
            snprintf(err, cap, "out of memory for \"prompt\"");
            goto fail;
        }
    }
    if (get_resume_words(root, o, err, cap) != 0)
        goto fail;
    rc = 0;
    goto done;
bad_format:
    snprintf(err, cap, "\"format\" must be \"s16\", \"f32\" or \"opus\"");
fail:
    sotto__worker_open_free(o);
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- the channel and the heartbeat ------------------------------------- */

/*
 * What the main thread and the heartbeat thread share.  fd, life and wake
 * are set before the thread starts (after that, only the heartbeat thread
 * touches life, and the main thread only writes to wake); every write to fd
 * holds wlock; busy_stream and busy_since_ms are the "in inference" state
 * (busy_since_ms is stored before busy_stream, so a reader that sees a
 * stream sees a start time no older than that stream's).
 */
typedef struct wchan {
    int fd;                          /* the gateway channel */
    int life;                        /* life pipe read end, or -1 */
    int wake;                        /* eventfd: the heartbeat must stop */
    pthread_mutex_t wlock;
    _Atomic uint32_t busy_stream;    /* stream in inference, 0 when idle */
    _Atomic int64_t busy_since_ms;   /* when it went in, monotonic ms */
} wchan;

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes one message under the channel lock.  0 or -1 (errno). */
static int chan_send(wchan *ch, int type, uint32_t stream, uint32_t seq,
                     const void *payload, size_t len)
{
    int rc, e;

    pthread_mutex_lock(&ch->wlock);
    rc = sotto__ipc_write(ch->fd, type, stream, seq, payload, len);
    e = errno;
    pthread_mutex_unlock(&ch->wlock);
    errno = e;
    return rc;
}

/*
 * The heartbeat thread.  It exits when the main thread signals `wake`, and
 * ends the whole process with _exit(0) when the life pipe reports EOF or
 * a hangup: the supervisor is gone, and a worker must never outlive it
 * (nobody would reap, restart or stop it, and it would hold the model and
 * its cores).  PR_SET_PDEATHSIG is not enough on its own: it fires when
 * the *thread* that forked the worker exits, not the supervisor process,
 * and not at all if the worker was reparented before it was set.  _exit
 * from this thread is safe here because the worker holds nothing that
 * needs an orderly shutdown: no files it writes, no locks shared with
 * other processes; the main thread may be mid-inference, and _exit
 * neither runs atexit handlers nor flushes stdio, so it cannot deadlock on
 * whatever the main thread holds.
 */
static void *heartbeat_main(void *arg)
{
    wchan *ch = arg;
    int64_t next = now_ms() + SOTTO__IPC_BEAT_MS;

    for (;;) {
        struct pollfd pf[2];
        int64_t t = now_ms();
        int timeout = next > t ? (int)(next - t) : 0;

        pf[0].fd = ch->life;
        pf[0].events = POLLIN;
        pf[0].revents = 0;
        pf[1].fd = ch->wake;
        pf[1].events = POLLIN;
        pf[1].revents = 0;
        if (poll(pf, 2, timeout) < 0 && errno != EINTR)
            usleep(1000 * SOTTO__IPC_BEAT_MS / 10);
        if (pf[1].revents != 0)
            return NULL;
        if (pf[0].revents & POLLNVAL) {
            /* Not a life pipe after all: keep beating without it. */
            ch->life = -1;
        } else if (pf[0].revents & (POLLHUP | POLLERR)) {
            _exit(0);
        } else if (pf[0].revents & POLLIN) {
            char b[64];
            ssize_t n = read(ch->life, b, sizeof b);

            /* Nobody writes to the pipe; data is ignored, EOF is death. */
            if (n == 0)
                _exit(0);
        }
        t = now_ms();
        if (t >= next) {
            uint32_t s = atomic_load(&ch->busy_stream);
            int64_t ms = 0;

            if (s != 0) {
                ms = t - atomic_load(&ch->busy_since_ms);
                if (ms < 0)
                    ms = 0;
                if (ms > (int64_t)UINT32_MAX)
                    ms = UINT32_MAX;
            }
            /* A failed write means the gateway is gone; the main thread
             * sees the channel close and ends the worker. */
            (void)chan_send(ch, SOTTO__IPC_BEAT, s, (uint32_t)ms, NULL, 0);
            next += SOTTO__IPC_BEAT_MS;
            if (next <= t)
                next = t + SOTTO__IPC_BEAT_MS;
        }
    }
}

/* ---- streams ----------------------------------------------------------- */

typedef struct wstream {
    uint32_t id;
    sotto_stream *s;
    sotto__worker_conv cv;        /* format, Opus decoder, carried bytes */
    int partials;
    int rate;                     /* Hz of the fed samples */
    double time_offset;
    size_t skip;                  /* PCM bytes still to drop (OPEN "skip") */
    /* Audio received but not yet fed (int16 for s16, float otherwise):
     * chunks are gathered while the worker is busy and fed together, see
     * feed_pending(). */
    unsigned char *pend;
    size_t pend_n, pend_cap;      /* in bytes */
    uint32_t ack_seq;             /* last chunk received; acked once fed */
    int ack_due;
} wstream;

#ifdef SOTTO_FAULT_INJECTION
enum { FAULT_NONE, FAULT_CRASH, FAULT_HANG, FAULT_TRIGGER };
#endif

/* An offline job (JOB .. JOB_RUN): its parameters and the file so far. */
typedef struct wjob {
    uint32_t id;
    unsigned char *data;
    size_t n, cap;
    char language[SOTTO__WORKER_MAX_LANGUAGE + 1];
    char *prompt;
    float temperature;        /* < 0: the default fallback ladder */
    int words;
    int pcm;                  /* the data is s16le 16 kHz mono (a piece
                               * of another job), not a file */
    int pieces;               /* split a long recording into this many */
    double max_seconds;       /* longest recording taken (--max-stream-seconds) */
    int failed;               /* 413: the file grew past max-upload;
                               * 500: out of memory receiving it */
} wjob;

/* A recording is split across workers only from this long: shorter ones
 * gain little, and every cut is a place where a word may be misheard. */
#define WORKER_SPLIT_MIN_S 60.0
/* Most pieces of one recording. */
#define WORKER_MAX_PIECES 16
/* A cut goes at the quietest 100 ms within this many seconds of its
 * even share. */
#define WORKER_CUT_SEARCH_S 10.0

typedef struct worker {
    const sotto__serve_config *c;
    sotto_model *model;
    wchan ch;
    wjob *job;                /* the job being received, or NULL */
    int job_error;            /* a send failed inside the job callback */
    wstream *streams[SOTTO__WORKER_MAX_STREAMS];
    int n_streams;
    unsigned char *conv;          /* converted samples of one chunk */
    size_t conv_cap;
    uint32_t log_stream;          /* stream in the current library call */
    int exit_rc;                  /* exit code once a send has failed */
#ifdef SOTTO_FAULT_INJECTION
    int fault;                    /* FAULT_* */
    long fault_after;             /* the N of "crash-after:N" */
    char fault_dir[256];          /* the DIR of "trigger:DIR" */
    long infer_feeds;             /* feeds so far that ran a pass */
#endif
} worker;

/* The library's log lines, tagged with the stream being worked on. */
static void log_forward(void *user, int level, const char *msg)
{
    const worker *w = user;

    sotto__log(level, w->log_stream, "%s", msg);
}

static wstream *find_stream(worker *w, uint32_t id)
{
    for (int i = 0; i < w->n_streams; i++)
        if (w->streams[i]->id == id)
            return w->streams[i];
    return NULL;
}

static void remove_stream(worker *w, wstream *e)
{
    for (int i = 0; i < w->n_streams; i++)
        if (w->streams[i] == e) {
            w->streams[i] = w->streams[--w->n_streams];
            break;
        }
    sotto_stream_destroy(e->s);
    if (e->cv.opus != NULL)
        opus_decoder_destroy(e->cv.opus);
    free(e->pend);
    free(e);
}

/* Sends a message; on failure records the exit code (0 when the gateway
 * has simply gone away) and returns -1. */
static int send_msg(worker *w, int type, uint32_t stream, uint32_t seq,
                    const void *payload, size_t len)
{
    if (chan_send(&w->ch, type, stream, seq, payload, len) == 0)
        return 0;
    if (errno == EPIPE || errno == ECONNRESET) {
        sotto__log(SOTTO_LOG_INFO, stream, "the gateway is gone");
        w->exit_rc = 0;
    } else {
        sotto__log(SOTTO_LOG_ERROR, stream, "cannot send %s to the gateway: %s",
                   sotto__ipc_type_name(type), strerror(errno));
        w->exit_rc = 1;
    }
    return -1;
}

/* Sends o (NULL if building it ran out of memory) as one message and
 * deletes it. */
static int send_json(worker *w, int type, uint32_t stream, uint32_t seq,
                     cJSON *o)
{
    char *txt = o != NULL ? cJSON_PrintUnformatted(o) : NULL;
    int rc;

    cJSON_Delete(o);
    if (txt == NULL) {
        sotto__log(SOTTO_LOG_ERROR, stream, "out of memory building %s",
                   sotto__ipc_type_name(type));
        w->exit_rc = 1;
        return -1;
    }
    rc = send_msg(w, type, stream, seq, txt, strlen(txt));
    free(txt);
    return rc;
}

/* Times in events are rounded to milliseconds. */
static double ms_round(double t)
{
    return round(t * 1000.0) / 1000.0;
}

/* An error event that the worker itself raises (not the stream). */
static int send_error(worker *w, uint32_t id, int code, double audio_time,
                      const char *msg)
{
    cJSON *o = cJSON_CreateObject();

    if (o != NULL) {
        cJSON_AddStringToObject(o, "type", "error");
        cJSON_AddNumberToObject(o, "code", code);
        cJSON_AddStringToObject(o, "message", msg);
        if (audio_time >= 0)
            cJSON_AddNumberToObject(o, "audio_time", ms_round(audio_time));
    }
    return send_json(w, SOTTO__IPC_EVENT, id, 0, o);
}

/* Refuses an OPEN: an error event, then CLOSED with reason "error". */
static int refuse_open(worker *w, uint32_t id, int code, const char *msg)
{
    cJSON *o;

    sotto__log(SOTTO_LOG_WARN, id, "stream refused: %s", msg);
    if (send_error(w, id, code, -1, msg) != 0)
        return -1;
    o = cJSON_CreateObject();
    if (o != NULL) {
        cJSON_AddStringToObject(o, "reason", "error");
        cJSON_AddStringToObject(o, "message", msg);
    }
    return send_json(w, SOTTO__IPC_CLOSED, id, 0, o);
}

static const char *event_name(int type)
{
    switch (type) {
    case SOTTO_EVENT_PARTIAL: return "partial";
    case SOTTO_EVENT_FINAL: return "final";
    case SOTTO_EVENT_UTTERANCE_END: return "utterance_end";
    default: return "error";
    }
}

/* One stream event as the EVENT payload of ipc.h. */
static cJSON *event_json(const sotto_event *ev)
{
    cJSON *o = cJSON_CreateObject(), *words;

    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "type", event_name(ev->type));
    cJSON_AddNumberToObject(o, "utterance", ev->utterance);
    if (ev->type != SOTTO_EVENT_UTTERANCE_END)
        cJSON_AddNumberToObject(o, "start", ms_round(ev->start));
    cJSON_AddNumberToObject(o, "end", ms_round(ev->end));
    cJSON_AddNumberToObject(o, "audio_time", ms_round(ev->audio_time));
    if (ev->type == SOTTO_EVENT_ERROR) {
        cJSON_AddNumberToObject(o, "code", ev->code);
        cJSON_AddStringToObject(o, "message", ev->text != NULL ? ev->text : "");
    } else if (ev->type != SOTTO_EVENT_UTTERANCE_END) {
        cJSON_AddStringToObject(o, "text", ev->text != NULL ? ev->text : "");
    }
    if (ev->type == SOTTO_EVENT_FINAL) {
        words = cJSON_AddArrayToObject(o, "words");
        for (int i = 0; words != NULL && i < ev->n_words; i++) {
            cJSON *x = cJSON_CreateObject();

            if (x == NULL || !cJSON_AddItemToArray(words, x)) {
                cJSON_Delete(x);
                cJSON_Delete(o);
                return NULL;
            }
            cJSON_AddStringToObject(x, "text", ev->words[i].text);
            cJSON_AddNumberToObject(x, "start", ms_round(ev->words[i].start));
            cJSON_AddNumberToObject(x, "end", ms_round(ev->words[i].end));
            cJSON_AddNumberToObject(x, "probability",
                                    round(ev->words[i].probability * 1000.0) / 1000.0);
        }
    }
    return o;
}

/* Sends every waiting event of the stream (partials only if asked for). */
static int out_of_memory(worker *w, uint32_t id, const char *what);

static int drain_events(worker *w, wstream *e)
{
    sotto_event ev;

    while (sotto_stream_poll(e->s, &ev) == 1) {
        if (ev.type == SOTTO_EVENT_PARTIAL && !e->partials)
            continue;
        /* A pass that ran out of memory is not the client's error: the
         * worker ends instead, and the stream is replayed elsewhere. */
        if (ev.type == SOTTO_EVENT_ERROR && ev.code == SOTTO_ENOMEM)
            return out_of_memory(w, e->id, "in inference");
        if (send_json(w, SOTTO__IPC_EVENT, e->id, 0, event_json(&ev)) != 0)
            return -1;
    }
    return 0;
}

/* Marks the start and end of a library call that may run inference, for
 * the heartbeat and for a crash record. */
static void infer_begin(worker *w, uint32_t id)
{
    atomic_store(&w->ch.busy_since_ms, now_ms());
    atomic_store(&w->ch.busy_stream, id);
    sotto__crash_set_streams(&id, 1);
    w->log_stream = id;
}

static void infer_end(worker *w)
{
    const uint32_t none = 0;

    w->log_stream = 0;
    sotto__crash_set_streams(&none, 0);
    atomic_store(&w->ch.busy_stream, 0);
}

/*
 * The engine ran out of memory in stream id's call (its --worker-memory
 * limit, or the machine's).  The stream's state cannot be trusted after a
 * failed allocation half-way through a pass, and the next stream would
 * likely fail the same way, so the worker ends with SOTTO__EXIT_NOMEM:
 * the supervisor restarts it, and the gateway replays the stream from the
 * audio it kept, as after a crash.  The stream stays marked as in
 * inference, and one more heartbeat says so at once, so the gateway
 * counts the death against it: a stream that cannot fit is ended after
 * SOTTO__GW_MAX_STREAM_CRASHES deaths instead of looping.  Returns -1 for
 * the caller to pass up; the main loop exits with w->exit_rc.
 */
static int out_of_memory(worker *w, uint32_t id, const char *what)
{
    infer_begin(w, id);
    sotto__log(SOTTO_LOG_ERROR, id, "out of memory %s%s; exiting, so that the "
               "stream is replayed on a fresh worker", what,
               w->c->worker_memory != 0 ? " (see --worker-memory)" : "");
    (void)chan_send(&w->ch, SOTTO__IPC_BEAT, id, 0, NULL, 0);
    w->exit_rc = SOTTO__EXIT_NOMEM;
    return -1;
}

#ifdef SOTTO_FAULT_INJECTION
/*
 * Fault injection, for the server's tests only (built with
 * -DSOTTO_FAULT_INJECTION; release builds have none of it).  The
 * environment variable SOTTO_FAULT selects it:
 *   crash-after:N   the N-th feed that runs a pass raises SIGSEGV, by a
 *                   write to read-only memory (a real fault, so the
 *                   crash handler and the supervisor see what a real bug
 *                   would give);
 *   hang-after:N    the N-th feed that runs a pass never returns (it
 *                   sleeps forever), so the heartbeat goes on reporting
 *                   the stream in inference and the watchdog must kill
 *                   the worker.
 * Feeds are counted over all the worker's streams, from 1, with each
 * REST job's transcription counted as one (it strikes after it); a feed
 * that runs no pass is not counted.  The fault strikes after the pass, while
 * the stream is still marked in inference, which to the gateway, the
 * heartbeat and the crash record is inside the feed.  Every worker of the
 * server (respawned ones too) reads the same variable; a suffix "@K"
 * (hang-after:8@0) limits the fault to the workers of slot K, so that a
 * stream recovered on another worker can finish.
 *   trigger:DIR     on demand, for the chaos suite: after each feed that
 *                   runs a pass, a worker that can unlink DIR/crash
 *                   crashes as above, one that can unlink DIR/hang hangs;
 *                   the unlink makes one worker, the first to get there,
 *                   take each fault the test drops in.
 */
static void fault_init(worker *w, int slot)
{
    const char *f = getenv("SOTTO_FAULT");
    char *end;
    long n;

    w->fault = FAULT_NONE;
    if (f == NULL || *f == 0)
        return;
    if (strncmp(f, "trigger:", 8) == 0 && f[8] != 0 && strlen(f + 8) < sizeof w->fault_dir) {
        w->fault = FAULT_TRIGGER;
        memcpy(w->fault_dir, f + 8, strlen(f + 8) + 1);
        sotto__log(SOTTO_LOG_WARN, 0, "fault injection: %s", f);
        return;
    }
    if (strncmp(f, "crash-after:", 12) == 0)
        w->fault = FAULT_CRASH, f += 12;
    else if (strncmp(f, "hang-after:", 11) == 0)
        w->fault = FAULT_HANG, f += 11;
    errno = 0;
    n = w->fault != FAULT_NONE ? strtol(f, &end, 10) : 0;
    if (w->fault != FAULT_NONE && errno == 0 && end != f && *end == '@') {
        const char *k = end + 1;
        long only = strtol(k, &end, 10);
        if (end == k || only < 0)
            n = 0;                          /* not understood */
        else if (only != slot) {
            w->fault = FAULT_NONE;          /* another slot's fault */
            return;
        }
    }
    if (w->fault == FAULT_NONE || errno != 0 || end == f || *end != 0 || n < 1) {
        sotto__log(SOTTO_LOG_WARN, 0, "SOTTO_FAULT=%s not understood "
                   "(crash-after:N or hang-after:N, optionally @SLOT); ignored",
                   getenv("SOTTO_FAULT"));
        w->fault = FAULT_NONE;
        return;
    }
    w->fault_after = n;
    sotto__log(SOTTO_LOG_WARN, 0, "fault injection: %s",
               getenv("SOTTO_FAULT"));
}

/* A read-only object (.rodata): writing to it is a real memory fault
 * that UBSan's null-pointer check, which exits before the fault would
 * happen in a sanitized build, does not intercept. */
static const int fault_target = 0;

static void fault_strike(worker *w)
{
    int fault = w->fault;

    if (fault == FAULT_TRIGGER) {
        char path[sizeof w->fault_dir + 8];
        snprintf(path, sizeof path, "%s/crash", w->fault_dir);
        fault = unlink(path) == 0 ? FAULT_CRASH : FAULT_NONE;
        snprintf(path, sizeof path, "%s/hang", w->fault_dir);
        if (fault == FAULT_NONE && unlink(path) == 0)
            fault = FAULT_HANG;
        if (fault == FAULT_NONE)
            return;
    } else if (fault == FAULT_NONE || ++w->infer_feeds != w->fault_after) {
        return;
    }
    if (fault == FAULT_CRASH) {
        volatile int *volatile p = (volatile int *)(uintptr_t)&fault_target;

        sotto__log(SOTTO_LOG_WARN, w->log_stream, "fault injection: crashing");
        *p = 1;
    }
    sotto__log(SOTTO_LOG_WARN, w->log_stream, "fault injection: hanging");
    for (;;)
        sleep(1);
}
#endif

/* ---- message handlers -------------------------------------------------- */

static int on_open(worker *w, uint32_t id, const unsigned char *p, size_t len)
{
    const sotto__serve_config *c = w->c;
    sotto__worker_open o;
    sotto_stream_params sp;
    wstream *e = NULL;
    char err[WORKER_ERR];
    int rc, oerr;

    if (find_stream(w, id) != NULL) {
        /* A gateway bug; the stream that is open keeps going. */
        sotto__log(SOTTO_LOG_WARN, id, "OPEN for a stream already open; ignored");
        return send_error(w, id, SOTTO_EINVAL, -1, "the stream is already open");
    }
    if (w->n_streams >= SOTTO__WORKER_MAX_STREAMS) {
        snprintf(err, sizeof err, "too many streams on this worker (limit %d)",
                 SOTTO__WORKER_MAX_STREAMS);
        return refuse_open(w, id, SOTTO_EINVAL, err);
    }
    /* The server's stream defaults, then what the OPEN says. */
    sotto__worker_open_init(&o);
    o.vad = c->vad;
    o.partials = c->partials;
    if (strlen(c->language) <= SOTTO__WORKER_MAX_LANGUAGE)
        memcpy(o.language, c->language, strlen(c->language) + 1);
    if (sotto__worker_parse_open((const char *)p, len, &o, err, sizeof err) != 0)
        return refuse_open(w, id, SOTTO_EINVAL, err);

    sp = sotto_stream_default_params();
    sp.sample_rate = o.rate;
    sp.vad = o.vad;
    sp.max_seconds = o.max_seconds;
    sp.time_offset = o.time_offset;
    sp.first_utterance = o.first_utterance;
    sp.decode.language = o.language[0] != 0 ? o.language : NULL;
    sp.decode.initial_prompt = o.prompt;
    sp.resume_words = o.resume_words;
    sp.n_resume_words = o.n_resume_words;

    if ((e = calloc(1, sizeof *e)) == NULL) {
        rc = SOTTO_ENOMEM;
        snprintf(err, sizeof err, "out of memory");
        goto fail;
    }
    e->id = id;
    e->cv.format = o.format;
    e->partials = o.partials;
    e->time_offset = o.time_offset;
    e->rate = o.rate;
    e->skip = o.format == SOTTO__WORKER_OPUS ? 0 : o.skip;
    w->log_stream = id;
    rc = sotto_stream_create(w->model, &sp, &e->s, err, sizeof err);
    w->log_stream = 0;
    if (rc == SOTTO_ENOMEM) {
        sotto__worker_open_free(&o);
        free(e);
        return out_of_memory(w, id, "creating the stream");
    }
    if (rc != 0)
        goto fail;
    if (o.format == SOTTO__WORKER_OPUS) {
        e->cv.opus = opus_decoder_create(SOTTO_SAMPLE_RATE, 1, &oerr);
        if (e->cv.opus == NULL) {
            rc = SOTTO_ENOMEM;
            snprintf(err, sizeof err, "opus: %s", opus_strerror(oerr));
            goto fail;
        }
    }
    /* The stream copied the prompt and the resume words. */
    sotto__worker_open_free(&o);
    w->streams[w->n_streams++] = e;
    sotto__log(SOTTO_LOG_DEBUG, id, "opened: %.*s", (int)(len < 300 ? len : 300),
               (const char *)p);
    return 0;
fail:
    sotto__worker_open_free(&o);
    if (e != NULL) {
        sotto_stream_destroy(e->s);
        free(e);
    }
    return refuse_open(w, id, rc, err);
}

/* Makes sure the conversion buffer holds at least n bytes. */
static int conv_reserve(unsigned char **buf, size_t *cap, size_t n)
{
    unsigned char *nb;

    if (n <= *cap)
        return 0;
    if ((nb = realloc(*buf, n)) == NULL)
        return -1;
    *buf = nb;
    *cap = n;
    return 0;
}

/* Byte k of the carried bytes followed by the payload. */
static inline unsigned char byte_at(const sotto__worker_conv *e,
                                    const unsigned char *p, size_t k)
{
    return k < (size_t)e->n_carry ? e->carry[k] : p[k - (size_t)e->n_carry];
}

/* See worker.h. */
int sotto__worker_convert(sotto__worker_conv *e, const unsigned char *p,
                          size_t len, unsigned char **buf, size_t *bcap,
                          size_t *n, char *err, size_t cap)
{
    size_t total = (size_t)e->n_carry + len, width, k;

    *n = 0;
    if (e->format == SOTTO__WORKER_OPUS) {
        int got;

        if (conv_reserve(buf, bcap,
                         SOTTO__WORKER_OPUS_MAX_SAMPLES * sizeof(float)) != 0)
            goto nomem;
        if (len == 0) {
            snprintf(err, cap, "opus: empty packet");
            return SOTTO_EAUDIO;
        }
        if (len > INT32_MAX) {
            snprintf(err, cap, "opus: %s", opus_strerror(OPUS_INVALID_PACKET));
            return SOTTO_EAUDIO;
        }
        got = opus_decode_float(e->opus, p, (opus_int32)len, (float *)(void *)*buf,
                                SOTTO__WORKER_OPUS_MAX_SAMPLES, 0);
        if (got < 0) {
            snprintf(err, cap, "opus: %s", opus_strerror(got));
            return SOTTO_EAUDIO;
        }
        *n = (size_t)got;
        return 0;
    }
    /* PCM: whole samples of the carried bytes and the payload; the rest
     * is carried to the next chunk, so a sample split between two chunks
     * does not shift every sample after it. */
    width = e->format == SOTTO__WORKER_S16 ? 2 : 4;
    if (conv_reserve(buf, bcap, total / width * width + 4) != 0)
        goto nomem;
    if (e->format == SOTTO__WORKER_S16) {
        int16_t *out = (int16_t *)(void *)*buf;

        for (k = 0; k + 2 <= total; k += 2)
            out[k / 2] = (int16_t)(uint16_t)(byte_at(e, p, k) |
                                             (unsigned)byte_at(e, p, k + 1) << 8);
    } else {
        float *out = (float *)(void *)*buf;

        for (k = 0; k + 4 <= total; k += 4) {
            uint32_t u = (uint32_t)byte_at(e, p, k) |
                         (uint32_t)byte_at(e, p, k + 1) << 8 |
                         (uint32_t)byte_at(e, p, k + 2) << 16 |
                         (uint32_t)byte_at(e, p, k + 3) << 24;
            memcpy(&out[k / 4], &u, sizeof u);
        }
    }
    *n = total / width;
    {
        unsigned char rest[4];
        int nr = (int)(total - k);

        for (int i = 0; i < nr; i++)
            rest[i] = byte_at(e, p, k + (size_t)i);
        memcpy(e->carry, rest, (size_t)nr);
        e->n_carry = nr;
    }
    return 0;
nomem:
    snprintf(err, cap, "out of memory");
    return SOTTO_ENOMEM;
}

/* Sample width of a stream's pending audio. */
static size_t pend_width(const wstream *e)
{
    return e->cv.format == SOTTO__WORKER_S16 ? sizeof(int16_t) : sizeof(float);
}

/*
 * Takes one AUDIO chunk: converts it and appends it to the stream's
 * pending audio; the chunk is fed (and acknowledged) by feed_pending().
 * A chunk that cannot be converted, or float audio with a NaN or an
 * infinity, is refused alone with an error event, as the library would
 * refuse it: the chunks around it go on.
 */
static int on_audio(worker *w, wstream *e, uint32_t seq, const unsigned char *p,
                    size_t len)
{
    sotto_stream_stats st;
    char err[WORKER_ERR];
    size_t n = 0, width = pend_width(e);
    int rc;

    e->ack_seq = seq;
    e->ack_due = 1;
    if (e->skip > 0) {
        size_t k = e->skip < len ? e->skip : len;
        p += k;
        len -= k;
        e->skip -= k;
        if (len == 0)
            return 0;
    }
    rc = sotto__worker_convert(&e->cv, p, len, &w->conv, &w->conv_cap, &n,
                               err, sizeof err);
    if (rc == 0 && width == sizeof(float)) {
        const float *x = (const float *)(void *)w->conv;
        for (size_t i = 0; i < n; i++)
            if (!isfinite(x[i])) {
                snprintf(err, sizeof err, "sample %zu of chunk %u is %s; the "
                         "chunk's audio was refused", i, seq,
                         isnan(x[i]) ? "NaN" : "infinite");
                rc = SOTTO_ENONFINITE;
                break;
            }
    }
    if (rc != 0) {
        sotto_stream_get_stats(e->s, &st);
        sotto__log(SOTTO_LOG_WARN, e->id, "chunk %u: %s", seq, err);
        return send_error(w, e->id, rc, e->time_offset + st.audio_seconds +
                          (double)(e->pend_n / width) / e->rate, err);
    }
    if (n == 0)
        return 0;
    if (e->pend_n + n * width > e->pend_cap) {
        size_t cap = e->pend_cap ? e->pend_cap : 64 * 1024;
        unsigned char *nb;
        while (cap < e->pend_n + n * width)
            cap *= 2;
        if ((nb = realloc(e->pend, cap)) == NULL) {
            sotto__log(SOTTO_LOG_ERROR, e->id, "chunk %u: out of memory", seq);
            return send_error(w, e->id, SOTTO_ENOMEM, e->time_offset, "out of memory");
        }
        e->pend = nb;
        e->pend_cap = cap;
    }
    memcpy(e->pend + e->pend_n, w->conv, n * width);
    e->pend_n += n * width;
    return 0;
}

/*
 * Feeds a stream all its pending audio, in slices of at most
 * SOTTO__WORKER_FEED_SLICE_S seconds (each its own library call, so the
 * watchdog's inference limit applies to one slice), sends the events, and
 * acknowledges the last chunk received.
 *
 * The worker gathers chunks while it is busy and feeds them here together,
 * so a busy worker runs fewer, longer-spaced passes per stream instead of
 * one pass per min_chunk of audio that it could never catch up with: the
 * pass rate adapts to the load, and latency grows gently instead of the
 * backlog growing without bound.
 */
static int feed_pending(worker *w, wstream *e)
{
    const size_t width = pend_width(e);
    const size_t slice = (size_t)(SOTTO__WORKER_FEED_SLICE_S * e->rate) * width;
    sotto_stream_stats st;
    double compute = 0;
    int ran = 0;
    cJSON *o;

    for (size_t off = 0; off < e->pend_n;) {
        size_t k = e->pend_n - off < slice ? e->pend_n - off : slice;
        double t0 = sotto__now();
        int rc, passes;

        sotto_stream_get_stats(e->s, &st);
        passes = st.n_passes;
        infer_begin(w, e->id);
        if (e->cv.format == SOTTO__WORKER_S16)
            rc = sotto_stream_feed_s16(e->s, (const int16_t *)(void *)(e->pend + off),
                                       (ptrdiff_t)(k / width), 0);
        else
            rc = sotto_stream_feed(e->s, (const float *)(void *)(e->pend + off),
                                   (ptrdiff_t)(k / width), 0);
        sotto_stream_get_stats(e->s, &st);
        if (st.n_passes > passes) {
            ran = 1;
#ifdef SOTTO_FAULT_INJECTION
            fault_strike(w);
#endif
        }
        if (rc == SOTTO_ENOMEM)
            return out_of_memory(w, e->id, "in inference");
        infer_end(w);
        compute += sotto__now() - t0;
        off += k;
        if (rc != 0) {
            const char *msg = sotto_stream_error(e->s);

            sotto__log(SOTTO_LOG_WARN, e->id, "audio refused: %s", msg);
            if (send_error(w, e->id, rc, e->time_offset + st.audio_seconds,
                           msg[0] != 0 ? msg : sotto_strerror(rc)) != 0)
                return -1;
            off = e->pend_n;            /* the stream takes no more */
        }
        if (drain_events(w, e) != 0)
            return -1;
    }
    /* Every slice drained its events; what is left is the acknowledgement,
     * due only when a chunk came since the last one (on_finish() calls
     * this whether or not one did). */
    e->pend_n = 0;
    if (!e->ack_due)
        return 0;
    e->ack_due = 0;
    sotto_stream_get_stats(e->s, &st);
    o = cJSON_CreateObject();
    if (o != NULL) {
        cJSON_AddNumberToObject(o, "audio_time", e->time_offset + st.audio_seconds);
        cJSON_AddNumberToObject(o, "retained_from", st.retained_from);
        /* The wall time of feeds that ran a pass, for the gateway's
         * inference-time histogram. */
        if (ran)
            cJSON_AddNumberToObject(o, "compute", compute);
    }
    return send_json(w, SOTTO__IPC_ACK, e->id, e->ack_seq, o);
}

static int on_finish(worker *w, wstream *e)
{
    sotto_stream_stats st;
    uint32_t id = e->id;
    cJSON *o;
    int rc;

    /* Everything received before FINISH is fed first. */
    if (feed_pending(w, e) != 0)
        return -1;
    infer_begin(w, id);
    rc = sotto_stream_finish(e->s);
    if (rc == SOTTO_ENOMEM)
        return out_of_memory(w, id, "in the final flush");
    infer_end(w);
    if (rc != 0) {
        const char *msg = sotto_stream_error(e->s);

        sotto_stream_get_stats(e->s, &st);
        if (send_error(w, id, rc, e->time_offset + st.audio_seconds,
                       msg[0] != 0 ? msg : sotto_strerror(rc)) != 0)
            return -1;
    }
    if (drain_events(w, e) != 0)
        return -1;
    sotto_stream_get_stats(e->s, &st);
    remove_stream(w, e);
    sotto__log(SOTTO_LOG_DEBUG, id, "finished: %.2f s of audio, %.2f s of "
               "compute, %d passes", st.audio_seconds, st.compute_seconds,
               st.n_passes);
    o = cJSON_CreateObject();
    if (o != NULL) {
        cJSON_AddStringToObject(o, "reason", "finished");
        cJSON_AddNumberToObject(o, "audio_seconds", st.audio_seconds);
        cJSON_AddNumberToObject(o, "compute_seconds", st.compute_seconds);
        cJSON_AddNumberToObject(o, "n_passes", st.n_passes);
    }
    return send_json(w, SOTTO__IPC_CLOSED, id, 0, o);
}

/* CUT: ends the utterance after everything received before it. */
static int on_cut(worker *w, wstream *e, const unsigned char *p, size_t len)
{
    cJSON *o = cJSON_ParseWithLength((const char *)p, len);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "flush");
    int flush = !cJSON_IsFalse(f), rc;
    sotto_stream_stats st;

    cJSON_Delete(o);
    if (feed_pending(w, e) != 0)
        return -1;
    infer_begin(w, e->id);
    rc = sotto_stream_end_utterance(e->s, flush);
    if (rc == SOTTO_ENOMEM)
        return out_of_memory(w, e->id, "ending an utterance");
    infer_end(w);
    if (rc != 0) {
        const char *msg = sotto_stream_error(e->s);

        sotto_stream_get_stats(e->s, &st);
        if (send_error(w, e->id, rc, e->time_offset + st.audio_seconds,
                       msg[0] != 0 ? msg : sotto_strerror(rc)) != 0)
            return -1;
    }
    sotto__log(SOTTO_LOG_DEBUG, e->id, "utterance cut (%s)", flush ? "flush" : "clear");
    if (drain_events(w, e) != 0)
        return -1;
    /* The cut's events went first; this ACK tells the gateway it is done. */
    sotto_stream_get_stats(e->s, &st);
    if ((o = cJSON_CreateObject()) != NULL) {
        cJSON_AddNumberToObject(o, "audio_time", e->time_offset + st.audio_seconds);
        cJSON_AddNumberToObject(o, "retained_from", st.retained_from);
        cJSON_AddBoolToObject(o, "cut", 1);
    }
    return send_json(w, SOTTO__IPC_ACK, e->id, e->ack_seq, o);
}

static int on_drop(worker *w, wstream *e)
{
    uint32_t id = e->id;
    cJSON *o;

    sotto_stream_cancel(e->s, 0);
    remove_stream(w, e);
    sotto__log(SOTTO_LOG_DEBUG, id, "dropped");
    o = cJSON_CreateObject();
    if (o != NULL)
        cJSON_AddStringToObject(o, "reason", "dropped");
    return send_json(w, SOTTO__IPC_CLOSED, id, 0, o);
}

/* ---- offline jobs (the OpenAI REST endpoint) ---------------------------- */

static void job_free(wjob *j)
{
    if (j == NULL)
        return;
    free(j->data);
    free(j->prompt);
    free(j);
}

/* A job's failure: the HTTP status, the OpenAI error code (NULL for none;
 * the gateway passes on only the codes it knows) and the message. */
static int job_done_error(worker *w, uint32_t id, int status, const char *code,
                          const char *msg)
{
    cJSON *o = cJSON_CreateObject();

    sotto__log(SOTTO_LOG_WARN, id, "job refused (%d): %s", status, msg);
    if (o != NULL) {
        cJSON_AddBoolToObject(o, "ok", 0);
        cJSON_AddNumberToObject(o, "status", status);
        if (code != NULL)
            cJSON_AddStringToObject(o, "code", code);
        cJSON_AddStringToObject(o, "message", msg);
    }
    return send_json(w, SOTTO__IPC_JOB_DONE, id, 0, o);
}

/* JOB: a new job's parameters (the gateway checked them; they are read
 * here within the same bounds all the same). */
static int on_job(worker *w, uint32_t id, const unsigned char *p, size_t len)
{
    cJSON *o = cJSON_ParseWithLength((const char *)p, len);
    const cJSON *x;
    wjob *j;

    if (w->job != NULL) {
        sotto__log(SOTTO_LOG_WARN, w->job->id, "job dropped: another began before it ran");
        job_free(w->job);
        w->job = NULL;
    }
    if ((j = calloc(1, sizeof *j)) == NULL) {
        cJSON_Delete(o);
        return job_done_error(w, id, 500, NULL, "out of memory");
    }
    j->id = id;
    j->temperature = -1;
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "language")) != NULL && cJSON_IsString(x) &&
        strlen(x->valuestring) <= SOTTO__WORKER_MAX_LANGUAGE &&
        strspn(x->valuestring, "abcdefghijklmnopqrstuvwxyz") == strlen(x->valuestring))
        memcpy(j->language, x->valuestring, strlen(x->valuestring) + 1);
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "prompt")) != NULL && cJSON_IsString(x) &&
        x->valuestring[0] != 0 && strlen(x->valuestring) <= SOTTO__WORKER_MAX_PROMPT)
        j->prompt = strdup(x->valuestring);
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "temperature")) != NULL &&
        cJSON_IsNumber(x) && x->valuedouble > 0 && x->valuedouble <= 1)
        j->temperature = (float)x->valuedouble;
    j->words = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "words"));
    j->pcm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "pcm"));
    j->max_seconds = SOTTO_MAX_AUDIO_SECONDS;
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "max_seconds")) != NULL &&
        cJSON_IsNumber(x) && x->valuedouble > 0 && x->valuedouble < SOTTO_MAX_AUDIO_SECONDS)
        j->max_seconds = x->valuedouble;
    j->pieces = 1;
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "pieces")) != NULL && cJSON_IsNumber(x) &&
        x->valuedouble >= 1 && x->valuedouble <= WORKER_MAX_PIECES)
        j->pieces = (int)x->valuedouble;
    cJSON_Delete(o);
    w->job = j;
    return 0;
}

/* The quietest 100 ms frame within the search range around target;
 * returns the sample at its middle, in (lo, hi). */
static size_t quiet_cut(const float *x, size_t lo, size_t hi, size_t target)
{
    const size_t frame = SOTTO_SAMPLE_RATE / 10, reach = (size_t)(WORKER_CUT_SEARCH_S *
                                                                  SOTTO_SAMPLE_RATE);
    size_t a = target > lo + reach ? target - reach : lo + frame;
    size_t b = target + reach < hi ? target + reach : hi - frame;
    size_t best = target;
    double best_e = -1;

    for (size_t at = a; at + frame <= b; at += frame / 2) {
        double e = 0;
        for (size_t i = 0; i < frame; i++)
            e += (double)x[at + i] * x[at + i];
        if (best_e < 0 || e < best_e) {
            best_e = e;
            best = at + frame / 2;
        }
    }
    return best;
}

/*
 * Splits a long recording: the pieces after the first go back to the
 * gateway (JOB_PIECE, s16le at 16 kHz) for other workers, and the job
 * goes on with the first.  Cuts are at quiet moments near even shares.
 * Returns the samples of the first piece, or 0 on a send failure.
 */
static size_t job_split(worker *w, wjob *j, const float *pcm, size_t n)
{
    size_t cuts[WORKER_MAX_PIECES + 1];
    int16_t *s16;
    int k, np = j->pieces;

    cuts[0] = 0;
    cuts[np] = n;
    for (k = 1; k < np; k++)
        cuts[k] = quiet_cut(pcm, cuts[k - 1], n, n / (size_t)np * (size_t)k);
    for (k = 1; k < np; k++) {
        size_t len = cuts[k + 1] - cuts[k];
        cJSON *o = cJSON_CreateObject();
        if (o != NULL) {
            cJSON_AddNumberToObject(o, "index", k);
            cJSON_AddNumberToObject(o, "of", np);
            cJSON_AddNumberToObject(o, "offset", (double)cuts[k] / SOTTO_SAMPLE_RATE);
            cJSON_AddNumberToObject(o, "bytes", (double)len * 2);
        }
        if (send_json(w, SOTTO__IPC_JOB_PIECE, j->id, (uint32_t)k, o) != 0)
            return 0;
        if ((s16 = malloc(SOTTO__IPC_MAX_PAYLOAD)) == NULL)
            return 0;
        for (size_t at = 0; at < len;) {
            size_t m = len - at < SOTTO__IPC_MAX_PAYLOAD / 2 ? len - at
                                                            : SOTTO__IPC_MAX_PAYLOAD / 2;
            for (size_t i = 0; i < m; i++) {
                float v = pcm[cuts[k] + at + i] * 32768.0f;
                s16[i] = (int16_t)(v > 32767.0f ? 32767 : v < -32768.0f ? -32768 : lrintf(v));
            }
            if (send_msg(w, SOTTO__IPC_JOB_PIECE_DATA, j->id, (uint32_t)k, s16, m * 2) != 0) {
                free(s16);
                return 0;
            }
            at += m;
        }
        free(s16);
    }
    sotto__log(SOTTO_LOG_INFO, j->id, "job split into %d pieces of about %.0f s", np,
               (double)n / np / SOTTO_SAMPLE_RATE);
    return cuts[1];
}

static int on_job_data(worker *w, uint32_t id, const unsigned char *p, size_t len)
{
    wjob *j = w->job;

    if (j == NULL || j->id != id || j->failed)
        return 0;
    if (j->n + len > w->c->max_upload) {
        j->failed = 413;
        return 0;
    }
    if (j->n + len > j->cap) {
        size_t cap = j->cap ? j->cap : 1u << 20;
        unsigned char *nb;
        while (cap < j->n + len)
            cap *= 2;
        if ((nb = realloc(j->data, cap)) == NULL) {
            j->failed = 500;
            return 0;
        }
        j->data = nb;
        j->cap = cap;
    }
    memcpy(j->data + j->n, p, len);
    j->n += len;
    return 0;
}

static cJSON *segment_json(const sotto_segment *s)
{
    cJSON *o = cJSON_CreateObject(), *t, *ws;

    if (o == NULL)
        return NULL;
    cJSON_AddNumberToObject(o, "start", ms_round(s->start));
    cJSON_AddNumberToObject(o, "end", ms_round(s->end));
    cJSON_AddStringToObject(o, "text", s->text);
    if ((t = cJSON_AddArrayToObject(o, "tokens")) != NULL)
        for (int i = 0; i < s->n_tokens; i++)
            cJSON_AddItemToArray(t, cJSON_CreateNumber(s->tokens[i]));
    cJSON_AddNumberToObject(o, "avg_logprob", s->avg_logprob);
    cJSON_AddNumberToObject(o, "compression_ratio", s->compression_ratio);
    cJSON_AddNumberToObject(o, "no_speech_prob", s->no_speech_prob);
    cJSON_AddNumberToObject(o, "temperature", s->temperature);
    if (s->n_words > 0 && (ws = cJSON_AddArrayToObject(o, "words")) != NULL)
        for (int i = 0; i < s->n_words; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "word", s->words[i].text);
            cJSON_AddNumberToObject(x, "start", ms_round(s->words[i].start));
            cJSON_AddNumberToObject(x, "end", ms_round(s->words[i].end));
            cJSON_AddNumberToObject(x, "probability", s->words[i].probability);
            cJSON_AddItemToArray(ws, x);
        }
    return o;
}

/* After each window: its segments go to the gateway at once (an SSE
 * client sees them then), and the watchdog's inference clock restarts, so
 * that a long file is judged per window, not as one inference. */
static void job_window(void *user, const sotto_segment *segs, int n, double done)
{
    worker *w = user;
    uint32_t id = w->job != NULL ? w->job->id : 0;
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "segments");

    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, segment_json(&segs[i]));
    cJSON_AddNumberToObject(o, "done", ms_round(done));
    if (w->job_error == 0 && send_json(w, SOTTO__IPC_JOB_SEGMENTS, id, 0, o) != 0)
        w->job_error = 1;
    infer_begin(w, id);
}

/* JOB_RUN: decodes and transcribes the file, as `sotto transcribe` does
 * (the same defaults), sending the segments window by window. */
static int on_job_run(worker *w, uint32_t id)
{
    wjob *j = w->job;
    sotto_transcribe_params tp = sotto_transcribe_default_params();
    sotto_result *res = NULL;
    float *pcm = NULL;
    size_t n = 0, total_n = 0;
    char err[WORKER_ERR];
    int rc, status;
    cJSON *o;

    if (j == NULL || j->id != id)
        return job_done_error(w, id, 500, NULL, "the job's file did not reach the engine");
    w->job = NULL;
    if (j->failed) {
        rc = j->failed == 413
                 ? job_done_error(w, id, 413, "file_too_large",
                                  "the file is larger than the upload limit")
                 : job_done_error(w, id, 500, NULL, "out of memory receiving the file");
        goto done;
    }
    infer_begin(w, id);
    if (j->pcm) {
        /* A piece of a split job: s16le at 16 kHz, no decoding. */
        n = j->n / 2;
        rc = n == 0 ? SOTTO_EEMPTY : (pcm = malloc(n * sizeof *pcm)) == NULL ? SOTTO_ENOMEM : 0;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            int16_t v;
            memcpy(&v, j->data + 2 * i, 2);
            pcm[i] = v / 32768.0f;
        }
        snprintf(err, sizeof err, "%s", sotto_strerror(rc));
    } else {
        rc = sotto_audio_decode_memory(j->data, j->n, &pcm, &n, err, sizeof err);
    }
    infer_end(w);
    free(j->data);
    j->data = NULL;
    /* The server's limit on a stream's length holds for uploads too. */
    if (rc == 0 && !j->pcm && (double)n > j->max_seconds * SOTTO_SAMPLE_RATE) {
        snprintf(err, sizeof err, "the audio is %.1f s long; this server takes at "
                 "most %g s (--max-stream-seconds)", (double)n / SOTTO_SAMPLE_RATE,
                 j->max_seconds);
        rc = SOTTO_ETOOLONG;
    }
    if (rc == 0 && j->pieces > 1 && n >= (size_t)(WORKER_SPLIT_MIN_S * SOTTO_SAMPLE_RATE) &&
        n * 2 <= SOTTO__IPC_MAX_PIECE_BYTES) {
        total_n = n;
        if ((n = job_split(w, j, pcm, n)) == 0) {
            rc = -1;
            goto done;
        }
    } else {
        j->pieces = 1;
    }
    if (rc != 0) {
        status = rc == SOTTO_EEMPTY ? 400 : rc == SOTTO_ETOOLONG ? 413
                 : rc == SOTTO_ENOMEM ? 500 : 415;
        rc = job_done_error(w, id, status,
                            status == 400   ? "empty_file"
                            : status == 413 ? "file_too_large"
                            : status == 415 ? "unsupported_audio" : NULL, err);
        goto done;
    }
    if (j->language[0] != 0)
        tp.language = j->language;
    tp.initial_prompt = j->prompt;
    tp.word_timestamps = j->words;
    if (j->temperature > 0) {
        /* A temperature asked for: the ladder from it up to 1.0. */
        tp.n_temperatures = 0;
        for (float t = j->temperature; t <= 1.0001f && tp.n_temperatures <
             SOTTO_MAX_TEMPERATURES; t += 0.2f)
            tp.temperatures[tp.n_temperatures++] = t;
    }
    tp.on_window = job_window;
    tp.on_window_user = w;
    w->job = j;               /* for job_window's id */
    w->job_error = 0;
    infer_begin(w, id);
    rc = sotto_transcribe(w->model, pcm, n, &tp, &res, err, sizeof err);
#ifdef SOTTO_FAULT_INJECTION
    fault_strike(w);
#endif
    infer_end(w);
    w->job = NULL;
    if (w->job_error) {
        rc = -1;
        goto done;
    }
    if (rc != 0) {
        /* The request's fields (a language the model does not have, a
         * prompt it cannot encode), or samples it cannot take. */
        status = rc == SOTTO_EINVAL || rc == SOTTO_EUNSUPPORTED ? 400
                 : rc == SOTTO_ENONFINITE ? 415 : 500;
        rc = job_done_error(w, id, status,
                            status == 400   ? "invalid_value"
                            : status == 415 ? "unsupported_audio" : NULL, err);
        goto done;
    }
    o = cJSON_CreateObject();
    if (o != NULL) {
        sotto_model_info info;
        sotto_model_get_info(w->model, &info);
        cJSON_AddBoolToObject(o, "ok", 1);
        cJSON_AddNumberToObject(o, "duration", ms_round(total_n > 0
                                ? (double)total_n / SOTTO_SAMPLE_RATE
                                : sotto_result_duration(res)));
        cJSON_AddNumberToObject(o, "pieces", j->pieces);
        cJSON_AddStringToObject(o, "language", j->language[0] != 0 ? j->language
                                               : info.multilingual ? "" : "en");
    }
    sotto__log(SOTTO_LOG_INFO, id, "job done: %.1f s of audio, %d segments",
               sotto_result_duration(res), sotto_result_n_segments(res));
    rc = send_json(w, SOTTO__IPC_JOB_DONE, id, 0, o);
done:
    sotto_result_destroy(res);
    sotto_pcm_free(pcm);
    job_free(j);
    return rc;
}

/* Handles one message.  Returns 0 to go on, -1 to end the worker with
 * w->exit_rc. */
static int on_message(worker *w, const sotto__ipc_hdr *h, const unsigned char *p)
{
    wstream *e;

    switch (h->type) {
    case SOTTO__IPC_OPEN:
        return on_open(w, h->stream, p, h->len);
    case SOTTO__IPC_JOB:
        return on_job(w, h->stream, p, h->len);
    case SOTTO__IPC_JOB_DATA:
        return on_job_data(w, h->stream, p, h->len);
    case SOTTO__IPC_JOB_RUN:
        return on_job_run(w, h->stream);
    case SOTTO__IPC_AUDIO:
    case SOTTO__IPC_FINISH:
    case SOTTO__IPC_DROP:
    case SOTTO__IPC_CUT:
        break;
    default:
        sotto__log(SOTTO_LOG_ERROR, h->stream, "the gateway sent %s, which only "
                   "workers send", sotto__ipc_type_name(h->type));
        w->exit_rc = 1;
        return -1;
    }
    if ((e = find_stream(w, h->stream)) == NULL) {
        sotto__log(SOTTO_LOG_DEBUG, h->stream, "%s for a stream not open here; "
                   "ignored", sotto__ipc_type_name(h->type));
        return 0;
    }
    if (h->type == SOTTO__IPC_AUDIO) {
        if (on_audio(w, e, h->seq, p, h->len) != 0)
            return -1;
        /* A stream alone on its worker waits for no one: it is fed chunk
         * by chunk, so its passes fall on the same audio positions however
         * the chunks were timed (a replay after a worker death transcribes
         * as the first run did).  Gathering starts when streams compete. */
        return w->n_streams == 1 ? feed_pending(w, e) : 0;
    }
    if (h->type == SOTTO__IPC_FINISH)
        return on_finish(w, e);
    if (h->type == SOTTO__IPC_CUT)
        return on_cut(w, e, p, h->len);
    return on_drop(w, e);
}

/* ---- the worker -------------------------------------------------------- */

static int send_ready(worker *w)
{
    sotto_model_info info;
    cJSON *o = cJSON_CreateObject();

    sotto_model_get_info(w->model, &info);
    if (o != NULL) {
        cJSON_AddNumberToObject(o, "pid", (double)getpid());
        cJSON_AddStringToObject(o, "model", w->c->model);
        cJSON_AddNumberToObject(o, "n_mels", info.n_mels);
        cJSON_AddBoolToObject(o, "vad", info.has_vad != 0);
        cJSON_AddBoolToObject(o, "multilingual", info.multilingual != 0);
    }
    return send_json(w, SOTTO__IPC_READY, 0, 0, o);
}

/*
 * Applies --worker-memory as the worker's address-space limit (soft and
 * hard, so the engine cannot lift it), before the model is mapped: the
 * mapping counts against it, as do the thread stacks.  Sanitizer builds
 * reserve terabytes of shadow address space, so there the limit is only
 * reported as ignored.
 */
static int limit_memory(const sotto__serve_config *c)
{
    if (c->worker_memory == 0)
        return 0;
#ifdef SOTTO__SANITIZED
    sotto__log(SOTTO_LOG_WARN, 0, "--worker-memory is ignored in a sanitizer build");
    return 0;
#else
    {
        struct rlimit rl;

        rl.rlim_cur = rl.rlim_max = (rlim_t)c->worker_memory;
        if (setrlimit(RLIMIT_AS, &rl) != 0) {
            sotto__log(SOTTO_LOG_ERROR, 0, "cannot set --worker-memory %zu: %s",
                       c->worker_memory, strerror(errno));
            return -1;
        }
        sotto__log(SOTTO_LOG_DEBUG, 0, "address space limited to %zu bytes",
                   c->worker_memory);
        return 0;
    }
#endif
}

int sotto__worker_main(const sotto__serve_config *c, int slot, int chan,
                       int life)
{
    char role[32], err[WORKER_ERR];
    sotto_model_params mp;
    sotto__ipc_reader rd = { 0 };
    unsigned char *rbuf = NULL;
    pthread_t beat;
    int beat_started = 0, rc = 1, lock_init = 0;
    worker *w = NULL;

    /* The role names the worker by its slot, as the gateway's log lines
     * do.  The crash handlers go in before anything else can fault.  The
     * supervisor's child setup does both already; repeating them is
     * harmless and keeps the worker whole on its own (tests run it
     * without a supervisor). */
    snprintf(role, sizeof role, "worker%d", slot);
    sotto__log_init(role, c->log_level);
    sotto__crash_install(c->state_dir, role);
    /*
     * OpenMP threads that spin while waiting for work would burn the cores
     * of the other workers, so the policy is passive.  Caveat: GNU libgomp
     * reads OMP_WAIT_POLICY once, when it is loaded, so for libgomp this
     * setenv only works if the variable was already in the environment
     * `sotto serve` was started with (the serve command must set it and
     * re-exec itself to be sure); here, before the first parallel region,
     * it covers runtimes that read it lazily (LLVM's libomp) and anything
     * the worker might exec.  A value the operator set is kept.
     */
    setenv("OMP_WAIT_POLICY", "passive", 0);

    if ((w = calloc(1, sizeof *w)) == NULL) {
        sotto__log(SOTTO_LOG_ERROR, 0, "out of memory");
        goto fail;
    }
    w->c = c;
    w->ch.fd = chan;
    w->ch.life = life;
    w->ch.wake = -1;
    atomic_init(&w->ch.busy_stream, 0);
    atomic_init(&w->ch.busy_since_ms, 0);
    if ((rbuf = malloc(WORKER_READ_CHUNK)) == NULL) {
        sotto__log(SOTTO_LOG_ERROR, 0, "out of memory");
        goto fail;
    }
    if (pthread_mutex_init(&w->ch.wlock, NULL) != 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "cannot create a mutex");
        goto fail;
    }
    lock_init = 1;
#ifdef SOTTO_FAULT_INJECTION
    fault_init(w, slot);
#endif

    /* Off the network before touching any outside data. */
    sotto__isolate_network();
    if (limit_memory(c) != 0) {
        rc = SOTTO__EXIT_FATAL;
        goto fail;
    }
    mp = sotto_model_default_params();
    mp.n_threads = c->threads;
    mp.log = log_forward;
    mp.log_user = w;
    mp.vad_path = c->vad_model[0] != 0 ? c->vad_model : NULL;
    if (sotto_model_create(c->model, &mp, &w->model, err, sizeof err) != 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "cannot load the model: %s%s", err,
                   c->worker_memory != 0 ? " (is --worker-memory too low for it?)" : "");
        rc = SOTTO__EXIT_FATAL;
        goto fail;
    }
    {
        sotto_model_info info;

        sotto_model_get_info(w->model, &info);
        sotto__log(SOTTO_LOG_INFO, 0, "model %s loaded (%d thread%s, %s)",
                   c->model, c->threads, c->threads == 1 ? "" : "s",
                   info.has_vad ? "with VAD" : "without VAD");
    }

    /* The model is mapped: root is no longer needed. */
    if (sotto__drop_privileges(c) != 0) {
        rc = SOTTO__EXIT_FATAL;
        goto fail;
    }
    /* Nothing from outside has been read yet. */
    (void)sotto__sandbox_worker();
    /* READY goes out before the heartbeat starts, so it is the first
     * message the gateway sees. */
    if (send_ready(w) != 0) {
        rc = w->exit_rc;
        goto fail;
    }
    if ((w->ch.wake = eventfd(0, EFD_CLOEXEC)) < 0 ||
        pthread_create(&beat, NULL, heartbeat_main, &w->ch) != 0) {
        sotto__log(SOTTO_LOG_ERROR, 0, "cannot start the heartbeat: %s",
                   strerror(errno));
        goto fail;
    }
    beat_started = 1;

    /*
     * The loop: block until the gateway sends something, then take every
     * message already waiting (without blocking), and only then feed the
     * streams their gathered audio, each in turn.  While a feed runs, the
     * next chunks of every stream queue up in the channel, so a loaded
     * worker feeds bigger pieces less often (see feed_pending()).
     */
    for (int block = 1;;) {
        sotto__ipc_hdr h;
        const unsigned char *p;
        ssize_t n = recv(chan, rbuf, WORKER_READ_CHUNK, block ? 0 : MSG_DONTWAIT);
        int k;

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* Nothing more waiting: feed. */
            for (int i = 0; i < w->n_streams; i++) {
                wstream *e = w->streams[i];
                if (e->ack_due && feed_pending(w, e) != 0) {
                    rc = w->exit_rc;
                    goto fail;
                }
            }
            block = 1;
            continue;
        }
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            sotto__log(SOTTO_LOG_INFO, 0, "the gateway closed the channel");
            rc = 0;
            break;
        }
        if (n < 0) {
            sotto__log(SOTTO_LOG_ERROR, 0, "reading the channel: %s", strerror(errno));
            goto fail;
        }
        block = 0;
        if (sotto__ipc_reader_push(&rd, rbuf, (size_t)n) != 0) {
            sotto__log(SOTTO_LOG_ERROR, 0, "reading the channel: %s", strerror(errno));
            goto fail;
        }
        while ((k = sotto__ipc_reader_next(&rd, &h, &p, err, sizeof err)) == 1)
            if (on_message(w, &h, p) != 0) {
                rc = w->exit_rc;
                goto fail;
            }
        if (k < 0) {
            sotto__log(SOTTO_LOG_ERROR, 0, "malformed message from the gateway: %s",
                       err);
            goto fail;
        }
    }
fail:
    if (beat_started) {
        uint64_t one = 1;

        while (write(w->ch.wake, &one, sizeof one) < 0 && errno == EINTR)
            ;
        pthread_join(beat, NULL);
    }
    if (w != NULL) {
        while (w->n_streams > 0)
            remove_stream(w, w->streams[w->n_streams - 1]);
        job_free(w->job);
        sotto_model_destroy(w->model);
        if (w->ch.wake >= 0)
            close(w->ch.wake);
        if (lock_init)
            pthread_mutex_destroy(&w->ch.wlock);
        free(w->conv);
    }
    free(w);
    free(rbuf);
    sotto__ipc_reader_free(&rd);
    return rc;
}
