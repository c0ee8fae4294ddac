/*
 * whisper.c - the Whisper encoder and decoder forward passes.
 *
 * The code follows the paper's blocks one function each:
 *
 *   encoder:  x = GELU(conv1(mel)); x = GELU(conv2(x)) (stride 2);
 *             x += sinusoidal positions;
 *             per layer: x += SelfAttn(LN(x)); x += MLP(LN(x));
 *             out = LN(x)
 *   decoder:  x = Embed(tokens) + positions[offset ...];
 *             per layer: x += CausalSelfAttn(LN(x));
 *                        x += CrossAttn(LN(x), encoder out);
 *                        x += MLP(LN(x));
 *             logits = LN(x) · Embedᵀ
 *
 * with pre-norm LayerNorm (eps 1e-5), exact erf GELU, scaled dot-product
 * attention with 1/sqrt(dh), and the MLP Linear(d, F) → GELU → Linear(F, d).
 * Every matrix product goes through gemm.h.  Cross-attention K/V depend only
 * on the encoder output, so sotto__encode() computes them once per window.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "engine/vec.h"
#include "engine/whisper.h"

#define LN_EPS 1e-5f

/* ---- element-wise blocks ------------------------------------------------ */

/* y[n, d] = LayerNorm(x[n, d]) · g + b, row by row. */
static void layer_norm(const float *x, int n, int d, const float *g,
                       const float *b, float *y, int n_threads)
{
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n > 64)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *yi = y + (size_t)i * d;
        double mean = 0.0, var = 0.0;
        for (int j = 0; j < d; j++)
            mean += xi[j];
        mean /= d;
        for (int j = 0; j < d; j++) {
            double t = xi[j] - mean;
            var += t * t;
        }
        var /= d;
        const float inv = (float)(1.0 / sqrt(var + LN_EPS));
        const float mu = (float)mean;
        for (int j = 0; j < d; j++)
            yi[j] = (xi[j] - mu) * inv * g[j] + b[j];
    }
}

/* Exact GELU: x · Φ(x) = 0.5 x (1 + erf(x / √2)). */
static void gelu(float *x, size_t n, int n_threads)
{
    const size_t chunk = 16384;
    const long n_chunks = (long)((n + chunk - 1) / chunk);

#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_chunks > 1)
    for (long c = 0; c < n_chunks; c++) {
        size_t off = (size_t)c * chunk;
        sotto__gelu(x + off, n - off < chunk ? n - off : chunk);
    }
}

static void add_inplace(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

/* Softmax of each of n rows of length len (row stride ld), in place. */
static void softmax_rows(float *s, int n, int len, int ld, int n_threads)
{
#pragma omp parallel for schedule(static) num_threads(n_threads) if ((size_t)n * len > 65536)
    for (int i = 0; i < n; i++)
        sotto__softmax(s + (size_t)i * ld, len);
}

/*
 * Attention of a single query (a decoder step): per head, scores against
 * the nk keys, softmax, weighted sum of the values.  Heads run in parallel;
 * scores holds H * nk floats.  Vector kernels instead of GEMM calls, since
 * OpenBLAS's per-call cost dominates products this small.
 */
static void attention_one(const float *q, const float *k, int ldk,
                          const float *v, int ldv, int nk, int d, int H,
                          float *scores, float *out, const int *cap_head,
                          float *cap_out, int n_threads)
{
    const int dh = d / H;
    const float scale = 1.0f / sqrtf((float)dh);

#pragma omp parallel for schedule(static) num_threads(n_threads) if ((size_t)nk * d > 32768)
    for (int h = 0; h < H; h++) {
        float *sc = scores + (size_t)h * nk;
        sotto__dots(q + h * dh, k + h * dh, ldk, nk, dh, scale, sc);
        if (cap_out != NULL && cap_head[h] >= 0)
            memcpy(cap_out + (size_t)cap_head[h] * nk, sc, (size_t)nk * sizeof *sc);
        sotto__softmax(sc, nk);
        sotto__weighted_sum(sc, v + h * dh, ldv, nk, dh, out + h * dh);
    }
}

/*
 * Multi-head attention of n queries against nk keys for one sequence:
 *   out[n, d] (head h in columns h·dh ..) = softmax(Q_h K_hᵀ / √dh + mask) V_h
 * q, k, v have row strides ldq, ldk, ldv.  With causal, query i may see keys
 * 0 .. first + i.  scores is [n, nk] scratch.  If cap_out is set, the
 * pre-softmax scores of head cap_head[h] >= 0 are copied to
 * cap_out + cap_head[h] * n * nk.
 */
static void attention(const float *q, int ldq, const float *k, int ldk,
                      const float *v, int ldv, int n, int nk, int d, int H,
                      int causal, int first, float *scores, float *out,
                      int ldo, const int *cap_head, float *cap_out,
                      int n_threads)
{
    const int dh = d / H;
    const float scale = 1.0f / sqrtf((float)dh);

    if (n == 1) {
        attention_one(q, k, ldk, v, ldv, causal ? first + 1 : nk, d, H,
                      scores, out, cap_head, cap_out, n_threads);
        return;
    }
    for (int h = 0; h < H; h++) {
        sotto__sgemm(1, n, nk, dh, scale, q + h * dh, ldq, k + h * dh, ldk,
                     0.0f, scores, nk);
        if (causal) {
            for (int i = 0; i < n; i++)
                for (int j = first + i + 1; j < nk; j++)
                    scores[(size_t)i * nk + j] = -INFINITY;
        }
        if (cap_out != NULL && cap_head[h] >= 0)
            memcpy(cap_out + (size_t)cap_head[h] * n * nk, scores,
                   (size_t)n * nk * sizeof *scores);
        softmax_rows(scores, n, nk, nk, n_threads);
        sotto__sgemm(0, n, dh, nk, 1.0f, scores, nk, v + h * dh, ldv, 0.0f,
                     out + h * dh, ldo);
    }
}

/*
 * Cross-attention of nq single queries (one per beam or candidate, rows of
 * q with stride d) against the same keys and values: scores for all
 * queries are computed in one pass over the keys.  scores holds
 * H * nq * nk floats; out is [nq, d].
 */
static void attention_shared_kv(const float *q, int nq, const float *k,
                                int ldk, const float *v, int ldv, int nk,
                                int d, int H, float *scores, float *out,
                                int n_threads)
{
    const int dh = d / H;
    const float scale = 1.0f / sqrtf((float)dh);

#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int h = 0; h < H; h++) {
        float *sc = scores + (size_t)h * nq * nk;
        sotto__dots_multi(q + h * dh, d, nq, k + h * dh, ldk, nk, dh, scale, sc);
        for (int s = 0; s < nq; s++) {
            sotto__softmax(sc + (size_t)s * nk, nk);
            sotto__weighted_sum(sc + (size_t)s * nk, v + h * dh, ldv, nk, dh,
                                out + (size_t)s * d + h * dh);
        }
    }
}

/* ---- state --------------------------------------------------------------- */

int sotto__infer_create(const struct sotto_model *m, int n_seq,
                        sotto__infer **out)
{
    sotto__infer *st;
    const size_t L = (size_t)m->n_text_layers, d = (size_t)m->d;

    *out = NULL;
    if (n_seq <= 0 || n_seq > 64)
        return SOTTO_EINVAL;
    st = calloc(1, sizeof *st);
    if (st == NULL)
        return SOTTO_ENOMEM;
    st->m = m;
    st->n_seq_cap = n_seq;
    st->self_k = calloc(L * (size_t)n_seq * m->n_text_ctx * d, sizeof(float));
    st->self_v = calloc(L * (size_t)n_seq * m->n_text_ctx * d, sizeof(float));
    if (st->self_k == NULL || st->self_v == NULL) {
        sotto__infer_destroy(st);
        return SOTTO_ENOMEM;
    }
    *out = st;
    return 0;
}

void sotto__infer_destroy(sotto__infer *st)
{
    if (st == NULL)
        return;
    free(st->enc_out);
    free(st->cross_k);
    free(st->cross_v);
    free(st->self_k);
    free(st->self_v);
    sotto__scratch_free(&st->wide);
    sotto__scratch_free(&st->work);
    sotto__scratch_free(&st->reorder);
    free(st);
}

/* Grows the per-window buffers to T positions. */
static int reserve_window(sotto__infer *st, int T)
{
    const struct sotto_model *m = st->m;
    const size_t d = (size_t)m->d, L = (size_t)m->n_text_layers;
    float *a, *b, *c;

    if (T <= st->T_cap)
        return 0;
    a = realloc(st->enc_out, (size_t)T * d * sizeof *a);
    if (a == NULL)
        return SOTTO_ENOMEM;
    st->enc_out = a;
    b = realloc(st->cross_k, L * (size_t)T * d * sizeof *b);
    if (b == NULL)
        return SOTTO_ENOMEM;
    st->cross_k = b;
    c = realloc(st->cross_v, L * (size_t)T * d * sizeof *c);
    if (c == NULL)
        return SOTTO_ENOMEM;
    st->cross_v = c;
    st->T_cap = T;
    return 0;
}

/* ---- encoder ------------------------------------------------------------- */

/*
 * The convolution stem: conv1 (kernel 3, stride 1, pad 1) and conv2 (kernel
 * 3, stride 2, pad 1), each followed by GELU, as im2col + GEMM.  Writes
 * x[T, d] with T = F / 2.
 */
static int conv_stem(sotto__infer *st, const float *mel, int stride, int F,
                     float *x, float *work)
{
    const struct sotto_model *m = st->m;
    const int M = m->n_mels, d = m->d, T = F / 2, nt = m->n_threads;
    float *col = work;                              /* [F, M*3] or [T, d*3] */
    float *h1 = work + (size_t)F * (size_t)(M > d ? M : d) * 3;   /* [F, d] */
    int rc;

#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < F; t++)
        for (int c = 0; c < M; c++)
            for (int k = 0; k < 3; k++) {
                int src = t + k - 1;
                col[((size_t)t * M + c) * 3 + k] =
                    (src >= 0 && src < F) ? mel[(size_t)c * stride + src] : 0.0f;
            }
    if ((rc = sotto__linear(col, F, &m->conv1, m->conv1_b, h1, &st->wide, nt)))
        return rc;
    gelu(h1, (size_t)F * d, nt);

#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < T; t++)
        for (int c = 0; c < d; c++)
            for (int k = 0; k < 3; k++) {
                int src = 2 * t + k - 1;
                col[((size_t)t * d + c) * 3 + k] =
                    (src >= 0 && src < F) ? h1[(size_t)src * d + c] : 0.0f;
            }
    if ((rc = sotto__linear(col, T, &m->conv2, m->conv2_b, x, &st->wide, nt)))
        return rc;
    gelu(x, (size_t)T * d, nt);
    add_inplace(x, m->enc_pos, (size_t)T * d);
    return 0;
}

/* One encoder layer, in place on x[T, d]. */
static int encoder_layer(sotto__infer *st, const sotto__enc_layer *l, float *x,
                         int T, float *h, float *qkv, float *att, float *ffn,
                         float *scores)
{
    const struct sotto_model *m = st->m;
    const int d = m->d, nt = m->n_threads;
    int rc;

    layer_norm(x, T, d, l->attn_ln_g, l->attn_ln_b, h, nt);
    if ((rc = sotto__linear(h, T, &l->attn_qkv, l->attn_qkv_b, qkv, &st->wide, nt)))
        return rc;
    attention(qkv, 3 * d, qkv + d, 3 * d, qkv + 2 * d, 3 * d, T, T, d,
              m->n_heads, 0, 0, scores, att, d, NULL, NULL, nt);
    if ((rc = sotto__linear(att, T, &l->attn_out, l->attn_out_b, h, &st->wide, nt)))
        return rc;
    add_inplace(x, h, (size_t)T * d);

    layer_norm(x, T, d, l->ffn_ln_g, l->ffn_ln_b, h, nt);
    if ((rc = sotto__linear(h, T, &l->ffn_up, l->ffn_up_b, ffn, &st->wide, nt)))
        return rc;
    gelu(ffn, (size_t)T * m->n_ffn, nt);
    if ((rc = sotto__linear(ffn, T, &l->ffn_down, l->ffn_down_b, h, &st->wide, nt)))
        return rc;
    add_inplace(x, h, (size_t)T * d);
    return 0;
}

int sotto__encode(sotto__infer *st, const float *mel, int stride, int n_frames)
{
    const struct sotto_model *m = st->m;
    const int d = m->d, T = n_frames / 2, nt = m->n_threads;
    const size_t Td = (size_t)T * d;
    size_t stem, layer, need;
    float *w, *x;
    int rc;

    if (n_frames <= 0 || n_frames % 2 != 0 || T > m->n_audio_ctx ||
        stride < n_frames)
        return SOTTO_EINVAL;
    if ((rc = reserve_window(st, T)) != 0)
        return rc;

    /* Work layout: x [T, d] then either the stem's im2col and conv1 output
     * or a layer's h, qkv, att, ffn and one head's scores. */
    stem = (size_t)n_frames * (size_t)(m->n_mels > d ? m->n_mels : d) * 3 +
           (size_t)n_frames * d;
    layer = Td + 3 * Td + Td + (size_t)T * m->n_ffn +
            (size_t)(T > m->n_heads ? T : m->n_heads) * T;
    need = Td + (stem > layer ? stem : layer);
    if ((w = sotto__scratch_get(&st->work, need)) == NULL)
        return SOTTO_ENOMEM;
    x = w;
    if ((rc = conv_stem(st, mel, stride, n_frames, x, w + Td)) != 0)
        return rc;
    for (int i = 0; i < m->n_audio_layers; i++) {
        float *h = w + Td, *qkv = h + Td, *att = qkv + 3 * Td;
        float *ffn = att + Td, *scores = ffn + (size_t)T * m->n_ffn;
        if ((rc = encoder_layer(st, &m->enc[i], x, T, h, qkv, att, ffn, scores)))
            return rc;
    }
    layer_norm(x, T, d, m->enc_ln_g, m->enc_ln_b, st->enc_out, nt);
    st->T = T;

    /* Cross-attention K and V of every decoder layer, once per window. */
    for (int l = 0; l < m->n_text_layers; l++) {
        const sotto__dec_layer *dl = &m->dec[l];
        float *kv = w;                                  /* [T, 2d] */
        float *ck = st->cross_k + (size_t)l * T * d;
        float *cv = st->cross_v + (size_t)l * T * d;
        if ((rc = sotto__linear(st->enc_out, T, &dl->cross_kv, dl->cross_kv_b,
                                kv, &st->wide, nt)))
            return rc;
        for (int t = 0; t < T; t++) {
            memcpy(ck + (size_t)t * d, kv + (size_t)t * 2 * d, (size_t)d * sizeof *kv);
            memcpy(cv + (size_t)t * d, kv + (size_t)t * 2 * d + d, (size_t)d * sizeof *kv);
        }
    }
    st->len = 0;
    return 0;
}

/* ---- decoder ------------------------------------------------------------- */

static float *self_k_at(sotto__infer *st, int l, int s)
{
    const struct sotto_model *m = st->m;
    return st->self_k + (((size_t)l * st->n_seq_cap + s) * m->n_text_ctx) * m->d;
}

static float *self_v_at(sotto__infer *st, int l, int s)
{
    const struct sotto_model *m = st->m;
    return st->self_v + (((size_t)l * st->n_seq_cap + s) * m->n_text_ctx) * m->d;
}

/* Causal self-attention of layer l over the cache plus n new tokens per
 * sequence; x[S*n, d] in place. */
static int decoder_self_attention(sotto__infer *st, int l, int S, int n,
                                  float *x, float *h, float *qkv, float *att,
                                  float *scores)
{
    const struct sotto_model *m = st->m;
    const sotto__dec_layer *dl = &m->dec[l];
    const int d = m->d, nt = m->n_threads, rows = S * n, nk = st->len + n;
    int rc;

    layer_norm(x, rows, d, dl->self_ln_g, dl->self_ln_b, h, nt);
    if ((rc = sotto__linear(h, rows, &dl->self_qkv, dl->self_qkv_b, qkv, &st->wide, nt)))
        return rc;
    for (int s = 0; s < S; s++) {
        float *kc = self_k_at(st, l, s), *vc = self_v_at(st, l, s);
        for (int i = 0; i < n; i++) {
            const float *r = qkv + ((size_t)s * n + i) * 3 * d;
            memcpy(kc + (size_t)(st->len + i) * d, r + d, (size_t)d * sizeof *r);
            memcpy(vc + (size_t)(st->len + i) * d, r + 2 * d, (size_t)d * sizeof *r);
        }
        attention(qkv + (size_t)s * n * 3 * d, 3 * d, kc, d, vc, d, n, nk, d,
                  m->n_heads, 1, st->len, scores, att + (size_t)s * n * d, d,
                  NULL, NULL, nt);
    }
    if ((rc = sotto__linear(att, rows, &dl->self_out, dl->self_out_b, h, &st->wide, nt)))
        return rc;
    add_inplace(x, h, (size_t)rows * d);
    return 0;
}

/* Cross-attention of layer l over the encoder output; x[S*n, d] in place. */
static int decoder_cross_attention(sotto__infer *st, int l, int S, int n,
                                   float *x, float *h, float *q, float *att,
                                   float *scores,
                                   const sotto__attn_capture *cap)
{
    const struct sotto_model *m = st->m;
    const sotto__dec_layer *dl = &m->dec[l];
    const int d = m->d, nt = m->n_threads, rows = S * n, T = st->T;
    const float *ck = st->cross_k + (size_t)l * T * d;
    const float *cv = st->cross_v + (size_t)l * T * d;
    int cap_head[SOTTO__MAX_ALIGNMENT_HEADS];
    int any = 0, rc;

    for (int hh = 0; hh < m->n_heads && hh < SOTTO__MAX_ALIGNMENT_HEADS; hh++)
        cap_head[hh] = -1;
    for (int i = 0; cap != NULL && i < cap->n_heads; i++)
        if (cap->heads[i][0] == l && cap->heads[i][1] < m->n_heads) {
            cap_head[cap->heads[i][1]] = i;
            any = 1;
        }

    layer_norm(x, rows, d, dl->cross_ln_g, dl->cross_ln_b, h, nt);
    if ((rc = sotto__linear(h, rows, &dl->cross_q, dl->cross_q_b, q, &st->wide, nt)))
        return rc;
    if (n == 1 && S > 1 && !any)
        attention_shared_kv(q, S, ck, d, cv, d, T, d, m->n_heads, scores, att, nt);
    else
        for (int s = 0; s < S; s++)
            attention(q + (size_t)s * n * d, d, ck, d, cv, d, n, T, d,
                      m->n_heads, 0, 0, scores, att + (size_t)s * n * d, d,
                      cap_head, any ? cap->out : NULL, nt);
    if ((rc = sotto__linear(att, rows, &dl->cross_out, dl->cross_out_b, h, &st->wide, nt)))
        return rc;
    add_inplace(x, h, (size_t)rows * d);
    return 0;
}

static int decoder_ffn(sotto__infer *st, const sotto__dec_layer *dl, int rows,
                       float *x, float *h, float *ffn)
{
    const struct sotto_model *m = st->m;
    const int d = m->d, nt = m->n_threads;
    int rc;

    layer_norm(x, rows, d, dl->ffn_ln_g, dl->ffn_ln_b, h, nt);
    if ((rc = sotto__linear(h, rows, &dl->ffn_up, dl->ffn_up_b, ffn, &st->wide, nt)))
        return rc;
    gelu(ffn, (size_t)rows * m->n_ffn, nt);
    if ((rc = sotto__linear(ffn, rows, &dl->ffn_down, dl->ffn_down_b, h, &st->wide, nt)))
        return rc;
    add_inplace(x, h, (size_t)rows * d);
    return 0;
}

/* The body of sotto__decode() and sotto__decode_rows(): with all_rows,
 * logits are written for every new token of the one sequence. */
static int decode_tokens(sotto__infer *st, int n_seq, int n_tok,
                         const int *tokens, float *logits, int all_rows,
                         const sotto__attn_capture *cap)
{
    const struct sotto_model *m = st->m;
    const int d = m->d, rows = n_seq * n_tok, nt = m->n_threads;
    const int nk_max = st->len + n_tok > st->T ? st->len + n_tok : st->T;
    const size_t rd = (size_t)rows * d;
    /* Score rows: n_tok queries of one sequence at a time, or one query per
     * head for every sequence at once. */
    const size_t score_rows = (size_t)(n_tok > m->n_heads * n_seq ? n_tok
                                                                 : m->n_heads * n_seq);
    float *w, *x, *h, *qkv, *att, *ffn, *scores, *last;
    int rc;

    if (n_seq <= 0 || n_seq > st->n_seq_cap || n_tok <= 0 || st->T <= 0 ||
        (cap != NULL && n_seq != 1))
        return SOTTO_EINVAL;
    if (st->len + n_tok > m->n_text_ctx)
        return SOTTO_EINVAL;
    for (int i = 0; i < rows; i++)
        if (tokens[i] < 0 || tokens[i] >= m->n_vocab)
            return SOTTO_EINVAL;

    w = sotto__scratch_get(&st->work, rd * 6 + (size_t)rows * m->n_ffn +
                                          score_rows * nk_max +
                                          (size_t)n_seq * d);
    if (w == NULL)
        return SOTTO_ENOMEM;
    x = w;
    h = x + rd;
    qkv = h + rd;                  /* [rows, 3d] */
    att = qkv + 3 * rd;
    ffn = att + rd;                /* [rows, F] */
    scores = ffn + (size_t)rows * m->n_ffn;
    last = scores + score_rows * nk_max;

    /* Token embeddings plus learned positions. */
    for (int s = 0; s < n_seq; s++)
        for (int i = 0; i < n_tok; i++) {
            float *xr = x + ((size_t)s * n_tok + i) * d;
            sotto__weight_rows(&m->tok_emb, tokens[s * n_tok + i], 1, xr);
            add_inplace(xr, m->dec_pos + (size_t)(st->len + i) * d, (size_t)d);
        }

    for (int l = 0; l < m->n_text_layers; l++) {
        if ((rc = decoder_self_attention(st, l, n_seq, n_tok, x, h, qkv, att, scores)))
            return rc;
        if ((rc = decoder_cross_attention(st, l, n_seq, n_tok, x, h, qkv, att,
                                          scores, cap)))
            return rc;
        if ((rc = decoder_ffn(st, &m->dec[l], rows, x, h, ffn)))
            return rc;
    }
    st->len += n_tok;

    if (logits != NULL && all_rows) {
        /* Every position's logits: one product of [n_tok, d] with the
         * embedding, which reads the vocabulary once for all rows. */
        layer_norm(x, n_tok, d, m->dec_ln_g, m->dec_ln_b, h, nt);
        if ((rc = sotto__linear(h, n_tok, &m->tok_emb, NULL, logits,
                                &st->wide, nt)))
            return rc;
    } else if (logits != NULL) {
        for (int s = 0; s < n_seq; s++)
            layer_norm(x + ((size_t)s * n_tok + n_tok - 1) * d, 1, d,
                       m->dec_ln_g, m->dec_ln_b, last + (size_t)s * d, 1);
        if ((rc = sotto__linear(last, n_seq, &m->tok_emb, NULL, logits,
                                &st->wide, nt)))
            return rc;
    }
    return 0;
}

int sotto__decode(sotto__infer *st, int n_seq, int n_tok, const int *tokens,
                  float *logits, const sotto__attn_capture *cap)
{
    return decode_tokens(st, n_seq, n_tok, tokens, logits, 0, cap);
}

int sotto__decode_rows(sotto__infer *st, int n_tok, const int *tokens,
                       float *logits, const sotto__attn_capture *cap)
{
    return decode_tokens(st, 1, n_tok, tokens, logits, 1, cap);
}

int sotto__decode_reorder(sotto__infer *st, int n_seq, const int *src)
{
    const struct sotto_model *m = st->m;
    const size_t row = (size_t)st->len * m->d;
    int need[64], n_need = 0, slot[64];
    float *tmp;

    if (n_seq <= 0 || n_seq > st->n_seq_cap)
        return SOTTO_EINVAL;
    for (int s = 0; s < n_seq; s++)
        if (src[s] < 0 || src[s] >= st->n_seq_cap)
            return SOTTO_EINVAL;
    if (row == 0)
        return 0;
    /* Only sequences that take another's cache move; the caches they read
     * are saved first, since a move may overwrite one. */
    for (int s = 0; s < st->n_seq_cap; s++)
        slot[s] = -1;
    for (int s = 0; s < n_seq; s++)
        if (src[s] != s && slot[src[s]] < 0) {
            slot[src[s]] = n_need;
            need[n_need++] = src[s];
        }
    if (n_need == 0)
        return 0;
    tmp = sotto__scratch_get(&st->reorder, 2 * (size_t)n_need * row *
                                                (size_t)m->n_text_layers);
    if (tmp == NULL)
        return SOTTO_ENOMEM;
    for (int l = 0; l < m->n_text_layers; l++)
        for (int i = 0; i < n_need; i++) {
            float *t = tmp + ((size_t)l * n_need + i) * 2 * row;
            memcpy(t, self_k_at(st, l, need[i]), row * sizeof *t);
            memcpy(t + row, self_v_at(st, l, need[i]), row * sizeof *t);
        }
    for (int l = 0; l < m->n_text_layers; l++)
        for (int s = 0; s < n_seq; s++) {
            const float *t;
            if (src[s] == s)
                continue;
            t = tmp + ((size_t)l * n_need + slot[src[s]]) * 2 * row;
            memcpy(self_k_at(st, l, s), t, row * sizeof *t);
            memcpy(self_v_at(st, l, s), t + row, row * sizeof *t);
        }
    return 0;
}

void sotto__decode_truncate(sotto__infer *st, int len)
{
    if (len >= 0 && len < st->len)
        st->len = len;
}
