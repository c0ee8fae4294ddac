/*
 * gemm.h - the single GEMM boundary of the engine (internal).
 *
 * Every matrix product of the encoder and decoder goes through this file,
 * so the choice of kernel, the handling of float16 weights and the thread
 * count live in one place:
 *
 * - Large products (M > SOTTO__SMALL_M rows of activations) widen the
 *   float16 weight, SOTTO__WIDE_BLOCK floats at a time, into a float32
 *   scratch buffer and hand each block to OpenBLAS cblas_sgemm.  Widening
 *   costs one pass over the weight; for the encoder it is under 1 % of the
 *   product's time.
 * - Small products (the decoder's per-token steps, M <= SOTTO__SMALL_M) are
 *   memory-bound: there the weight is read once, converted 8 lanes at a
 *   time with F16C and multiplied with FMA, without a float32 copy.  This
 *   halves the bytes read per token against float32 weights.
 *
 * Weights are never copied to float32 for the life of the model; the only
 * float32 weight memory is the per-call scratch of one block.
 */
#ifndef SOTTO_GEMM_H
#define SOTTO_GEMM_H

#include <stddef.h>

#include "engine/model.h"

/* Rows of activations up to which the direct float16 kernel is used. */
#define SOTTO__SMALL_M 8

/* Floats of float16 weight widened per OpenBLAS call on the large path
 * (4 MiB of float32): the largest encoder matrix (1536 x 384 for tiny) fits
 * in one block; the vocabulary is done in about ten. */
#define SOTTO__WIDE_BLOCK (1 << 20)

/* A growable float32 buffer owned by one inference state. */
typedef struct sotto__scratch {
    float *buf;
    size_t cap;              /* in floats */
} sotto__scratch;

/* Returns a buffer of at least n floats (contents undefined), or NULL. */
float *sotto__scratch_get(sotto__scratch *s, size_t n);
void sotto__scratch_free(sotto__scratch *s);

/* Converts n values of dtype (F16 or F32) from possibly unaligned src. */
void sotto__to_f32(const void *src, int dtype, float *dst, size_t n);

/* Copies rows [row, row + n) of w, widened, into dst ([n, cols]). */
void sotto__weight_rows(const sotto__weight *w, int row, int n, float *dst);

/*
 * y[M, N] = x[M, K] · Wᵀ + b, with W stored [N, K] (a linear layer).  b may
 * be NULL.  x and y must not overlap.  Returns 0 or SOTTO_ENOMEM.
 */
int sotto__linear(const float *x, int M, const sotto__weight *W,
                  const float *b, float *y, sotto__scratch *s, int n_threads);

/*
 * C[M, N] = alpha · A[M, K] · op(B) + beta · C, float32 row-major with
 * leading dimensions; op(B) is B[K, N] or, with trans_b, Bᵀ of B[N, K].
 * This is the attention products' entry to OpenBLAS.
 */
void sotto__sgemm(int trans_b, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc);

/* Sets OpenBLAS's (process-wide) thread count. */
void sotto__gemm_set_threads(int n);

#endif
