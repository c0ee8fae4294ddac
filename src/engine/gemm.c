/*
 * gemm.c - the single GEMM boundary: float16 widening, OpenBLAS sgemm for
 * large products and an F16C/FMA kernel for the decoder's small ones.
 *
 * See gemm.h for the contract and the memory trade-off.  The vector kernels
 * are compiled for AVX2+FMA+F16C with a target attribute and chosen at run
 * time; other x86-64 CPUs (and other architectures) take the portable
 * path, which gives the same results up to float rounding.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "common/common.h"
#include "engine/gemm.h"
#include "engine/simd.h"
#include "engine/vec.h"


float *sotto__scratch_get(sotto__scratch *s, size_t n)
{
    if (n > s->cap) {
        float *p = realloc(s->buf, n * sizeof *p);
        if (p == NULL)
            return NULL;
        s->buf = p;
        s->cap = n;
    }
    return s->buf;
}

void sotto__scratch_free(sotto__scratch *s)
{
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
}

/* IEEE 754 half to single, for the portable path. */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    float f;

    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {                 /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while ((man & 0x400u) == 0) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ffu;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

static int cpu_has_f16c_fma(void)
{
    return sotto__cpu_has_avx2();
}

#if SOTTO__HAVE_X86
__attribute__((target("avx2,fma,f16c")))
static void f16_to_f32_x86(const unsigned char *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        dst[i] = _cvtsh_ss(h);
    }
}
#endif

void sotto__to_f32(const void *src, int dtype, float *dst, size_t n)
{
    const unsigned char *p = src;

    if (dtype == SOTTO__DT_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
#if SOTTO__HAVE_X86
    if (cpu_has_f16c_fma()) {
        f16_to_f32_x86(p, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = half_to_float(h);
    }
}

static size_t dtype_size(int dtype)
{
    return dtype == SOTTO__DT_F32 ? 4 : 2;
}

void sotto__weight_rows(const sotto__weight *w, int row, int n, float *dst)
{
    const unsigned char *p = w->data;
    size_t off = (size_t)row * (size_t)w->cols * dtype_size(w->dtype);
    sotto__to_f32(p + off, w->dtype, dst, (size_t)n * (size_t)w->cols);
}

/*
 * The small-M kernel: for each output column n (a weight row), the weight
 * row is converted once and dotted with all M activation rows.  Columns are
 * split across threads.
 */
#if SOTTO__HAVE_X86
/* One weight row against M activation rows: out[m] = x[m] · row.  Kept
 * out of line so that no vector value crosses into the OpenMP region
 * (clang outlines parallel loops without the target attribute). */
__attribute__((target("avx2,fma,f16c"), always_inline))
static inline __m256 load8(const unsigned char *row, int f16, int k)
{
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128(
                     (const __m128i *)(const void *)(row + 2 * (size_t)k)))
               : _mm256_loadu_ps((const float *)(const void *)(row + 4 * (size_t)k));
}

/* One weight row against M activation rows: out[m] = x[m] · row.  Kept
 * out of line so that no vector value crosses into the OpenMP region
 * (clang outlines parallel loops without the target attribute).  Up to 4
 * rows use two accumulators each, so the FMA latency chain is halved. */
__attribute__((target("avx2,fma,f16c"), noinline))
static void row_dots_x86(const unsigned char *row, int f16, const float *x,
                         int M, int K, float *out)
{
    __m256 acc[SOTTO__SMALL_M], acc2[4];
    float tail[SOTTO__SMALL_M];
    int k = 0;

    for (int m = 0; m < M; m++) {
        acc[m] = _mm256_setzero_ps();
        tail[m] = 0.0f;
    }
    if (M <= 4) {
        for (int m = 0; m < M; m++)
            acc2[m] = _mm256_setzero_ps();
        for (; k + 16 <= K; k += 16) {
            __m256 w0 = load8(row, f16, k), w1 = load8(row, f16, k + 8);
            for (int m = 0; m < M; m++) {
                const float *xm = x + (size_t)m * K + k;
                acc[m] = _mm256_fmadd_ps(_mm256_loadu_ps(xm), w0, acc[m]);
                acc2[m] = _mm256_fmadd_ps(_mm256_loadu_ps(xm + 8), w1, acc2[m]);
            }
        }
        for (int m = 0; m < M; m++)
            acc[m] = _mm256_add_ps(acc[m], acc2[m]);
    }
    for (; k + 8 <= K; k += 8) {
        __m256 w = load8(row, f16, k);
        for (int m = 0; m < M; m++)
            acc[m] = _mm256_fmadd_ps(_mm256_loadu_ps(x + (size_t)m * K + k), w, acc[m]);
    }
    for (; k < K; k++) {
        float w;
        if (f16) {
            uint16_t h;
            memcpy(&h, row + 2 * (size_t)k, 2);
            w = _cvtsh_ss(h);
        } else {
            memcpy(&w, row + 4 * (size_t)k, 4);
        }
        for (int m = 0; m < M; m++)
            tail[m] += x[(size_t)m * K + k] * w;
    }
    for (int m = 0; m < M; m++)
        out[m] = sotto__hsum256(acc[m]) + tail[m];
}

static void small_m_x86(const float *x, int M, const sotto__weight *W,
                        const float *b, float *y, int n_threads)
{
    const int N = W->rows, K = W->cols;
    const unsigned char *base = W->data;
    const size_t es = dtype_size(W->dtype);
    const int f16 = W->dtype == SOTTO__DT_F16;

#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int n = 0; n < N; n++) {
        float out[SOTTO__SMALL_M];
        row_dots_x86(base + (size_t)n * (size_t)K * es, f16, x, M, K, out);
        for (int m = 0; m < M; m++)
            y[(size_t)m * N + n] = out[m] + (b ? b[n] : 0.0f);
    }
}
#endif

static void small_m_portable(const float *x, int M, const sotto__weight *W,
                             const float *b, float *y, int n_threads)
{
    const int N = W->rows, K = W->cols;

#pragma omp parallel num_threads(n_threads)
    {
        float *wrow = malloc((size_t)K * sizeof *wrow);
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            if (wrow == NULL)
                continue;
            sotto__weight_rows(W, n, 1, wrow);
            for (int m = 0; m < M; m++) {
                float acc = b ? b[n] : 0.0f;
                for (int k = 0; k < K; k++)
                    acc += x[(size_t)m * K + k] * wrow[k];
                y[(size_t)m * N + n] = acc;
            }
        }
        free(wrow);
    }
}

int sotto__linear(const float *x, int M, const sotto__weight *W,
                  const float *b, float *y, sotto__scratch *s, int n_threads)
{
    const int N = W->rows, K = W->cols;
    const float *wf;

    if (M <= 0)
        return 0;
    if (M <= SOTTO__SMALL_M) {
#if SOTTO__HAVE_X86
        if (cpu_has_f16c_fma()) {
            small_m_x86(x, M, W, b, y, n_threads);
            return 0;
        }
#endif
        small_m_portable(x, M, W, b, y, n_threads);
        return 0;
    }

    if (b != NULL) {
        for (int m = 0; m < M; m++)
            memcpy(y + (size_t)m * N, b, (size_t)N * sizeof *y);
    }
    if (W->dtype == SOTTO__DT_F32 && ((uintptr_t)W->data % sizeof(float)) == 0) {
        wf = W->data;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K,
                    wf, K, b != NULL ? 1.0f : 0.0f, y, N);
        return 0;
    }
    /* Widen and multiply SOTTO__WIDE_BLOCK floats of the weight at a time:
     * the scratch stays small (the vocabulary would need 76 MB at once)
     * and each widened block is still in cache when OpenBLAS reads it. */
    {
        const int nb = K >= SOTTO__WIDE_BLOCK ? 1 : SOTTO__WIDE_BLOCK / K;
        const size_t es = dtype_size(W->dtype);
        float *tmp = sotto__scratch_get(s, (size_t)(nb < N ? nb : N) * (size_t)K);

        if (tmp == NULL)
            return SOTTO_ENOMEM;
        for (int n0 = 0; n0 < N; n0 += nb) {
            const int n = N - n0 < nb ? N - n0 : nb;
            sotto__to_f32((const unsigned char *)W->data + (size_t)n0 * K * es,
                          W->dtype, tmp, (size_t)n * (size_t)K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, n, K, 1.0f,
                        x, K, tmp, K, b != NULL ? 1.0f : 0.0f, y + n0, N);
        }
    }
    return 0;
}

void sotto__sgemm(int trans_b, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sotto__gemm_set_threads(int n)
{
    openblas_set_num_threads(n);
}
