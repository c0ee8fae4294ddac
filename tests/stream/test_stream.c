/*
 * test_stream.c - the streaming API (src/stream/stream.c) on the real
 * model and real speech: event order and invariants, every ending's
 * flush, bad input that leaves the stream usable, the resampling and s16
 * paths, VAD gating of silence, two streams on one model from two
 * threads, and the lifecycle (1000 streams, 20 models; run under
 * LeakSanitizer by `make SANITIZE=address,undefined test`).
 *
 * The accuracy of long streams is checked end to end by
 * tests/stream/check_stream.py.
 */
#include <ctype.h>
#include <dirent.h>
#include <pthread.h>

#include "test.h"

#include "sotto.h"

static char vad_path[4096];
static float *jfk;
static size_t jfk_n;

/* Lower-cases and keeps letters and single spaces, for text checks. */
static void normalize(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    int space = 1;

    for (; *in && n + 1 < cap; in++) {
        unsigned char c = (unsigned char)*in;
        if (isalnum(c) || c == '\'') {
            out[n++] = (char)tolower(c);
            space = 0;
        } else if (!space) {
            out[n++] = ' ';
            space = 1;
        }
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = 0;
}

/* What a run of a stream produced. */
typedef struct run {
    char finals[4096];       /* the committed text, concatenated */
    int n_final_words;
    int n_partials, n_finals, n_utt_ends, n_errors;
    int order_ok;            /* invariants held throughout */
    double last_end;         /* end of the last committed word */
    int last_utt;
    int open_utt;            /* finals seen since the last utterance_end */
} run;

static void run_init(run *r)
{
    memset(r, 0, sizeof *r);
    r->order_ok = 1;
    r->last_end = -1.0;
    r->last_utt = -1;
}

/* Drains the events, checking as it goes that committed words come in
 * time order and never overlap earlier ones, that utterance ids never go
 * back, and that an utterance_end follows its finals. */
static void drain(sotto_stream *s, run *r)
{
    sotto_event ev;

    while (sotto_stream_poll(s, &ev) == 1) {
        if (ev.utterance < r->last_utt)
            r->order_ok = 0;
        r->last_utt = ev.utterance;
        switch (ev.type) {
        case SOTTO_EVENT_PARTIAL:
            r->n_partials++;
            break;
        case SOTTO_EVENT_FINAL:
            r->n_finals++;
            if (ev.n_words < 1 || ev.text == NULL || ev.text[0] == 0)
                r->order_ok = 0;
            for (int i = 0; i < ev.n_words; i++) {
                if (ev.words[i].start < r->last_end - 0.1 ||
                    ev.words[i].end < ev.words[i].start)
                    r->order_ok = 0;
                if (ev.words[i].end > r->last_end)
                    r->last_end = ev.words[i].end;
                r->n_final_words++;
            }
            strncat(r->finals, ev.text, sizeof r->finals - strlen(r->finals) - 1);
            r->open_utt = 1;
            break;
        case SOTTO_EVENT_UTTERANCE_END:
            r->n_utt_ends++;
            if (!r->open_utt)
                r->order_ok = 0;
            r->open_utt = 0;
            break;
        case SOTTO_EVENT_ERROR:
            r->n_errors++;
            fprintf(stderr, "error event: %s\n", ev.text);
            break;
        default:
            r->order_ok = 0;
        }
    }
}

/* Feeds pcm in chunks of `chunk` samples, then finishes. */
static void stream_all(sotto_stream *s, const float *pcm, size_t n,
                       size_t chunk, run *r)
{
    for (size_t at = 0; at < n; at += chunk) {
        size_t k = n - at < chunk ? n - at : chunk;
        CHECK_INT_EQ(sotto_stream_feed(s, pcm + at, (ptrdiff_t)k, 0), 0);
        drain(s, r);
    }
    CHECK_INT_EQ(sotto_stream_finish(s), 0);
    drain(s, r);
}

static int contains(const char *text, const char *want)
{
    char norm[4096];
    normalize(text, norm, sizeof norm);
    if (strstr(norm, want) == NULL) {
        fprintf(stderr, "  \"%s\" lacks \"%s\"\n", norm, want);
        return 0;
    }
    return 1;
}

static void test_create_errors(const sotto_model *m, const sotto_model *no_vad)
{
    sotto_stream_params p = sotto_stream_default_params();
    sotto_stream *s = (sotto_stream *)1;
    char err[256];

    CHECK_INT_EQ(sotto_stream_create(NULL, NULL, &s, err, sizeof err), SOTTO_EINVAL);
    CHECK(s == NULL);
    p.sample_rate = 7;
    CHECK_INT_EQ(sotto_stream_create(m, &p, &s, err, sizeof err), SOTTO_EINVAL);
    CHECK(strstr(err, "sample_rate") != NULL);
    p = sotto_stream_default_params();
    p.min_chunk = 0.0f;
    CHECK_INT_EQ(sotto_stream_create(m, &p, &s, err, sizeof err), SOTTO_EINVAL);
    p = sotto_stream_default_params();
    p.decode.language = "de";
    CHECK_INT_EQ(sotto_stream_create(m, &p, &s, err, sizeof err), SOTTO_EINVAL);
    CHECK(strstr(err, "English-only") != NULL);
    p = sotto_stream_default_params();
    CHECK_INT_EQ(sotto_stream_create(no_vad, &p, &s, err, sizeof err), SOTTO_EINVAL);
    CHECK(strstr(err, "VAD") != NULL);
    p.vad = 0;
    CHECK_INT_EQ(sotto_stream_create(no_vad, &p, &s, err, sizeof err), 0);
    sotto_stream_destroy(s);
    sotto_stream_destroy(NULL);
}

/* jfk.wav in 100 ms chunks: the whole sentence, once, in order. */
static void test_jfk_100ms(const sotto_model *m)
{
    sotto_stream *s = NULL;
    sotto_stream_stats st;
    char err[256];
    run r;

    run_init(&r);
    CHECK_INT_EQ(sotto_stream_create(m, NULL, &s, err, sizeof err), 0);
    if (s == NULL)
        return;
    stream_all(s, jfk, jfk_n, 1600, &r);
    CHECK(r.order_ok);
    CHECK(contains(r.finals, "and so my fellow americans"));
    CHECK(contains(r.finals, "ask not what your country can do for you"));
    CHECK(contains(r.finals, "ask what you can do for your country"));
    CHECK_INT_EQ(r.n_final_words, 22);
    CHECK(r.n_partials > 0);
    CHECK(r.n_utt_ends >= 1);
    CHECK_INT_EQ(r.n_errors, 0);
    sotto_stream_get_stats(s, &st);
    CHECK(fabs(st.audio_seconds - 11.0) < 0.01);
    CHECK(st.n_passes >= 5);
    CHECK_INT_EQ(st.n_utterances, r.n_utt_ends);
    sotto_stream_destroy(s);
}

/* Bad input is refused whole, with a message, and the stream goes on. */
static void test_bad_input(const sotto_model *m)
{
    sotto_stream *s = NULL;
    float bad[1600];
    char err[256];
    run r;

    run_init(&r);
    CHECK_INT_EQ(sotto_stream_create(m, NULL, &s, err, sizeof err), 0);
    if (s == NULL)
        return;
    CHECK_INT_EQ(sotto_stream_feed(s, jfk, -5, 0), SOTTO_EINVAL);
    CHECK(strstr(sotto_stream_error(s), "negative") != NULL);
    CHECK_INT_EQ(sotto_stream_feed(s, NULL, 100, 0), SOTTO_EINVAL);
    CHECK_INT_EQ(sotto_stream_feed(s, jfk, 1600, 44100), SOTTO_EINVAL);
    CHECK(strstr(sotto_stream_error(s), "44100") != NULL);
    memcpy(bad, jfk + 16000, sizeof bad);
    bad[700] = NAN;
    CHECK_INT_EQ(sotto_stream_feed(s, bad, 1600, 0), SOTTO_ENONFINITE);
    CHECK(strstr(sotto_stream_error(s), "NaN") != NULL);
    bad[700] = INFINITY;
    CHECK_INT_EQ(sotto_stream_feed(s, bad, 1600, SOTTO_SAMPLE_RATE), SOTTO_ENONFINITE);
    /* Loud but finite: up to SOTTO_MAX_SAMPLE is audio, beyond it is not. */
    bad[700] = -(SOTTO_MAX_SAMPLE + 1.0f);
    CHECK_INT_EQ(sotto_stream_feed(s, bad, 1600, 0), SOTTO_EINVAL);
    CHECK(strstr(sotto_stream_error(s), "sample 700") != NULL);
    CHECK_INT_EQ(sotto_stream_feed(s, jfk, 0, 0), 0);
    /* The refused calls took nothing: the stream transcribes jfk whole. */
    stream_all(s, jfk, jfk_n, 16000, &r);
    CHECK(r.order_ok);
    CHECK(contains(r.finals, "ask what you can do for your country"));
    CHECK_INT_EQ(r.n_final_words, 22);
    CHECK_INT_EQ(sotto_stream_feed(s, jfk, 1600, 0), SOTTO_EINVAL);
    CHECK(strstr(sotto_stream_error(s), "ended") != NULL);
    CHECK_INT_EQ(sotto_stream_finish(s), 0);   /* finishing twice is fine */
    sotto_stream_destroy(s);
}

/* Every ending commits what is pending. */
static void test_endings(const sotto_model *m)
{
    /* In the pause after "...what your country can do for you". */
    const size_t cut = (size_t)(8.5 * SOTTO_SAMPLE_RATE);
    sotto_stream_params p = sotto_stream_default_params();
    sotto_stream *s = NULL;
    char err[256];
    run r;

    /* finish right after the audio stops mid-utterance. */
    run_init(&r);
    CHECK_INT_EQ(sotto_stream_create(m, NULL, &s, err, sizeof err), 0);
    if (s == NULL)
        return;
    stream_all(s, jfk, cut, 16000, &r);
    CHECK(contains(r.finals, "what your country can do for you"));
    CHECK(r.n_utt_ends >= 1);
    CHECK(!r.open_utt);
    sotto_stream_destroy(s);

    /* cancel with flush, in the middle of speech, commits what finish
     * commits at the same point: the speech that came after the latest
     * pass would be lost to a flush of that pass's words alone. */
    {
        const size_t mid = (size_t)(6.7 * SOTTO_SAMPLE_RATE);
        run fin;

        for (int how = 0; how < 2; how++) {
            run *out = how == 0 ? &fin : &r;

            run_init(out);
            CHECK_INT_EQ(sotto_stream_create(m, NULL, &s, err, sizeof err), 0);
            if (s == NULL)
                return;
            for (size_t at = 0; at < mid; at += 16000) {
                size_t n = mid - at < 16000 ? mid - at : 16000;
                CHECK_INT_EQ(sotto_stream_feed(s, jfk + at, (int)n, 0), 0);
                drain(s, out);
            }
            CHECK_INT_EQ(how == 0 ? sotto_stream_finish(s)
                                  : sotto_stream_cancel(s, 1), 0);
            drain(s, out);
            CHECK(!out->open_utt);
            CHECK_INT_EQ(sotto_stream_feed(s, jfk, 100, 0), SOTTO_EINVAL);
            sotto_stream_destroy(s);
        }
        CHECK(contains(fin.finals, "ask not what"));
        CHECK_STR_EQ(r.finals, fin.finals);
    }

    /* cancel without flush drops the pending words. */
    run_init(&r);
    CHECK_INT_EQ(sotto_stream_create(m, NULL, &s, err, sizeof err), 0);
    CHECK_INT_EQ(sotto_stream_feed(s, jfk, 16000 * 4, 0), 0);
    drain(s, &r);
    CHECK_INT_EQ(sotto_stream_cancel(s, 0), 0);
    {
        run after;
        run_init(&after);
        drain(s, &after);
        CHECK_INT_EQ(after.n_finals, 0);
    }
    sotto_stream_destroy(s);

    /* A deadline: audio beyond max_seconds is refused, what came before
     * is flushed. */
    run_init(&r);
    p.max_seconds = 3.0;
    CHECK_INT_EQ(sotto_stream_create(m, &p, &s, err, sizeof err), 0);
    CHECK_INT_EQ(sotto_stream_feed(s, jfk, 16000 * 2, 0), 0);
    CHECK_INT_EQ(sotto_stream_feed(s, jfk + 32000, 16000 * 2, 0), SOTTO_ETOOLONG);
    CHECK(strstr(sotto_stream_error(s), "limit") != NULL);
    drain(s, &r);
    CHECK(contains(r.finals, "and so my fellow americans"));
    CHECK(!r.open_utt);
    CHECK_INT_EQ(sotto_stream_feed(s, jfk, 100, 0), SOTTO_EINVAL);
    sotto_stream_destroy(s);
}

/* sotto_stream_end_utterance: a cut mid-speech ends the utterance with
 * its words, the stream goes on, and nothing is lost or repeated; a cut
 * without flush drops only the pending words. */
static void test_end_utterance(const sotto_model *m, const sotto_model *no_vad)
{
    /* In the pause after "fellow Americans" (2.22 s .. 3.0 s), before the
     * VAD's 600 ms of silence would end the utterance itself. */
    const size_t cut = (size_t)(2.5 * SOTTO_SAMPLE_RATE);
    sotto_stream *s = NULL;
    char err[256];
    run r;

    for (int k = 0; k < 2; k++) {
        /* Without VAD (k 1) nothing ends an utterance but the cut. */
        sotto_stream_params p = sotto_stream_default_params();
        p.vad = k == 0;
        run_init(&r);
        CHECK_INT_EQ(sotto_stream_create(k ? no_vad : m, &p, &s, err, sizeof err), 0);
        if (s == NULL)
            return;
        /* Nothing open yet: a no-op. */
        CHECK_INT_EQ(sotto_stream_end_utterance(s, 1), 0);
        for (size_t at = 0; at < cut; at += 8000) {
            CHECK_INT_EQ(sotto_stream_feed(s, jfk + at, 8000, 0), 0);
            drain(s, &r);
        }
        CHECK_INT_EQ(sotto_stream_end_utterance(s, 1), 0);
        drain(s, &r);
        CHECK(r.n_utt_ends >= 1);
        CHECK(!r.open_utt);
        CHECK(contains(r.finals, "and so my fellow americans"));
        stream_all(s, jfk + cut, jfk_n - cut, 8000, &r);
        CHECK(contains(r.finals, "and so my fellow americans ask not what your "
                                 "country can do for you ask what you can do for "
                                 "your country"));
        CHECK(r.order_ok);
        CHECK(!r.open_utt);
        {
            /* "country" twice in the sentence, no more: nothing repeated. */
            char norm[4096];
            const char *q = norm;
            int n = 0;
            normalize(r.finals, norm, sizeof norm);
            while ((q = strstr(q, "country")) != NULL) {
                n++;
                q++;
            }
            CHECK_INT_EQ(n, 2);
        }
        CHECK_INT_EQ(sotto_stream_end_utterance(s, 1), SOTTO_EINVAL);
        sotto_stream_destroy(s);
    }

    /* Without flush: the pending words go, later audio is transcribed. */
    run_init(&r);
    CHECK_INT_EQ(sotto_stream_create(m, NULL, &s, err, sizeof err), 0);
    if (s == NULL)
        return;
    CHECK_INT_EQ(sotto_stream_feed(s, jfk, 16000 * 2, 0), 0);
    drain(s, &r);
    CHECK_INT_EQ(sotto_stream_end_utterance(s, 0), 0);
    drain(s, &r);
    CHECK(!r.open_utt);
    CHECK(strstr(r.finals, "Americans") == NULL);
    stream_all(s, jfk + 2 * cut, jfk_n - 2 * cut, 8000, &r);
    CHECK(contains(r.finals, "what you can do for your country"));
    sotto_stream_destroy(s);
}

/* Silence never reaches the encoder. */
static void test_silence_is_gated(const sotto_model *m)
{
    float *zeros = calloc(16000 * 5, sizeof *zeros);
    sotto_stream *s = NULL;
    sotto_stream_stats st;
    char err[256];
    run r;

    run_init(&r);
    CHECK_INT_EQ(sotto_stream_create(m, NULL, &s, err, sizeof err), 0);
    if (s == NULL || zeros == NULL) {
        free(zeros);
        return;
    }
    stream_all(s, zeros, 16000 * 5, 3200, &r);
    sotto_stream_get_stats(s, &st);
    CHECK_INT_EQ(st.n_passes, 0);
    CHECK_INT_EQ(r.n_finals, 0);
    CHECK(st.speech_seconds < 0.01);
    sotto_stream_destroy(s);
    free(zeros);
}

/* 48 kHz s16 input goes through the resampler and gives the same words. */
static void test_s16_48k(const sotto_model *m)
{
    const size_t n = jfk_n * 3;
    int16_t *pcm = malloc(n * sizeof *pcm);
    sotto_stream_params p = sotto_stream_default_params();
    sotto_stream *s = NULL;
    char err[256];
    run r;

    if (pcm == NULL)
        return;
    /* Linear interpolation to 48 kHz; the stream's resampler removes the
     * images above 8 kHz again. */
    for (size_t i = 0; i < n; i++) {
        size_t j = i / 3;
        float a = jfk[j], b = j + 1 < jfk_n ? jfk[j + 1] : jfk[j];
        float x = a + (b - a) * (float)(i % 3) / 3.0f;
        pcm[i] = (int16_t)lrintf(x * 32767.0f);
    }
    run_init(&r);
    p.sample_rate = 48000;
    CHECK_INT_EQ(sotto_stream_create(m, &p, &s, err, sizeof err), 0);
    if (s != NULL) {
        for (size_t at = 0; at < n; at += 9600) {
            size_t k = n - at < 9600 ? n - at : 9600;
            CHECK_INT_EQ(sotto_stream_feed_s16(s, pcm + at, (ptrdiff_t)k, 48000), 0);
            drain(s, &r);
        }
        CHECK_INT_EQ(sotto_stream_feed_s16(s, pcm, 10, 16000), SOTTO_EINVAL);
        CHECK_INT_EQ(sotto_stream_finish(s), 0);
        drain(s, &r);
        CHECK(r.order_ok);
        CHECK(contains(r.finals, "ask not what your country can do for you"));
        CHECK(fabs(r.last_end - 10.7) < 0.6);   /* times in stream seconds */
    }
    sotto_stream_destroy(s);
    free(pcm);
}

/* Two streams on one model, on two threads at once. */
typedef struct job {
    const sotto_model *m;
    run r;
} job;

static void *thread_main(void *arg)
{
    job *j = arg;
    sotto_stream *s = NULL;
    char err[256];

    if (sotto_stream_create(j->m, NULL, &s, err, sizeof err) != 0)
        return NULL;
    for (size_t at = 0; at < jfk_n; at += 8000) {
        size_t k = jfk_n - at < 8000 ? jfk_n - at : 8000;
        sotto_stream_feed(s, jfk + at, (ptrdiff_t)k, 0);
        drain(s, &j->r);
    }
    sotto_stream_finish(s);
    drain(s, &j->r);
    sotto_stream_destroy(s);
    return NULL;
}

static void test_threads(const sotto_model *m)
{
    pthread_t t[2];
    job jobs[2];

    for (int i = 0; i < 2; i++) {
        jobs[i].m = m;
        run_init(&jobs[i].r);
        CHECK_INT_EQ(pthread_create(&t[i], NULL, thread_main, &jobs[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    /* Same input, same model, same decisions: identical transcripts. */
    CHECK_STR_EQ(jobs[0].r.finals, jobs[1].r.finals);
    CHECK(contains(jobs[0].r.finals, "ask what you can do for your country"));
}

/* Descriptors this process has open. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;    /* the directory's own descriptor */
}

/* Mappings of this process whose path contains name (/proc/self/maps). */
static int mappings_of(const char *name)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    int n = 0;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        n += strstr(line, name) != NULL;
    fclose(f);
    return n;
}

/* Creating and destroying many streams and models leaves nothing behind:
 * no descriptor, no mapping of the model (counted here), no memory
 * (LeakSanitizer checks at exit in the sanitized build). */
static void test_lifecycle(const sotto_model *m, const char *dir)
{
    sotto_model_params mp = sotto_model_default_params();
    char err[512];
    int ok = 1, fds0 = -1, maps0 = -1;

    for (int i = 0; i < 1000 && ok; i++) {
        sotto_stream *s = NULL;
        if (sotto_stream_create(m, NULL, &s, err, sizeof err) != 0) {
            ok = 0;
            break;
        }
        /* Some of them see speech and run a pass, some are cut short. */
        if (i % 100 == 0)
            sotto_stream_feed(s, jfk, 16000, 0);
        else
            sotto_stream_feed(s, jfk + (size_t)i * 16, 320, 0);
        if (i % 3 == 0)
            sotto_stream_finish(s);
        sotto_stream_destroy(s);
    }
    CHECK(ok);
    mp.vad_path = vad_path;
    mp.n_threads = 1;
    /* What the loop leaves behind: descriptors and mappings of the model
     * file (the shared model m keeps its own).  Counted after one round,
     * so that what the first load sets up for good (OpenMP's threads,
     * FFTW's plans) is in the baseline. */
    for (int i = 0; i < 21 && ok; i++) {
        if (i == 1) {
            fds0 = open_fds();
            maps0 = mappings_of("model.bin");
        }
        sotto_model *m2 = NULL;
        sotto_stream *s = NULL;
        if (sotto_model_create(dir, &mp, &m2, err, sizeof err) != 0) {
            fprintf(stderr, "model %d: %s\n", i, err);
            ok = 0;
            break;
        }
        if (sotto_stream_create(m2, NULL, &s, err, sizeof err) != 0)
            ok = 0;
        sotto_stream_feed(s, jfk, 800, 0);
        sotto_stream_destroy(s);
        sotto_model_destroy(m2);
    }
    CHECK(ok);
    CHECK_INT_EQ(open_fds(), fds0);
    CHECK_INT_EQ(mappings_of("model.bin"), maps0);
    CHECK(maps0 >= 1);    /* m's own mapping: the count sees the file */
}

/* Where stream_cut_resume cut, and the first stream's state there. */
typedef struct cut_info {
    size_t at;                   /* samples the first stream took */
    sotto_stream_stats st;       /* its stats then */
    int n_words;                 /* resume words handed on */
} cut_info;

/*
 * Streams pcm in 100 ms chunks until `cut` (and, with need_words, until
 * an utterance is also open with words committed in it), then moves the
 * stream to a new one the way the server does when a worker dies: from
 * the first stream's retained_from, with the words it committed since
 * then as resume_words and the text before them as the prompt.  The
 * whole committed text goes to out.
 */
static void stream_cut_resume(const sotto_model *m, const float *pcm, size_t n,
                              size_t cut, int need_words, char *out, size_t cap,
                              cut_info *ci)
{
    sotto_stream_params p = sotto_stream_default_params();
    sotto_stream *a = NULL, *b = NULL;
    sotto_word words[64];
    char texts[64][64], before[2048] = "";
    int n_words = 0, utt = 0;
    sotto_event ev;
    const size_t chunk = 1600;
    size_t at, from;
    run r;

    out[0] = 0;
    CHECK_INT_EQ(sotto_stream_create(m, &p, &a, NULL, 0), 0);
    for (at = 0; at + chunk <= n && !(at >= cut && (!need_words || n_words > 0));
         at += chunk) {
        CHECK_INT_EQ(sotto_stream_feed(a, pcm + at, (ptrdiff_t)chunk, 0), 0);
        while (sotto_stream_poll(a, &ev) == 1) {
            if (ev.type == SOTTO_EVENT_FINAL) {
                strncat(out, ev.text, cap - strlen(out) - 1);
                for (int i = 0; i < ev.n_words && n_words < 64; i++) {
                    snprintf(texts[n_words], sizeof texts[0], "%s", ev.words[i].text);
                    words[n_words] = ev.words[i];
                    words[n_words].text = texts[n_words];
                    n_words++;
                }
                utt = ev.utterance;
            } else if (ev.type == SOTTO_EVENT_UTTERANCE_END) {
                snprintf(before, sizeof before, "%s", out);
                n_words = 0;
                utt = ev.utterance + 1;
            }
        }
    }
    ci->at = at;
    ci->n_words = n_words;
    sotto_stream_get_stats(a, &ci->st);
    sotto_stream_destroy(a);
    p.time_offset = floor(ci->st.retained_from * SOTTO_SAMPLE_RATE) / SOTTO_SAMPLE_RATE;
    p.first_utterance = utt;
    p.resume_words = words;
    p.n_resume_words = n_words;
    p.decode.initial_prompt = before;
    CHECK_INT_EQ(sotto_stream_create(m, &p, &b, NULL, 0), 0);
    from = (size_t)(p.time_offset * SOTTO_SAMPLE_RATE);
    run_init(&r);
    if (n_words > 0)
        r.last_end = words[n_words - 1].end;
    stream_all(b, pcm + from, n - from, chunk, &r);
    CHECK(r.order_ok);
    strncat(out, r.finals, cap - strlen(out) - 1);
    sotto_stream_destroy(b);
}

/*
 * A stream moved to another process mid-utterance (what the server does
 * when a worker dies): cut at the first moment after 4 s of jfk when an
 * utterance is open with words committed in it, the hardest place to
 * resume.  Together the two streams must give the whole text once:
 * nothing lost, nothing repeated at the cut.
 */
static void test_resume(const sotto_model *m)
{
    char all[4096];
    cut_info ci;

    stream_cut_resume(m, jfk, jfk_n, 4u * SOTTO_SAMPLE_RATE, 1, all, sizeof all, &ci);
    CHECK(ci.st.retained_from >= 0.0 &&
          ci.st.retained_from <= (double)ci.at / SOTTO_SAMPLE_RATE);
    CHECK(ci.st.committed_until > 0.0);
    CHECK(ci.n_words > 0);
    CHECK(contains(all, "and so my fellow americans ask not what your country can do "
                        "for you ask what you can do for your country"));
}

/*
 * A resumed stream replays audio whose words were committed, and must
 * hear the rest as the original stream would have.  Its first passes are
 * short; forcing what they heard at their buffer's edge into the next
 * pass (words no two passes had agreed on) once made tiny.en hear this
 * sentence's end differently after a cut at 2.8, 3.8 or 4.8 s ("cold
 * Hardin", "selfish, to be"), losing a word in the chaos run.  At each of
 * these cuts the text must be exactly the uncut stream's.
 */
static void test_resume_same_text(const sotto_model *m)
{
    char path[4096], err[512], want[4096], got[4096];
    float *pcm = NULL;
    size_t n = 0;
    sotto_stream *s = NULL;
    static const double cuts[] = { 1.8, 2.8, 3.8, 4.8 };
    run r;

    snprintf(path, sizeof path,
             "%s/audio/librivox-sense_and_sensibility_01_austen_64kb-0890.wav",
             test_shared_dir());
    if (sotto_audio_decode_file(path, &pcm, &n, err, sizeof err) != 0) {
        fprintf(stderr, "test_stream: %s\n", err);
        CHECK(0);
        return;
    }
    run_init(&r);
    CHECK_INT_EQ(sotto_stream_create(m, NULL, &s, NULL, 0), 0);
    stream_all(s, pcm, n, 1600, &r);
    sotto_stream_destroy(s);
    snprintf(want, sizeof want, "%s", r.finals);
    CHECK(contains(want, "selfish is to be"));
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        cut_info ci;
        stream_cut_resume(m, pcm, n, (size_t)lround(cuts[i] * SOTTO_SAMPLE_RATE), 0,
                          got, sizeof got, &ci);
        if (strcmp(got, want) != 0)
            fprintf(stderr, "  cut at %.1f s: %s\n  uncut:        %s\n", cuts[i],
                    got, want);
        CHECK(strcmp(got, want) == 0);
    }
    sotto_pcm_free(pcm);
}

/* Audio that starts in the middle of a word: the first VAD frame is
 * speech, so the utterance opens with no pre-roll (once undefined
 * behaviour, caught by UBSan in the server tests). */
static void test_starts_in_speech(const sotto_model *m)
{
    sotto_stream *s = NULL;
    const size_t from = SOTTO_SAMPLE_RATE * 3 / 2;
    run r;

    run_init(&r);
    CHECK_INT_EQ(sotto_stream_create(m, NULL, &s, NULL, 0), 0);
    stream_all(s, jfk + from, jfk_n - from, 1600, &r);
    CHECK(r.order_ok);
    CHECK(contains(r.finals, "ask what you can do for your country"));
    sotto_stream_destroy(s);
}

int main(void)
{
    const char *dir = test_model_dir();
    sotto_model_params mp = sotto_model_default_params();
    sotto_model *m = NULL, *no_vad = NULL;

    /* One thread per inference: the tests run streams on two threads at
     * once, and the results do not depend on the thread count. */
    mp.n_threads = 1;
    char path[4096], err[512];

    snprintf(vad_path, sizeof vad_path,
             "%s/models/silero-vad/silero_vad_16k.safetensors", test_shared_dir());
    snprintf(path, sizeof path, "%s/audio/jfk.wav", test_shared_dir());
    if (sotto_audio_decode_file(path, &jfk, &jfk_n, err, sizeof err) != 0) {
        fprintf(stderr, "test_stream: %s\n", err);
        return 1;
    }
    if (sotto_model_create(dir, &mp, &no_vad, err, sizeof err) != 0) {
        fprintf(stderr, "test_stream: %s\n", err);
        return 1;
    }
    mp.vad_path = vad_path;
    if (sotto_model_create(dir, &mp, &m, err, sizeof err) != 0) {
        fprintf(stderr, "test_stream: %s\n", err);
        return 1;
    }
    {
        sotto_model_info info;
        sotto_model_get_info(m, &info);
        CHECK(info.has_vad);
        sotto_model_get_info(no_vad, &info);
        CHECK(!info.has_vad);
    }
    mp.vad_path = "/nonexistent/silero.safetensors";
    {
        sotto_model *bad = NULL;
        CHECK(sotto_model_create(dir, &mp, &bad, err, sizeof err) < 0);
        CHECK(bad == NULL);
    }

    test_create_errors(m, no_vad);
    test_jfk_100ms(m);
    test_bad_input(m);
    test_endings(m);
    test_end_utterance(m, no_vad);
    test_silence_is_gated(m);
    test_s16_48k(m);
    test_threads(m);
    test_resume(m);
    test_resume_same_text(m);
    test_starts_in_speech(m);
    test_lifecycle(m, dir);

    sotto_model_destroy(no_vad);
    sotto_model_destroy(m);
    sotto_pcm_free(jfk);
    return test_main_exit("test_stream");
}
