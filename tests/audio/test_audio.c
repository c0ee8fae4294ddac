/*
 * test_audio.c - unit tests for the audio input (src/audio/audio.c).
 *
 * Decodes the shared jfk.wav and checks it bit for bit against its own
 * s16 samples; writes sines in several formats, rates and channel counts
 * with libsndfile into a temporary folder and checks that length,
 * frequency and amplitude survive decoding, downmixing and resampling;
 * and checks that every documented failure returns its code, no buffer
 * and a message.  Ogg/Opus: decodes tests/data/jfk.opus and checks it
 * against jfk.wav, and damages it (cut pages, bad checksums, an illegal
 * TOC byte, broken OpusHead fields, a lying granule position) to check
 * each error.  Needs SOTTO_SHARED (default ../shared) for jfk.wav, and
 * runs from the repository root for tests/data.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sndfile.h>

#include "sotto.h"
#include "test.h"

#define SINE_FREQ 440.0
#define SINE_SECONDS 2.0
#define MAX_TMP_FILES 64

static char tmp_dir[256];
static char tmp_files[MAX_TMP_FILES][320];
static int n_tmp_files;

static const char *tmp_path(const char *name)
{
    char buf[320], *p;
    int i;

    snprintf(buf, sizeof buf, "%s/%s", tmp_dir, name);
    for (i = 0; i < n_tmp_files; i++)
        if (strcmp(tmp_files[i], buf) == 0)
            return tmp_files[i];
    if (n_tmp_files >= MAX_TMP_FILES) {
        fprintf(stderr, "too many temporary files\n");
        exit(2);
    }
    p = tmp_files[n_tmp_files++];
    memcpy(p, buf, sizeof buf);
    return p;
}

static void remove_tmp(void)
{
    int i;

    for (i = 0; i < n_tmp_files; i++)
        unlink(tmp_files[i]);
    if (tmp_dir[0])
        rmdir(tmp_dir);
}

static int write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok;

    if (f == NULL)
        return -1;
    ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Writes `frames` frames of a 440 Hz sine at `rate`, channel c scaled by
 * gains[c]; returns 0 or -1. */
static int write_sine(const char *path, int format, int rate, int channels,
                      sf_count_t frames, const double *gains)
{
    SF_INFO info;
    SNDFILE *sf;
    float buf[1024 * 8];
    sf_count_t done = 0;
    int rc = 0;

    memset(&info, 0, sizeof info);
    info.samplerate = rate;
    info.channels = channels;
    info.format = format;
    sf = sf_open(path, SFM_WRITE, &info);
    if (sf == NULL) {
        fprintf(stderr, "cannot write %s: %s\n", path, sf_strerror(NULL));
        return -1;
    }
    while (done < frames) {
        sf_count_t k, cnt = frames - done;
        int c;

        if (cnt > 1024)
            cnt = 1024;
        for (k = 0; k < cnt; k++) {
            double v = sin(2.0 * M_PI * SINE_FREQ * (double)(done + k) / rate);

            for (c = 0; c < channels; c++)
                buf[k * channels + c] = (float)(v * gains[c]);
        }
        if (sf_writef_float(sf, buf, cnt) != cnt) {
            rc = -1;
            break;
        }
        done += cnt;
    }
    if (sf_close(sf) != 0)
        rc = -1;
    return rc;
}

/* Writes a mono 32-bit float WAV of `frames` zeros except sample `at` of
 * channel `ch`, which is `bad`. */
static int write_float_with(const char *path, int channels, int frames,
                            int at, int ch, float bad)
{
    SF_INFO info;
    SNDFILE *sf;
    float *buf = calloc((size_t)frames * channels, sizeof(float));
    int rc = 0;

    if (buf == NULL)
        return -1;
    memset(&info, 0, sizeof info);
    info.samplerate = 16000;
    info.channels = channels;
    info.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;
    buf[at * channels + ch] = bad;
    sf = sf_open(path, SFM_WRITE, &info);
    if (sf == NULL || sf_writef_float(sf, buf, frames) != frames)
        rc = -1;
    if (sf != NULL && sf_close(sf) != 0)
        rc = -1;
    free(buf);
    return rc;
}

/* Zero crossings, RMS and peak over the middle 80 % of a signal. */
static void analyse(const float *x, size_t n, int *crossings, double *rms,
                    double *peak, double *span_s)
{
    size_t a = n / 10, b = n - n / 10, i;
    double ss = 0.0, pk = 0.0;
    int zc = 0;

    for (i = a; i < b; i++) {
        ss += (double)x[i] * x[i];
        if (fabs(x[i]) > pk)
            pk = fabs(x[i]);
        if (i > a && (x[i - 1] < 0.0f) != (x[i] < 0.0f))
            zc++;
    }
    *crossings = zc;
    *rms = sqrt(ss / (double)(b - a));
    *peak = pk;
    *span_s = (double)(b - a) / SOTTO_SAMPLE_RATE;
}

/* Checks a failure: the code, no buffer, and a non-empty message. */
#define CHECK_FAIL(rc, code, pcm, n, err)                                   \
    do {                                                                    \
        CHECK_INT_EQ(rc, code);                                             \
        CHECK((pcm) == NULL);                                               \
        CHECK_INT_EQ(n, 0);                                                 \
        CHECK(strlen(err) > 0);                                             \
        if (getenv("SOTTO_TEST_VERBOSE"))                                   \
            printf("  %-28s -> %d: %s\n", #code, rc, err);                  \
    } while (0)

/* Finds the 'data' chunk of a RIFF WAV; returns its offset or 0. */
static size_t wav_data(const unsigned char *b, size_t len, size_t *dlen)
{
    size_t off = 12;

    while (off + 8 <= len) {
        size_t sz = (size_t)b[off + 4] | (size_t)b[off + 5] << 8 |
                    (size_t)b[off + 6] << 16 | (size_t)b[off + 7] << 24;

        if (memcmp(b + off, "data", 4) == 0) {
            *dlen = sz <= len - off - 8 ? sz : len - off - 8;
            return off + 8;
        }
        off += 8 + sz + (sz & 1);
    }
    return 0;
}

static void test_jfk(void)
{
    char path[1024], err[256] = "";
    unsigned char *raw;
    size_t len = 0, doff, dlen = 0, n = 0, i, n2 = 0, bad = 0;
    float *pcm = NULL, *pcm2 = NULL;
    int rc;

    snprintf(path, sizeof path, "%s/audio/jfk.wav", test_shared_dir());
    raw = test_read_file(path, &len);
    CHECK(raw != NULL);
    if (raw == NULL) {
        fprintf(stderr, "cannot read %s (set SOTTO_SHARED)\n", path);
        return;
    }
    doff = wav_data(raw, len, &dlen);
    CHECK(doff > 0);
    CHECK_INT_EQ(dlen, 176000 * 2);

    rc = sotto_audio_decode_file(path, &pcm, &n, err, sizeof err);
    CHECK_INT_EQ(rc, SOTTO_OK);
    CHECK_INT_EQ(n, 176000);
    if (rc == SOTTO_OK && doff > 0 && n * 2 <= dlen) {
        for (i = 0; i < n; i++) {
            int v = raw[doff + 2 * i] | raw[doff + 2 * i + 1] << 8;

            if (v >= 32768)
                v -= 65536;
            if (pcm[i] != (float)v / 32768.0f)
                bad++;
        }
        CHECK_INT_EQ(bad, 0);
    }

    /* The same bytes from memory. */
    rc = sotto_audio_decode_memory(raw, len, &pcm2, &n2, err, sizeof err);
    CHECK_INT_EQ(rc, SOTTO_OK);
    CHECK_INT_EQ(n2, n);
    CHECK(pcm && pcm2 && n2 == n && memcmp(pcm, pcm2, n * 4) == 0);
    sotto_pcm_free(pcm2);
    pcm2 = NULL;

    /* The data chunk as raw s16le. */
    if (doff > 0) {
        rc = sotto_audio_from_s16le(raw + doff, dlen, 16000, 1, &pcm2, &n2,
                                    err, sizeof err);
        CHECK_INT_EQ(rc, SOTTO_OK);
        CHECK_INT_EQ(n2, n);
        CHECK(pcm && pcm2 && n2 == n && memcmp(pcm, pcm2, n * 4) == 0);
        sotto_pcm_free(pcm2);
        pcm2 = NULL;
    }

    /* The first 20 bytes: RIFF, WAVE and half a 'fmt ' chunk. */
    CHECK(write_bytes(tmp_path("trunc.wav"), raw, 20) == 0);
    rc = sotto_audio_decode_file(tmp_path("trunc.wav"), &pcm2, &n2, err,
                                 sizeof err);
    CHECK_FAIL(rc, SOTTO_EAUDIO, pcm2, n2, err);
    rc = sotto_audio_decode_memory(raw, 20, &pcm2, &n2, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EAUDIO, pcm2, n2, err);
    /* The header alone: a 'data' chunk that holds nothing. */
    rc = sotto_audio_decode_memory(raw, doff, &pcm2, &n2, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EEMPTY, pcm2, n2, err);

    sotto_pcm_free(pcm);
    free(raw);
}

struct sine_case {
    const char *name;
    int format, rate, channels;
    double gains[2];    /* the mono average is 0.5 in every case */
    double rms_tol;     /* relative */
    int optional;       /* skipped where libsndfile cannot write it */
};

static void test_sines(void)
{
    static const struct sine_case cases[] = {
        {"s16-16k-mono.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1,
         {0.5, 0}, 0.01, 0},
        {"s16-44k-stereo.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 2,
         {0.8, 0.2}, 0.01, 0},
        {"s16-8k-mono.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16, 8000, 1,
         {0.5, 0}, 0.01, 0},
        {"u8-8k-mono.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 8000, 1,
         {0.5, 0}, 0.02, 0},
        {"s24-48k-stereo.wav", SF_FORMAT_WAV | SF_FORMAT_PCM_24, 48000, 2,
         {0.5, 0.5}, 0.01, 0},
        {"f32-22k-mono.wav", SF_FORMAT_WAV | SF_FORMAT_FLOAT, 22050, 1,
         {0.5, 0}, 0.01, 0},
        {"s16-44k-stereo.flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 44100, 2,
         {1.0, 0.0}, 0.01, 0},
        {"44k-mono.ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS, 44100, 1,
         {0.5, 0}, 0.05, 0},
        {"s16-16k-stereo.aiff", SF_FORMAT_AIFF | SF_FORMAT_PCM_16, 16000, 2,
         {0.3, 0.7}, 0.01, 0},
        /* MPEG support is optional in libsndfile (>= 1.1 with mpg123) */
        {"48k-mono.mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 48000, 1,
         {0.5, 0}, 0.05, 1},
    };
    size_t k;

    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const struct sine_case *c = &cases[k];
        const char *path = tmp_path(c->name);
        sf_count_t frames = (sf_count_t)(SINE_SECONDS * c->rate);
        float *pcm = NULL, *pcm2 = NULL;
        size_t n = 0, n2 = 0, len = 0;
        char err[256] = "";
        int rc, zc;
        double rms, peak, span, want_n = SINE_SECONDS * SOTTO_SAMPLE_RATE;
        double want_zc, want_rms = 0.5 / sqrt(2.0);
        void *raw;
        SF_INFO probe;

        memset(&probe, 0, sizeof probe);
        probe.format = c->format;
        probe.samplerate = c->rate;
        probe.channels = c->channels;
        if (c->optional && !sf_format_check(&probe)) {
            printf("  %s: libsndfile cannot write it here; skipped\n",
                   c->name);
            continue;
        }
        if (write_sine(path, c->format, c->rate, c->channels, frames,
                       c->gains) != 0) {
            CHECK(!"cannot write the test file");
            continue;
        }
        rc = sotto_audio_decode_file(path, &pcm, &n, err, sizeof err);
        CHECK_INT_EQ(rc, SOTTO_OK);
        if (rc != SOTTO_OK) {
            fprintf(stderr, "%s: %s\n", c->name, err);
            continue;
        }
        CHECK(fabs((double)n - want_n) <= 0.01 * want_n);
        analyse(pcm, n, &zc, &rms, &peak, &span);
        want_zc = 2.0 * SINE_FREQ * span;
        CHECK(fabs(zc - want_zc) <= 0.01 * want_zc + 2);
        CHECK(fabs(rms - want_rms) <= c->rms_tol * want_rms);
        CHECK(peak < 0.5 * (1.0 + 2.0 * c->rms_tol) && peak > 0.45);
        if (getenv("SOTTO_TEST_VERBOSE"))
            printf("  %-22s n=%zu zc=%d (want %.0f) rms=%.4f (want %.4f) "
                   "peak=%.4f\n", c->name, n, zc, want_zc, rms, want_rms,
                   peak);

        /* The in-memory decoder gives the same samples. */
        raw = test_read_file(path, &len);
        CHECK(raw != NULL);
        rc = sotto_audio_decode_memory(raw, len, &pcm2, &n2, err, sizeof err);
        CHECK_INT_EQ(rc, SOTTO_OK);
        CHECK(n2 == n && pcm2 != NULL && memcmp(pcm, pcm2, n * 4) == 0);
        free(raw);
        sotto_pcm_free(pcm2);
        sotto_pcm_free(pcm);
    }
}

static void test_s16le(void)
{
    const int rate = 44100, ch = 2;
    const size_t frames = (size_t)(SINE_SECONDS * rate);
    unsigned char *buf = malloc(frames * ch * 2), *big;
    size_t i, n = 0, big_len;
    float *pcm = NULL;
    char err[256] = "";
    int rc, zc, c;
    double rms, peak, span, want_n = SINE_SECONDS * SOTTO_SAMPLE_RATE;

    CHECK(buf != NULL);
    if (buf == NULL)
        return;
    for (i = 0; i < frames; i++) {
        double v = sin(2.0 * M_PI * SINE_FREQ * (double)i / rate);

        for (c = 0; c < ch; c++) {
            /* left 0.9, right 0.1: the mono average is 0.5 */
            int s = (int)lrint(v * (c == 0 ? 0.9 : 0.1) * 32767.0);
            unsigned u = (unsigned)(s & 0xffff);

            buf[(i * ch + c) * 2] = (unsigned char)(u & 0xff);
            buf[(i * ch + c) * 2 + 1] = (unsigned char)(u >> 8);
        }
    }
    rc = sotto_audio_from_s16le(buf, frames * ch * 2, rate, ch, &pcm, &n,
                                err, sizeof err);
    CHECK_INT_EQ(rc, SOTTO_OK);
    if (rc == SOTTO_OK) {
        CHECK(fabs((double)n - want_n) <= 0.01 * want_n);
        analyse(pcm, n, &zc, &rms, &peak, &span);
        CHECK(fabs(zc - 2.0 * SINE_FREQ * span) <=
              0.01 * 2.0 * SINE_FREQ * span + 2);
        CHECK(fabs(rms - 0.5 / sqrt(2.0)) <= 0.01 * 0.5 / sqrt(2.0));
    }
    sotto_pcm_free(pcm);
    pcm = NULL;

    /* Argument and shape errors. */
    rc = sotto_audio_from_s16le(buf, 3, 16000, 1, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EAUDIO, pcm, n, err);
    CHECK(strstr(err, "partial frame") != NULL);
    rc = sotto_audio_from_s16le(buf, 6, 16000, 2, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EAUDIO, pcm, n, err);
    rc = sotto_audio_from_s16le(buf, 4, 0, 1, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EINVAL, pcm, n, err);
    rc = sotto_audio_from_s16le(buf, 4, -8000, 1, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EINVAL, pcm, n, err);
    rc = sotto_audio_from_s16le(buf, 4, 16000, 0, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EINVAL, pcm, n, err);
    rc = sotto_audio_from_s16le(buf, 130, 16000, 65, &pcm, &n, err,
                                sizeof err);
    CHECK_FAIL(rc, SOTTO_EUNSUPPORTED, pcm, n, err);
    rc = sotto_audio_from_s16le(buf, 4, 999, 1, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EUNSUPPORTED, pcm, n, err);
    rc = sotto_audio_from_s16le(buf, 4, 384001, 1, &pcm, &n, err,
                                sizeof err);
    CHECK_FAIL(rc, SOTTO_EUNSUPPORTED, pcm, n, err);
    rc = sotto_audio_from_s16le(buf, 0, 16000, 1, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EEMPTY, pcm, n, err);
    rc = sotto_audio_from_s16le(NULL, 0, 16000, 1, &pcm, &n, err,
                                sizeof err);
    CHECK_FAIL(rc, SOTTO_EEMPTY, pcm, n, err);
    rc = sotto_audio_from_s16le(NULL, 4, 16000, 1, &pcm, &n, err,
                                sizeof err);
    CHECK_FAIL(rc, SOTTO_EINVAL, pcm, n, err);
    rc = sotto_audio_from_s16le(buf, 4, 16000, 1, NULL, &n, err, sizeof err);
    CHECK_INT_EQ(rc, SOTTO_EINVAL);

    /* One frame over the limit at the lowest rate (28.8 MB of zeros). */
    big_len = ((size_t)SOTTO_MAX_AUDIO_SECONDS * 1000 + 1) * 2;
    big = calloc(big_len, 1);
    CHECK(big != NULL);
    if (big != NULL) {
        rc = sotto_audio_from_s16le(big, big_len, 1000, 1, &pcm, &n, err,
                                    sizeof err);
        CHECK_FAIL(rc, SOTTO_ETOOLONG, pcm, n, err);
        free(big);
    }
    free(buf);
}

/* The header of 8-bit mono 1 kHz WAV whose RIFF and data sizes are the
 * 0xFFFFFFFF placeholders that streaming writers (ffmpeg) put there. */
static const unsigned char streaming_wav_header[44] = {
    'R', 'I', 'F', 'F', 0xff, 0xff, 0xff, 0xff, 'W', 'A', 'V', 'E',
    'f', 'm', 't', ' ', 16, 0, 0, 0, 1, 0, 1, 0,
    0xe8, 0x03, 0, 0, 0xe8, 0x03, 0, 0, 1, 0, 8, 0,
    'd', 'a', 't', 'a', 0xff, 0xff, 0xff, 0xff};

/* A child process writes a WAV stream into a FIFO: a header whose sizes
 * say "unknown" and then `frames` frames of 8-bit silence at 1000 Hz. */
static pid_t fifo_writer(const char *path, long frames)
{
    pid_t pid = fork();

    if (pid == 0) {
        const unsigned char *hdr = streaming_wav_header;
        unsigned char block[65536];
        int fd;

        signal(SIGPIPE, SIG_IGN);
        fd = open(path, O_WRONLY);
        if (fd < 0)
            _exit(1);
        memset(block, 0x80, sizeof block);
        if (write(fd, hdr, 44) != 44)
            _exit(1);
        while (frames > 0) {
            size_t k = frames > (long)sizeof block ? sizeof block
                                                   : (size_t)frames;
            if (write(fd, block, k) != (ssize_t)k)
                _exit(0);   /* the reader gave up: fine */
            frames -= (long)k;
        }
        close(fd);
        _exit(0);
    }
    return pid;
}

static void test_errors(void)
{
    char err[256] = "";
    float *pcm = NULL;
    size_t n = 0;
    int rc, fd_before, fd_after, status;
    const double one[1] = {0.5};
    double many[65];
    const char *p;
    pid_t pid;

    /* Cannot open. */
    rc = sotto_audio_decode_file("/nonexistent/sotto/none.wav", &pcm, &n,
                                 err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EIO, pcm, n, err);
    CHECK(strstr(err, "No such file") != NULL);
    rc = sotto_audio_decode_file(tmp_dir, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EIO, pcm, n, err);

    /* Not audio. */
    p = tmp_path("notes.txt");
    CHECK(write_bytes(p, "hello, this is not audio at all\n", 32) == 0);
    rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EAUDIO, pcm, n, err);
    rc = sotto_audio_decode_memory("hello", 5, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EAUDIO, pcm, n, err);

    /* Empty inputs. */
    p = tmp_path("empty.wav");
    CHECK(write_bytes(p, "", 0) == 0);
    rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EEMPTY, pcm, n, err);
    rc = sotto_audio_decode_memory("", 0, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EEMPTY, pcm, n, err);
    p = tmp_path("zero-frames.wav");
    CHECK(write_sine(p, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 1, 0,
                     one) == 0);
    rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EEMPTY, pcm, n, err);

    /* NaN and Inf in float WAVs, with the sample index in the message. */
    p = tmp_path("nan.wav");
    CHECK(write_float_with(p, 1, 2000, 1234, 0, NAN) == 0);
    rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_ENONFINITE, pcm, n, err);
    CHECK(strstr(err, "1234") != NULL);
    p = tmp_path("inf.wav");
    CHECK(write_float_with(p, 1, 2000, 7, 0, -INFINITY) == 0);
    rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_ENONFINITE, pcm, n, err);
    p = tmp_path("nan-stereo.wav");
    CHECK(write_float_with(p, 2, 9000, 5000, 1, NAN) == 0);
    rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_ENONFINITE, pcm, n, err);
    CHECK(strstr(err, "10001") != NULL);  /* 5000 * 2 + 1 */

    /* Huge but finite floats may overshoot in the resampler. */
    p = tmp_path("huge.wav");
    {
        const double g[1] = {3.0e38};

        CHECK(write_sine(p, SF_FORMAT_WAV | SF_FORMAT_FLOAT, 44100, 1, 4410,
                         g) == 0);
        rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
        CHECK(rc == SOTTO_OK || rc == SOTTO_ENONFINITE);
        if (rc == SOTTO_OK) {
            size_t i, nonfinite = 0;

            for (i = 0; i < n; i++)
                nonfinite += !isfinite(pcm[i]);
            CHECK_INT_EQ(nonfinite, 0);
        }
        sotto_pcm_free(pcm);
        pcm = NULL;
        n = 0;
    }

    /* Rates and channel counts out of range. */
    p = tmp_path("500hz.wav");
    CHECK(write_sine(p, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 500, 1, 100,
                     one) == 0);
    rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EUNSUPPORTED, pcm, n, err);
    p = tmp_path("400khz.wav");
    CHECK(write_sine(p, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 400000, 1, 100,
                     one) == 0);
    rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EUNSUPPORTED, pcm, n, err);
    p = tmp_path("65ch.wav");
    for (rc = 0; rc < 65; rc++)
        many[rc] = 0.1;
    CHECK(write_sine(p, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 65, 100,
                     many) == 0);
    rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EUNSUPPORTED, pcm, n, err);
    p = tmp_path("64ch.wav");
    CHECK(write_sine(p, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, 64, 100,
                     many) == 0);
    rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
    CHECK_INT_EQ(rc, SOTTO_OK);
    CHECK_INT_EQ(n, 100);
    sotto_pcm_free(pcm);
    pcm = NULL;
    n = 0;

    /* Too long, from the header: 4 h + 1 frame of 8-bit audio at 1 kHz. */
    p = tmp_path("long.wav");
    CHECK(write_sine(p, SF_FORMAT_WAV | SF_FORMAT_PCM_U8, 1000, 1,
                     (sf_count_t)SOTTO_MAX_AUDIO_SECONDS * 1000 + 1,
                     one) == 0);
    rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_ETOOLONG, pcm, n, err);
    {
        size_t len = 0;
        void *raw = test_read_file(p, &len);

        CHECK(raw != NULL);
        rc = sotto_audio_decode_memory(raw, len, &pcm, &n, err, sizeof err);
        CHECK_FAIL(rc, SOTTO_ETOOLONG, pcm, n, err);
        free(raw);
    }
    unlink(p);

    /* A header that claims more than the data holds is not believed where
     * the real length is known: 3000 frames decode. */
    {
        unsigned char *w = malloc(44 + 3000);

        CHECK(w != NULL);
        if (w != NULL) {
            memcpy(w, streaming_wav_header, 44);
            memset(w + 44, 0x80, 3000);
            rc = sotto_audio_decode_memory(w, 44 + 3000, &pcm, &n, err,
                                           sizeof err);
            CHECK_INT_EQ(rc, SOTTO_OK);
            CHECK(fabs((double)n - 48000.0) <= 480.0);
            sotto_pcm_free(pcm);
            pcm = NULL;
            n = 0;
            p = tmp_path("streamed.wav");
            CHECK(write_bytes(p, w, 44 + 3000) == 0);
            rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
            CHECK_INT_EQ(rc, SOTTO_OK);
            CHECK(fabs((double)n - 48000.0) <= 480.0);
            sotto_pcm_free(pcm);
            pcm = NULL;
            n = 0;
            free(w);
        }
    }

    /* Too long while reading: a pipe, whose length nobody knows. */
    p = tmp_path("stream.fifo");
    if (mkfifo(p, 0600) == 0) {
        pid = fifo_writer(p, (long)SOTTO_MAX_AUDIO_SECONDS * 1000 + 5000);
        CHECK(pid > 0);
        rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
        CHECK_FAIL(rc, SOTTO_ETOOLONG, pcm, n, err);
        if (pid > 0)
            waitpid(pid, &status, 0);
        /* A short stream decodes. */
        pid = fifo_writer(p, 3000);
        rc = sotto_audio_decode_file(p, &pcm, &n, err, sizeof err);
        CHECK_INT_EQ(rc, SOTTO_OK);
        CHECK(fabs((double)n - 48000.0) <= 480.0);
        sotto_pcm_free(pcm);
        pcm = NULL;
        n = 0;
        if (pid > 0)
            waitpid(pid, &status, 0);
    } else {
        CHECK(!"mkfifo failed");
    }

    /* NULL arguments and NULL or tiny message buffers. */
    rc = sotto_audio_decode_file(NULL, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EINVAL, pcm, n, err);
    rc = sotto_audio_decode_memory(NULL, 10, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, SOTTO_EINVAL, pcm, n, err);
    rc = sotto_audio_decode_memory("RIFF", 4, &pcm, NULL, err, sizeof err);
    CHECK_INT_EQ(rc, SOTTO_EINVAL);
    CHECK(pcm == NULL);
    rc = sotto_audio_decode_file("/nonexistent", &pcm, &n, NULL, 0);
    CHECK_INT_EQ(rc, SOTTO_EIO);
    memset(err, 'x', sizeof err);
    rc = sotto_audio_decode_file("/nonexistent", &pcm, &n, err, 8);
    CHECK_INT_EQ(rc, SOTTO_EIO);
    CHECK_INT_EQ(strlen(err), 7);
    sotto_pcm_free(NULL);

    /* No descriptor leaks on the failing paths. */
    fd_before = dup(0);
    close(fd_before);
    for (rc = 0; rc < 20; rc++) {
        sotto_audio_decode_file(tmp_path("notes.txt"), &pcm, &n, err,
                                sizeof err);
        sotto_audio_decode_file(tmp_dir, &pcm, &n, err, sizeof err);
        sotto_audio_decode_file(tmp_path("nan.wav"), &pcm, &n, err,
                                sizeof err);
        sotto_audio_decode_file(tmp_path("trunc.wav"), &pcm, &n, err,
                                sizeof err);
    }
    fd_after = dup(0);
    close(fd_after);
    CHECK_INT_EQ(fd_after, fd_before);
}

/* ------------------------------------------------------------------------
 * Ogg/Opus
 * ------------------------------------------------------------------------ */

/* The fixtures, made with opus-tools 0.2 (libopus 1.3.1): jfk.opus is
 * jfk.wav through `opusenc --bitrate 24 --quiet`: mono, pre-skip 312,
 * 11.000 s in 11 Ogg pages of 1 s after the OpusHead and OpusTags pages,
 * then a short EOS page.  sine440-stereo.opus is 0.5 s of a 440 Hz sine at
 * 48 kHz, left at 0.8 and right at 0.2 of full scale, through
 * `opusenc --padding 0 --bitrate 24 --quiet`. */
#define OPUS_FIXTURE "tests/data/jfk.opus"
#define OPUS_STEREO_FIXTURE "tests/data/sine440-stereo.opus"
#define MAX_OGG_PAGES 64

/* Finds the Ogg pages of a stream: off[i] and len[i] (header and body) of
 * each; returns how many, or -1 if the bytes are not a sequence of whole
 * pages. */
static int ogg_pages(const unsigned char *b, size_t len, size_t *off,
                     size_t *plen)
{
    size_t pos = 0;
    int count = 0;

    while (pos < len) {
        size_t nseg, body = 0, k;

        if (count >= MAX_OGG_PAGES || len - pos < 27 ||
            memcmp(b + pos, "OggS", 4) != 0)
            return -1;
        nseg = b[pos + 26];
        if (len - pos < 27 + nseg)
            return -1;
        for (k = 0; k < nseg; k++)
            body += b[pos + 27 + k];
        if (len - pos < 27 + nseg + body)
            return -1;
        off[count] = pos;
        plen[count++] = 27 + nseg + body;
        pos += 27 + nseg + body;
    }
    return count;
}

/* The Ogg CRC-32: polynomial 0x04c11db7, no reflection, initial value 0,
 * over the whole page with its CRC field taken as zero. */
static uint32_t ogg_crc(const unsigned char *page, size_t len)
{
    uint32_t crc = 0;
    size_t i;
    int k;

    for (i = 0; i < len; i++) {
        crc ^= (uint32_t)(i >= 22 && i < 26 ? 0 : page[i]) << 24;
        for (k = 0; k < 8; k++)
            crc = crc & 0x80000000u ? (crc << 1) ^ 0x04c11db7u : crc << 1;
    }
    return crc;
}

static void ogg_set_crc(unsigned char *page, size_t len)
{
    uint32_t crc = ogg_crc(page, len);

    page[22] = (unsigned char)crc;
    page[23] = (unsigned char)(crc >> 8);
    page[24] = (unsigned char)(crc >> 16);
    page[25] = (unsigned char)(crc >> 24);
}

static int64_t ogg_granule(const unsigned char *page)
{
    uint64_t g = 0;
    int i;

    for (i = 7; i >= 0; i--)
        g = g << 8 | page[6 + i];
    return (int64_t)g;
}

static void ogg_set_granule(unsigned char *page, int64_t gp)
{
    int i;

    for (i = 0; i < 8; i++)
        page[6 + i] = (unsigned char)((uint64_t)gp >> (8 * i));
}

/* The largest normalized cross-correlation of a and b over lags of up to
 * max_lag samples either way; *lag_out gets the best lag. */
static double best_ncc(const float *a, const float *b, size_t n, int max_lag,
                       int *lag_out)
{
    double best = -2.0;
    int lag;

    for (lag = -max_lag; lag <= max_lag; lag++) {
        size_t i, lo = lag < 0 ? (size_t)-lag : 0;
        size_t hi = lag > 0 ? n - (size_t)lag : n;
        double ab = 0.0, aa = 0.0, bb = 0.0, r;

        for (i = lo; i < hi; i++) {
            double x = a[i], y = b[(size_t)((ptrdiff_t)i + lag)];

            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        r = aa > 0.0 && bb > 0.0 ? ab / sqrt(aa * bb) : 0.0;
        if (r > best) {
            best = r;
            *lag_out = lag;
        }
    }
    return best;
}

/* Decodes `len` bytes of a variant from memory and from a file; both must
 * fail with `code` and, when `needle` is not NULL, a message holding it. */
static void check_opus_variant(const char *name, const unsigned char *b,
                               size_t len, int code, const char *needle)
{
    char err[512] = "";
    float *pcm = NULL;
    size_t n = 0;
    int rc;

    if (getenv("SOTTO_TEST_VERBOSE"))
        printf("  %s:\n", name);
    rc = sotto_audio_decode_memory(b, len, &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, code, pcm, n, err);
    if (needle != NULL && strstr(err, needle) == NULL) {
        CHECK(!"the message lacks the expected words");
        fprintf(stderr, "  %s: \"%s\" lacks \"%s\"\n", name, err, needle);
    }
    CHECK(write_bytes(tmp_path(name), b, len) == 0);
    err[0] = '\0';
    rc = sotto_audio_decode_file(tmp_path(name), &pcm, &n, err, sizeof err);
    CHECK_FAIL(rc, code, pcm, n, err);
    CHECK(strstr(err, tmp_path(name)) != NULL);
    if (needle != NULL)
        CHECK(strstr(err, needle) != NULL);
}

static void test_opus(void)
{
    char path[1024], err[512] = "";
    unsigned char *raw, *v;
    size_t len = 0, off[MAX_OGG_PAGES], plen[MAX_OGG_PAGES], n = 0, n2 = 0;
    size_t nw = 0, i;
    float *pcm = NULL, *pcm2 = NULL, *wav = NULL;
    int rc, npages, lag = 0, k;
    double r;

    raw = test_read_file(OPUS_FIXTURE, &len);
    CHECK(raw != NULL);
    if (raw == NULL) {
        fprintf(stderr, "cannot read %s (run from the repository root)\n",
                OPUS_FIXTURE);
        return;
    }
    npages = ogg_pages(raw, len, off, plen);
    CHECK(npages >= 8);
    if (npages < 8) {
        free(raw);
        return;
    }
    /* The CRC code agrees with the encoder on every page. */
    for (k = 0; k < npages; k++)
        CHECK_INT_EQ(ogg_crc(raw + off[k], plen[k]),
                     (uint32_t)raw[off[k] + 22] |
                     (uint32_t)raw[off[k] + 23] << 8 |
                     (uint32_t)raw[off[k] + 24] << 16 |
                     (uint32_t)raw[off[k] + 25] << 24);

    /* It decodes, from a file and from memory, to 11.000 s at 16 kHz. */
    rc = sotto_audio_decode_file(OPUS_FIXTURE, &pcm, &n, err, sizeof err);
    CHECK_INT_EQ(rc, SOTTO_OK);
    if (rc != SOTTO_OK)
        fprintf(stderr, "%s: %s\n", OPUS_FIXTURE, err);
    CHECK(n + 16 >= 176000 && n <= 176000 + 16);
    rc = sotto_audio_decode_memory(raw, len, &pcm2, &n2, err, sizeof err);
    CHECK_INT_EQ(rc, SOTTO_OK);
    CHECK(pcm && pcm2 && n2 == n && memcmp(pcm, pcm2, n * 4) == 0);
    sotto_pcm_free(pcm2);
    pcm2 = NULL;

    /* The samples follow the WAV it was encoded from. */
    snprintf(path, sizeof path, "%s/audio/jfk.wav", test_shared_dir());
    rc = sotto_audio_decode_file(path, &wav, &nw, err, sizeof err);
    CHECK_INT_EQ(rc, SOTTO_OK);
    if (rc == SOTTO_OK && pcm != NULL) {
        r = best_ncc(wav, pcm, nw < n ? nw : n, 160, &lag);
        if (getenv("SOTTO_TEST_VERBOSE"))
            printf("  jfk.opus: n=%zu, correlation %.4f at lag %d\n", n, r,
                   lag);
        CHECK(r > 0.9);
        CHECK(abs(lag) <= 16);
    }
    sotto_pcm_free(wav);

    /* A chained stream: the fixture, then a copy with another serial
     * number, decodes to twice the length. */
    v = malloc(2 * len);
    CHECK(v != NULL);
    if (v != NULL) {
        memcpy(v, raw, len);
        memcpy(v + len, raw, len);
        for (k = 0; k < npages; k++) {
            v[len + off[k] + 14] ^= 0x5a;
            ogg_set_crc(v + len + off[k], plen[k]);
        }
        rc = sotto_audio_decode_memory(v, 2 * len, &pcm2, &n2, err,
                                       sizeof err);
        CHECK_INT_EQ(rc, SOTTO_OK);
        CHECK_INT_EQ(n2, 2 * n);
        CHECK(pcm2 && n2 == 2 * n && memcmp(pcm2 + n, pcm, 1000 * 4) != 0);
        sotto_pcm_free(pcm2);
        pcm2 = NULL;
        free(v);
    }

    /* Stereo at 48 kHz: downmixed by averaging (a 0.5 sine) and
     * resampled; then chained after the mono fixture, a link with another
     * channel count. */
    {
        size_t slen = 0;
        unsigned char *st = test_read_file(OPUS_STEREO_FIXTURE, &slen);
        int zc;
        double rms, peak, span;

        CHECK(st != NULL);
        if (st != NULL) {
            rc = sotto_audio_decode_memory(st, slen, &pcm2, &n2, err,
                                           sizeof err);
            CHECK_INT_EQ(rc, SOTTO_OK);
            CHECK_INT_EQ(n2, 8000);
            if (rc == SOTTO_OK) {
                analyse(pcm2, n2, &zc, &rms, &peak, &span);
                if (getenv("SOTTO_TEST_VERBOSE"))
                    printf("  %s: n=%zu zc=%d (want %.0f) rms=%.4f (want "
                           "%.4f) peak=%.4f\n", OPUS_STEREO_FIXTURE, n2, zc,
                           2.0 * SINE_FREQ * span, rms, 0.5 / sqrt(2.0),
                           peak);
                CHECK(fabs(zc - 2.0 * SINE_FREQ * span) <=
                      0.01 * 2.0 * SINE_FREQ * span + 2);
                CHECK(fabs(rms - 0.5 / sqrt(2.0)) <= 0.05 * 0.5 / sqrt(2.0));
            }
            sotto_pcm_free(pcm2);
            pcm2 = NULL;
            v = malloc(len + slen);
            CHECK(v != NULL);
            if (v != NULL) {
                memcpy(v, raw, len);
                memcpy(v + len, st, slen);
                rc = sotto_audio_decode_memory(v, len + slen, &pcm2, &n2,
                                               err, sizeof err);
                CHECK_INT_EQ(rc, SOTTO_OK);
                CHECK_INT_EQ(n2, n + 8000);
                sotto_pcm_free(pcm2);
                pcm2 = NULL;
                free(v);
            }
            free(st);
        }
    }

    v = malloc(len);
    CHECK(v != NULL);
    if (v == NULL)
        goto done;

    /* Cut in the middle of page 6: what the complete pages before it hold
     * decodes (libopusfile ends cleanly there, as players do). */
    rc = sotto_audio_decode_memory(raw, off[6] + plen[6] / 2, &pcm2, &n2,
                                   err, sizeof err);
    CHECK_INT_EQ(rc, SOTTO_OK);
    CHECK(fabs((double)n2 - (double)(ogg_granule(raw + off[5]) - 312) / 3.0)
          <= 2.0);
    CHECK(pcm2 && n2 <= n && memcmp(pcm, pcm2, n2 / 2 * 4) == 0);
    sotto_pcm_free(pcm2);
    pcm2 = NULL;

    /* Cut inside the OpusTags page, and the header pages alone. */
    check_opus_variant("cut-tags.opus", raw, off[1] + plen[1] / 2,
                       SOTTO_EAUDIO, "ogg/opus");
    check_opus_variant("headers.opus", raw, off[2], SOTTO_EAUDIO,
                       "OP_EBADTIMESTAMP");
    /* The header pages alone with a pre-skip of 0: a valid stream that
     * holds no audio. */
    memcpy(v, raw, off[2]);
    v[off[0] + 27 + v[off[0] + 26] + 10] = 0;
    v[off[0] + 27 + v[off[0] + 26] + 11] = 0;
    ogg_set_crc(v + off[0], plen[0]);
    check_opus_variant("no-audio.opus", v, off[2], SOTTO_EEMPTY, "ogg/opus");

    /* A flipped byte fails page 6's CRC: the page is lost, a hole. */
    memcpy(v, raw, len);
    v[off[6] + plen[6] - 100] ^= 0x40;
    check_opus_variant("crc.opus", v, len, SOTTO_EAUDIO, "OP_HOLE");

    /* A whole page missing in the middle is a hole too. */
    memcpy(v, raw, off[7]);
    memcpy(v + off[7], raw + off[8], len - off[8]);
    check_opus_variant("gap.opus", v, len - plen[7], SOTTO_EAUDIO,
                       "OP_HOLE");

    /* An illegal TOC byte in a packet of page 6: code 1 (two frames of
     * equal size) on a packet whose payload after the TOC byte has an odd
     * length.  libopusfile drops such a packet silently; the decoded
     * length then falls behind the granule positions. */
    {
        size_t hdr = 27 + raw[off[6] + 26], at = off[6] + hdr, p = 0;
        size_t seg, plen_acc = 0;
        int found = 0;

        memcpy(v, raw, len);
        for (seg = 0; seg < raw[off[6] + 26] && !found; seg++) {
            plen_acc += raw[off[6] + 27 + seg];
            if (raw[off[6] + 27 + seg] == 255)
                continue;
            if (p > 0 && plen_acc % 2 == 0) {   /* skip the first packet */
                v[at] = (unsigned char)((v[at] & ~3u) | 1u);
                found = 1;
            }
            at += plen_acc;
            plen_acc = 0;
            p++;
        }
        CHECK(found);
        ogg_set_crc(v + off[6], plen[6]);
        check_opus_variant("toc.opus", v, len, SOTTO_EAUDIO,
                           "invalid or missing packet");
    }

    /* OpusHead with 0 channels, and with version 16 (a major version
     * libopusfile does not know). */
    memcpy(v, raw, len);
    v[off[0] + 27 + v[off[0] + 26] + 9] = 0;
    ogg_set_crc(v + off[0], plen[0]);
    check_opus_variant("ch0.opus", v, len, SOTTO_EAUDIO, "OP_EBADHEADER");
    memcpy(v, raw, len);
    v[off[0] + 27 + v[off[0] + 26] + 8] = 16;
    ogg_set_crc(v + off[0], plen[0]);
    check_opus_variant("v16.opus", v, len, SOTTO_EUNSUPPORTED,
                       "OP_EVERSION");

    /* A last page whose granule position says 4 hours and a bit: refused
     * before decoding. */
    memcpy(v, raw, len);
    k = npages - 1;
    ogg_set_granule(v + off[k], ogg_granule(raw + off[k - 1]) +
                    (int64_t)SOTTO_MAX_AUDIO_SECONDS * 48000 + 48000);
    ogg_set_crc(v + off[k], plen[k]);
    check_opus_variant("long.opus", v, len, SOTTO_ETOOLONG, NULL);

    /* Every single-byte truncation point in the first pages, and a byte
     * flipped in each page: an error or audio, never a crash. */
    for (i = 1; i < off[3]; i += 7) {
        rc = sotto_audio_decode_memory(raw, i, &pcm2, &n2, err, sizeof err);
        CHECK(rc == SOTTO_OK || (rc < 0 && pcm2 == NULL && err[0] != '\0'));
        sotto_pcm_free(pcm2);
        pcm2 = NULL;
    }
    for (k = 0; k < npages; k++) {
        memcpy(v, raw, len);
        v[off[k] + plen[k] / 2] ^= 0x01;
        rc = sotto_audio_decode_memory(v, len, &pcm2, &n2, err, sizeof err);
        CHECK(rc == SOTTO_OK || (rc < 0 && pcm2 == NULL && err[0] != '\0'));
        sotto_pcm_free(pcm2);
        pcm2 = NULL;
    }
    free(v);
done:
    sotto_pcm_free(pcm);
    free(raw);
}

int main(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/sotto-test-audio-XXXXXX");
    if (mkdtemp(tmp_dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_jfk();
    test_sines();
    test_s16le();
    test_errors();
    test_opus();
    remove_tmp();
    return test_main_exit("test_audio");
}
