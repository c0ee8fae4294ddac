/*
 * test_vad.c - the Silero VAD (src/engine/vad.c) against its reference.
 *
 * The weights are $SOTTO_SHARED/models/silero-vad/silero_vad_16k.safetensors
 * and the fixtures tests/data/vad_*.txt, written by
 * tests/engine/make_vad_fixture.py from silero-vad 6.2.1's own forward
 * pass for that file (tinygrad_model.py) and from faster-whisper 1.2.1's
 * get_speech_timestamps.  Checks:
 *   - every frame's probability on three recordings, within 1e-3;
 *   - reset gives the same probabilities again, and a rejected frame
 *     (NaN, too loud) leaves the state untouched;
 *   - the probabilities and segments of faster-whisper's offline path on
 *     four recordings and two option sets (segments within one frame), and
 *     its segmentation logic on synthetic probability tracks under eight
 *     option sets (exactly);
 *   - loading errors: a missing file, truncated files, a corrupt header, a
 *     header length over the limit, a missing tensor, a wrong shape or
 *     dtype and a non-finite weight each give the right code and a message
 *     naming the problem.
 * It also prints the time per step.  Run from the repository root:
 *   SOTTO_SHARED=/work/shared ./build/tests/engine/test_vad
 */
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "engine/safetensors.h"
#include "engine/vad.h"
#include "sotto.h"
#include "test.h"

#define TOL 1e-3f
#define FRAME SOTTO__VAD_FRAME

static char weights_path[4096];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Reads a file of one number per line ('#' lines are comments). */
static float *read_probs(const char *path, size_t *n)
{
    size_t len, cap = 0;
    char *text = test_read_file(path, &len), *line, *save = NULL;
    float *p = NULL;

    *n = 0;
    if (text == NULL)
        return NULL;
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            p = realloc(p, cap * sizeof *p);
            if (p == NULL)
                break;
        }
        p[(*n)++] = (float)strtod(line, NULL);
    }
    free(text);
    return p;
}

static float *decode(const char *name, size_t *n)
{
    char path[4096], err[256];
    float *pcm = NULL;
    int rc;

    snprintf(path, sizeof path, "%s/audio/%s", test_shared_dir(), name);
    rc = sotto_audio_decode_file(path, &pcm, n, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "cannot decode %s: %s\n", path, err);
    CHECK_INT_EQ(rc, 0);
    return rc == 0 ? pcm : NULL;
}

/* Runs a stream over pcm in frames (the last zero-padded) into probs. */
static int run_stream(sotto__vad *v, const float *pcm, size_t n, float *probs,
                      size_t n_frames)
{
    float frame[FRAME];

    for (size_t f = 0; f < n_frames; f++) {
        size_t off = f * FRAME, have = n - off < FRAME ? n - off : FRAME;
        int rc;
        memset(frame, 0, sizeof frame);
        memcpy(frame, pcm + off, have * sizeof *frame);
        if ((rc = sotto__vad_step(v, frame, &probs[f])) != 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Per-frame probabilities
 * ------------------------------------------------------------------------ */

static void test_probs(const sotto__vad_model *m, const char *fixture,
                       const char *audio, double *step_s, size_t *steps)
{
    char path[256];
    size_t n = 0, n_ref = 0, n_frames;
    float *pcm = decode(audio, &n), *ref, *got = NULL, *again = NULL;
    float max_diff = 0.0f;
    sotto__vad *v = NULL;
    double t0;

    snprintf(path, sizeof path, "tests/data/%s", fixture);
    ref = read_probs(path, &n_ref);
    CHECK(ref != NULL);
    if (pcm == NULL || ref == NULL)
        goto done;
    n_frames = (n + FRAME - 1) / FRAME;
    CHECK_INT_EQ(n_frames, n_ref);
    got = calloc(n_frames, sizeof *got);
    again = calloc(n_frames, sizeof *again);
    CHECK_INT_EQ(sotto__vad_create(m, &v), 0);
    if (got == NULL || again == NULL || v == NULL || n_frames != n_ref)
        goto done;

    t0 = now_s();
    CHECK_INT_EQ(run_stream(v, pcm, n, got, n_frames), 0);
    *step_s += now_s() - t0;
    *steps += n_frames;
    for (size_t i = 0; i < n_frames; i++) {
        float d = fabsf(got[i] - ref[i]);
        if (!(d <= max_diff))
            max_diff = d;            /* NaN counts as a failure */
        if (!(d <= TOL)) {
            fprintf(stderr, "%s frame %zu: %.6f, expected %.6f\n", audio, i,
                    got[i], ref[i]);
            CHECK(d <= TOL);
        }
    }
    printf("%s: %zu frames, max |p - reference| = %.2e\n", audio, n_frames,
           max_diff);
    CHECK(max_diff <= TOL);

    /* A reset stream gives exactly the same probabilities again. */
    sotto__vad_reset(v);
    CHECK_INT_EQ(run_stream(v, pcm, n, again, n_frames), 0);
    CHECK(memcmp(got, again, n_frames * sizeof *got) == 0);
done:
    sotto__vad_destroy(v);
    sotto_pcm_free(pcm);
    free(ref);
    free(got);
    free(again);
}

/* Rejected frames leave the state as it was. */
static void test_bad_frames(const sotto__vad_model *m)
{
    sotto__vad *a = NULL, *b = NULL;
    float frame[FRAME], bad[FRAME], pa, pb, p = -1.0f;

    for (int i = 0; i < FRAME; i++)
        frame[i] = 0.3f * sinf(0.05f * (float)i) * (float)(i % 7) / 7.0f;
    CHECK_INT_EQ(sotto__vad_create(m, &a), 0);
    CHECK_INT_EQ(sotto__vad_create(m, &b), 0);
    if (a == NULL || b == NULL)
        goto done;
    memcpy(bad, frame, sizeof bad);
    bad[100] = NAN;
    CHECK_INT_EQ(sotto__vad_step(a, frame, &pa), 0);
    CHECK_INT_EQ(sotto__vad_step(b, frame, &pb), 0);
    CHECK_INT_EQ(sotto__vad_step(b, bad, &p), SOTTO_ENONFINITE);
    bad[100] = INFINITY;
    CHECK_INT_EQ(sotto__vad_step(b, bad, &p), SOTTO_ENONFINITE);
    bad[100] = 2000.0f;
    CHECK_INT_EQ(sotto__vad_step(b, bad, &p), SOTTO_EINVAL);
    CHECK(p == -1.0f);
    CHECK_INT_EQ(sotto__vad_step(a, frame, &pa), 0);
    CHECK_INT_EQ(sotto__vad_step(b, frame, &pb), 0);
    CHECK(pa == pb && pa >= 0.0f && pa <= 1.0f);
    CHECK_INT_EQ(sotto__vad_step(NULL, frame, &p), SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__vad_step(a, NULL, &p), SOTTO_EINVAL);
    CHECK_INT_EQ(sotto__vad_step(a, frame, NULL), SOTTO_EINVAL);
    {
        sotto__vad *c = (sotto__vad *)&c;
        CHECK_INT_EQ(sotto__vad_create(NULL, &c), SOTTO_EINVAL);
        CHECK(c == NULL);
    }
done:
    sotto__vad_destroy(a);
    sotto__vad_destroy(b);
}

/* ------------------------------------------------------------------------
 * Segments (tests/data/vad_segments.txt)
 * ------------------------------------------------------------------------ */

typedef struct source {
    int is_audio;
    char name[128];
    size_t n_samples, n_frames;
    float *probs;                /* the fixture's */
    float *pcm;                  /* audio sources only */
    size_t n_pcm;
} source;

static void check_segments(const char *what, const sotto__speech *got,
                           size_t n_got, const long long (*want)[2],
                           size_t n_want, long long tol)
{
    int ok = n_got == n_want;

    for (size_t i = 0; ok && i < n_got; i++)
        ok = llabs((long long)got[i].start - want[i][0]) <= tol &&
             llabs((long long)got[i].end - want[i][1]) <= tol;
    if (!ok) {
        fprintf(stderr, "%s: got", what);
        for (size_t i = 0; i < n_got; i++)
            fprintf(stderr, " [%zu, %zu)", got[i].start, got[i].end);
        fprintf(stderr, "; expected");
        for (size_t i = 0; i < n_want; i++)
            fprintf(stderr, " [%lld, %lld)", want[i][0], want[i][1]);
        fprintf(stderr, "\n");
    }
    CHECK(ok);
}

/* Checks one option set on the current source. */
static void run_case(const sotto__vad_model *m, const source *s,
                     const sotto__vad_options *o, const long long (*want)[2],
                     size_t n_want, int *cases)
{
    sotto__speech *got = NULL;
    size_t n_got = 0;
    char what[256];
    /* Audio probabilities may differ from the reference by up to TOL, which
     * can move a threshold crossing by a frame; synthetic ones are exact. */
    long long tol = s->is_audio ? FRAME : 0;

    snprintf(what, sizeof what, "%s (threshold %g, neg %g, min speech %d ms, "
             "min silence %d ms, pad %d ms, max speech %g s)", s->name,
             o->threshold, o->neg_threshold, o->min_speech_ms,
             o->min_silence_ms, o->speech_pad_ms, o->max_speech_s);
    CHECK_INT_EQ(sotto__vad_segments_from_probs(s->probs, s->n_frames,
                                                s->n_samples, o, &got, &n_got), 0);
    check_segments(what, got, n_got, want, n_want, tol);
    free(got);
    got = NULL;
    if (s->is_audio && s->pcm != NULL) {
        CHECK_INT_EQ(sotto__vad_segments(m, s->pcm, s->n_pcm, o, &got, &n_got), 0);
        check_segments(what, got, n_got, want, n_want, tol);
        free(got);
    }
    (*cases)++;
}

/* Compares faster-whisper's probabilities of an audio source with ours. */
static void check_offline_probs(const sotto__vad_model *m, source *s)
{
    float *p = NULL, max_diff = 0.0f;
    size_t nf = 0;

    s->pcm = decode(s->name, &s->n_pcm);
    if (s->pcm == NULL)
        return;
    CHECK_INT_EQ(s->n_pcm, s->n_samples);
    CHECK_INT_EQ(sotto__vad_probs(m, s->pcm, s->n_pcm, &p, &nf), 0);
    CHECK_INT_EQ(nf, s->n_frames);
    if (p != NULL && nf == s->n_frames) {
        for (size_t i = 0; i < nf; i++) {
            float d = fabsf(p[i] - s->probs[i]);
            if (!(d <= max_diff))
                max_diff = d;
        }
        printf("%s, faster-whisper's framing: %zu frames, max |p - reference| "
               "= %.2e (last frame %.6f, reference %.6f)\n", s->name, nf,
               max_diff, p[nf - 1], s->probs[nf - 1]);
        CHECK(max_diff <= TOL);
    }
    free(p);
}

static void test_segments(const sotto__vad_model *m)
{
    size_t len;
    char *text = test_read_file("tests/data/vad_segments.txt", &len);
    char *line, *save = NULL;
    source s = { 0 };
    sotto__vad_options o = sotto__vad_default_options();
    long long (*want)[2] = NULL;
    size_t n_want = 0, cap = 0;
    int in_case = 0, cases = 0, sources = 0;

    CHECK(text != NULL);
    if (text == NULL)
        return;
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char kind[16] = "";

        if (line[0] == '#' || sscanf(line, "%15s", kind) != 1)
            continue;
        if (strcmp(kind, "audio") == 0 || strcmp(kind, "probs") == 0) {
            free(s.probs);
            sotto_pcm_free(s.pcm);
            memset(&s, 0, sizeof s);
            s.is_audio = kind[0] == 'a';
            CHECK(sscanf(line, "%*s %127s %zu %zu", s.name, &s.n_samples,
                         &s.n_frames) == 3);
            sources++;
        } else if (strcmp(kind, "p") == 0) {
            char *q = line + 1, *end;
            s.probs = malloc((s.n_frames ? s.n_frames : 1) * sizeof *s.probs);
            if (s.probs == NULL)
                break;
            for (size_t i = 0; i < s.n_frames; i++, q = end) {
                s.probs[i] = (float)strtod(q, &end);
                CHECK(end != q);
            }
            if (s.is_audio)
                check_offline_probs(m, &s);
        } else if (strcmp(kind, "case") == 0) {
            CHECK(sscanf(line, "%*s %f %f %d %d %d %f", &o.threshold,
                         &o.neg_threshold, &o.min_speech_ms, &o.min_silence_ms,
                         &o.speech_pad_ms, &o.max_speech_s) == 6);
            n_want = 0;
            in_case = 1;
        } else if (strcmp(kind, "seg") == 0 && in_case) {
            if (n_want == cap) {
                cap = cap ? 2 * cap : 64;
                want = realloc(want, cap * sizeof *want);
                if (want == NULL)
                    break;
            }
            CHECK(sscanf(line, "%*s %lld %lld", &want[n_want][0],
                         &want[n_want][1]) == 2);
            n_want++;
        } else if (strcmp(kind, "end") == 0 && in_case && s.probs != NULL) {
            run_case(m, &s, &o, (const long long (*)[2])want, n_want, &cases);
            in_case = 0;
        }
    }
    printf("segments: %d option sets on %d sources checked\n", cases, sources);
    CHECK(cases >= 40 && sources >= 8);
    free(s.probs);
    sotto_pcm_free(s.pcm);
    free(want);
    free(text);
}

/* Argument checks and edge cases of the segmentation. */
static void test_segment_args(const sotto__vad_model *m)
{
    sotto__vad_options o = sotto__vad_default_options();
    sotto__speech *seg = (sotto__speech *)&o;
    size_t n = 99;
    float p[4] = { 0.9f, 0.9f, 0.1f, 0.1f }, *probs = NULL;

    CHECK(o.threshold == 0.5f && o.neg_threshold < 0 && o.min_speech_ms == 0 &&
          o.min_silence_ms == 2000 && o.speech_pad_ms == 400 &&
          o.max_speech_s == 0.0f);
    o.threshold = 1.5f;
    CHECK_INT_EQ(sotto__vad_segments_from_probs(p, 4, 2048, &o, &seg, &n),
                 SOTTO_EINVAL);
    CHECK(seg == NULL && n == 0);
    o = sotto__vad_default_options();
    o.speech_pad_ms = -1;
    CHECK_INT_EQ(sotto__vad_segments_from_probs(p, 4, 2048, &o, &seg, &n),
                 SOTTO_EINVAL);
    o.speech_pad_ms = 0;
    o.max_speech_s = NAN;
    CHECK_INT_EQ(sotto__vad_segments_from_probs(p, 4, 2048, &o, &seg, &n),
                 SOTTO_EINVAL);
    /* NULL options mean the defaults. */
    CHECK_INT_EQ(sotto__vad_segments_from_probs(p, 4, 2048, NULL, &seg, &n), 0);
    CHECK(n == 1 && seg != NULL && seg[0].start == 0 && seg[0].end == 2048);
    free(seg);
    /* No audio: one all-zero frame, no speech. */
    CHECK_INT_EQ(sotto__vad_segments(m, NULL, 0, NULL, &seg, &n), 0);
    CHECK(n == 0 && seg == NULL);
    CHECK_INT_EQ(sotto__vad_probs(m, NULL, 0, &probs, &n), 0);
    CHECK(n == 1 && probs != NULL && probs[0] >= 0.0f && probs[0] < 0.5f);
    free(probs);
    CHECK_INT_EQ(sotto__vad_probs(NULL, p, 4, &probs, &n), SOTTO_EINVAL);
}

/* ------------------------------------------------------------------------
 * Loading errors
 * ------------------------------------------------------------------------ */

typedef struct tspec {
    const char *name, *dtype;
    int rank;
    long long shape[3];
} tspec;

static const tspec real_specs[] = {
    { "stft_conv.weight", "F32", 3, { 258, 1, 256 } },
    { "conv1.weight", "F32", 3, { 128, 129, 3 } },
    { "conv1.bias", "F32", 1, { 128 } },
    { "conv2.weight", "F32", 3, { 64, 128, 3 } },
    { "conv2.bias", "F32", 1, { 64 } },
    { "conv3.weight", "F32", 3, { 64, 64, 3 } },
    { "conv3.bias", "F32", 1, { 64 } },
    { "conv4.weight", "F32", 3, { 128, 64, 3 } },
    { "conv4.bias", "F32", 1, { 128 } },
    { "lstm_cell.weight_ih", "F32", 2, { 512, 128 } },
    { "lstm_cell.weight_hh", "F32", 2, { 512, 128 } },
    { "lstm_cell.bias_ih", "F32", 1, { 512 } },
    { "lstm_cell.bias_hh", "F32", 1, { 512 } },
    { "final_conv.weight", "F32", 3, { 1, 128, 1 } },
    { "final_conv.bias", "F32", 1, { 1 } },
};
#define N_SPECS ((int)(sizeof real_specs / sizeof real_specs[0]))

/* Writes a safetensors image of zero-valued tensors. */
static unsigned char *build_file(const tspec *t, int n, size_t *len)
{
    char header[8192];
    size_t off = 0, h = 0;
    unsigned char *buf;

    h += (size_t)snprintf(header + h, sizeof header - h,
                          "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t count = 1, bytes;
        h += (size_t)snprintf(header + h, sizeof header - h,
                              ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name,
                              t[i].dtype);
        for (int d = 0; d < t[i].rank; d++) {
            count *= (size_t)t[i].shape[d];
            h += (size_t)snprintf(header + h, sizeof header - h, "%s%lld",
                                  d ? "," : "", t[i].shape[d]);
        }
        bytes = count * (strcmp(t[i].dtype, "F16") == 0 ? 2 : 4);
        h += (size_t)snprintf(header + h, sizeof header - h,
                              "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
        off += bytes;
    }
    h += (size_t)snprintf(header + h, sizeof header - h, "}");
    while (h % 8)
        header[h++] = ' ';
    *len = 8 + h + off;
    buf = calloc(1, *len);
    if (buf == NULL)
        return NULL;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((unsigned long long)h >> (8 * i));
    memcpy(buf + 8, header, h);
    return buf;
}

/* Loads an image and expects code rc with needle in the message. */
static void expect_load(const char *what, const void *data, size_t len, int rc,
                        const char *needle)
{
    sotto__vad_model *m = (sotto__vad_model *)&m;
    char err[512] = "";
    int got = sotto__vad_model_load_memory(data, len, &m, err, sizeof err);

    if (got != rc || (needle != NULL && strstr(err, needle) == NULL)) {
        fprintf(stderr, "%s: rc %d (expected %d), message \"%s\" (expected "
                "to contain \"%s\")\n", what, got, rc, err,
                needle ? needle : "");
        CHECK(0);
    } else {
        printf("%s: %s\n", what, rc ? err : "loaded");
        CHECK(1);
    }
    if (rc != 0)
        CHECK(m == NULL);
    sotto__vad_model_free(got == 0 ? m : NULL);
}

static void test_load_errors(void)
{
    size_t len = 0, blen;
    unsigned char *real = test_read_file(weights_path, &len), *b, *copy;
    tspec specs[N_SPECS];
    sotto__vad_model *m = (sotto__vad_model *)&m;
    char err[512] = "", tmp[] = "/tmp/test_vad_XXXXXX";
    int fd;

    /* A missing file. */
    CHECK_INT_EQ(sotto__vad_model_load("/nonexistent/silero_vad_16k.safetensors",
                                       &m, err, sizeof err), SOTTO_EIO);
    CHECK(m == NULL && strstr(err, "cannot open") != NULL &&
          strstr(err, "/nonexistent/silero_vad_16k.safetensors") != NULL);
    printf("missing file: %s\n", err);

    CHECK(real != NULL);
    if (real == NULL)
        return;
    copy = malloc(len);
    if (copy == NULL)
        goto done;

    /* Truncations: in the length, in the header, in the data. */
    expect_load("empty file", real, 0, SOTTO_EMODEL, "too short");
    expect_load("truncated length", real, 5, SOTTO_EMODEL, "too short");
    expect_load("truncated header", real, 600, SOTTO_EMODEL, "truncated");
    expect_load("truncated data", real, len - 1, SOTTO_EMODEL,
                "final_conv.bias\" has data_offsets");
    expect_load("truncated to half", real, len / 2, SOTTO_EMODEL, "outside");
    /* The same through a file, whose path the message names. */
    fd = mkstemp(tmp);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, real, len / 2) == (ssize_t)(len / 2));
        close(fd);
        CHECK_INT_EQ(sotto__vad_model_load(tmp, &m, err, sizeof err), SOTTO_EMODEL);
        CHECK(m == NULL && strstr(err, tmp) != NULL && strstr(err, "outside") != NULL);
        printf("truncated file: %s\n", err);
        unlink(tmp);
    }

    /* MAX_FILE_BYTES (vad.c), 64 MiB, and one byte more: a sparse file,
     * refused by its size. */
    {
        char big[] = "/tmp/test_vad_big_XXXXXX";
        int bfd = mkstemp(big);
        CHECK(bfd >= 0);
        if (bfd >= 0) {
            CHECK(ftruncate(bfd, (64 << 20) + 1) == 0);
            close(bfd);
            CHECK_INT_EQ(sotto__vad_model_load(big, &m, err, sizeof err), SOTTO_EMODEL);
            CHECK(m == NULL && strstr(err, "67108865 bytes, more than the 67108864") != NULL);
            printf("64 MiB + 1: %s\n", err);
            unlink(big);
        }
    }

    /* SOTTO__SAFETENSORS_MAX_TENSORS and _MAX_RANK, one past each. */
    {
        size_t cap = 64 + (size_t)(SOTTO__SAFETENSORS_MAX_TENSORS + 1) * 64, hl;
        unsigned char *f = malloc(cap);
        char *h = f != NULL ? (char *)f + 8 : NULL;
        CHECK(f != NULL);
        if (f != NULL) {
            size_t k = 0;
            k += (size_t)sprintf(h + k, "{");
            for (int i = 0; i <= SOTTO__SAFETENSORS_MAX_TENSORS; i++)
                k += (size_t)sprintf(h + k, "%s\"t%d\":{\"dtype\":\"F32\",\"shape\":[1],"
                                     "\"data_offsets\":[0,4]}", i ? "," : "", i);
            k += (size_t)sprintf(h + k, "}");
            hl = k;
            for (int i = 0; i < 8; i++)
                f[i] = (unsigned char)(hl >> (8 * i));
            memset(f + 8 + hl, 0, 4);
            expect_load("1025 tensors", f, 8 + hl + 4, SOTTO_EMODEL,
                        "more than the limit of 1024");
            hl = (size_t)sprintf(h, "{\"conv\":{\"dtype\":\"F32\",\"shape\":"
                                    "[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}");
            for (int i = 0; i < 8; i++)
                f[i] = (unsigned char)(hl >> (8 * i));
            memset(f + 8 + hl, 0, 4);
            expect_load("rank 9", f, 8 + hl + 4, SOTTO_EMODEL, "more than 8 dimensions");
            free(f);
        }
    }

    /* A header length over the limit, and a corrupt header. */
    memcpy(copy, real, len);
    copy[5] = 1;                               /* 2^40 + 1208 */
    expect_load("huge header length", copy, len, SOTTO_EMODEL,
                "SOTTO__SAFETENSORS_MAX_HEADER");
    memcpy(copy, real, len);
    {
        /* The first colon of the JSON becomes a stray character. */
        unsigned char *colon = memchr(copy + 8, ':', 1208);
        if (colon != NULL)
            *colon = '#';
    }
    expect_load("corrupt header", copy, len, SOTTO_EMODEL, "not a JSON object");
    memcpy(copy, real, len);
    copy[8] = '[';
    expect_load("header not an object", copy, len, SOTTO_EMODEL, "not a JSON object");

    /* A NaN in a weight. */
    memcpy(copy, real, len);
    memset(copy + len - 8, 0xff, 4);           /* in final_conv.weight */
    expect_load("NaN weight", copy, len, SOTTO_EMODEL, "non-finite");

    /* Constructed files: all zeros loads (and gives sigmoid(0) = 0.5). */
    memcpy(specs, real_specs, sizeof specs);
    b = build_file(specs, N_SPECS, &blen);
    if (b != NULL) {
        sotto__vad *v = NULL;
        float frame[FRAME] = { 0 }, p = 0.0f;
        m = NULL;
        CHECK_INT_EQ(sotto__vad_model_load_memory(b, blen, &m, err, sizeof err), 0);
        CHECK_INT_EQ(sotto__vad_create(m, &v), 0);
        CHECK_INT_EQ(v ? sotto__vad_step(v, frame, &p) : -1, 0);
        CHECK(p == 0.5f);
        sotto__vad_destroy(v);
        sotto__vad_model_free(m);
        free(b);
    }
    specs[1].shape[2] = 5;
    b = build_file(specs, N_SPECS, &blen);
    expect_load("wrong shape", b, blen, SOTTO_EMODEL,
                "conv1.weight has shape [128, 129, 5]; expected [128, 129, 3]");
    free(b);
    memcpy(specs, real_specs, sizeof specs);
    specs[9].rank = 3;
    specs[9].shape[2] = 1;
    b = build_file(specs, N_SPECS, &blen);
    expect_load("wrong rank", b, blen, SOTTO_EMODEL,
                "lstm_cell.weight_ih has shape [512, 128, 1]; expected [512, 128]");
    free(b);
    memcpy(specs, real_specs, sizeof specs);
    specs[4].dtype = "F16";
    b = build_file(specs, N_SPECS, &blen);
    expect_load("wrong dtype", b, blen, SOTTO_EMODEL,
                "conv2.bias has dtype F16; expected F32");
    free(b);
    memcpy(specs, real_specs, sizeof specs);
    b = build_file(specs, N_SPECS - 1, &blen);
    expect_load("missing tensor", b, blen, SOTTO_EMODEL,
                "missing tensor final_conv.bias");
    free(b);
    memcpy(specs, real_specs, sizeof specs);
    specs[0].dtype = "Q4";
    b = build_file(specs, N_SPECS, &blen);
    expect_load("unknown dtype", b, blen, SOTTO_EMODEL, "unknown dtype");
    free(b);
    memcpy(specs, real_specs, sizeof specs);
    specs[3].name = "conv1.weight";
    b = build_file(specs, N_SPECS, &blen);
    expect_load("duplicate tensor", b, blen, SOTTO_EMODEL, "listed twice");
    free(b);

    CHECK_INT_EQ(sotto__vad_model_load_memory(real, len, NULL, err, sizeof err),
                 SOTTO_EINVAL);
done:
    free(copy);
    free(real);
}

int main(void)
{
    sotto__vad_model *m = NULL;
    char err[512];
    double step_s = 0.0;
    size_t steps = 0;
    int rc;

    snprintf(weights_path, sizeof weights_path,
             "%s/models/silero-vad/silero_vad_16k.safetensors", test_shared_dir());
    rc = sotto__vad_model_load(weights_path, &m, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    CHECK_INT_EQ(rc, 0);
    if (m != NULL) {
        test_probs(m, "vad_jfk.txt", "jfk.wav", &step_s, &steps);
        test_probs(m, "vad_goforward.txt", "pocketsphinx-goforward.wav",
                   &step_s, &steps);
        test_probs(m, "vad_librispeech.txt",
                   "librispeech-test-clean-1089-134686-0000.wav", &step_s, &steps);
        if (steps > 0)
            printf("time per step: %.1f us (%zu steps, %.1f ms per second of "
                   "audio)\n", 1e6 * step_s / (double)steps, steps,
                   1e3 * step_s / (double)steps * 16000.0 / FRAME);
        test_bad_frames(m);
        test_segments(m);
        test_segment_args(m);
    }
    test_load_errors();
    sotto__vad_model_free(m);
    return test_main_exit("test_vad");
}
