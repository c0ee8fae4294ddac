/*
 * simd.h - small AVX2 helpers shared by the vector kernels (internal).
 *
 * Included only by files that compile AVX2 code behind target attributes
 * and check sotto__cpu_has_avx2() (vec.h) before calling it.
 */
#ifndef SOTTO_SIMD_H
#define SOTTO_SIMD_H

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SOTTO__HAVE_X86 1

/* The sum of the eight lanes of v. */
__attribute__((target("avx2,fma"), always_inline))
static inline float sotto__hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}
#else
#define SOTTO__HAVE_X86 0
#endif

#endif
