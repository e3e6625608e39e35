"""Warnings point at the user's own line, once per cause."""
import json
import os
import subprocess
import sys
import warnings

from fastlinear import _warn

SCRIPT = """\
import json
import warnings
with warnings.catch_warnings(record=True) as got:
    warnings.simplefilter("always")
    import fastlinear
print(json.dumps([[w.filename, w.lineno, str(w.message)] for w in got
                  if issubclass(w.category, RuntimeWarning)]))
"""


def test_a_warning_while_fastlinear_is_imported_points_at_the_import(tmp_path):
    """A bad FASTLINEAR_PLANS is warned about as fastlinear is imported: at the
    user's ``import fastlinear`` line, however many import frames lie between."""
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, FASTLINEAR_PLANS="sometimes", FASTLINEAR_PLAN_FILE=str(tmp_path / "p.json"))
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.splitlines()[-1])
    assert len(got) == 1 and "FASTLINEAR_PLANS" in got[0][2], got
    assert got[0][:2] == [str(script), 5]


def test_once_per_cause(monkeypatch):
    monkeypatch.setattr(_warn, "_given", set())
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        for _ in range(3):
            _warn.warn("fastlinear: first", cause=("test", 1))
            _warn.warn("fastlinear: second", cause=("test", 2))
            _warn.warn("fastlinear: no cause")
    messages = [str(w.message) for w in got]
    assert messages.count("fastlinear: first") == 1 and messages.count("fastlinear: second") == 1
    assert messages.count("fastlinear: no cause") == 3
    assert all(w.filename == __file__ and w.category is RuntimeWarning for w in got)
