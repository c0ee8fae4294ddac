/*
 * result.h - the transcription result object (internal).
 *
 * A sotto_result owns every string and array reachable from its segments;
 * sotto_result_destroy() frees them all.  The public accessors are in
 * sotto.h; these helpers build a result.
 */
#ifndef SOTTO_RESULT_H
#define SOTTO_RESULT_H

#include "sotto.h"
#include "engine/model.h"

typedef struct sotto_result {
    double duration;            /* seconds of audio */
    sotto_segment *segments;
    int n_segments, cap;
    char *text;                 /* set by sotto__result_finish() */
} sotto__result;

sotto__result *sotto__result_create(double duration);

/* Appends a segment made of tokens[0 .. n) (text and timestamps) spanning
 * start .. end seconds; its text is decoded from the tokens. */
int sotto__result_add(sotto__result *r, const struct sotto_model *m,
                      const int *tokens, int n, double start, double end);

/* Removes segment i. */
void sotto__result_drop(sotto__result *r, int i);

/* Gives segment i its words (the result takes ownership of words and of
 * each word's text). */
void sotto__result_set_words(sotto__result *r, int i, sotto_word *words,
                             int n);

/* Builds the full text. */
int sotto__result_finish(sotto__result *r);

#endif
