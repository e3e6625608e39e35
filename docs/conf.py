"""Sphinx configuration: the API reference, built from the installed fastlinear's docstrings."""
import fastlinear

project = "fastlinear"
author = "the fastlinear developers"
copyright = "2026, the fastlinear developers"
version = release = fastlinear.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.doctest", "sphinx.ext.mathjax", "numpydoc"]
# The Markdown pages beside this file are read on their own, not built here.
exclude_patterns = ["_build", "*.md"]
autodoc_default_options = {"members": True, "undoc-members": False}
numpydoc_show_class_members = False
# Docstring examples run with the package and NumPy at hand, as a reader would type them.
doctest_global_setup = "import numpy as np\nimport fastlinear"
html_theme = "alabaster"


def _public_signature(app, what, name, obj, options, signature, return_annotation):
    """The signature without private keywords (``_plan=``: the planner's, not the user's)."""
    if signature and "_" in signature:
        kept = [part for part in signature[1:-1].split(", ") if not part.startswith("_")]
        signature = "(" + ", ".join(kept) + ")"
    return signature, return_annotation


def setup(app):
    app.connect("autodoc-process-signature", _public_signature)
