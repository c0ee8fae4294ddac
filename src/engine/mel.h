/*
 * mel.h - Whisper's log-mel spectrogram front end (internal).
 *
 * 16 kHz mono float in, [n_mels][n_frames] log-mel out, computed exactly as
 * Whisper and faster-whisper do: n_fft 400, hop 160, periodic Hann window,
 * centred frames with reflect padding of 200 samples, power spectrum,
 * Slaney-scale mel filters with Slaney area normalisation (computed here,
 * not loaded), log10 of max(x, 1e-10), a floor at (global max - 8), then
 * (x + 4) / 4.
 *
 * A sotto__mel holds the filterbank, the window and the FFTW plan.  It is
 * immutable after creation; sotto__mel_compute() may run on several threads
 * at once (it uses fftwf_execute_dft_r2c on per-call buffers, which FFTW
 * documents as thread-safe).  Creating plans is not thread-safe in FFTW, so
 * sotto__mel_create() serialises that step internally.
 */
#ifndef SOTTO_MEL_H
#define SOTTO_MEL_H

#include <stddef.h>

#define SOTTO__N_FFT 400
#define SOTTO__HOP 160

typedef struct sotto__mel sotto__mel;

/* n_mels is 80 or 128.  Returns 0 or a negative SOTTO_E* code. */
int sotto__mel_create(int n_mels, sotto__mel **out);
void sotto__mel_destroy(sotto__mel *mel);

/*
 * Computes the log-mel spectrogram of pcm[0..n) followed by `pad` zero
 * samples.  The frame count is (n + pad) / 160: the STFT's last frame is
 * dropped, as Whisper does.  *out is malloc'd, [n_mels][*n_frames] row-major;
 * free it with free().  The max-8 floor is taken over the whole output.
 * It runs on n_threads OpenMP threads (the model's --threads; 0 or less:
 * OpenMP's default team).  Returns 0 or a negative code; n + pad == 0 is
 * SOTTO_EINVAL.
 */
int sotto__mel_compute(const sotto__mel *mel, const float *pcm, size_t n,
                       size_t pad, int n_threads, float **out, size_t *n_frames);

#endif
