"""Sphinx configuration: the maths page, the tutorials (Markdown, through MyST) and the API reference generated
from the docstrings (autodoc + napoleon). Build offline with ``python -m sphinx -W --keep-going -b html docs
docs/_build/html`` (warnings are errors).

Public names are documented once, under the path users import (``otalign.Problem``, ``otalign.losses.GCAUOT``):
each public package's page documents its ``__all__`` (``:imported-members:``), the pages of the modules that define
them skip them, and a cross-reference written with the defining module's path (``otalign.problem.Problem``)
resolves to the public entry. Maths is rendered by a MathJax copy bundled with the ``[docs]`` extra
(``sphinx-mathjax-offline``), so the built pages need no network.
"""

import importlib
import inspect
import types

import otalign

project = "otalign"
author = "the otalign authors"
release = version = otalign.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
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

autodoc_inherit_docstrings = False  # torch's inherited docstrings (nn.Module.apply, ...) cite Sphinx labels of torch
# Config's docstring groups its fields under these headings
napoleon_custom_sections += [(name, "params_style") for name in ("Data and model", "Method", "Optimisation", "Views", "Run")]


#: Packages whose ``__all__`` is the public API, in order of preference: an object exported by several is
#: documented under the first (``otalign.GWProblem`` rather than ``otalign.gromov.GWProblem``).
PUBLIC_PACKAGES = ("otalign", "otalign.losses", "otalign.gromov", "otalign.adapt", "otalign.solvers",
                   "otalign.training")


def public_names() -> dict[str, str]:
    """Defining path (``module.qualname``) -> public path of every class and function exported by
    :data:`PUBLIC_PACKAGES`."""
    found: dict[str, str] = {}
    for package in PUBLIC_PACKAGES:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType) or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            found.setdefault(f"{obj.__module__}.{obj.__qualname__}", f"{package}.{name}")
    return found


PUBLIC = public_names()
_DOCUMENTING = {"module": ""}


def _remember_module(app, what, name, obj, options, lines) -> None:
    if what == "module":
        _DOCUMENTING["module"] = name


def _skip_non_public_path(app, what, name, obj, skip, options):
    """Skip a public object everywhere but on its public package's page (and skip other packages' exports
    there)."""
    if what != "module" or not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return None
    public = PUBLIC.get(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}")
    if public is None:
        return None
    return public.rsplit(".", 1)[0] != _DOCUMENTING["module"] or None


def _resolve_defining_path(app, env, node, contnode):
    """``otalign.problem.Problem`` (and its members) -> ``otalign.Problem``."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    for defining, public in PUBLIC.items():
        if target == defining or target.startswith(defining + "."):
            new = public + target[len(defining):]
            return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"], new, node,
                                                     contnode)
    return None


def setup(app):
    app.connect("autodoc-process-docstring", _remember_module)
    app.connect("autodoc-skip-member", _skip_non_public_path)
    app.connect("missing-reference", _resolve_defining_path)
