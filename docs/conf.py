"""Sphinx configuration: the maths page, the tutorials (Markdown, through MyST) and the API reference generated
from the docstrings (autodoc + napoleon). Build offline with ``python -m sphinx -W --keep-going -b html docs
docs/_build/html`` (warnings are errors)."""

import otalign

project = "otalign"
author = "the otalign authors"
release = version = otalign.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = [("Options", "params_style"), ("Example", "example"), ("Raises", "raises_style")]

html_theme = "alabaster"
html_static_path: list = []
# the MathJax script is loaded by the reader's browser; the build itself needs no network

autodoc_inherit_docstrings = False  # torch's inherited docstrings (nn.Module.apply, ...) cite Sphinx labels of torch
# Config's docstring groups its fields under these headings
napoleon_custom_sections += [(name, "params_style") for name in ("Data and model", "Method", "Optimisation", "Views", "Run")]
