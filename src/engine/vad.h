/*
 * vad.h - Silero VAD v5/v6 (16 kHz) voice activity detection (internal).
 *
 * The network is read from the `silero_vad_16k.safetensors` file that the
 * PyPI package silero-vad ships.  A sotto__vad_model holds the immutable
 * weights (shared by every stream of a process, read from any thread); a
 * sotto__vad holds one stream's recurrent state (LSTM h and c, the last 64
 * samples of context) and is used by one thread at a time.
 *
 * One step takes SOTTO__VAD_FRAME new samples (32 ms at 16 kHz) and gives
 * the probability that they hold speech, as the reference implementation
 * does for the same frames.
 */
#ifndef SOTTO_VAD_H
#define SOTTO_VAD_H

#include <stddef.h>

#define SOTTO__VAD_FRAME 512    /* new samples per step */
#define SOTTO__VAD_CONTEXT 64   /* samples of the previous step prepended */

typedef struct sotto__vad_model sotto__vad_model;
typedef struct sotto__vad sotto__vad;

/* Loads and validates a safetensors file.  Returns 0 or a negative
 * SOTTO_E* code with a message naming the problem in err. */
int sotto__vad_model_load(const char *path, sotto__vad_model **out,
                          char *err, size_t errcap);

/* The same from a file image in memory (copied; used by the fuzzer). */
int sotto__vad_model_load_memory(const void *data, size_t len,
                                 sotto__vad_model **out, char *err,
                                 size_t errcap);

void sotto__vad_model_free(sotto__vad_model *m);

int sotto__vad_create(const sotto__vad_model *m, sotto__vad **out);
void sotto__vad_destroy(sotto__vad *v);

/* Zeroes the recurrent state and the context, as at the start of a stream. */
void sotto__vad_reset(sotto__vad *v);

/* Runs one step on frame[0 .. SOTTO__VAD_FRAME) and writes the speech
 * probability in [0, 1] to *prob.  Returns 0 or a negative code:
 * SOTTO_EINVAL (a NULL argument, or a sample beyond +-1000),
 * SOTTO_ENONFINITE (a NaN or infinite sample; the state is unchanged), or
 * SOTTO_EMODEL (the network overflowed, which only a corrupt weights file
 * can cause; the state is reset and *prob is 0). */
int sotto__vad_step(sotto__vad *v, const float *frame, float *prob);

/* Segmentation options, with faster-whisper's VadOptions meanings. */
typedef struct sotto__vad_options {
    float threshold;             /* speech when prob >= threshold; 0.5 */
    float neg_threshold;         /* silence when prob < this; default
                                  * max(threshold - 0.15, 0.01) (set < 0
                                  * for that) */
    int min_speech_ms;           /* drop shorter speech; 0 */
    int min_silence_ms;          /* silence that ends speech; 2000 */
    int speech_pad_ms;           /* padding on both sides; 400 */
    float max_speech_s;          /* split longer speech; 0 = no limit */
} sotto__vad_options;

sotto__vad_options sotto__vad_default_options(void);

typedef struct sotto__speech {
    size_t start, end;           /* samples, end exclusive */
} sotto__speech;

/*
 * Offline segmentation of n samples of 16 kHz audio, as faster-whisper's
 * get_speech_timestamps: runs the network over every frame (the last one
 * zero-padded) from a fresh state and turns probabilities into speech
 * regions.  *out is malloc'd (free() it) and holds *n_out regions in time
 * order.  Returns 0 or a negative code.
 */
int sotto__vad_segments(const sotto__vad_model *m, const float *pcm,
                        size_t n, const sotto__vad_options *o,
                        sotto__speech **out, size_t *n_out);

/*
 * The probabilities that sotto__vad_segments works on: n / SOTTO__VAD_FRAME
 * + 1 frames from a fresh state, the last one zero-padded (faster-whisper
 * always appends between 1 and 512 zeros, and also zeroes the last
 * SOTTO__VAD_CONTEXT samples of that final frame).  *probs is malloc'd
 * (free() it).  Returns 0 or a negative code: SOTTO_ENONFINITE for a NaN
 * or infinite sample, SOTTO_EINVAL for one beyond +-1000.
 */
int sotto__vad_probs(const sotto__vad_model *m, const float *pcm, size_t n,
                     float **probs, size_t *n_frames);

/* The same segmentation on probabilities already computed, one per frame
 * (n_frames of them, for n_samples samples of audio). */
int sotto__vad_segments_from_probs(const float *probs, size_t n_frames,
                                   size_t n_samples,
                                   const sotto__vad_options *o,
                                   sotto__speech **out, size_t *n_out);

#endif
