#include <stdio.h>
#include <stdlib.h>
#include "_activations.h"
/* f and g f' of every activation, both types, over a grid of z with NaN and
 * infinities, written to stdout as raw bytes.  tests/test_activations.py
 * compiles this twice, for the baseline and for AVX2, and checks that both
 * variants of _activations.h's loops give the same bits. */
int main(void) {
    enum { N = 200003 };
    static float zf[N], gf[N], of[N]; static double zd[N], gd[N], od[N];
    for (int act = 1; act <= 5; act++) {
        for (int i = 0; i < N; i++) { zd[i] = -60.0 + 120.0 * i / (N - 1); zf[i] = (float)zd[i]; gd[i] = 1.0 + i % 7; gf[i] = (float)gd[i]; }
        zf[5] = NAN; zf[6] = INFINITY; zf[7] = -INFINITY; zd[5] = NAN; zd[6] = INFINITY; zd[7] = -INFINITY;
        for (int i = 0; i < N; i++) { of[i] = zf[i]; od[i] = zd[i]; }
        fl_map_float(act, of, N); fl_map_double(act, od, N);
        fwrite(of, sizeof of[0], N, stdout); fwrite(od, sizeof od[0], N, stdout);
        fl_grad_map_float(act, gf, zf, of, N); fl_grad_map_double(act, gd, zd, od, N);
        fwrite(of, sizeof of[0], N, stdout); fwrite(od, sizeof od[0], N, stdout);
    }
    return 0;
}
