"""docs/performance.md's tables are those that tools/performance_tables.py makes of bench/results."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tools", "performance_tables.py")


@pytest.mark.skipif(not all(os.path.exists(os.path.join(REPO, p))
                            for p in ("tools/performance_tables.py", "docs/performance.md",
                                      "bench/results")),
                    reason="needs the source tree (tools/, docs/, bench/results/)")
def test_performance_tables_are_current():
    proc = subprocess.run([sys.executable, SCRIPT, "--check"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, (
        proc.stdout + proc.stderr + "\nAfter a benchmark run, `python tools/performance_tables.py` "
        "rewrites the tables; a result file not meant for the page belongs outside bench/results/.")
