/*
 * vec.h - vector kernels of the engine that are not matrix products
 * (internal): the softmax and the single-query attention of the decoder.
 *
 * Each kernel has an AVX2+FMA version chosen at run time and a portable one.
 * The AVX2 exp is a Cephes-style polynomial with a relative error below
 * 2e-7 over the range a softmax uses, which is what CTranslate2's
 * vectorised exp also provides; results therefore differ from libm's expf
 * in the last bits only.
 */
#ifndef SOTTO_VEC_H
#define SOTTO_VEC_H

/* 1 when the AVX2/FMA/F16C kernels can run on this CPU. */
int sotto__cpu_has_avx2(void);

#include <stddef.h>

/* In place: x = GELU(x) = 0.5 x (1 + erf(x / √2)), the exact (erf) form;
 * the AVX2 erf has an absolute error below 1.5e-7. */
void sotto__gelu(float *x, size_t n);

/* log(sum(exp(x[i]))) over n values; -INFINITY when all are. */
double sotto__logsumexp(const float *x, int n);

/* In place: x[0 .. n) = softmax(x).  -INFINITY entries become 0; n > 0 and
 * at least one entry must be finite. */
void sotto__softmax(float *x, int n);

/* out[j] = alpha * (q · k_j) for j < n, k_j = k + j * ldk, vectors of dh. */
void sotto__dots(const float *q, const float *k, int ldk, int n, int dh,
                 float alpha, float *out);

/* The same for nq queries q_s = q + s * ldq sharing the keys:
 * out[s * n + j] = alpha * (q_s · k_j).  Each key is read once. */
void sotto__dots_multi(const float *q, int ldq, int nq, const float *k,
                       int ldk, int n, int dh, float alpha, float *out);

/* out[0 .. dh) = sum over j < n of p[j] * v_j, v_j = v + j * ldv. */
void sotto__weighted_sum(const float *p, const float *v, int ldv, int n,
                         int dh, float *out);

#endif
