"""The source tree's shape: no import cycle among the package's modules, and no
function too long to read at once.  Skipped where the tests run without the
source tree beside them (from an installed wheel)."""
import os
import re

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fastlinear")
SOURCES = (".py", ".pyx", ".pxd")
pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(PACKAGE, "_api.pyx")),
                                reason="the source tree is not beside the tests")
# Non-blank, non-comment lines a function's body may have outside its docstring.
MAX_FUNCTION_LINES = 60
MAX_API_LINES = 350

_IMPORT = re.compile(
    r"^\s*(?:from\s+(\.+\w*|fastlinear(?:\.\w+)?)\s+c?import\s+\(?([\w\s,]+?)\)?\s*(?:#.*)?$"
    r"|c?import\s+(fastlinear\.\w+))", re.M)


def modules():
    """{module name: source text of its .py, .pyx and .pxd together}."""
    texts = {}
    for name in sorted(os.listdir(PACKAGE)):
        stem, ext = os.path.splitext(name)
        if ext in SOURCES:
            with open(os.path.join(PACKAGE, name)) as f:
                texts[stem] = texts.get(stem, "") + f.read()
    return texts


def imports(text, names):
    """The package's modules a source imports or cimports, anywhere in it; "__init__"
    for a name taken from the package itself."""
    found = set()
    for m in _IMPORT.finditer(re.sub(r"\(\s*\n", "(", text)):
        source, what, plain = m.groups()
        if plain:
            found.add(plain.split(".")[1])
            continue
        module = source.lstrip(".").replace("fastlinear.", "").replace("fastlinear", "")
        if module:
            found.add(module)
            continue
        for name in re.split(r"[\s,]+", what.strip()):
            name = name.split(" as ")[0]
            if name:
                found.add(name if name in names else "__init__")
    return found & (set(names) | {"__init__"})


def cycle(graph):
    """One import cycle of ``graph`` as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert imports("from ._plans import planner\n    from . import __version__\n",
                   {"_plans": ""}) == {"_plans", "__init__"}
    assert imports("from fastlinear._checks cimport (\n    a, b)\ncimport fastlinear._parallel as p\n",
                   {"_checks": "", "_parallel": ""}) == {"_checks", "_parallel"}


def test_no_import_cycle_among_the_modules():
    texts = modules()
    graph = {name: imports(text, texts) - {name} for name, text in texts.items()}
    assert cycle(graph) is None, f"import cycle: {' -> '.join(cycle(graph))}"


_DEF = re.compile(r"^(\s*)(?:def|cdef|cpdef)\s+(?!class\b|struct\b|enum\b|extern\b|union\b)"
                  r"[\w\[\]\*\s,.]*?(\w+)\s*\(")


def function_lengths(text):
    """(name, first line, body lines outside the docstring) of each function."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = _DEF.match(line)
        if not m:
            continue
        indent, j = len(m.group(1)), i
        while j + 1 < len(lines) and not lines[j].rstrip().endswith(":") \
                and not _dedented(lines[j + 1], indent):  # a signature over several lines
            j += 1
        if not lines[j].rstrip().endswith(":"):
            continue  # a declaration
        k = j + 1
        while k < len(lines) and not (lines[k].strip() and _dedented(lines[k], indent)):
            k += 1
        body = re.sub(r'^\s*[rb]*("""|\'\'\')[\s\S]*?\1', "", "\n".join(lines[j + 1:k]), count=1)
        yield m.group(2), i + 1, sum(1 for b in body.split("\n")
                                     if b.strip() and not b.strip().startswith("#"))


def _dedented(line, indent):
    return len(line) - len(line.lstrip()) <= indent


def test_the_length_counter_skips_docstrings_and_comments():
    text = 'def f(a,\n      b):\n    """Doc.\n\n    More."""\n    # why\n    x = 1\n\n    return x\n' \
           "cdef int g(int a) noexcept nogil\ndef h():\n    pass\n"
    assert list(function_lengths(text)) == [("f", 1, 2), ("h", 11, 1)]


def test_no_function_is_too_long():
    long = [f"{name} {fn} (line {line}): {n} lines"
            for name in os.listdir(PACKAGE) for stem, ext in [name.rsplit(".", 1)]
            if "." + ext in SOURCES
            for fn, line, n in function_lengths(open(os.path.join(PACKAGE, name)).read())
            if n > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_api_module_stays_small():
    with open(os.path.join(PACKAGE, "_api.pyx")) as f:
        assert len(f.read().split("\n")) <= MAX_API_LINES
