/*
 * align.h - word-level timestamps from cross-attention and DTW (internal).
 *
 * After a window is decoded and cut into segments, the decoder is run once
 * more over <|startoftranscript|> ... <|notimestamps|> + the window's text
 * tokens + <|endoftext|>, capturing the pre-softmax cross-attention scores
 * of the model's alignment heads (config.json alignment_heads).  Those are
 * softmaxed over the window's real audio frames, z-normalised per head along
 * the token axis, median-filtered (width 7) along time, averaged over heads,
 * and aligned to time with dynamic time warping on the negated matrix, as
 * openai/whisper's timing.py and CTranslate2's align() do.  Tokens are then
 * grouped into words (space-prefixed tokens start a word for English;
 * unicode-boundary splitting for languages without spaces), punctuation is
 * merged into neighbouring words, and each word gets a start, an end and the
 * mean probability of its tokens.
 */
#ifndef SOTTO_ALIGN_H
#define SOTTO_ALIGN_H

#include "engine/result.h"
#include "engine/whisper.h"

/*
 * Aligns the words of segments r->segments[first .. r->n_segments), which
 * were all cut from one window starting at time_offset seconds with
 * segment_size real mel frames.  sot[0 .. n_sot) is the window's sot
 * sequence (<|startoftranscript|> and, for multilingual models, the
 * language and task tokens).  *last_speech is the end of the last word
 * spoken before this window (faster-whisper's last_speech_timestamp); it
 * guides the first word's boundary.  st holds the window's encoder output;
 * its decoder cache is overwritten.  Sets each segment's words and moves
 * its start and end to its first and last word.
 */
int sotto__align_words(sotto__infer *st, sotto__result *r, int first,
                       const int *sot, int n_sot, double time_offset,
                       int segment_size, double last_speech);

#endif
