/*
 * test_mel.c - the log-mel front end against an independent numpy
 * reference (tests/engine/make_mel_fixture.py, which also checks itself
 * against faster-whisper).  Reads jfk.wav from $SOTTO_SHARED/audio and the
 * fixtures from tests/data, so run it from the repository root:
 *   SOTTO_SHARED=/work/shared ./build/tests/engine/test_mel
 */
#include <cJSON.h>
#include <pthread.h>
#include <sndfile.h>
#include <time.h>

#include "common/common.h"
#include "engine/mel.h"
#include "sotto.h"
#include "test.h"

#define TOL 1e-3f

/* Reads a 16 kHz mono file as float in [-1, 1); NULL on failure. */
static float *read_wav(const char *path, size_t *n)
{
    SF_INFO info;
    SNDFILE *sf;
    float *pcm = NULL;

    memset(&info, 0, sizeof info);
    sf = sf_open(path, SFM_READ, &info);
    if (!sf)
        return NULL;
    if (info.channels == 1 && info.samplerate == 16000 && info.frames > 0) {
        pcm = malloc((size_t)info.frames * sizeof *pcm);
        if (pcm && sf_readf_float(sf, pcm, info.frames) != info.frames) {
            free(pcm);
            pcm = NULL;
        }
        *n = (size_t)info.frames;
    }
    sf_close(sf);
    return pcm;
}

static cJSON *read_json(const char *path)
{
    size_t len;
    char *s = test_read_file(path, &len);
    cJSON *j = s ? cJSON_Parse(s) : NULL;

    free(s);
    return j;
}

static int json_int(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

static float max_abs_diff(const float *a, const float *b, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m))
            m = d; /* NaN propagates as a failure */
    }
    return m;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_args(void)
{
    sotto__mel *mel = NULL;
    float dummy = 0.0f, *out = &dummy, x = 0.5f;
    size_t nf = 7;

    CHECK_INT_EQ(sotto__mel_create(0, &mel), SOTTO_EINVAL);
    CHECK(mel == NULL);
    CHECK_INT_EQ(sotto__mel_create(81, &mel), SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__mel_create(80, NULL), SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__mel_create(80, &mel), 0);
    CHECK(mel != NULL);
    if (!mel)
        return;
    CHECK_INT_EQ(sotto__mel_compute(mel, &x, 0, 0, 0, &out, &nf), SOTTO_EINVAL);
    CHECK(out == NULL);
    CHECK_INT_EQ(nf, 0);
    CHECK_INT_EQ(sotto__mel_compute(mel, NULL, 0, 0, 0, &out, &nf), SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__mel_compute(mel, NULL, 5, 160, 0, &out, &nf),
                 SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__mel_compute(NULL, &x, 1, 160, 0, &out, &nf),
                 SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__mel_compute(mel, &x, 1, 160, 0, NULL, &nf),
                 SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__mel_compute(mel, &x, 1, 160, 0, &out, NULL),
                 SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__mel_compute(mel, &x, 1, SIZE_MAX, 0, &out, &nf),
                 SOTTO_EINVAL);
    sotto__mel_destroy(mel);
    sotto__mel_destroy(NULL);
}

static void test_jfk(const float *pcm, size_t n)
{
    sotto__mel *mel = NULL;
    cJSON *meta = read_json("tests/data/jfk_mel80.json");
    size_t len = 0, nf = 0;
    float *ref = test_read_file("tests/data/jfk_mel80.f32", &len);
    float *out = NULL;
    int n_mels = json_int(meta, "n_mels"), n_frames = json_int(meta, "n_frames");

    CHECK(meta != NULL);
    CHECK(ref != NULL);
    CHECK_INT_EQ(n_mels, 80);
    CHECK_INT_EQ(json_int(meta, "pad"), 160);
    CHECK_INT_EQ(len, (size_t)n_mels * (size_t)n_frames * sizeof(float));
    CHECK_INT_EQ(sotto__mel_create(80, &mel), 0);
    if (!meta || !ref || !mel || n_mels != 80 ||
        len != (size_t)n_mels * (size_t)n_frames * sizeof(float))
        goto done;
    CHECK_INT_EQ(sotto__mel_compute(mel, pcm, n, 160, 0, &out, &nf), 0);
    CHECK_INT_EQ(nf, n_frames);
    CHECK_INT_EQ(nf, (n + 160) / SOTTO__HOP);
    if (out && nf == (size_t)n_frames) {
        float err = max_abs_diff(out, ref, len / sizeof(float));
        printf("jfk 80 mels x %zu frames: max abs error %.3g\n", nf,
               (double)err);
        CHECK(err <= TOL);
    }
done:
    free(out);
    free(ref);
    cJSON_Delete(meta);
    sotto__mel_destroy(mel);
}

static void test_short(const float *pcm, size_t n)
{
    sotto__mel *mel = NULL;
    cJSON *meta = read_json("tests/data/short_mel80.json"), *c;
    size_t len = 0, at = 0;
    float *ref = test_read_file("tests/data/short_mel80.f32", &len);
    int offset = json_int(meta, "offset");

    CHECK(meta != NULL);
    CHECK(ref != NULL);
    CHECK_INT_EQ(sotto__mel_create(80, &mel), 0);
    if (!meta || !ref || !mel || offset < 0)
        goto done;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(meta, "cases"))
    {
        int cn = json_int(c, "n"), pad = json_int(c, "pad");
        int frames = json_int(c, "n_frames");
        size_t nf = 0, cnt = (size_t)frames * 80;
        float *out = NULL, *copy;

        CHECK(cn > 0 && pad >= 0 && frames >= 0);
        if (cn <= 0 || pad < 0 || frames < 0 || (size_t)offset + cn > n ||
            (at + cnt) * sizeof(float) > len) {
            CHECK(!"bad short fixture");
            break;
        }
        /* Copy to an exact-size buffer so ASan sees any overread. */
        copy = malloc((size_t)cn * sizeof *copy);
        CHECK(copy != NULL);
        if (!copy)
            break;
        memcpy(copy, pcm + offset, (size_t)cn * sizeof *copy);
        CHECK_INT_EQ(sotto__mel_compute(mel, copy, (size_t)cn, (size_t)pad, 0,
                                        &out, &nf), 0);
        CHECK_INT_EQ(nf, frames);
        CHECK_INT_EQ(nf, ((size_t)cn + (size_t)pad) / SOTTO__HOP);
        if (out && nf == (size_t)frames) {
            float err = max_abs_diff(out, ref + at, cnt);
            if (!(err <= TOL))
                fprintf(stderr, "short n=%d pad=%d: max abs error %g\n", cn,
                        pad, (double)err);
            CHECK(err <= TOL);
        }
        at += cnt;
        free(out);
        free(copy);
    }
    CHECK_INT_EQ(at * sizeof(float), len);
done:
    free(ref);
    cJSON_Delete(meta);
    sotto__mel_destroy(mel);
}

/* Inputs with no frames, or only padding. */
static void test_tiny(void)
{
    sotto__mel *mel = NULL;
    float *x = calloc(400, sizeof *x), *out = NULL;
    size_t sizes[] = {1, 2, 100, 159, 160, 161, 199, 200, 201, 399, 400};
    size_t nf = 0, i, j;

    CHECK_INT_EQ(sotto__mel_create(80, &mel), 0);
    if (!mel || !x)
        goto done;
    for (i = 0; i < 400; i++)
        x[i] = (float)sin(0.1 * (double)i) * 0.3f;
    for (i = 0; i < SOTTO__ARRAY_LEN(sizes); i++) {
        size_t pads[] = {0, 1, 160, 500};
        for (j = 0; j < SOTTO__ARRAY_LEN(pads); j++) {
            float *xs = malloc(sizes[i] * sizeof *xs);
            size_t k, want = (sizes[i] + pads[j]) / SOTTO__HOP;
            int ok = 1;

            CHECK(xs != NULL);
            if (!xs)
                continue;
            memcpy(xs, x, sizes[i] * sizeof *xs);
            nf = 99;
            CHECK_INT_EQ(sotto__mel_compute(mel, xs, sizes[i], pads[j], 0, &out,
                                            &nf), 0);
            CHECK_INT_EQ(nf, want);
            CHECK(out != NULL);
            for (k = 0; out && k < nf * 80; k++)
                ok &= isfinite(out[k]) && out[k] <= 10.0f && out[k] >= -10.0f;
            CHECK(ok);
            free(out);
            out = NULL;
            free(xs);
        }
    }

    /* Pad-only input: all zeros -> log10(1e-10) = -10 -> (-10 + 4) / 4. */
    CHECK_INT_EQ(sotto__mel_compute(mel, NULL, 0, 160, 0, &out, &nf), 0);
    CHECK_INT_EQ(nf, 1);
    for (i = 0; out && i < nf * 80; i++)
        CHECK(out[i] == -1.5f);
    free(out);
    out = NULL;
    CHECK_INT_EQ(sotto__mel_compute(mel, NULL, 0, 3200, 0, &out, &nf), 0);
    CHECK_INT_EQ(nf, 20);
    free(out);
    out = NULL;
    CHECK_INT_EQ(sotto__mel_compute(mel, NULL, 0, 1, 0, &out, &nf), 0);
    CHECK_INT_EQ(nf, 0);
    CHECK(out != NULL);
    free(out);
    out = NULL;
done:
    free(x);
    sotto__mel_destroy(mel);
}

static void test_128(const float *pcm, size_t n)
{
    sotto__mel *mel = NULL;
    float *out = NULL, lo = INFINITY, hi = -INFINITY;
    size_t nf = 0, i;
    int finite = 1;

    CHECK_INT_EQ(sotto__mel_create(128, &mel), 0);
    if (!mel)
        return;
    CHECK_INT_EQ(sotto__mel_compute(mel, pcm, n, 160, 0, &out, &nf), 0);
    CHECK_INT_EQ(nf, (n + 160) / SOTTO__HOP);
    for (i = 0; out && i < nf * 128; i++) {
        finite &= isfinite(out[i]);
        lo = out[i] < lo ? out[i] : lo;
        hi = out[i] > hi ? out[i] : hi;
    }
    CHECK(finite);
    /* The max - 8 floor bounds the range to 8 / 4 = 2. */
    CHECK(hi - lo <= 2.0f + 1e-5f);
    CHECK(hi > 0.0f && hi < 3.0f);
    /* The thread count (--threads) changes who computes a frame, not what
     * it holds. */
    {
        float *one = NULL, *two = NULL;
        size_t nf1 = 0, nf2 = 0;
        CHECK_INT_EQ(sotto__mel_compute(mel, pcm, n, 160, 1, &one, &nf1), 0);
        CHECK_INT_EQ(sotto__mel_compute(mel, pcm, n, 160, 2, &two, &nf2), 0);
        CHECK(nf1 == nf && nf2 == nf && one && two && out &&
              memcmp(one, out, nf * 128 * sizeof *out) == 0 &&
              memcmp(two, out, nf * 128 * sizeof *out) == 0);
        free(one);
        free(two);
    }
    free(out);
    sotto__mel_destroy(mel);
}

struct thread_job {
    const sotto__mel *mel;
    const float *pcm;
    size_t n;
    float *out;
    size_t nf;
    int rc;
};

static void *thread_main(void *arg)
{
    struct thread_job *j = arg;
    j->rc = sotto__mel_compute(j->mel, j->pcm, j->n, 160, 0, &j->out, &j->nf);
    return NULL;
}

/* Several threads computing at once give the same bits as one. */
static void test_threads(const float *pcm, size_t n)
{
    enum { NT = 4 };
    sotto__mel *mel = NULL;
    struct thread_job jobs[NT];
    pthread_t th[NT];
    float *ref = NULL;
    size_t nf = 0;
    int i, started[NT] = {0};

    memset(jobs, 0, sizeof jobs);
    CHECK_INT_EQ(sotto__mel_create(80, &mel), 0);
    if (!mel)
        return;
    CHECK_INT_EQ(sotto__mel_compute(mel, pcm, n, 160, 0, &ref, &nf), 0);
    for (i = 0; i < NT; i++) {
        jobs[i].mel = mel;
        jobs[i].pcm = pcm;
        jobs[i].n = n;
        started[i] = pthread_create(&th[i], NULL, thread_main, &jobs[i]) == 0;
        CHECK(started[i]);
    }
    for (i = 0; i < NT; i++) {
        if (!started[i])
            continue;
        pthread_join(th[i], NULL);
        CHECK_INT_EQ(jobs[i].rc, 0);
        CHECK_INT_EQ(jobs[i].nf, nf);
        if (ref && jobs[i].out && jobs[i].nf == nf)
            CHECK(memcmp(ref, jobs[i].out, nf * 80 * sizeof *ref) == 0);
        free(jobs[i].out);
    }
    free(ref);
    sotto__mel_destroy(mel);
}

/* Not a pass/fail check (sanitizer builds are slow): prints the time. */
static void time_long(void)
{
    char path[4096];
    size_t n = 0, nf = 0;
    float *pcm, *out = NULL;
    sotto__mel *mel = NULL;
    double t0, best = 1e9;
    int r;

    snprintf(path, sizeof path,
             "%s/audio/ljspeech-LJ001-0001_to_0032-long.wav",
             test_shared_dir());
    pcm = read_wav(path, &n);
    if (!pcm)
        return;
    CHECK_INT_EQ(sotto__mel_create(80, &mel), 0);
    for (r = 0; mel && r < 5; r++) {
        t0 = now_s();
        CHECK_INT_EQ(sotto__mel_compute(mel, pcm, n, 160, 0, &out, &nf), 0);
        t0 = now_s() - t0;
        best = t0 < best ? t0 : best;
        free(out);
        out = NULL;
    }
    printf("%.1f s of audio, %zu frames: best of 5 %.1f ms\n",
           (double)n / 16000, nf, best * 1e3);
    sotto__mel_destroy(mel);
    free(pcm);
}

int main(void)
{
    char path[4096];
    size_t n = 0;
    float *pcm;

    test_args();
    test_tiny();
    snprintf(path, sizeof path, "%s/audio/jfk.wav", test_shared_dir());
    pcm = read_wav(path, &n);
    if (!pcm)
        fprintf(stderr, "cannot read %s (set SOTTO_SHARED)\n", path);
    CHECK(pcm != NULL);
    CHECK_INT_EQ(n, 176000);
    if (pcm) {
        test_jfk(pcm, n);
        test_short(pcm, n);
        test_128(pcm, n);
        test_threads(pcm, n);
    }
    free(pcm);
    time_long();
    return test_main_exit("test_mel");
}
