/*
 * transcribe.h - transcribing one buffer of at most 30 s, for the streaming
 * policy (internal).
 *
 * The offline entry point, sotto_transcribe(), walks a whole recording in
 * 30-second windows.  A stream instead re-transcribes its rolling buffer
 * again and again; this is that single pass, with the same decoding rules,
 * fallback and word alignment as the offline loop.
 */
#ifndef SOTTO_TRANSCRIBE_H
#define SOTTO_TRANSCRIBE_H

#include <stdint.h>

#include "engine/result.h"
#include "engine/whisper.h"

/* Longest buffer sotto__transcribe_window() takes, in samples (30 s). */
#define SOTTO__WINDOW_SAMPLES (30 * SOTTO_SAMPLE_RATE)

/* Most forced prefix tokens a window takes: a quarter of the text context,
 * which leaves the sampled tokens and the previous-text prompt their room
 * (a 28 s buffer of fast speech is about 110 tokens). */
#define SOTTO__MAX_PREFIX 112

/*
 * Transcribes pcm[0 .. n) (16 kHz, finite, 1 <= n <= SOTTO__WINDOW_SAMPLES)
 * with prev[0 .. n_prev) as the previous-text prompt, appending the
 * segments (times in seconds from pcm[0]) to r.  The encoder sees the
 * buffer's log-mel followed by pad_frames zero frames (rounded up to an
 * even count, at most 3000 in all); pad_frames < 0 pads to the full 30 s
 * window, as offline.  The encoder's cost is proportional to its input.
 *
 * prefix[0 .. n_prefix) (may be NULL) are tokens, timestamps included,
 * that the window's transcript is forced to begin with: a stream passes
 * the tokens of its previous pass over the same buffer up to its last
 * committed word, so that the decoder steps only over the new words.
 * They are fed in one batch with the prompt and come back as the first
 * tokens of the segments.  At most SOTTO__MAX_PREFIX tokens are used (the
 * rest is decoded); ignored with without_timestamps.
 *
 * *lang_token caches the language token of multilingual models (pass -1
 * first).  Returns 0 or a negative code with a message in err.
 */
int sotto__transcribe_window(sotto__infer *st, const float *pcm, size_t n,
                             const int *prev, int n_prev, const int *prefix,
                             int n_prefix, int pad_frames,
                             const sotto_transcribe_params *p, int *lang_token,
                             uint64_t *rng, sotto__result *r, char *err,
                             size_t errcap);

#endif
