/*
 * vec.c - vector kernels: CPU feature probe, softmax with a vectorised exp,
 * and the dot products and weighted sums of single-query attention.
 *
 * See vec.h.  The AVX2 paths are compiled with target attributes and taken
 * only when sotto__cpu_has_avx2() says the CPU and OS support them.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "engine/vec.h"

#include "engine/simd.h"
#if SOTTO__HAVE_X86
#include <cpuid.h>
#endif

/*
 * AVX2, FMA and F16C, and an OS that saves the AVX registers.  Read with
 * cpuid directly: clang 14's __builtin_cpu_supports() does not know f16c.
 */
static int probe(void)
{
#if SOTTO__HAVE_X86
    unsigned a, b, c, d, lo, hi;

    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (!(c & (1u << 12)) || !(c & (1u << 29)) || !(c & (1u << 27)) ||
        !(c & (1u << 28)))
        return 0;                       /* FMA, F16C, OSXSAVE, AVX */
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6u) != 6u)
        return 0;                       /* XMM and YMM state enabled */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (b & (1u << 5)) != 0;        /* AVX2 */
#else
    return 0;
#endif
}

/* The probe runs once per process (cpuid can trap to the hypervisor, so it
 * is too slow to repeat per call).  The cached value is a fact about the
 * hardware, written once under pthread_once, not mutable state. */
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static int cpu_avx2;

static void probe_once(void)
{
    cpu_avx2 = probe();
}

int sotto__cpu_has_avx2(void)
{
    pthread_once(&cpu_once, probe_once);
    return cpu_avx2;
}

#if SOTTO__HAVE_X86
/* e^x for 8 lanes: x = n ln2 + r with |r| <= ln2 / 2, e^r by a degree-6
 * polynomial (Cephes expf coefficients), 2^n built in the exponent bits.
 * Inputs below -87.3 give 0; the softmax never feeds values above 0. */
__attribute__((target("avx2,fma"), always_inline))
static inline __m256 exp256(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.3f), hi = _mm256_set1_ps(88.3f);
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 c1 = _mm256_set1_ps(0.693359375f);
    const __m256 c2 = _mm256_set1_ps(-2.12194440e-4f);
    __m256 n, r, p, under;
    __m256i e;

    under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    n = _mm256_round_ps(_mm256_mul_ps(x, log2e),
                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_fnmadd_ps(n, c1, x);
    r = _mm256_fnmadd_ps(n, c2, r);
    p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n),
                                           _mm256_set1_epi32(127)), 23);
    p = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, p);
}

__attribute__((target("avx2,fma")))
static void softmax_x86(float *x, int n)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY), vsum = _mm256_setzero_ps();
    float mx = -INFINITY, sum = 0.0f, inv;
    int i = 0;

    for (; i + 8 <= n; i += 8)
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    {
        float t[8];
        _mm256_storeu_ps(t, vmax);
        for (int j = 0; j < 8; j++)
            mx = t[j] > mx ? t[j] : mx;
    }
    for (; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    {
        const __m256 m8 = _mm256_set1_ps(mx);
        for (i = 0; i + 8 <= n; i += 8) {
            __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), m8));
            _mm256_storeu_ps(x + i, e);
            vsum = _mm256_add_ps(vsum, e);
        }
    }
    sum = sotto__hsum256(vsum);
    for (; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    inv = 1.0f / sum;
    {
        const __m256 i8 = _mm256_set1_ps(inv);
        for (i = 0; i + 8 <= n; i += 8)
            _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), i8));
    }
    for (; i < n; i++)
        x[i] *= inv;
}

__attribute__((target("avx2,fma")))
static void dots_x86(const float *q, const float *k, int ldk, int n, int dh,
                     float alpha, float *out)
{
    for (int j = 0; j < n; j++) {
        const float *kj = k + (size_t)j * ldk;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        float t = 0.0f;
        int d = 0;
        for (; d + 16 <= dh; d += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kj + d), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), _mm256_loadu_ps(kj + d + 8), a1);
        }
        for (; d < dh; d++)
            t += q[d] * kj[d];
        out[j] = alpha * (sotto__hsum256(_mm256_add_ps(a0, a1)) + t);
    }
}

/* Whisper's 64-wide heads: each key row is loaded once into eight
 * registers and dotted with every query. */
__attribute__((target("avx2,fma")))
static void dots_multi64_x86(const float *q, int ldq, int nq, const float *k,
                             int ldk, int n, float alpha, float *out)
{
    for (int j = 0; j < n; j++) {
        const float *kj = k + (size_t)j * ldk;
        __m256 kr[8];
        for (int i = 0; i < 8; i++)
            kr[i] = _mm256_loadu_ps(kj + 8 * i);
        for (int s = 0; s < nq; s++) {
            const float *qs = q + (size_t)s * ldq;
            __m256 a0 = _mm256_mul_ps(_mm256_loadu_ps(qs), kr[0]);
            __m256 a1 = _mm256_mul_ps(_mm256_loadu_ps(qs + 8), kr[1]);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qs + 16), kr[2], a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qs + 24), kr[3], a1);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qs + 32), kr[4], a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qs + 40), kr[5], a1);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qs + 48), kr[6], a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qs + 56), kr[7], a1);
            out[(size_t)s * n + j] = alpha * sotto__hsum256(_mm256_add_ps(a0, a1));
        }
    }
}

__attribute__((target("avx2,fma")))
static void weighted_sum_x86(const float *p, const float *v, int ldv, int n,
                             int dh, float *out)
{
    int d = 0;

    /* Whisper's heads are 64 wide: one pass over the rows with the whole
     * output in eight registers. */
    if (dh == 64) {
        __m256 a[8];
        for (int i = 0; i < 8; i++)
            a[i] = _mm256_setzero_ps();
        for (int j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * ldv;
            const __m256 pj = _mm256_set1_ps(p[j]);
            for (int i = 0; i < 8; i++)
                a[i] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * i), a[i]);
        }
        for (int i = 0; i < 8; i++)
            _mm256_storeu_ps(out + 8 * i, a[i]);
        return;
    }
    for (; d + 8 <= dh; d += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int j = 0; j < n; j++)
            acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]),
                                  _mm256_loadu_ps(v + (size_t)j * ldv + d), acc);
        _mm256_storeu_ps(out + d, acc);
    }
    for (; d < dh; d++) {
        float acc = 0.0f;
        for (int j = 0; j < n; j++)
            acc += p[j] * v[(size_t)j * ldv + d];
        out[d] = acc;
    }
}

/* GELU(x) = 0.5 x (1 + erf(x / √2)), erf by Abramowitz and Stegun 7.1.26
 * (absolute error below 1.5e-7) on |x|, with the sign restored. */
__attribute__((target("avx2,fma")))
static void gelu_x86(float *x, size_t n)
{
    const __m256 sgn = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    const __m256 half = _mm256_set1_ps(0.5f), rs2 = _mm256_set1_ps(0.70710678118654752f);
    const __m256 pp = _mm256_set1_ps(0.3275911f);
    const __m256 a1 = _mm256_set1_ps(0.254829592f), a2 = _mm256_set1_ps(-0.284496736f);
    const __m256 a3 = _mm256_set1_ps(1.421413741f), a4 = _mm256_set1_ps(-1.453152027f);
    const __m256 a5 = _mm256_set1_ps(1.061405429f);
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 z = _mm256_mul_ps(v, rs2);
        __m256 az = _mm256_andnot_ps(sgn, z);
        __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(pp, az, one));
        __m256 poly = _mm256_fmadd_ps(a5, t, a4);
        poly = _mm256_fmadd_ps(poly, t, a3);
        poly = _mm256_fmadd_ps(poly, t, a2);
        poly = _mm256_fmadd_ps(poly, t, a1);
        poly = _mm256_mul_ps(poly, t);
        __m256 e = exp256(_mm256_xor_ps(_mm256_mul_ps(az, az), sgn));
        __m256 erf_abs = _mm256_fnmadd_ps(poly, e, one);
        __m256 erf = _mm256_or_ps(erf_abs, _mm256_and_ps(z, sgn));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v),
                                              _mm256_add_ps(one, erf)));
    }
    for (; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}
#endif

#if SOTTO__HAVE_X86
__attribute__((target("avx2,fma")))
static double logsumexp_x86(const float *x, int n)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY), vsum = _mm256_setzero_ps();
    float mx = -INFINITY, t[8];
    double sum;
    int i = 0;

    for (; i + 8 <= n; i += 8)
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
    _mm256_storeu_ps(t, vmax);
    for (int j = 0; j < 8; j++)
        mx = t[j] > mx ? t[j] : mx;
    for (int j = i; j < n; j++)
        mx = x[j] > mx ? x[j] : mx;
    if (mx == -INFINITY)
        return -INFINITY;
    {
        const __m256 m8 = _mm256_set1_ps(mx);
        for (i = 0; i + 8 <= n; i += 8)
            vsum = _mm256_add_ps(vsum, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), m8)));
    }
    sum = sotto__hsum256(vsum);
    for (; i < n; i++)
        sum += exp((double)x[i] - mx);
    return mx + log(sum);
}
#endif

double sotto__logsumexp(const float *x, int n)
{
    float mx = -INFINITY;
    double sum = 0.0;

#if SOTTO__HAVE_X86
    if (sotto__cpu_has_avx2())
        return logsumexp_x86(x, n);
#endif
    for (int i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY)
        return -INFINITY;
    for (int i = 0; i < n; i++)
        sum += exp((double)x[i] - mx);
    return mx + log(sum);
}

void sotto__gelu(float *x, size_t n)
{
#if SOTTO__HAVE_X86
    if (sotto__cpu_has_avx2()) {
        gelu_x86(x, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void sotto__softmax(float *x, int n)
{
    float mx = -INFINITY, sum = 0.0f, inv;

#if SOTTO__HAVE_X86
    if (sotto__cpu_has_avx2()) {
        softmax_x86(x, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    inv = 1.0f / sum;
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}

void sotto__dots(const float *q, const float *k, int ldk, int n, int dh,
                 float alpha, float *out)
{
#if SOTTO__HAVE_X86
    if (sotto__cpu_has_avx2()) {
        dots_x86(q, k, ldk, n, dh, alpha, out);
        return;
    }
#endif
    for (int j = 0; j < n; j++) {
        float acc = 0.0f;
        for (int d = 0; d < dh; d++)
            acc += q[d] * k[(size_t)j * ldk + d];
        out[j] = alpha * acc;
    }
}

void sotto__dots_multi(const float *q, int ldq, int nq, const float *k,
                       int ldk, int n, int dh, float alpha, float *out)
{
#if SOTTO__HAVE_X86
    if (dh == 64 && sotto__cpu_has_avx2()) {
        dots_multi64_x86(q, ldq, nq, k, ldk, n, alpha, out);
        return;
    }
#endif
    for (int s = 0; s < nq; s++)
        sotto__dots(q + (size_t)s * ldq, k, ldk, n, dh, alpha, out + (size_t)s * n);
}

void sotto__weighted_sum(const float *p, const float *v, int ldv, int n,
                         int dh, float *out)
{
#if SOTTO__HAVE_X86
    if (sotto__cpu_has_avx2()) {
        weighted_sum_x86(p, v, ldv, n, dh, out);
        return;
    }
#endif
    memset(out, 0, (size_t)dh * sizeof *out);
    for (int j = 0; j < n; j++)
        for (int d = 0; d < dh; d++)
            out[d] += p[j] * v[(size_t)j * ldv + d];
}
