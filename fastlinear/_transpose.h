/* WT (M_out x M_in, C-contiguous) = W^T for a row-major float64 W with row
 * stride ldW.  On x86-64, 2 x 2 blocks go through SSE2 registers: two loads
 * of a pair from consecutive rows, two unpacks, two stores of a pair into
 * consecutive rows of WT, where a scalar copy moves one element per load and
 * store.  Elsewhere, and for an odd last row or column, elements are copied
 * one by one. */
#ifndef FL_TRANSPOSE_H
#define FL_TRANSPOSE_H
#include <stddef.h>
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define FL_TRANSPOSE_SSE2 1
#else
#define FL_TRANSPOSE_SSE2 0
#endif

static inline void fl_transpose_double(const double* W, ptrdiff_t ldW, ptrdiff_t M_in,
                                       ptrdiff_t M_out, double* WT)
{
    ptrdiff_t i = 0, j;
#if FL_TRANSPOSE_SSE2
    for (; i + 2 <= M_in; i += 2) {
        const double* r0 = W + i * ldW;
        const double* r1 = r0 + ldW;
        double* w = WT + i;  /* element (0, i) of WT */
        for (j = 0; j + 2 <= M_out; j += 2) {
            __m128d a = _mm_loadu_pd(r0 + j), b = _mm_loadu_pd(r1 + j);
            _mm_storeu_pd(w, _mm_unpacklo_pd(a, b));
            _mm_storeu_pd(w + M_in, _mm_unpackhi_pd(a, b));
            w += 2 * M_in;
        }
        if (j < M_out) {
            w[0] = r0[j];
            w[1] = r1[j];
        }
    }
#endif
    for (; i < M_in; i++)
        for (j = 0; j < M_out; j++)
            WT[j * M_in + i] = W[i * ldW + j];
}
#endif
