/* Activations and their derivatives, element by element and over contiguous runs.
 *
 * Computed in the input's precision, in the forms PyTorch uses, so that NaN and
 * Inf propagate as PyTorch's do: double with the C library's functions; float's
 * exp and erf with the branch-free polynomials below, which the compiler turns
 * into SIMD loops where the C library's cost one call per element (error bounds:
 * docs/design.md).  The derivative of relu, tanh and sigmoid is taken from the
 * forward's output y, that of gelu and gelu_tanh from its input z.
 *
 * The loops over runs are compiled twice where GCC builds for x86-64 Linux, for
 * AVX2 and for the baseline, and the dynamic loader picks one for the CPU: the
 * two make the same operations in the same order (AVX2 without FMA), so they
 * give the same bits. */
#ifndef FL_ACTIVATIONS_H
#define FL_ACTIVATIONS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifndef FL_CLONES /* (defined beforehand to compile one variant alone) */
/* GCC's clones need the dynamic loader's ifunc: glibc's, not musl's. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define FL_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FL_CLONES
#endif
#endif

/* The codes of _epilogue.pxd. */
enum { FL_NO_ACTIVATION, FL_RELU, FL_TANH, FL_SIGMOID, FL_GELU, FL_GELU_TANH };

#define FL_SQRT1_2 0.70710678118654752440      /* 1 / sqrt(2) */
#define FL_INV_SQRT_2PI 0.39894228040143267794 /* 1 / sqrt(2 pi) */
#define FL_SQRT_2_PI 0.79788456080286535588    /* sqrt(2 / pi) */
#define FL_KAPPA 0.044715

/* exp(x) = 2^n exp(r), n the integer nearest x / ln 2, |r| <= ln 2 / 2, exp(r)
 * by its Taylor polynomial of degree 7 (truncation below 1e-9).  Results under
 * 2**-124 are 0; NaN stays NaN.  Every constant is a float, so that the
 * arithmetic stays in float lanes. */
static inline float fl_expf(float x)
{
    const float lo = -86.0f, hi = 88.7f;
    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc;
    float known = xc == xc ? xc : 0.0f; /* NaN: any n, the result is NaN anyway */
    /* Adding and taking away 1.5 * 2**23 rounds to the nearest integer. */
    float n = (known * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* 2^(n - 1) from its exponent bits (n - 1 + 127 lies in 1..254), times 2. */
    uint32_t bits = (uint32_t)((int)n + 126) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float result = p * scale * 2.0f;
    result = x < lo ? 0.0f : result;
    return x > 88.72283935546875f ? INFINITY : result;
}

/* erf(x) as x P(x^2) / Q(x^2), a rational minimax approximation on [-4, 4] (erf
 * is +-1 in float beyond); NaN stays NaN. */
static inline float fl_erff(float x)
{
    x = x < -4.0f ? -4.0f : x;
    x = x > 4.0f ? 4.0f : x;
    float x2 = x * x;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 - 2.10102402082508e-06f;
    p = p * x2 - 5.69250639462346e-05f;
    p = p * x2 - 7.34990630326855e-04f;
    p = p * x2 - 2.95459980854025e-03f;
    p = p * x2 - 1.60960333262415e-02f;
    float q = -1.45660718464996e-05f;
    q = q * x2 - 2.13374055278905e-04f;
    q = q * x2 - 1.68282697438203e-03f;
    q = q * x2 - 7.37332916720468e-03f;
    q = q * x2 - 1.42647390514189e-02f;
    return x * p / q;
}

/* The functions of each type, from _activation_loops.h (which undefines these). */
#define FL_T double
#define FL_BITS uint64_t
#define FL_EXP_OF exp
#define FL_ERF_OF erf
#define FL_TANH_OF tanh
#define FL_NAME(name) name##_double
#include "_activation_loops.h"

#define FL_T float
#define FL_BITS uint32_t
#define FL_EXP_OF fl_expf
#define FL_ERF_OF fl_erff
#define FL_TANH_OF tanhf
#define FL_NAME(name) name##_float
#include "_activation_loops.h"

#endif
