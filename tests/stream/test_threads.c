/*
 * test_threads.c - the threading contract of include/sotto.h, on the real
 * model and real speech: one model shared by several threads at once, two
 * of them streaming and one transcribing offline, each inference itself
 * running on the engine's OpenMP pool (n_threads = 2), and a log callback
 * called from all of them.  Every thread must get the transcript it gets
 * alone.
 *
 * It is short on purpose: `make tsan` runs it under ThreadSanitizer (with
 * the Archer tool, so that OpenMP's own synchronization is seen), where
 * inference is many times slower.  The plain and ASan builds run it too.
 * The input is jfk.wav (11 s).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"

#include "sotto.h"

#define N_STREAMS 2
static float *clip;
static size_t clip_n;

/* Counts log lines; called from every thread inside a sotto call. */
static void count_log(void *user, int level, const char *msg)
{
    atomic_fetch_add((atomic_int *)user, 1);
}

typedef struct job {
    const sotto_model *m;
    char finals[2048];
    size_t n;
    int ok;
} job;

static void *stream_main(void *arg)
{
    job *j = arg;
    sotto_stream *s = NULL;
    sotto_event ev;
    char err[256];

    if (sotto_stream_create(j->m, NULL, &s, err, sizeof err) != 0)
        return NULL;
    j->ok = 1;
    for (size_t at = 0; at <= clip_n; at += 4000) {
        if (at < clip_n)
            j->ok &= sotto_stream_feed(s, clip + at, (ptrdiff_t)(clip_n - at < 4000 ? clip_n - at : 4000),
                                       0) == 0;
        else
            j->ok &= sotto_stream_finish(s) == 0;
        while (sotto_stream_poll(s, &ev) == 1) {
            if (ev.type == SOTTO_EVENT_FINAL && ev.text != NULL)
                j->n += (size_t)snprintf(j->finals + j->n, sizeof j->finals - j->n, "%s",
                                         ev.text);
            if (ev.type == SOTTO_EVENT_ERROR)
                j->ok = 0;
        }
    }
    sotto_stream_destroy(s);
    return NULL;
}

static void *offline_main(void *arg)
{
    job *j = arg;
    sotto_transcribe_params p = sotto_transcribe_default_params();
    sotto_result *r = NULL;
    char err[256];

    p.beam_size = 1;
    if (sotto_transcribe(j->m, clip, clip_n, &p, &r, err, sizeof err) == 0) {
        snprintf(j->finals, sizeof j->finals, "%s", sotto_result_text(r));
        j->ok = 1;
    }
    sotto_result_destroy(r);
    return NULL;
}

/* Lower-case letters and single spaces. */
static void normalize(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    int space = 1;

    for (; *in && n + 1 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (isalnum(c)) {
            out[n++] = (char)tolower(c);
            space = 0;
        } else if (!space && c != '\'') {
            out[n++] = ' ';
            space = 1;
        }
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = 0;
}

int main(void)
{
    sotto_model_params mp = sotto_model_default_params();
    sotto_model *m = NULL;
    char path[4096], err[512], vad[4096], want[256], got[2048];
    pthread_t t[N_STREAMS + 1];
    job jobs[N_STREAMS + 1], alone;
    atomic_int log_lines = 0;
    float *pcm = NULL;
    size_t n = 0;

    snprintf(path, sizeof path, "%s/audio/jfk.wav", test_shared_dir());
    if (sotto_audio_decode_file(path, &pcm, &n, err, sizeof err) != 0) {
        fprintf(stderr, "test_threads: %s\n", err);
        return 1;
    }
    clip = pcm;
    clip_n = n;
    snprintf(vad, sizeof vad, "%s/models/silero-vad/silero_vad_16k.safetensors",
             test_shared_dir());
    mp.n_threads = 2;
    mp.vad_path = vad;
    mp.log = count_log;
    mp.log_user = &log_lines;
    if (sotto_model_create(test_model_dir(), &mp, &m, err, sizeof err) != 0) {
        fprintf(stderr, "test_threads: %s\n", err);
        return 1;
    }

    /* The reference: one stream alone. */
    memset(&alone, 0, sizeof alone);
    alone.m = m;
    stream_main(&alone);
    CHECK(alone.ok);
    normalize(alone.finals, want, sizeof want);
    CHECK(strstr(want, "ask not what your country can do for you") != NULL);
    CHECK(strstr(want, "ask what you can do for your country") != NULL);
    if (strstr(want, "ask not what your country can do for you") == NULL)
        fprintf(stderr, "test_threads: alone: \"%s\"\n", want);

    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i <= N_STREAMS; i++) {
        jobs[i].m = m;
        CHECK_INT_EQ(pthread_create(&t[i], NULL, i < N_STREAMS ? stream_main : offline_main,
                                    &jobs[i]), 0);
    }
    for (int i = 0; i <= N_STREAMS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < N_STREAMS; i++) {
        CHECK(jobs[i].ok);
        /* Same input, same model, same decisions, whatever runs beside. */
        CHECK_STR_EQ(jobs[i].finals, alone.finals);
    }
    CHECK(jobs[N_STREAMS].ok);
    normalize(jobs[N_STREAMS].finals, got, sizeof got);
    CHECK(strstr(got, "ask not what your country can do for you") != NULL);
    CHECK(strstr(got, "ask what you can do for your country") != NULL);

    sotto_model_destroy(m);
    sotto_pcm_free(pcm);
    return test_main_exit("test_threads");
}
