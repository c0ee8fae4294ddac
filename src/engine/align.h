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
 * were all cut from one window whose decoded tokens are tokens[0 .. n)
 * (text and timestamps), starting at time_offset seconds, with
 * segment_size real mel frames.  st holds the window's encoder output; its
 * decoder cache is overwritten.  Sets each segment's words.
 */
int sotto__align_words(sotto__infer *st, sotto__result *r, int first,
                       const int *tokens, int n, double time_offset,
                       int segment_size);

#endif
