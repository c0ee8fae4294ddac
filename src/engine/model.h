/*
 * model.h - the loaded Whisper model: hyper-parameters, weights, config
 * (internal).
 *
 * The model is read from a CTranslate2 model folder (docs/model-format.md):
 * model.bin is mmap'd read-only and every large weight is used in place, in
 * its stored dtype (float16 or float32), so processes that load the same
 * file share one copy through the page cache.  Only the small tensors that
 * every step touches (biases, LayerNorm parameters, position encodings) are
 * widened to float32 copies at load time.
 *
 * Shapes are written as [rows, cols] in row-major order, with
 *   d      = d_model (384 for tiny)       H  = n_heads, dh = d / H
 *   F      = n_ffn (4 d)                  M  = n_mels (80 or 128)
 *   V      = n_vocab                      Ta = n_audio_ctx (1500)
 *   Tt     = n_text_ctx (448)
 * Linear weights are stored [out, in], as in PyTorch: y = x Wᵀ + b.
 */
#ifndef SOTTO_MODEL_H
#define SOTTO_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "sotto.h"
#include "engine/mel.h"
#include "engine/tokenizer.h"
#include "engine/vad.h"

/* CTranslate2 dtype codes (include/ctranslate2/types.h). */
enum sotto__dtype {
    SOTTO__DT_F32 = 0,
    SOTTO__DT_I8 = 1,
    SOTTO__DT_I16 = 2,
    SOTTO__DT_I32 = 3,
    SOTTO__DT_F16 = 4,
    SOTTO__DT_BF16 = 5
};

/* A weight matrix inside the mapping.  data may be unaligned: read it only
 * through the converters in gemm.h. */
typedef struct sotto__weight {
    const void *data;
    int dtype;            /* SOTTO__DT_F16 or SOTTO__DT_F32 */
    int rows, cols;       /* [rows, cols]; conv kernels are flattened */
} sotto__weight;

typedef struct sotto__enc_layer {
    const float *attn_ln_g, *attn_ln_b;   /* [d] */
    sotto__weight attn_qkv;               /* [3d, d]: Q rows, K rows, V rows */
    const float *attn_qkv_b;              /* [3d] (K part is zero) */
    sotto__weight attn_out;               /* [d, d] */
    const float *attn_out_b;              /* [d] */
    const float *ffn_ln_g, *ffn_ln_b;     /* [d] */
    sotto__weight ffn_up;                 /* [F, d] */
    const float *ffn_up_b;                /* [F] */
    sotto__weight ffn_down;               /* [d, F] */
    const float *ffn_down_b;              /* [d] */
} sotto__enc_layer;

typedef struct sotto__dec_layer {
    const float *self_ln_g, *self_ln_b;   /* [d] */
    sotto__weight self_qkv;               /* [3d, d] */
    const float *self_qkv_b;              /* [3d] */
    sotto__weight self_out;               /* [d, d] */
    const float *self_out_b;              /* [d] */
    const float *cross_ln_g, *cross_ln_b; /* [d] */
    sotto__weight cross_q;                /* [d, d]: queries from the text */
    const float *cross_q_b;               /* [d] */
    sotto__weight cross_kv;               /* [2d, d]: K rows then V rows,
                                           * applied to the encoder output */
    const float *cross_kv_b;              /* [2d] */
    sotto__weight cross_out;              /* [d, d] */
    const float *cross_out_b;             /* [d] */
    const float *ffn_ln_g, *ffn_ln_b;     /* [d] */
    sotto__weight ffn_up;                 /* [F, d] */
    const float *ffn_up_b;                /* [F] */
    sotto__weight ffn_down;               /* [d, F] */
    const float *ffn_down_b;              /* [d] */
} sotto__dec_layer;

/* Special token ids, found by name in the vocabulary (-1 if absent). */
typedef struct sotto__specials {
    int eot, sot, sot_prev, sot_lm, transcribe, translate;
    int no_speech, no_timestamps, timestamp_begin;
    int lang_first, n_langs;   /* language tokens are contiguous */
    int space;                 /* " " (Ġ), for suppress_blank */
} sotto__specials;

/* Longest lists read from config.json. */
#define SOTTO__MAX_ALIGNMENT_HEADS 64
#define SOTTO__MAX_SUPPRESS_IDS 1024

struct sotto_model {
    /* Hyper-parameters, derived from the shapes in model.bin. */
    int n_mels, d, n_heads, n_ffn;
    int n_audio_layers, n_text_layers;
    int n_audio_ctx, n_text_ctx, n_vocab;
    int dtype;                            /* of the large weights */
    int n_threads;

    /* Encoder. */
    sotto__weight conv1;                  /* [d, M*3] (was [d, M, 3]) */
    const float *conv1_b;                 /* [d] */
    sotto__weight conv2;                  /* [d, d*3] (was [d, d, 3]) */
    const float *conv2_b;                 /* [d] */
    const float *enc_pos;                 /* [Ta, d] sinusoids */
    sotto__enc_layer *enc;                /* [n_audio_layers] */
    const float *enc_ln_g, *enc_ln_b;     /* [d] */

    /* Decoder. */
    sotto__weight tok_emb;                /* [V, d]; also the output
                                           * projection (tied) */
    const float *dec_pos;                 /* [Tt, d] learned */
    sotto__dec_layer *dec;                /* [n_text_layers] */
    const float *dec_ln_g, *dec_ln_b;     /* [d] */

    /* config.json */
    int n_align_heads;
    int align_heads[SOTTO__MAX_ALIGNMENT_HEADS][2];   /* (layer, head) */
    int n_suppress;
    int suppress[SOTTO__MAX_SUPPRESS_IDS];
    int n_suppress_begin;
    int suppress_begin[SOTTO__MAX_SUPPRESS_IDS];

    sotto__specials sp;
    int multilingual;

    sotto__tokenizer *tok;
    sotto__mel *mel;
    sotto__vad_model *vad;                /* NULL unless vad_path was given */

    /* The mapping of model.bin, and the float32 copies of small tensors. */
    void *map;
    size_t map_len;
    float *small;                         /* one block for all copies */
    size_t small_len;

    sotto_log_fn log;
    void *log_user;
};

/*
 * Parses and validates model.bin held in memory (buf, len): the header, every
 * variable record and the alias table, and fills the weights of m.  Used by
 * sotto_model_create() on the mapping and by the fuzzer on arbitrary bytes.
 * The weights point into buf, which must outlive m.  Returns 0 or a
 * negative code with a message naming the problem.
 */
int sotto__model_parse_bin(struct sotto_model *m, const void *buf, size_t len,
                           char *err, size_t errcap);

/* Parses config.json text (NUL-terminated) into m. */
int sotto__model_parse_config(struct sotto_model *m, const char *json,
                              char *err, size_t errcap);

/* Frees what the parsers allocated (not the mapping, tokenizer or mel). */
void sotto__model_release(struct sotto_model *m);

#endif
