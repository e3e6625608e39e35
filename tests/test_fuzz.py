"""Randomised inputs against the NumPy reference, each batch in its own process."""
import os
import subprocess
import sys

import pytest

BATCHES = 4
EXAMPLES = 550   # per batch: 2,200 examples per run

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_worker.py")


def run_batch(batch, examples, log, env=None):
    """(return code, logged lines, stderr); a crash becomes a failure naming its inputs."""
    proc = subprocess.run([sys.executable, WORKER, str(batch), str(examples), str(log)],
                          capture_output=True, text=True, timeout=900, env=env)
    lines = log.read_text().splitlines() if log.exists() else []
    if proc.returncode < 0:
        pytest.fail(f"the fuzz process died of signal {-proc.returncode} on its example "
                    f"#{len(lines)}: {lines[-1] if lines else '(none)'}\n{proc.stderr[-3000:]}")
    return proc.returncode, lines, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("batch", range(BATCHES))
def test_fuzz_batch(batch, tmp_path):
    rc, lines, output = run_batch(batch, EXAMPLES, tmp_path / "examples.log")
    assert rc == 0, output
    assert lines and lines[-1].startswith("DONE ")
    assert int(lines[-1].split()[1]) >= EXAMPLES * 0.9, "hypothesis ran too few examples"


def test_a_crash_is_reported_with_its_inputs(tmp_path):
    env = dict(os.environ, FUZZ_SELF_TEST_CRASH_AT="3")
    with pytest.raises(pytest.fail.Exception, match=r"signal \d+ on its example #4: x=float"):
        run_batch(0, 10, tmp_path / "examples.log", env=env)
