"""Does fastlinear slow down on subnormal (denormal) inputs?

Times one forward + backward step on normal data and on the same data scaled
into the subnormal range, interleaved, and prints the ratio of medians.
"""
import time

import numpy as np

import fastlinear


def median_time(fn, reps=15):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    rng = np.random.default_rng(0)
    for dtype, scale in ((np.float64, 1e-310), (np.float32, 1e-40)):
        for N, M_in, M_out in [(256, 512, 512), (20000, 64, 16)]:
            x = rng.standard_normal((N, M_in)).astype(dtype)
            W = rng.standard_normal((M_in, M_out)).astype(dtype)
            dy = rng.standard_normal((N, M_out)).astype(dtype)
            b = np.zeros(M_out, dtype)
            x_sub, dy_sub = (x * scale).astype(dtype), (dy * scale).astype(dtype)
            assert 0 < np.abs(x_sub).max() < np.finfo(dtype).tiny

            def step(x, dy):
                fastlinear.linear_forward(x, W, b)
                fastlinear.linear_backward(x, W, dy)

            normal = [median_time(lambda: step(x, dy)) for _ in range(2)]
            sub = median_time(lambda: step(x_sub, dy_sub))
            print(f"{np.dtype(dtype).name} {(N, M_in, M_out)}: normal {min(normal) * 1e3:.2f} ms, "
                  f"subnormal {sub * 1e3:.2f} ms, ratio {sub / min(normal):.2f}")


if __name__ == "__main__":
    main()
