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

/*
 * Transcribes pcm[0 .. n) (16 kHz, finite, 1 <= n <= SOTTO__WINDOW_SAMPLES)
 * with prev[0 .. n_prev) as the previous-text prompt, appending the
 * segments (times in seconds from pcm[0]) to r.  The encoder sees the
 * buffer's log-mel followed by pad_frames zero frames (rounded up to an
 * even count, at most 3000 in all); pad_frames < 0 pads to the full 30 s
 * window, as offline.  The encoder's cost is proportional to its input.  *lang_token caches the language token of
 * multilingual models (pass -1 first).  Returns 0 or a negative code with
 * a message in err.
 */
int sotto__transcribe_window(sotto__infer *st, const float *pcm, size_t n,
                             const int *prev, int n_prev, int pad_frames,
                             const sotto_transcribe_params *p, int *lang_token,
                             uint64_t *rng, sotto__result *r, char *err,
                             size_t errcap);

#endif
