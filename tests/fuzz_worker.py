"""Runs a batch of randomised problems in its own process (see test_fuzz.py).

Before each example it writes the example's description to the log file and
flushes, so that if the process dies (a crash is the one failure a test
runner cannot catch in-process) the parent can report the inputs that
killed it.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from strategies import problems  # noqa: E402
from test_properties import run_and_check  # noqa: E402


def describe(p):
    def arr(a):
        if a is None:
            return "None"
        return f"{a.dtype}{a.shape} strides={a.strides} C={a.flags.c_contiguous}"
    return (f"x={arr(p['x'])} W={arr(p['W'])} b={arr(p['b'])} dy={arr(p['dy'])} "
            f"num_threads={p['num_threads']} out={p['use_out']} buffers={p['buffers']} "
            f"accumulate={p['accumulate']}")


def main(batch, examples, log_path):
    log = open(log_path, "w", buffering=1)
    count = [0]
    # Lets a test check that a crash is reported with its inputs.
    crash_at = int(os.environ.get("FUZZ_SELF_TEST_CRASH_AT", "-1"))

    @seed(batch)
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(problems(), problems(max_side=300, max_rows=600)))
    def fuzz(p):
        log.write(describe(p) + "\n")
        if count[0] == crash_at:
            os.kill(os.getpid(), signal.SIGSEGV)
        run_and_check(p)
        count[0] += 1

    fuzz()
    log.write(f"DONE {count[0]}\n")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
