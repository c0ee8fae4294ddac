/*
 * whisper.h - the Whisper network: encoder and decoder forward passes
 * (internal).
 *
 * A sotto__infer is the per-call working state of one transcription (or, in
 * streaming, one stream): the encoder output of the current window, the
 * cross-attention K/V computed from it once, the decoder's self-attention
 * KV cache for up to n_seq parallel sequences (beams or sampling
 * candidates), and scratch buffers.  It reads the shared, immutable
 * sotto_model and writes only its own memory, so any number of states can
 * run on one model from different threads.
 *
 * Shapes use the names of model.h: d, H, dh = d / H, T = encoder positions
 * of the current window (mel frames / 2), L = text layers, S = n_seq,
 * Tt = n_text_ctx.
 */
#ifndef SOTTO_WHISPER_H
#define SOTTO_WHISPER_H

#include "engine/gemm.h"
#include "engine/model.h"

typedef struct sotto__infer {
    const struct sotto_model *m;
    int n_seq_cap;          /* sequences the KV cache holds */
    int T;                  /* encoder positions of the current window */
    int T_cap;

    float *enc_out;         /* [T, d] encoder output (after ln_post) */
    float *cross_k;         /* [L, T_cap, d] */
    float *cross_v;         /* [L, T_cap, d] */

    int len;                /* tokens in the self-attention cache */
    float *self_k;          /* [L, S, Tt, d] */
    float *self_v;          /* [L, S, Tt, d] */

    sotto__scratch wide;    /* widened weights for sotto__linear */
    sotto__scratch work;    /* activations */
    sotto__scratch reorder; /* caches saved while beams are reordered */
} sotto__infer;

/* Creates a state for up to n_seq parallel decoder sequences. */
int sotto__infer_create(const struct sotto_model *m, int n_seq,
                        sotto__infer **out);
void sotto__infer_destroy(sotto__infer *st);

/*
 * Runs the encoder on mel [n_mels][stride] columns 0..n_frames (n_frames
 * even, at most 2 * n_audio_ctx) and computes every layer's cross-attention
 * K and V.  Resets the decoder cache.  Returns 0 or a negative code.
 */
int sotto__encode(sotto__infer *st, const float *mel, int stride,
                  int n_frames);

/*
 * Cross-attention capture for word alignment: for each of n_heads
 * (layer, head) pairs, the pre-softmax scaled scores of every new token
 * against every encoder position are written to
 * out[h][token][0..T).  out holds n_heads * n_tok * T floats.
 */
typedef struct sotto__attn_capture {
    int n_heads;
    const int (*heads)[2];
    float *out;
} sotto__attn_capture;

/*
 * Appends n_tok tokens to each of n_seq sequences (tokens[s * n_tok + i])
 * at positions len .. len + n_tok - 1, and writes the logits of each
 * sequence's last new token to logits[s * V ...] (logits may be NULL when
 * only the cache or the capture is wanted).  cap may be NULL; it requires
 * n_seq == 1.  Returns 0 or a negative code (SOTTO_EINVAL when the text
 * context would overflow).
 */
int sotto__decode(sotto__infer *st, int n_seq, int n_tok, const int *tokens,
                  float *logits, const sotto__attn_capture *cap);

/*
 * As sotto__decode() for one sequence, but writes the logits of every new
 * token: logits[i * V ...] are the next-token logits after tokens[i], for
 * i < n_tok (logits holds n_tok * V floats).  Forced decoding (the word
 * alignment) uses it to score a whole token sequence in one batched pass
 * instead of one step per token.
 */
int sotto__decode_rows(sotto__infer *st, int n_tok, const int *tokens,
                       float *logits, const sotto__attn_capture *cap);

/* Sequence s takes the cache of sequence src[s], for s < n_seq. */
int sotto__decode_reorder(sotto__infer *st, int n_seq, const int *src);

/* Forgets cached tokens after the first len. */
void sotto__decode_truncate(sotto__infer *st, int len);

#endif
