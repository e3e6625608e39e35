/* WT (M_out x M_in, C-contiguous) = W^T for a row-major W with row stride ldW,
 * float64 and float32.
 *
 * The copy walks W in strips of 8 columns, each from its first row to its
 * last.  Walking whole rows of W instead writes columns of WT that touch one
 * cache line per row of WT, and at power-of-two widths those lines fall into
 * the same cache sets and evict one another (docs/design.md, "Built-in rules").
 * Within a strip, on x86-64, squares go through SSE registers (2 x 2 float64,
 * 4 x 4 float32): a load of each row of the square, shuffles, a store of each
 * row of its transpose.  Elsewhere elements are copied one by one, as are the
 * rows and columns left over. */
#ifndef FL_TRANSPOSE_H
#define FL_TRANSPOSE_H
#include <stddef.h>
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define FL_TRANSPOSE_SSE 1
#else
#define FL_TRANSPOSE_SSE 0
#endif

#define FL_TRANSPOSE_STRIP 8  /* a multiple of every square side */
/* A W of up to this many bytes is copied in one strip: it and WT fit in L1
 * together, and shorter rows would only add loop overhead. */
#define FL_TRANSPOSE_L1 8192

/* Squares of side S (of type T) for rows [0, ie) and columns [0, je) of W
 * (multiples of S), one strip of FL_TRANSPOSE_STRIP columns after another
 * (all in one for a small W); SQUARE(r, w) transposes the square at r into
 * WT at w. */
#define FL_TRANSPOSE_STRIPS(T, S, SQUARE)                                           \
    ptrdiff_t strip = M_in * M_out * (ptrdiff_t)sizeof(T) <= FL_TRANSPOSE_L1        \
                      ? je : FL_TRANSPOSE_STRIP;                                    \
    for (ptrdiff_t j0 = 0; j0 < je; j0 += strip) {                                  \
        ptrdiff_t j1 = j0 + strip < je ? j0 + strip : je;                           \
        for (ptrdiff_t i = 0; i < ie; i += S) {                                     \
            const T* r = W + i * ldW + j0;                                          \
            T* w = WT + j0 * M_in + i;                                              \
            for (ptrdiff_t j = j0; j < j1; j += S, r += S, w += S * M_in)           \
                SQUARE(r, w);                                                       \
        }                                                                           \
    }

/* The elements outside those squares: the last columns of the first ie rows,
 * then the last rows. */
#define FL_TRANSPOSE_EDGES()                                                        \
    if (je < M_out)                                                                 \
        for (ptrdiff_t i = 0; i < ie; i++)                                          \
            for (ptrdiff_t j = je; j < M_out; j++)                                  \
                WT[j * M_in + i] = W[i * ldW + j];                                  \
    for (ptrdiff_t i = ie; i < M_in; i++)                                           \
        for (ptrdiff_t j = 0; j < M_out; j++)                                       \
            WT[j * M_in + i] = W[i * ldW + j];

#if FL_TRANSPOSE_SSE
#define FL_SQUARE_DOUBLE(r, w) do {                                                 \
        __m128d a = _mm_loadu_pd(r), b = _mm_loadu_pd((r) + ldW);                   \
        _mm_storeu_pd(w, _mm_unpacklo_pd(a, b));                                    \
        _mm_storeu_pd((w) + M_in, _mm_unpackhi_pd(a, b));                           \
    } while (0)

#define FL_SQUARE_FLOAT(r, w) do {                                                  \
        __m128 a = _mm_loadu_ps(r), b = _mm_loadu_ps((r) + ldW);                    \
        __m128 c = _mm_loadu_ps((r) + 2 * ldW), d = _mm_loadu_ps((r) + 3 * ldW);    \
        _MM_TRANSPOSE4_PS(a, b, c, d);                                              \
        _mm_storeu_ps(w, a);                                                        \
        _mm_storeu_ps((w) + M_in, b);                                               \
        _mm_storeu_ps((w) + 2 * M_in, c);                                           \
        _mm_storeu_ps((w) + 3 * M_in, d);                                           \
    } while (0)
#endif

#define FL_SQUARE_ONE(r, w) (*(w) = *(r))

/* static inline void NAME(const T* W, ptrdiff_t ldW, ptrdiff_t M_in,
 *                         ptrdiff_t M_out, T* WT), squares of side S. */
#define FL_DEFINE_TRANSPOSE(NAME, T, S, SQUARE)                                     \
    static inline void NAME(const T* W, ptrdiff_t ldW, ptrdiff_t M_in,              \
                            ptrdiff_t M_out, T* WT)                                 \
    {                                                                               \
        ptrdiff_t ie = M_in - M_in % S, je = M_out - M_out % S;                     \
        FL_TRANSPOSE_STRIPS(T, S, SQUARE)                                           \
        FL_TRANSPOSE_EDGES()                                                        \
    }

#if FL_TRANSPOSE_SSE
FL_DEFINE_TRANSPOSE(fl_transpose_double, double, 2, FL_SQUARE_DOUBLE)
FL_DEFINE_TRANSPOSE(fl_transpose_float, float, 4, FL_SQUARE_FLOAT)
#else
FL_DEFINE_TRANSPOSE(fl_transpose_double, double, 1, FL_SQUARE_ONE)
FL_DEFINE_TRANSPOSE(fl_transpose_float, float, 1, FL_SQUARE_ONE)
#endif
#endif
