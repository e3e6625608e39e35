"""The thread pool (fastlinear/_pool.h) under ThreadSanitizer: tools/pool_stress.c."""
import os
import subprocess
import sysconfig

import pytest
from _helpers import c_compiler_fails

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRESS = os.path.join(REPO, "tools", "pool_stress.c")
POOL = os.path.join(REPO, "fastlinear", "_pool.h")
TSAN = ["-fsanitize=thread", "-O1", "-g", "-pthread"]


@pytest.mark.skipif(not (os.path.exists(STRESS) and os.path.exists(POOL)),
                    reason="needs the source tree (tools/pool_stress.c, fastlinear/_pool.h)")
def test_pool_has_no_data_race(tmp_path):
    """20000 jobs of 1 to 37 tasks on 1 to 4 threads, each checked, and no report
    from ThreadSanitizer (a race it sees may not change a result here)."""
    why = c_compiler_fails(*TSAN)
    if why:
        pytest.skip(f"needs a C compiler with ThreadSanitizer: {why}")
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        pytest.skip(f"needs Python's headers (no Python.h in {include})")
    exe = str(tmp_path / "pool_stress")
    subprocess.run(["cc", *TSAN, "-I", os.path.dirname(POOL), "-I", include, STRESS, "-o", exe],
                   check=True)
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1")
    proc = subprocess.run([exe], capture_output=True, text=True, timeout=300, env=env)
    output = proc.stdout + proc.stderr
    assert "WARNING: ThreadSanitizer" not in output, output[-5000:]
    assert proc.returncode == 0, output[-5000:]
    assert "20000 jobs right" in proc.stdout
