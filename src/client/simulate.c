/*
 * simulate.c - `sotto transcribe --stream`: plays a decoded recording
 * through the streaming API on a simulated real-time clock, prints every
 * event with its emission time, and ends with latency statistics.
 *
 * The clock works like whisper_streaming's simulation mode, without the
 * sleeping: audio arrives in chunks of chunk_ms; before each feed the clock
 * moves on to the moment the next chunk has fully arrived (if it is not
 * past it already), the feed takes every chunk that has arrived by then,
 * and the measured wall time of the feed (the passes it ran) is added to
 * the clock.  Events polled after a feed are stamped with the clock.  So a
 * pass that is slower than real time delays what follows exactly as it
 * would live, while a fast machine does not wait for the audio.
 *
 * Statistics (also in the final JSON line):
 *  - commit latency: for each committed word, emission time of the final
 *    event carrying it minus the word's end in the audio;
 *  - first-partial latency: for each utterance, emission time of its first
 *    event with text minus the start of its first committed word;
 *  - real-time factor: compute seconds (passes and VAD) per audio second.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "client/client.h"

/* A growable array of doubles, for latencies. */
typedef struct dvec {
    double *v;
    size_t n, cap;
} dvec;

static int dvec_push(dvec *d, double x)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        double *nv = realloc(d->v, cap * sizeof *nv);
        if (nv == NULL)
            return -1;
        d->v = nv;
        d->cap = cap;
    }
    d->v[d->n++] = x;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) by linear interpolation; NAN when empty. */
static double quantile(dvec *d, double q)
{
    double pos;
    size_t i;

    if (d->n == 0)
        return NAN;
    qsort(d->v, d->n, sizeof *d->v, cmp_double);
    pos = q * (double)(d->n - 1);
    i = (size_t)pos;
    if (i + 1 >= d->n)
        return d->v[d->n - 1];
    return d->v[i] + (pos - (double)i) * (d->v[i + 1] - d->v[i]);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *type_name(int type)
{
    switch (type) {
    case SOTTO_EVENT_PARTIAL: return "partial";
    case SOTTO_EVENT_FINAL: return "final";
    case SOTTO_EVENT_UTTERANCE_END: return "utterance_end";
    case SOTTO_EVENT_ERROR: return "error";
    default: return "unknown";
    }
}

/* Per-utterance bookkeeping for the first-partial latency. */
typedef struct utt_info {
    int id;
    double first_text_emit;    /* NAN until an event with text */
    double first_word_start;   /* NAN until a final */
} utt_info;

typedef struct sim {
    const sotto_cli_sim_opts *o;
    dvec commit_lat;
    utt_info *utts;
    size_t n_utts, cap_utts;
    size_t n_events, n_finals, n_words;
    int errors;
    int failed;                /* an allocation or write failed */
} sim;

static utt_info *utt_get(sim *S, int id)
{
    for (size_t i = S->n_utts; i-- > 0;)
        if (S->utts[i].id == id)
            return &S->utts[i];
    if (S->n_utts == S->cap_utts) {
        size_t cap = S->cap_utts ? S->cap_utts * 2 : 32;
        utt_info *nu = realloc(S->utts, cap * sizeof *nu);
        if (nu == NULL)
            return NULL;
        S->utts = nu;
        S->cap_utts = cap;
    }
    S->utts[S->n_utts].id = id;
    S->utts[S->n_utts].first_text_emit = NAN;
    S->utts[S->n_utts].first_word_start = NAN;
    return &S->utts[S->n_utts++];
}

static void print_json_event(const sotto_event *ev, double emit)
{
    cJSON *o = cJSON_CreateObject();
    char *s;

    cJSON_AddStringToObject(o, "type", type_name(ev->type));
    cJSON_AddNumberToObject(o, "emit", round(emit * 1000.0) / 1000.0);
    cJSON_AddNumberToObject(o, "audio", round(ev->audio_time * 1000.0) / 1000.0);
    cJSON_AddNumberToObject(o, "utterance", ev->utterance);
    if (ev->type != SOTTO_EVENT_UTTERANCE_END)
        cJSON_AddNumberToObject(o, "start", round(ev->start * 1000.0) / 1000.0);
    cJSON_AddNumberToObject(o, "end", round(ev->end * 1000.0) / 1000.0);
    if (ev->type == SOTTO_EVENT_ERROR) {
        cJSON_AddNumberToObject(o, "code", ev->code);
        cJSON_AddStringToObject(o, "message", ev->text);
    } else if (ev->type != SOTTO_EVENT_UTTERANCE_END) {
        cJSON *words = cJSON_AddArrayToObject(o, "words");
        cJSON_AddStringToObject(o, "text", ev->text);
        for (int i = 0; i < ev->n_words; i++) {
            cJSON *w = cJSON_CreateObject();
            cJSON_AddNumberToObject(w, "start", round(ev->words[i].start * 1000.0) / 1000.0);
            cJSON_AddNumberToObject(w, "end", round(ev->words[i].end * 1000.0) / 1000.0);
            cJSON_AddStringToObject(w, "text", ev->words[i].text);
            cJSON_AddNumberToObject(w, "p", round(ev->words[i].probability * 1000.0) / 1000.0);
            cJSON_AddItemToArray(words, w);
        }
    }
    s = cJSON_PrintUnformatted(o);
    if (s != NULL)
        printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

/* Prints and accounts every waiting event, stamped `emit`. */
static void drain(sotto_stream *st, sim *S, double emit)
{
    sotto_event ev;

    while (sotto_stream_poll(st, &ev) == 1) {
        utt_info *u = utt_get(S, ev.utterance);
        S->n_events++;
        if (u == NULL) {
            S->failed = 1;
            continue;
        }
        if ((ev.type == SOTTO_EVENT_PARTIAL || ev.type == SOTTO_EVENT_FINAL) &&
            ev.n_words > 0 && isnan(u->first_text_emit))
            u->first_text_emit = emit;
        if (ev.type == SOTTO_EVENT_FINAL) {
            S->n_finals++;
            S->n_words += (size_t)ev.n_words;
            if (ev.n_words > 0 && isnan(u->first_word_start))
                u->first_word_start = ev.words[0].start;
            for (int i = 0; i < ev.n_words; i++)
                if (dvec_push(&S->commit_lat, emit - ev.words[i].end) != 0)
                    S->failed = 1;
        }
        if (ev.type == SOTTO_EVENT_ERROR)
            S->errors++;
        if (S->o->json) {
            print_json_event(&ev, emit);
        } else if (ev.type == SOTTO_EVENT_UTTERANCE_END) {
            printf("%8.2f  %-13s #%d at %.2f\n", emit, "utterance_end",
                   ev.utterance, ev.end);
        } else if (ev.type == SOTTO_EVENT_ERROR) {
            printf("%8.2f  %-13s %s (%s)\n", emit, "error", ev.text,
                   sotto_strerror(ev.code));
        } else {
            printf("%8.2f  %-13s [%7.2f %7.2f] %s\n", emit,
                   type_name(ev.type), ev.start, ev.end, ev.text);
        }
    }
}

int sotto_cli_simulate(const sotto_model *model, const float *pcm, size_t n,
                       const sotto_stream_params *sp,
                       const sotto_cli_sim_opts *o)
{
    sotto_stream *st = NULL;
    sotto_stream_stats stats;
    sim S;
    dvec first = { 0 };
    char err[512] = "";
    const size_t chunk = (size_t)o->chunk_ms * SOTTO_SAMPLE_RATE / 1000;
    double clock = 0.0, t, wall0 = now_seconds();
    size_t fed = 0;
    int rc, status = SOTTO_EXIT_OK;

    memset(&S, 0, sizeof S);
    S.o = o;
    if ((rc = sotto_stream_create(model, sp, &st, err, sizeof err)) != 0) {
        fprintf(stderr, "sotto: cannot start the stream: %s\n", err);
        return SOTTO_EXIT_USAGE;
    }
    while (fed < n) {
        size_t next = fed + chunk < n ? fed + chunk : n, avail;
        if (clock < (double)next / SOTTO_SAMPLE_RATE)
            clock = (double)next / SOTTO_SAMPLE_RATE;
        /* Every whole chunk that has arrived by now (and the tail). */
        avail = (size_t)(clock * SOTTO_SAMPLE_RATE) / chunk * chunk;
        if (avail < next)
            avail = next;
        if (avail > n)
            avail = n;
        t = now_seconds();
        rc = sotto_stream_feed(st, pcm + fed, (ptrdiff_t)(avail - fed), 0);
        clock += now_seconds() - t;
        fed = avail;
        if (rc != 0) {
            fprintf(stderr, "sotto: feed refused: %s\n", sotto_stream_error(st));
            status = SOTTO_EXIT_FAIL;
            break;
        }
        drain(st, &S, clock);
    }
    t = now_seconds();
    if (sotto_stream_finish(st) != 0) {
        fprintf(stderr, "sotto: finish failed: %s\n", sotto_stream_error(st));
        status = SOTTO_EXIT_FAIL;
    }
    clock += now_seconds() - t;
    drain(st, &S, clock);
    sotto_stream_get_stats(st, &stats);

    for (size_t i = 0; i < S.n_utts; i++)
        if (!isnan(S.utts[i].first_text_emit) && !isnan(S.utts[i].first_word_start) &&
            dvec_push(&first, S.utts[i].first_text_emit - S.utts[i].first_word_start) != 0)
            S.failed = 1;
    {
        double cl50 = quantile(&S.commit_lat, 0.5), cl90 = quantile(&S.commit_lat, 0.9);
        double clmax = quantile(&S.commit_lat, 1.0), fp50 = quantile(&first, 0.5);
        double rtf = stats.audio_seconds > 0 ? stats.compute_seconds / stats.audio_seconds : 0;
        if (o->json) {
            cJSON *j = cJSON_CreateObject();
            char *s;
            cJSON_AddStringToObject(j, "type", "stats");
            cJSON_AddNumberToObject(j, "audio_seconds", stats.audio_seconds);
            cJSON_AddNumberToObject(j, "speech_seconds", stats.speech_seconds);
            cJSON_AddNumberToObject(j, "compute_seconds", stats.compute_seconds);
            cJSON_AddNumberToObject(j, "wall_seconds", now_seconds() - wall0);
            cJSON_AddNumberToObject(j, "rtf", rtf);
            cJSON_AddNumberToObject(j, "passes", stats.n_passes);
            cJSON_AddNumberToObject(j, "utterances", stats.n_utterances);
            cJSON_AddNumberToObject(j, "words", (double)S.n_words);
            cJSON_AddNumberToObject(j, "errors", S.errors);
            if (!isnan(cl50)) {
                cJSON_AddNumberToObject(j, "commit_latency_median", cl50);
                cJSON_AddNumberToObject(j, "commit_latency_p90", cl90);
                cJSON_AddNumberToObject(j, "commit_latency_max", clmax);
            }
            if (!isnan(fp50))
                cJSON_AddNumberToObject(j, "first_partial_latency_median", fp50);
            cJSON_AddNumberToObject(j, "end_clock", clock);
            s = cJSON_PrintUnformatted(j);
            if (s != NULL)
                printf("%s\n", s);
            free(s);
            cJSON_Delete(j);
        } else {
            printf("-- %.1f s of audio (%.1f s speech), %d passes, %d utterances, "
                   "%zu words, %d errors\n", stats.audio_seconds,
                   stats.speech_seconds, stats.n_passes, stats.n_utterances,
                   S.n_words, S.errors);
            printf("-- commit latency: median %.2f s, p90 %.2f s, max %.2f s\n",
                   cl50, cl90, clmax);
            printf("-- first-partial latency: median %.2f s\n", fp50);
            printf("-- compute %.2f s, real-time factor %.3f\n",
                   stats.compute_seconds, rtf);
        }
    }
    if (S.failed)
        status = SOTTO_EXIT_FAIL;
    if (fflush(stdout) != 0)
        status = SOTTO_EXIT_FAIL;
    free(S.commit_lat.v);
    free(S.utts);
    free(first.v);
    sotto_stream_destroy(st);
    return status;
}
