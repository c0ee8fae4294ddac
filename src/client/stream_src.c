/*
 * stream_src.c - the audio sources of `sotto stream` and the journal that
 * keeps what they produced until the server confirms it.
 *
 * Every source ends up as 16 kHz mono s16 in the journal:
 *  - a file is decoded completely with sotto_audio_decode_file() (WAV,
 *    FLAC, Ogg Vorbis, Ogg/Opus ...) before anything is sent, so a bad file
 *    is refused with exit code 2 before the server sees a byte;
 *  - `-` reads raw s16le mono at --rate from stdin on a reader thread and
 *    resamples it with a streaming libsoxr resampler;
 *  - `mic` captures from an ALSA device (the default one unless --device
 *    names another) on a reader thread, at 16 kHz mono; ALSA's plug layer
 *    converts whatever the hardware does.
 *
 * The reader threads never block for long: they poll() their descriptor
 * with a 100 ms timeout and check the stop flag between reads, so stopping
 * takes at most that long.  The journal is the only state they share with
 * the event loop, and it is guarded by its mutex.
 */
#include <alsa/asoundlib.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <soxr.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/stream_client.h"

/* How long a reader thread waits for input before it checks its flag. */
#define SRC_POLL_MS 100
/* Bytes read from stdin at a time. */
#define SRC_READ_BYTES 16384
/* Samples captured from the microphone at a time (20 ms). */
#define SRC_MIC_FRAMES 320

int sotto_cli_journal_init(sotto_cli_journal *j, int64_t limit)
{
    memset(j, 0, sizeof *j);
    j->limit = limit;
    return pthread_mutex_init(&j->mu, NULL) == 0 ? 0 : -1;
}

void sotto_cli_journal_free(sotto_cli_journal *j)
{
    free(j->pcm);
    pthread_mutex_destroy(&j->mu);
    j->pcm = NULL;
}

/* Moves the held samples to the front of the array once the released
 * part is large, so the array does not grow without bound on a live
 * source.  Called locked. */
static void journal_compact(sotto_cli_journal *j, int64_t upto)
{
    int64_t drop = upto - j->base;
    if (drop <= 0)
        return;
    if (drop > j->end - j->base)
        drop = j->end - j->base;
    memmove(j->pcm, j->pcm + drop, (size_t)(j->end - j->base - drop) * sizeof *j->pcm);
    j->base += drop;
}

int sotto_cli_journal_append(sotto_cli_journal *j, const int16_t *x, size_t n)
{
    int rc = 0;
    pthread_mutex_lock(&j->mu);
    if (j->limit > 0 && j->end + (int64_t)n - j->base > j->limit) {
        /* Beyond the backlog: the oldest unconfirmed audio goes. */
        int64_t over = j->end + (int64_t)n - j->base - j->limit;
        j->dropped += over < j->end - j->base ? over : j->end - j->base;
        journal_compact(j, j->base + over);
    }
    if ((size_t)(j->end - j->base) + n > j->cap) {
        size_t cap = j->cap ? j->cap : SOTTO_CLI_RATE * 8;
        int16_t *np;
        while (cap < (size_t)(j->end - j->base) + n)
            cap *= 2;
        np = realloc(j->pcm, cap * sizeof *np);
        if (np == NULL) {
            rc = -1;
            goto out;
        }
        j->pcm = np;
        j->cap = cap;
    }
    memcpy(j->pcm + (j->end - j->base), x, n * sizeof *x);
    j->end += (int64_t)n;
out:
    pthread_mutex_unlock(&j->mu);
    if (rc == 0 && j->wake != NULL)
        j->wake(j->wake_user);
    return rc;
}

size_t sotto_cli_journal_read(sotto_cli_journal *j, int64_t from, int16_t *dst,
                              size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&j->mu);
    while (n < max && from < j->base && from < j->end) {
        dst[n++] = 0;
        from++;
    }
    if (n < max && from >= j->base && from < j->end) {
        size_t k = (size_t)(j->end - from);
        if (k > max - n)
            k = max - n;
        memcpy(dst + n, j->pcm + (from - j->base), k * sizeof *dst);
        n += k;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

void sotto_cli_journal_release(sotto_cli_journal *j, int64_t upto)
{
    pthread_mutex_lock(&j->mu);
    /* Compacting moves memory: do it only for a live source (files keep
     * everything) and once a second or more is released. */
    if (j->limit > 0 && upto - j->base >= SOTTO_CLI_RATE)
        journal_compact(j, upto);
    pthread_mutex_unlock(&j->mu);
}

void sotto_cli_journal_state(sotto_cli_journal *j, int64_t *end, int *eof,
                             int *error)
{
    pthread_mutex_lock(&j->mu);
    if (end)
        *end = j->end;
    if (eof)
        *eof = j->eof;
    if (error)
        *error = j->error;
    pthread_mutex_unlock(&j->mu);
}

void sotto_cli_journal_close(sotto_cli_journal *j, int code, const char *msg)
{
    pthread_mutex_lock(&j->mu);
    j->eof = 1;
    j->error = code;
    if (msg)
        snprintf(j->err, sizeof j->err, "%s", msg);
    pthread_mutex_unlock(&j->mu);
    if (j->wake != NULL)
        j->wake(j->wake_user);
}

static int16_t to_s16(float x)
{
    float v = x * 32768.0f;
    if (!(v > -32768.0f))
        return -32768;
    if (v > 32767.0f)
        return 32767;
    return (int16_t)lrintf(v);
}

/* ------------------------------------------------------------------------
 * stdin: raw s16le mono at s->rate.
 * ------------------------------------------------------------------------ */

/* Resamples (or just converts) n s16 samples and appends them. */
static int push_resampled(sotto_cli_source *s, soxr_t rs, const int16_t *in,
                          size_t n, float *fin, float *fout, size_t foutcap,
                          int16_t *out)
{
    size_t i, done = 0;
    if (rs == NULL)
        return sotto_cli_journal_append(s->journal, in, n);
    for (i = 0; i < n; i++)
        fin[i] = (float)in[i] / 32768.0f;
    /* n == 0 flushes the resampler at the end of input. */
    for (;;) {
        size_t used = 0, got = 0;
        soxr_error_t e = soxr_process(rs, n ? fin + done : NULL, n - done, &used,
                                      fout, foutcap, &got);
        if (e != NULL)
            return -1;
        done += used;
        for (i = 0; i < got; i++)
            out[i] = to_s16(fout[i]);
        if (got && sotto_cli_journal_append(s->journal, out, got) != 0)
            return -1;
        if ((n && done >= n) || (!n && got == 0))
            return 0;
    }
}

static void *stdin_thread(void *arg)
{
    sotto_cli_source *s = arg;
    unsigned char *buf = malloc(SRC_READ_BYTES + 2);
    size_t have = 0, foutcap = SRC_READ_BYTES * 12 + 64;
    float *fin = malloc(SRC_READ_BYTES / 2 * sizeof *fin);
    float *fout = malloc(foutcap * sizeof *fout);
    int16_t *out = malloc(foutcap * sizeof *out);
    soxr_t rs = NULL;
    const char *fail = NULL;
    int code = SOTTO_EXIT_FAIL;

    if (buf == NULL || fin == NULL || fout == NULL || out == NULL) {
        fail = "out of memory";
        goto done;
    }
    if (s->rate != SOTTO_CLI_RATE) {
        soxr_error_t e = NULL;
        soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
        soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
        rs = soxr_create(s->rate, SOTTO_CLI_RATE, 1, &e, &io, &q, NULL);
        if (rs == NULL) {
            fail = "cannot create the resampler";
            goto done;
        }
    }
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
        ssize_t got;
        int pr = poll(&pfd, 1, SRC_POLL_MS);
        if (pr < 0 && errno != EINTR) {
            fail = "stdin: poll failed";
            goto done;
        }
        if (pr <= 0)
            continue;
        got = read(STDIN_FILENO, buf + have, SRC_READ_BYTES - have);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            fail = "stdin: read error";
            code = SOTTO_EXIT_USAGE;
            goto done;
        }
        if (got == 0)
            break;
        have += (size_t)got;
        {
            size_t whole = have / 2;
            int16_t tmp[SRC_READ_BYTES / 2];
            size_t i;
            for (i = 0; i < whole; i++)
                tmp[i] = (int16_t)(buf[2 * i] | buf[2 * i + 1] << 8);
            if (whole && push_resampled(s, rs, tmp, whole, fin, fout, foutcap, out) != 0) {
                fail = "out of memory";
                goto done;
            }
            if (have & 1)
                buf[0] = buf[have - 1];
            have &= 1;
        }
    }
    if (rs != NULL && push_resampled(s, rs, NULL, 0, fin, fout, foutcap, out) != 0)
        fail = "out of memory";
done:
    if (rs != NULL)
        soxr_delete(rs);
    free(buf);
    free(fin);
    free(fout);
    free(out);
    sotto_cli_journal_close(s->journal, fail ? code : 0, fail);
    return NULL;
}

/* ------------------------------------------------------------------------
 * The microphone, through ALSA.
 * ------------------------------------------------------------------------ */

/* ALSA prints its configuration errors on stderr by itself; our message
 * says what matters, so those are dropped. */
static void alsa_quiet(const char *file, int line, const char *function, int err,
                       const char *fmt, ...)
{
}

static int mic_open(sotto_cli_source *s, char *err, size_t errcap)
{
    snd_pcm_t *pcm = NULL;
    int rc;

    snd_lib_error_set_handler(alsa_quiet);
    rc = snd_pcm_open(&pcm, s->device, SND_PCM_STREAM_CAPTURE, SND_PCM_NONBLOCK);
    if (rc < 0) {
        snprintf(err, errcap,
                 "no microphone: cannot open the ALSA capture device \"%s\": %s "
                 "(connect one, or name another with --device)",
                 s->device, snd_strerror(rc));
        return SOTTO_EXIT_USAGE;
    }
    /* s16 mono 16 kHz with ALSA's conversions allowed, 100 ms of latency. */
    rc = snd_pcm_set_params(pcm, SND_PCM_FORMAT_S16_LE, SND_PCM_ACCESS_RW_INTERLEAVED,
                            1, SOTTO_CLI_RATE, 1, 100000);
    if (rc < 0) {
        snprintf(err, errcap,
                 "the ALSA capture device \"%s\" cannot record 16 kHz mono: %s",
                 s->device, snd_strerror(rc));
        snd_pcm_close(pcm);
        return SOTTO_EXIT_USAGE;
    }
    s->priv = pcm;
    return 0;
}

static void *mic_thread(void *arg)
{
    sotto_cli_source *s = arg;
    snd_pcm_t *pcm = s->priv;
    int16_t buf[SRC_MIC_FRAMES];
    char msg[256];
    const char *fail = NULL;
    struct timespec t0;
    int64_t total = 0;
    int rc = snd_pcm_start(pcm);

    if (rc < 0 && rc != -EBADFD) {
        snprintf(msg, sizeof msg, "microphone: cannot start capture: %s", snd_strerror(rc));
        fail = msg;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (fail == NULL && !atomic_load(&s->stop)) {
        snd_pcm_sframes_t got;
        struct timespec t;
        double ahead;
        /* No microphone records faster than time passes; a virtual device
         * that does (ALSA's null or file plugins) is held to real time so
         * that it cannot flood the server. */
        clock_gettime(CLOCK_MONOTONIC, &t);
        ahead = (double)total / SOTTO_CLI_RATE -
                ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9);
        if (ahead > 0.1) {
            usleep(ahead > 0.1 + SRC_POLL_MS / 1000.0 ? SRC_POLL_MS * 1000 : 20000);
            continue;
        }
        rc = snd_pcm_wait(pcm, SRC_POLL_MS);
        if (rc == 0)
            continue;
        if (rc < 0) {
            if (snd_pcm_recover(pcm, rc, 1) < 0) {
                snprintf(msg, sizeof msg, "microphone: %s", snd_strerror(rc));
                fail = msg;
            }
            continue;
        }
        got = snd_pcm_readi(pcm, buf, SRC_MIC_FRAMES);
        if (got == -EAGAIN)
            continue;
        if (got < 0) {
            /* An overrun (-EPIPE) or a suspend: recover and go on. */
            if (snd_pcm_recover(pcm, (int)got, 1) < 0) {
                snprintf(msg, sizeof msg, "microphone: %s", snd_strerror((int)got));
                fail = msg;
            } else {
                snd_pcm_start(pcm);
            }
            continue;
        }
        if (got > 0 && sotto_cli_journal_append(s->journal, buf, (size_t)got) != 0)
            fail = "out of memory";
        if (got > 0)
            total += got;
    }
    sotto_cli_journal_close(s->journal, fail ? SOTTO_EXIT_FAIL : 0, fail);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Opening, starting and stopping
 * ------------------------------------------------------------------------ */

int sotto_cli_source_open(sotto_cli_source *s, const char *name,
                          char *err, size_t errcap)
{
    if (strcmp(name, "-") == 0) {
        s->kind = SOTTO_SRC_STDIN;
        return 0;
    }
    if (strcmp(name, "mic") == 0) {
        s->kind = SOTTO_SRC_MIC;
        return mic_open(s, err, errcap);
    }
    {
        float *pcm = NULL;
        size_t n = 0, i, at = 0;
        int16_t chunk[4096];
        int rc;

        s->kind = SOTTO_SRC_FILE;
        rc = sotto_audio_decode_file(name, &pcm, &n, err, errcap);
        if (rc != 0)
            return SOTTO_EXIT_USAGE;
        while (at < n) {
            size_t k = n - at < 4096 ? n - at : 4096;
            for (i = 0; i < k; i++)
                chunk[i] = to_s16(pcm[at + i]);
            if (sotto_cli_journal_append(s->journal, chunk, k) != 0) {
                sotto_pcm_free(pcm);
                snprintf(err, errcap, "out of memory");
                return SOTTO_EXIT_FAIL;
            }
            at += k;
        }
        sotto_pcm_free(pcm);
        sotto_cli_journal_close(s->journal, 0, NULL);
        return 0;
    }
}

int sotto_cli_source_start(sotto_cli_source *s, char *err, size_t errcap)
{
    void *(*fn)(void *) = NULL;
    int rc;
    if (s->kind == SOTTO_SRC_STDIN)
        fn = stdin_thread;
    else if (s->kind == SOTTO_SRC_MIC)
        fn = mic_thread;
    if (fn == NULL)
        return 0;
    atomic_store(&s->stop, 0);
    rc = pthread_create(&s->thread, NULL, fn, s);
    if (rc != 0) {
        snprintf(err, errcap, "cannot start the reader thread: %s", strerror(rc));
        return SOTTO_EXIT_FAIL;
    }
    s->thread_started = 1;
    return 0;
}

void sotto_cli_source_stop(sotto_cli_source *s)
{
    if (s->thread_started) {
        atomic_store(&s->stop, 1);
        pthread_join(s->thread, NULL);
        s->thread_started = 0;
    }
    if (s->priv != NULL) {
        snd_pcm_close(s->priv);
        s->priv = NULL;
    }
}
