/*
 * mel.c - Whisper's log-mel spectrogram front end.
 *
 * Contract (see mel.h): sotto__mel_compute() turns 16 kHz mono float PCM,
 * followed by `pad` zero samples, into a [n_mels][n_frames] log-mel
 * spectrogram that matches faster-whisper 1.2.1's FeatureExtractor to float
 * precision: periodic Hann window of 400 (np.hanning(401)[:-1]), hop 160,
 * centred frames over the signal reflect-padded by 200 samples on each side,
 * power spectrum |X|^2, the STFT's last frame dropped (so n_frames is
 * (n + pad) / 160), Slaney mel filters computed here in double exactly as
 * get_mel_filters() does and then rounded to float, log10(max(x, 1e-10)),
 * a floor at (global max - 8) and finally (x + 4) / 4.
 *
 * Reflect padding follows numpy's np.pad(mode="reflect") for every length,
 * including signals shorter than the 200-sample pad, where numpy reflects
 * repeatedly: for a signal of M >= 2 samples, index i maps to the mirror
 * image with period 2 * (M - 1); for M == 1 numpy repeats the one sample.
 * No sample outside pcm[0..n) is ever read.  If n + pad < 160 there are no
 * frames: the call succeeds with *n_frames == 0 and *out a valid (non-NULL)
 * allocation that holds no values.  n + pad == 0 is SOTTO_EINVAL.
 *
 * The FFT is FFTW3 single precision.  One r2c plan of size 400 is made at
 * create time and executed with fftwf_execute_dft_r2c() on buffers that
 * each thread of each call allocates with fftwf_malloc (same alignment as
 * the plan's), so compute is reentrant.  Frames are spread over OpenMP
 * threads (pass 1: window, FFT, power, mel energies, in tiles of 16 frames
 * so each output row is written a cache line at a time); the mel projection
 * uses the filters' sparsity: each filter is non-zero on a short contiguous
 * run of bins, stored as [lo, hi).  Pass 2 takes log10, floors and scales;
 * its log10 is evaluated in double and rounded once (vectorisable, and
 * closer to the correctly rounded value than glibc's log10f), so results
 * agree with numpy's float32 pipeline to a few ulp, not bit for bit.  Each
 * frame is computed independently, so the output does not depend on the
 * number of threads.  Samples are expected to be finite (the public API
 * rejects others); NaN or inf input gives unspecified values, never a
 * memory error.
 *
 * The one mutable global is plan_lock: FFTW's planner (and plan
 * destruction) touch FFTW's global state and are documented as not
 * thread-safe, so they are serialised with a static mutex.  Executing a
 * plan needs no lock.
 */
#include "engine/mel.h"

#include <fftw3.h>
#include <omp.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define N_BINS (SOTTO__N_FFT / 2 + 1) /* 201 */
#define CENTER_PAD (SOTTO__N_FFT / 2) /* 200 */
#define SAMPLE_RATE 16000
#define PI 3.14159265358979323846

/* Serialises FFTW's planner; see the header comment. */
static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;

struct sotto__mel {
    int n_mels;
    float window[SOTTO__N_FFT];
    float *filters;   /* [n_mels][N_BINS], float32 as faster-whisper's */
    int *lo, *hi;     /* non-zero bins of filter m are [lo[m], hi[m]) */
    fftwf_plan plan;  /* r2c, size 400, out of place */
};

/*
 * Slaney-style mel filterbank, computed in double the way faster-whisper's
 * get_mel_filters() does (numpy float64), then rounded to float.
 */
static int make_filters(sotto__mel *mel)
{
    int n_mels = mel->n_mels;
    double *freqs = NULL, fftfreqs[N_BINS];
    int rc = SOTTO_ENOMEM;
    const double min_mel = 0.0, max_mel = 45.245640471924965;
    const double f_min = 0.0, f_sp = 200.0 / 3;
    const double min_log_hz = 1000.0;
    const double min_log_mel = (min_log_hz - f_min) / f_sp;
    const double logstep = log(6.4) / 27.0;
    double d, val, step;
    int i, k;

    freqs = malloc((size_t)(n_mels + 2) * sizeof *freqs);
    if (!freqs)
        goto fail;

    /* np.fft.rfftfreq(400, 1/16000): k * (1 / (n * d)). */
    d = 1.0 / SAMPLE_RATE;
    val = 1.0 / (SOTTO__N_FFT * d);
    for (k = 0; k < N_BINS; k++)
        fftfreqs[k] = k * val;

    /* np.linspace(min_mel, max_mel, n_mels + 2), endpoint set exactly. */
    step = (max_mel - min_mel) / (n_mels + 1);
    for (i = 0; i < n_mels + 2; i++) {
        double m = (i == n_mels + 1) ? max_mel : i * step + min_mel;
        double f = f_min + f_sp * m;
        if (m >= min_log_mel)
            f = min_log_hz * exp(logstep * (m - min_log_mel));
        freqs[i] = f;
    }

    for (i = 0; i < n_mels; i++) {
        double fd_lo = freqs[i + 1] - freqs[i];
        double fd_hi = freqs[i + 2] - freqs[i + 1];
        double enorm = 2.0 / (freqs[i + 2] - freqs[i]);
        float *row = mel->filters + (size_t)i * N_BINS;
        int lo = N_BINS, hi = 0;

        for (k = 0; k < N_BINS; k++) {
            double lower = -(freqs[i] - fftfreqs[k]) / fd_lo;
            double upper = (freqs[i + 2] - fftfreqs[k]) / fd_hi;
            double w = lower < upper ? lower : upper;
            if (w < 0.0)
                w = 0.0;
            row[k] = (float)(w * enorm);
            if (row[k] != 0.0f) {
                if (k < lo)
                    lo = k;
                hi = k + 1;
            }
        }
        if (lo > hi)
            lo = hi = 0; /* an empty filter (does not happen for 80/128) */
        mel->lo[i] = lo;
        mel->hi[i] = hi;
    }
    rc = 0;
fail:
    free(freqs);
    return rc;
}

int sotto__mel_create(int n_mels, sotto__mel **out)
{
    sotto__mel *mel = NULL;
    float *in = NULL;
    fftwf_complex *spec = NULL;
    int rc = SOTTO_EINVAL, i;

    if (!out)
        return SOTTO_EINVAL;
    *out = NULL;
    if (n_mels != 80 && n_mels != 128)
        goto fail;

    rc = SOTTO_ENOMEM;
    mel = calloc(1, sizeof *mel);
    if (!mel)
        goto fail;
    mel->n_mels = n_mels;
    mel->filters = malloc((size_t)n_mels * N_BINS * sizeof *mel->filters);
    mel->lo = malloc((size_t)n_mels * sizeof *mel->lo);
    mel->hi = malloc((size_t)n_mels * sizeof *mel->hi);
    if (!mel->filters || !mel->lo || !mel->hi)
        goto fail;
    rc = make_filters(mel);
    if (rc < 0)
        goto fail;

    /* np.hanning(401)[:-1]: 0.5 + 0.5 cos(pi * n / 400), n = -400, -398.. */
    for (i = 0; i < SOTTO__N_FFT; i++) {
        double n = (double)(2 * i - SOTTO__N_FFT);
        mel->window[i] = (float)(0.5 + 0.5 * cos(PI * n / SOTTO__N_FFT));
    }

    /* Plan on fftwf_malloc'd buffers so per-call fftwf_malloc buffers have
     * the alignment the plan expects. */
    rc = SOTTO_ENOMEM;
    in = fftwf_malloc(SOTTO__N_FFT * sizeof *in);
    spec = fftwf_malloc(N_BINS * sizeof *spec);
    if (!in || !spec)
        goto fail;
    pthread_mutex_lock(&plan_lock);
    mel->plan = fftwf_plan_dft_r2c_1d(SOTTO__N_FFT, in, spec, FFTW_ESTIMATE);
    pthread_mutex_unlock(&plan_lock);
    if (!mel->plan) {
        rc = SOTTO_EINTERNAL;
        goto fail;
    }
    fftwf_free(in);
    fftwf_free(spec);
    *out = mel;
    return 0;

fail:
    fftwf_free(in);
    fftwf_free(spec);
    sotto__mel_destroy(mel);
    return rc;
}

void sotto__mel_destroy(sotto__mel *mel)
{
    if (!mel)
        return;
    if (mel->plan) {
        pthread_mutex_lock(&plan_lock);
        fftwf_destroy_plan(mel->plan);
        pthread_mutex_unlock(&plan_lock);
    }
    free(mel->filters);
    free(mel->lo);
    free(mel->hi);
    free(mel);
}

/*
 * Sample i (may be negative or >= m) of the signal pcm[0..n) ++ zeros,
 * m = n + pad samples long, reflect-extended like numpy.
 */
static inline float sample_at(const float *pcm, size_t n, size_t m,
                              ptrdiff_t i)
{
    size_t r;

    if (i < 0 || (size_t)i >= m) {
        if (m == 1) {
            r = 0;
        } else {
            size_t period = 2 * (m - 1);
            ptrdiff_t q = i % (ptrdiff_t)period;
            r = (size_t)(q < 0 ? q + (ptrdiff_t)period : q);
            if (r >= m)
                r = period - r;
        }
    } else {
        r = (size_t)i;
    }
    return r < n ? pcm[r] : 0.0f;
}

/*
 * log10 of a positive normal float, evaluated in double and rounded once,
 * so it is at least as accurate as libm's log10f; written without calls or
 * branches so that the loop using it vectorises.  x = 2^e * md with md in
 * [sqrt(1/2), sqrt(2)); ln(md) = 2 atanh(s), s = (md-1)/(md+1), |s| < 0.172,
 * whose series to s^13 is exact to ~1e-12 relative.  Callers clamp x to
 * >= 1e-10, so zero, denormals and NaN never reach it; +inf gives ~38.5.
 */
#pragma omp declare simd notinbranch
static inline float log10_pos(float x)
{
    const double log10_2 = 0.30102999566398119521;
    const double log10_e = 0.43429448190325182765;
    uint32_t u, adj;
    float mf;
    double md, s, s2, p;
    int e;

    /* Split x into exponent and mantissa in [1, 2); when the mantissa is
     * above sqrt(2) (bits 0x3504f3), halve it and bump the exponent. */
    memcpy(&u, &x, sizeof u);
    adj = (u & 0x007fffffu) > 0x003504f3u;
    e = (int)((u >> 23) & 0xff) - 127 + (int)adj;
    u = (u & 0x007fffffu) | (0x3f800000u - (adj << 23));
    memcpy(&mf, &u, sizeof mf);
    md = mf;
    s = (md - 1.0) / (md + 1.0);
    s2 = s * s;
    p = 1.0 / 13;
    p = p * s2 + 1.0 / 11;
    p = p * s2 + 1.0 / 9;
    p = p * s2 + 1.0 / 7;
    p = p * s2 + 1.0 / 5;
    p = p * s2 + 1.0 / 3;
    p = p * s2 + 1.0;
    return (float)(e * log10_2 + 2.0 * s * p * log10_e);
}

/* Frames per tile: a tile row is one 64-byte cache line of the output. */
#define TILE 16

int sotto__mel_compute(const sotto__mel *mel, const float *pcm, size_t n,
                       size_t pad, int n_threads, float **out, size_t *n_frames)
{
    float *res = NULL;
    size_t m, frames, total, n_tiles, j;
    float gmax = 1e-10f;
    int rc = SOTTO_EINVAL, failed = 0;
    const int n_mels = mel ? mel->n_mels : 0;
    /* num_threads() needs a positive count. */
    const int team = n_threads > 0 ? n_threads : omp_get_max_threads();

    if (out)
        *out = NULL;
    if (n_frames)
        *n_frames = 0;
    if (!mel || !out || !n_frames || (n > 0 && !pcm))
        goto fail;
    if (n > SIZE_MAX - pad || n + pad == 0)
        goto fail;
    if (n + pad > (size_t)PTRDIFF_MAX - 2 * SOTTO__N_FFT)
        goto fail;
    m = n + pad;
    frames = m / SOTTO__HOP;
    if (frames > SIZE_MAX / sizeof(float) / (size_t)n_mels)
        goto fail;
    total = frames * (size_t)n_mels;
    n_tiles = (frames + TILE - 1) / TILE;

    rc = SOTTO_ENOMEM;
    res = malloc(total ? total * sizeof *res : 1);
    if (!res)
        goto fail;

    if (frames > 0) {
        /* Pass 1: mel energies max(x, 1e-10), linear, and their maximum. */
#pragma omp parallel reduction(max : gmax) num_threads(team)
        {
            float *buf = fftwf_malloc(SOTTO__N_FFT * sizeof *buf);
            fftwf_complex *spec = fftwf_malloc(N_BINS * sizeof *spec);
            float power[N_BINS];
            float tile[128 * TILE]; /* [n_mels][TILE] */

            if (!buf || !spec) {
#pragma omp atomic write
                failed = 1;
            }
            /* Every thread must reach the worksharing loop, so a thread
             * whose allocation failed still runs it, doing nothing. */
#pragma omp for schedule(dynamic, 4)
            for (size_t b = 0; b < n_tiles; b++) {
                size_t t0 = b * TILE;
                size_t nt = frames - t0 < TILE ? frames - t0 : TILE;

                if (!buf || !spec)
                    continue;
                for (size_t dt = 0; dt < nt; dt++) {
                    ptrdiff_t start =
                        (ptrdiff_t)((t0 + dt) * SOTTO__HOP) - CENTER_PAD;
                    int k, mi;

                    if (start >= 0 && (size_t)start + SOTTO__N_FFT <= n) {
                        const float *p = pcm + start;
#pragma omp simd
                        for (k = 0; k < SOTTO__N_FFT; k++)
                            buf[k] = p[k] * mel->window[k];
                    } else {
                        for (k = 0; k < SOTTO__N_FFT; k++)
                            buf[k] = sample_at(pcm, n, m, start + k) *
                                     mel->window[k];
                    }
                    fftwf_execute_dft_r2c(mel->plan, buf, spec);
#pragma omp simd
                    for (k = 0; k < N_BINS; k++)
                        power[k] = spec[k][0] * spec[k][0] +
                                   spec[k][1] * spec[k][1];
                    for (mi = 0; mi < n_mels; mi++) {
                        const float *w = mel->filters + (size_t)mi * N_BINS;
                        float acc = 0.0f;
                        for (k = mel->lo[mi]; k < mel->hi[mi]; k++)
                            acc += w[k] * power[k];
                        /* NaN (non-finite input) clamps to 1e-10 too. */
                        acc = acc > 1e-10f ? acc : 1e-10f;
                        tile[mi * TILE + dt] = acc;
                        gmax = acc > gmax ? acc : gmax;
                    }
                }
                for (int mi = 0; mi < n_mels; mi++)
                    memcpy(res + (size_t)mi * frames + t0, tile + mi * TILE,
                           nt * sizeof *res);
            }
            fftwf_free(buf);
            fftwf_free(spec);
        }
        if (failed)
            goto fail;

        /* Pass 2: log10, the max - 8 floor (log10 is monotonic, so the
         * maximum of the logs is the log of the maximum), (x + 4) / 4. */
        {
            const float floor_v = log10_pos(gmax) - 8.0f;
#pragma omp parallel for simd schedule(dynamic, 8192) num_threads(team)
            for (j = 0; j < total; j++) {
                float v = log10_pos(res[j]);
                v = v > floor_v ? v : floor_v;
                res[j] = (v + 4.0f) / 4.0f;
            }
        }
    }

    *out = res;
    *n_frames = frames;
    return 0;

fail:
    free(res);
    return rc;
}
