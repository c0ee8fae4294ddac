/*
 * decode.h - generating one window's tokens: logit filters, greedy
 * decoding, beam search and temperature sampling (internal).
 *
 * The rules are Whisper's (openai/whisper decoding.py) as CTranslate2 and
 * faster-whisper apply them; docs/engine.md lists them.  The caller has run
 * the encoder on the window; sotto__generate() feeds the prompt and then
 * samples until <|endoftext|> or the length limit.
 */
#ifndef SOTTO_DECODE_H
#define SOTTO_DECODE_H

#include <stdint.h>

#include "engine/whisper.h"

/* Capacity of a generated sequence (prefix included); above the text
 * context of every Whisper model (448). */
#define SOTTO__MAX_GEN_TOKENS 512

typedef struct sotto__gen_opts {
    int beam_size;             /* >= 1; used when temperature == 0 */
    int best_of;               /* candidates when temperature > 0 */
    float patience;            /* beam search: finish after
                                * beam_size * patience hypotheses */
    float length_penalty;      /* score = logprob / length^penalty */
    float temperature;         /* 0 = greedy or beam search */
    int suppress_blank;
    int without_timestamps;
    int max_initial_timestamp_index;   /* in 0.02 s steps; < 0 = none */
    int max_new_tokens;        /* tokens to sample at most */
    uint64_t *rng;             /* state for sampling */
    /* Tokens forced after the sot sequence (already in the decoder cache,
     * fed with the prompt): every sequence starts with them, the logit
     * filters see them as sampled, they lead res->tokens, and they are
     * neither scored nor counted against max_new_tokens.  NULL/0: none. */
    const int *prefix;
    int n_prefix;
} sotto__gen_opts;

typedef struct sotto__gen_result {
    int tokens[SOTTO__MAX_GEN_TOKENS]; /* the prefix and the sampled tokens,
                                        * without <|endoftext|> */
    int n_tokens;
    double sum_logprob;        /* of the sampled tokens (not the prefix),
                                * including <|endoftext|> if sampled */
    double avg_logprob;        /* sum_logprob / (sampled tokens + 1) */
    float no_speech_prob;      /* P(<|nospeech|>) at the sot position */
} sotto__gen_result;

/*
 * Decodes one window.  prompt[0 .. n_prompt) is fed first; sot_index is the
 * position of <|startoftranscript|> in it, where no_speech_prob is read.
 * Returns 0 or a negative code.
 */
int sotto__generate(sotto__infer *st, const int *prompt, int n_prompt,
                    int sot_index, const sotto__gen_opts *o,
                    sotto__gen_result *res);

/*
 * What a search needs from the network: append tokens[s] to sequence s
 * (which continues the cache of sequence src[s], for s < n_seq) and write
 * each sequence's next-token logits to logits[s * n_vocab ...].
 * sotto__generate() binds it to a sotto__infer; the unit tests bind it to a
 * constructed language model.
 */
typedef struct sotto__stepper {
    int (*step)(void *ctx, int n_seq, const int *src, const int *tokens,
                float *logits);
    void *ctx;
    int max_seq;               /* parallel sequences the network holds */
} sotto__stepper;

/*
 * Runs greedy decoding, beam search or sampling (by o) from `logits`, the
 * next-token logits after the prompt (overwritten), filling res's tokens,
 * sum_logprob and avg_logprob.  Returns 0 or a negative code.
 */
int sotto__search(const struct sotto_model *m, const sotto__stepper *net,
                  float *logits, const sotto__gen_opts *o,
                  sotto__gen_result *res);

/* Applies the logit filters for a sequence that has sampled
 * sampled[0 .. n_sampled) so far (exposed for the unit tests). */
void sotto__apply_filters(const struct sotto_model *m, float *logits,
                          const int *sampled, int n_sampled,
                          const sotto__gen_opts *o);

#endif
