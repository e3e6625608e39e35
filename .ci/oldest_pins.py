"""Print the oldest supported set: pyproject.toml's runtime and test lower bounds, pinned.

Read from pyproject.toml, so that the bounds it declares are exactly the versions CI tests.
Python 3.9 has no tomllib; the two lists are simple enough for a regular expression.
"""
import pathlib
import re
import sys

text = pathlib.Path(sys.argv[1]).read_text()
pins = []
for name in ("dependencies", "test"):
    block = re.search(rf"^{name} = \[(.*?)\]$", text, re.M | re.S)
    if block is None:
        sys.exit(f"pyproject.toml has no list '{name} = [...]'")
    for spec in re.findall(r'"([^"]+)"', block.group(1)):
        if ">=" not in spec:
            sys.exit(f"{spec!r} has no lower bound to test")
        pins.append(spec.split(",")[0].replace(">=", "=="))
print("\n".join(pins))
