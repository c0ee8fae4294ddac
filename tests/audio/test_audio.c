/*
 * test_audio.c - unit tests for the audio input (src/audio/audio.c).
 *
 * Decodes the shared jfk.wav and checks it bit for bit against its own
 * s16 samples; writes sines in several formats, rates and channel counts
 * with libsndfile into a temporary folder and checks that length,
 * frequency and amplitude survive decoding, downmixing and resampling;
 * and checks that every documented failure returns its code, no buffer
 * and a message.  Needs SOTTO_SHARED (default ../shared) for jfk.wav.
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
    remove_tmp();
    return test_main_exit("test_audio");
}
