/*
 * vad.c - Silero VAD v5/v6 (16 kHz) in plain C, and faster-whisper's
 * speech segmentation on top of it.
 *
 * The weights come from `silero_vad_16k.safetensors` (PyPI silero-vad
 * 6.2.1 and later), read with safetensors.c and checked name by name
 * against the shapes below.  One step mirrors the package's reference
 * forward pass (silero_vad/tinygrad_model.py) on 64 samples of context plus
 * 512 new samples:
 *
 *   1. reflect-pad 64 samples on the right (576 -> 640 samples);
 *   2. STFT as a convolution: kernel 256, stride 128, 258 outputs (the real
 *      and imaginary parts of 129 bins) -> 4 frames; magnitude
 *      sqrt(re^2 + im^2) of each bin;
 *   3. four convolutions of kernel 3 and padding 1 with strides 1, 2, 2, 1,
 *      each followed by ReLU: 129 -> 128 -> 64 -> 64 -> 128 channels over
 *      4 -> 4 -> 2 -> 1 -> 1 frames;
 *   4. one LSTM cell of 128 units (PyTorch gate order i, f, g, o) whose h
 *      and c carry over to the next step;
 *   5. ReLU of h, a 1x1 convolution to one channel, a sigmoid, and the mean
 *      over the (single) remaining frame.
 *
 * Activations are stored time-major ([frames][channels]) with a zero row
 * before and after, and the convolution weights are stored [out][tap][in],
 * so every output value is one dot product of contiguous memory; those go
 * through sotto__dots (vec.c), which has an AVX2 path.  A step is about
 * 0.68 million multiply-adds and allocates nothing.
 *
 * No state is global: the model is immutable once loaded and a sotto__vad
 * holds everything one stream changes.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"
#include "engine/safetensors.h"
#include "engine/vad.h"
#include "engine/vec.h"

/* Sizes of the network. */
#define N_FFT 256                          /* STFT kernel */
#define HOP 128                            /* STFT stride */
#define N_BINS (N_FFT / 2 + 1)             /* 129 frequency bins */
#define N_IN (SOTTO__VAD_CONTEXT + SOTTO__VAD_FRAME)   /* 576 samples */
#define PAD_RIGHT 64                       /* reflect padding */
#define N_PADDED (N_IN + PAD_RIGHT)        /* 640 samples */
#define T0 ((N_PADDED - N_FFT) / HOP + 1)  /* 4 STFT frames */
#define T1 T0                              /* conv1, stride 1: 4 */
#define T2 ((T1 - 1) / 2 + 1)              /* conv2, stride 2: 2 */
#define T3 ((T2 - 1) / 2 + 1)              /* conv3, stride 2: 1 */
#define T4 T3                              /* conv4, stride 1: 1 */
#define C1 128
#define C2 64
#define C3 64
#define C4 128
#define HID 128                            /* LSTM units */
#define SR 16000

/* Largest file sotto__vad_model_load reads; the real one is 1.2 MB. */
#define MAX_FILE_BYTES (64L << 20)

/* Samples must be finite and at most this large in magnitude (audio in
 * [-1, 1] is the normal range); within it no intermediate value of the
 * real network can overflow. */
#define MAX_SAMPLE 1000.0f

struct sotto__vad_model {
    /* Rows 0..128 give the real parts, rows 129..257 the imaginary parts. */
    float stft[2 * N_BINS * N_FFT];        /* [258, 256] (file [258, 1, 256]) */
    float conv1_w[C1 * 3 * N_BINS];        /* [128, 3, 129] (file [128, 129, 3]) */
    float conv1_b[C1];                     /* [128] */
    float conv2_w[C2 * 3 * C1];            /* [64, 3, 128] (file [64, 128, 3]) */
    float conv2_b[C2];                     /* [64] */
    float conv3_w[C3 * 3 * C2];            /* [64, 3, 64] (file [64, 64, 3]) */
    float conv3_b[C3];                     /* [64] */
    float conv4_w[C4 * 3 * C3];            /* [128, 3, 64] (file [128, 64, 3]) */
    float conv4_b[C4];                     /* [128] */
    /* Row g is weight_ih[g] followed by weight_hh[g], so the gates are one
     * product with the input x and h concatenated. */
    float lstm_w[4 * HID * 2 * HID];       /* [512, 256] */
    float lstm_b[4 * HID];                 /* [512]: bias_ih + bias_hh */
    float final_w[HID];                    /* [128] (file [1, 128, 1]) */
    float final_b;                         /* (file [1]) */
};

struct sotto__vad {
    const sotto__vad_model *m;
    float h[HID], c[HID];                  /* [128] each: the LSTM state */
    float context[SOTTO__VAD_CONTEXT];     /* [64]: the previous samples */
    /* Scratch, rewritten by every step.  Activations are [frames][channels]
     * with a zero row before and after (row 0 and row T + 1), which those
     * rows keep for the life of the object. */
    float x[N_PADDED];                     /* [640] */
    float spec[T0 * 2 * N_BINS];           /* [4, 258] */
    float a0[(T0 + 2) * N_BINS];           /* [6, 129] magnitudes */
    float a1[(T1 + 2) * C1];               /* [6, 128] */
    float a2[(T2 + 2) * C2];               /* [4, 64] */
    float a3[(T3 + 2) * C3];               /* [3, 64] */
    float xh[C4 + HID];                    /* [256]: conv4 output, then h */
    float gates[4 * HID];                  /* [512] */
};

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

/* One tensor the file must hold. */
typedef struct expected {
    const char *name;
    int rank;
    int64_t shape[3];
} expected;

static const expected tensors[] = {
    { "stft_conv.weight", 3, { 2 * N_BINS, 1, N_FFT } },
    { "conv1.weight", 3, { C1, N_BINS, 3 } },
    { "conv1.bias", 1, { C1 } },
    { "conv2.weight", 3, { C2, C1, 3 } },
    { "conv2.bias", 1, { C2 } },
    { "conv3.weight", 3, { C3, C2, 3 } },
    { "conv3.bias", 1, { C3 } },
    { "conv4.weight", 3, { C4, C3, 3 } },
    { "conv4.bias", 1, { C4 } },
    { "lstm_cell.weight_ih", 2, { 4 * HID, C4 } },
    { "lstm_cell.weight_hh", 2, { 4 * HID, HID } },
    { "lstm_cell.bias_ih", 1, { 4 * HID } },
    { "lstm_cell.bias_hh", 1, { 4 * HID } },
    { "final_conv.weight", 3, { 1, HID, 1 } },
    { "final_conv.bias", 1, { 1 } },
};

/* Writes a shape as "[a, b, c]". */
static void format_shape(char *buf, size_t cap, int rank, const int64_t *shape)
{
    size_t off = 0;
    int n = snprintf(buf, cap, "[");

    if (n > 0)
        off = (size_t)n;
    for (int i = 0; i < rank && off < cap; i++) {
        n = snprintf(buf + off, cap - off, "%s%lld", i ? ", " : "",
                     (long long)shape[i]);
        if (n > 0)
            off += (size_t)n;
    }
    if (off < cap)
        snprintf(buf + off, cap - off, "]");
}

/* Copies a checked tensor into dst and checks that every value is finite;
 * the data is unaligned in the file, so it goes through memcpy. */
static int copy_tensor(const sotto__st_tensor *t, float *dst, char *err,
                       size_t errcap)
{
    size_t n = t->nbytes / sizeof(float);

    memcpy(dst, t->data, t->nbytes);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return sotto__errf(err, errcap, SOTTO_EMODEL,
                               "tensor %s holds a non-finite value at "
                               "element %zu", t->name, i);
    return 0;
}

/* Reorders a convolution weight [out][in][3] into [out][3][in]. */
static void conv_taps_outer(const float *src, int c_out, int c_in, float *dst)
{
    for (int o = 0; o < c_out; o++)
        for (int i = 0; i < c_in; i++)
            for (int k = 0; k < 3; k++)
                dst[((size_t)o * 3 + k) * c_in + i] =
                    src[((size_t)o * c_in + i) * 3 + k];
}

/* Fills m from a parsed file; tmp has room for the largest tensor. */
static int fill_model(sotto__vad_model *m, const sotto__safetensors *st,
                      float *tmp, char *err, size_t errcap)
{
    const sotto__st_tensor *t[SOTTO__ARRAY_LEN(tensors)];
    int rc;

    for (size_t i = 0; i < SOTTO__ARRAY_LEN(tensors); i++) {
        const expected *e = &tensors[i];
        char want[64], got[128];

        t[i] = sotto__safetensors_find(st, e->name);
        if (t[i] == NULL)
            return sotto__errf(err, errcap, SOTTO_EMODEL,
                               "missing tensor %s", e->name);
        if (strcmp(t[i]->dtype, "F32") != 0)
            return sotto__errf(err, errcap, SOTTO_EMODEL,
                               "tensor %s has dtype %s; expected F32",
                               e->name, t[i]->dtype);
        if (t[i]->rank != e->rank ||
            memcmp(t[i]->shape, e->shape, sizeof e->shape[0] * (size_t)e->rank) != 0) {
            format_shape(want, sizeof want, e->rank, e->shape);
            format_shape(got, sizeof got, t[i]->rank, t[i]->shape);
            return sotto__errf(err, errcap, SOTTO_EMODEL,
                               "tensor %s has shape %s; expected %s",
                               e->name, got, want);
        }
    }
    /* The shapes are checked, so each byte count is the one expected. */
    if ((rc = copy_tensor(t[0], m->stft, err, errcap)) != 0 ||
        (rc = copy_tensor(t[2], m->conv1_b, err, errcap)) != 0 ||
        (rc = copy_tensor(t[4], m->conv2_b, err, errcap)) != 0 ||
        (rc = copy_tensor(t[6], m->conv3_b, err, errcap)) != 0 ||
        (rc = copy_tensor(t[8], m->conv4_b, err, errcap)) != 0 ||
        (rc = copy_tensor(t[13], m->final_w, err, errcap)) != 0 ||
        (rc = copy_tensor(t[14], &m->final_b, err, errcap)) != 0)
        return rc;
    if ((rc = copy_tensor(t[1], tmp, err, errcap)) != 0)
        return rc;
    conv_taps_outer(tmp, C1, N_BINS, m->conv1_w);
    if ((rc = copy_tensor(t[3], tmp, err, errcap)) != 0)
        return rc;
    conv_taps_outer(tmp, C2, C1, m->conv2_w);
    if ((rc = copy_tensor(t[5], tmp, err, errcap)) != 0)
        return rc;
    conv_taps_outer(tmp, C3, C2, m->conv3_w);
    if ((rc = copy_tensor(t[7], tmp, err, errcap)) != 0)
        return rc;
    conv_taps_outer(tmp, C4, C3, m->conv4_w);
    /* weight_ih and weight_hh side by side in each row. */
    if ((rc = copy_tensor(t[9], tmp, err, errcap)) != 0)
        return rc;
    for (int g = 0; g < 4 * HID; g++)
        memcpy(m->lstm_w + (size_t)g * 2 * HID, tmp + (size_t)g * C4,
               C4 * sizeof(float));
    if ((rc = copy_tensor(t[10], tmp, err, errcap)) != 0)
        return rc;
    for (int g = 0; g < 4 * HID; g++)
        memcpy(m->lstm_w + (size_t)g * 2 * HID + C4, tmp + (size_t)g * HID,
               HID * sizeof(float));
    if ((rc = copy_tensor(t[11], tmp, err, errcap)) != 0)
        return rc;
    memcpy(m->lstm_b, tmp, sizeof m->lstm_b);
    if ((rc = copy_tensor(t[12], tmp, err, errcap)) != 0)
        return rc;
    for (int g = 0; g < 4 * HID; g++)
        m->lstm_b[g] += tmp[g];
    return 0;
}

int sotto__vad_model_load_memory(const void *data, size_t len,
                                 sotto__vad_model **out, char *err,
                                 size_t errcap)
{
    sotto__safetensors st = { 0 };
    sotto__vad_model *m = NULL;
    float *tmp = NULL;
    int rc;

    if (out == NULL)
        return sotto__errf(err, errcap, SOTTO_EINVAL, "no output pointer");
    *out = NULL;
    if ((rc = sotto__safetensors_parse(data, len, &st, err, errcap)) != 0)
        goto fail;
    /* 64-byte alignment suits the AVX2 loads of the dot products. */
    m = aligned_alloc(64, (sizeof *m + 63) / 64 * 64);
    tmp = malloc(sizeof m->lstm_w / 2);
    if (m == NULL || tmp == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM,
                         "out of memory for the VAD weights");
        goto fail;
    }
    if ((rc = fill_model(m, &st, tmp, err, errcap)) != 0)
        goto fail;
    sotto__safetensors_free(&st);
    free(tmp);
    *out = m;
    return 0;
fail:
    sotto__safetensors_free(&st);
    free(tmp);
    free(m);
    return rc;
}

int sotto__vad_model_load(const char *path, sotto__vad_model **out,
                          char *err, size_t errcap)
{
    FILE *f = NULL;
    unsigned char *buf = NULL;
    struct stat sb;
    size_t len;
    int rc;
    char sub[256];

    if (out == NULL || path == NULL)
        return sotto__errf(err, errcap, SOTTO_EINVAL,
                           "no VAD model path or output pointer");
    *out = NULL;
    f = fopen(path, "rb");
    if (f == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_EIO, "cannot open VAD model %s: %s",
                         path, strerror(errno));
        goto fail;
    }
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = sotto__errf(err, errcap, SOTTO_EIO,
                         "VAD model %s is not a regular file", path);
        goto fail;
    }
    if (sb.st_size > MAX_FILE_BYTES) {
        rc = sotto__errf(err, errcap, SOTTO_EMODEL,
                         "VAD model %s has %lld bytes, more than the %ld a "
                         "Silero VAD file can have", path,
                         (long long)sb.st_size, MAX_FILE_BYTES);
        goto fail;
    }
    len = (size_t)sb.st_size;
    buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        rc = sotto__errf(err, errcap, SOTTO_ENOMEM, "out of memory");
        goto fail;
    }
    if (fread(buf, 1, len, f) != len) {
        rc = sotto__errf(err, errcap, SOTTO_EIO, "cannot read VAD model %s",
                         path);
        goto fail;
    }
    rc = sotto__vad_model_load_memory(buf, len, out, sub, sizeof sub);
    if (rc != 0)
        sotto__errf(err, errcap, rc, "VAD model %s: %s", path, sub);
fail:
    if (f != NULL)
        fclose(f);
    free(buf);
    return rc;
}

void sotto__vad_model_free(sotto__vad_model *m)
{
    free(m);
}

/* ------------------------------------------------------------------------
 * One step
 * ------------------------------------------------------------------------ */

int sotto__vad_create(const sotto__vad_model *m, sotto__vad **out)
{
    sotto__vad *v;

    if (out == NULL)
        return SOTTO_EINVAL;
    *out = NULL;
    if (m == NULL)
        return SOTTO_EINVAL;
    v = aligned_alloc(64, (sizeof *v + 63) / 64 * 64);
    if (v == NULL)
        return SOTTO_ENOMEM;
    memset(v, 0, sizeof *v);
    v->m = m;
    *out = v;
    return 0;
}

void sotto__vad_destroy(sotto__vad *v)
{
    free(v);
}

void sotto__vad_reset(sotto__vad *v)
{
    if (v == NULL)
        return;
    memset(v->h, 0, sizeof v->h);
    memset(v->c, 0, sizeof v->c);
    memset(v->context, 0, sizeof v->context);
}

/*
 * A convolution of kernel 3 followed by ReLU.  in is [rows][c_in] with its
 * zero padding row first; output frame t reads rows t * stride .. + 2 and
 * goes to out[t][c_out].  w is [c_out][3][c_in].
 */
static void conv3_relu(const float *in, int c_in, int t_out, int stride,
                       const float *w, const float *b, int c_out, float *out)
{
    for (int t = 0; t < t_out; t++) {
        float *y = out + (size_t)t * c_out;
        sotto__dots(in + (size_t)t * stride * c_in, w, 3 * c_in, c_out,
                    3 * c_in, 1.0f, y);
        for (int o = 0; o < c_out; o++) {
            float s = y[o] + b[o];
            y[o] = s > 0.0f ? s : 0.0f;
        }
    }
}

static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

int sotto__vad_step(sotto__vad *v, const float *frame, float *prob)
{
    const sotto__vad_model *m;
    float *x;
    float z;
    int ok = 1;

    if (v == NULL || frame == NULL || prob == NULL)
        return SOTTO_EINVAL;
    m = v->m;
    x = v->x;
    for (int i = 0; i < SOTTO__VAD_FRAME; i++) {
        if (!isfinite(frame[i]))
            return SOTTO_ENONFINITE;
        if (fabsf(frame[i]) > MAX_SAMPLE)
            return SOTTO_EINVAL;
    }

    /* Context, the new samples, then the reflection of the last samples
     * without repeating the edge: x[576 + j] = x[574 - j]. */
    memcpy(x, v->context, sizeof v->context);
    memcpy(x + SOTTO__VAD_CONTEXT, frame, SOTTO__VAD_FRAME * sizeof(float));
    for (int j = 0; j < PAD_RIGHT; j++)
        x[N_IN + j] = x[N_IN - 2 - j];

    /* STFT magnitudes into rows 1..T0 of a0. */
    for (int t = 0; t < T0; t++) {
        const float *s = v->spec + (size_t)t * 2 * N_BINS;
        float *a = v->a0 + (size_t)(t + 1) * N_BINS;
        sotto__dots(x + (size_t)t * HOP, m->stft, N_FFT, 2 * N_BINS, N_FFT,
                    1.0f, v->spec + (size_t)t * 2 * N_BINS);
        for (int k = 0; k < N_BINS; k++)
            a[k] = sqrtf(s[k] * s[k] + s[N_BINS + k] * s[N_BINS + k]);
    }

    conv3_relu(v->a0, N_BINS, T1, 1, m->conv1_w, m->conv1_b, C1, v->a1 + C1);
    conv3_relu(v->a1, C1, T2, 2, m->conv2_w, m->conv2_b, C2, v->a2 + C2);
    conv3_relu(v->a2, C2, T3, 2, m->conv3_w, m->conv3_b, C3, v->a3 + C3);
    conv3_relu(v->a3, C3, T4, 1, m->conv4_w, m->conv4_b, C4, v->xh);

    /* LSTM cell on [x, h]. */
    memcpy(v->xh + C4, v->h, sizeof v->h);
    sotto__dots(v->xh, m->lstm_w, 2 * HID, 4 * HID, 2 * HID, 1.0f, v->gates);
    z = m->final_b;
    for (int j = 0; j < HID; j++) {
        const float gi = sigmoid(v->gates[j] + m->lstm_b[j]);
        const float gf = sigmoid(v->gates[HID + j] + m->lstm_b[HID + j]);
        const float gg = tanhf(v->gates[2 * HID + j] + m->lstm_b[2 * HID + j]);
        const float go = sigmoid(v->gates[3 * HID + j] + m->lstm_b[3 * HID + j]);
        const float c = gf * v->c[j] + gi * gg;
        const float h = go * tanhf(c);
        v->c[j] = c;
        v->h[j] = h;
        ok &= isfinite(c) && isfinite(h);
        z += m->final_w[j] * (h > 0.0f ? h : 0.0f);
    }
    memcpy(v->context, x + N_IN - SOTTO__VAD_CONTEXT, sizeof v->context);

    /* Finite weights can still overflow on a corrupt file; the stream then
     * starts over rather than carrying NaN forever. */
    *prob = sigmoid(z);
    if (!ok || !(*prob >= 0.0f && *prob <= 1.0f)) {
        sotto__vad_reset(v);
        *prob = 0.0f;
        return SOTTO_EMODEL;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Offline segmentation (faster_whisper/vad.py, get_speech_timestamps)
 * ------------------------------------------------------------------------ */

sotto__vad_options sotto__vad_default_options(void)
{
    sotto__vad_options o;

    o.threshold = 0.5f;
    o.neg_threshold = -1.0f;
    o.min_speech_ms = 0;
    o.min_silence_ms = 2000;
    o.speech_pad_ms = 400;
    o.max_speech_s = 0.0f;
    return o;
}

int sotto__vad_probs(const sotto__vad_model *m, const float *pcm, size_t n,
                     float **probs, size_t *n_frames)
{
    sotto__vad *v = NULL;
    float *p = NULL, frame[SOTTO__VAD_FRAME];
    size_t nf;
    int rc;

    if (probs == NULL || n_frames == NULL)
        return SOTTO_EINVAL;
    *probs = NULL;
    *n_frames = 0;
    if (m == NULL || (pcm == NULL && n > 0))
        return SOTTO_EINVAL;
    /* faster-whisper pads with 512 - n % 512 zeros: always at least one. */
    nf = n / SOTTO__VAD_FRAME + 1;
    p = malloc(nf * sizeof *p);
    if (p == NULL) {
        rc = SOTTO_ENOMEM;
        goto fail;
    }
    if ((rc = sotto__vad_create(m, &v)) != 0)
        goto fail;
    for (size_t f = 0; f < nf; f++) {
        size_t off = f * SOTTO__VAD_FRAME;
        size_t have = n - off < SOTTO__VAD_FRAME ? n - off : SOTTO__VAD_FRAME;
        if (have > 0)
            memcpy(frame, pcm + off, have * sizeof *frame);
        memset(frame + have, 0, (SOTTO__VAD_FRAME - have) * sizeof *frame);
        /* faster-whisper builds the contexts with a view into the padded
         * audio and zeroes the last row of that view, which also zeroes
         * the last 64 samples of the final frame; so do we. */
        if (f == nf - 1)
            memset(frame + SOTTO__VAD_FRAME - SOTTO__VAD_CONTEXT, 0,
                   SOTTO__VAD_CONTEXT * sizeof *frame);
        if ((rc = sotto__vad_step(v, frame, &p[f])) != 0)
            goto fail;
    }
    sotto__vad_destroy(v);
    *probs = p;
    *n_frames = nf;
    return 0;
fail:
    sotto__vad_destroy(v);
    free(p);
    return rc;
}

/* A growable list of regions, in samples (signed, as in the reference). */
typedef struct seglist {
    long long (*s)[2];
    size_t n, cap;
} seglist;

static int push(seglist *l, long long start, long long end)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        long long (*s)[2] = realloc(l->s, cap * sizeof *s);
        if (s == NULL)
            return SOTTO_ENOMEM;
        l->s = s;
        l->cap = cap;
    }
    l->s[l->n][0] = start;
    l->s[l->n][1] = end;
    l->n++;
    return 0;
}

/* Python's floor division for the (non-negative in practice) gaps. */
static long long floor_div2(long long a)
{
    return a >= 0 ? a / 2 : -((-a + 1) / 2);
}

int sotto__vad_segments_from_probs(const float *probs, size_t n_frames,
                                   size_t n_samples,
                                   const sotto__vad_options *opts,
                                   sotto__speech **out, size_t *n_out)
{
    const sotto__vad_options o = opts ? *opts : sotto__vad_default_options();
    const long long win = SOTTO__VAD_FRAME, len = (long long)n_samples;
    float threshold, neg;
    double min_speech, pad, max_speech, min_silence;
    const double min_silence_at_max = SR * 98.0 / 1000.0;
    long long cur_start = 0, temp_end = 0, prev_end = 0, next_start = 0;
    int triggered = 0, have_cur = 0, rc;
    seglist l = { 0 };
    sotto__speech *res = NULL;

    if (out == NULL || n_out == NULL)
        return SOTTO_EINVAL;
    *out = NULL;
    *n_out = 0;
    if ((probs == NULL && n_frames > 0) || !(o.threshold >= 0.0f && o.threshold <= 1.0f) ||
        !(o.neg_threshold <= 1.0f) || o.min_speech_ms < 0 ||
        o.min_silence_ms < 0 || o.speech_pad_ms < 0 ||
        !(o.max_speech_s >= 0.0f) || n_samples > (size_t)1 << 52)
        return SOTTO_EINVAL;

    /* The same arithmetic, in the same order, as faster-whisper.  Its
     * probabilities are a float32 array, and numpy 2 compares them with a
     * Python float in float32 (NEP 50), so the thresholds are rounded to
     * float and compared in float here too. */
    threshold = o.threshold;
    neg = o.neg_threshold >= 0.0f
              ? o.neg_threshold
              : (float)fmax((double)o.threshold - 0.15, 0.01);
    min_speech = SR * (double)o.min_speech_ms / 1000.0;
    pad = SR * (double)o.speech_pad_ms / 1000.0;
    max_speech = o.max_speech_s > 0.0f && isfinite(o.max_speech_s)
                     ? SR * (double)o.max_speech_s - (double)win - 2.0 * pad
                     : INFINITY;
    min_silence = SR * (double)o.min_silence_ms / 1000.0;

    for (size_t i = 0; i < n_frames; i++) {
        const float p = probs[i];
        const long long pos = win * (long long)i;

        if (p >= threshold && temp_end) {
            temp_end = 0;
            if (next_start < prev_end)
                next_start = pos;
        }
        if (p >= threshold && !triggered) {
            triggered = 1;
            have_cur = 1;
            cur_start = pos;
            continue;
        }
        if (triggered && (double)(pos - cur_start) > max_speech) {
            if (prev_end) {
                if ((rc = push(&l, cur_start, prev_end)) != 0)
                    goto fail;
                have_cur = 0;
                /* Silence (below neg) was reached before and speech has
                 * not come back (below threshold) since. */
                if (next_start < prev_end) {
                    triggered = 0;
                } else {
                    have_cur = 1;
                    cur_start = next_start;
                }
                prev_end = next_start = temp_end = 0;
            } else {
                if ((rc = push(&l, cur_start, pos)) != 0)
                    goto fail;
                have_cur = 0;
                prev_end = next_start = temp_end = 0;
                triggered = 0;
                continue;
            }
        }
        if (p < neg && triggered) {
            if (!temp_end)
                temp_end = pos;
            /* Only a silence longer than 98 ms may end a segment that
             * grew too long. */
            if ((double)(pos - temp_end) > min_silence_at_max)
                prev_end = temp_end;
            if ((double)(pos - temp_end) < min_silence)
                continue;
            if ((double)(temp_end - cur_start) > min_speech &&
                (rc = push(&l, cur_start, temp_end)) != 0)
                goto fail;
            have_cur = 0;
            prev_end = next_start = temp_end = 0;
            triggered = 0;
            continue;
        }
    }
    if (have_cur && (double)(len - cur_start) > min_speech &&
        (rc = push(&l, cur_start, len)) != 0)
        goto fail;

    /* Padding: the first start and the last end by pad; between two
     * regions by pad each, or by half the gap when it is shorter than two
     * pads. */
    for (size_t i = 0; i < l.n; i++) {
        long long *s = l.s[i];
        if (i == 0)
            s[0] = (long long)fmax(0.0, (double)s[0] - pad);
        if (i + 1 < l.n) {
            long long *nx = l.s[i + 1];
            long long gap = nx[0] - s[1];
            if ((double)gap < 2.0 * pad) {
                s[1] += floor_div2(gap);
                nx[0] = nx[0] - floor_div2(gap) > 0 ? nx[0] - floor_div2(gap) : 0;
            } else {
                s[1] = (long long)fmin((double)len, (double)s[1] + pad);
                nx[0] = (long long)fmax(0.0, (double)nx[0] - pad);
            }
        } else {
            s[1] = (long long)fmin((double)len, (double)s[1] + pad);
        }
    }

    if (l.n > 0) {
        res = malloc(l.n * sizeof *res);
        if (res == NULL) {
            rc = SOTTO_ENOMEM;
            goto fail;
        }
        for (size_t i = 0; i < l.n; i++) {
            res[i].start = l.s[i][0] > 0 ? (size_t)l.s[i][0] : 0;
            res[i].end = l.s[i][1] > 0 ? (size_t)l.s[i][1] : 0;
        }
    }
    free(l.s);
    *out = res;
    *n_out = l.n;
    return 0;
fail:
    free(l.s);
    return rc;
}

int sotto__vad_segments(const sotto__vad_model *m, const float *pcm,
                        size_t n, const sotto__vad_options *o,
                        sotto__speech **out, size_t *n_out)
{
    float *probs = NULL;
    size_t nf = 0;
    int rc;

    if (out == NULL || n_out == NULL)
        return SOTTO_EINVAL;
    *out = NULL;
    *n_out = 0;
    if ((rc = sotto__vad_probs(m, pcm, n, &probs, &nf)) != 0)
        goto fail;
    rc = sotto__vad_segments_from_probs(probs, nf, n, o, out, n_out);
fail:
    free(probs);
    return rc;
}
