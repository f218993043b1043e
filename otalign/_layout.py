"""The repository's layout: ``solvers/`` and ``modalities/`` stand beside ``otalign/`` in a checkout and are
installed as ``otalign.solvers`` and ``otalign.modalities``. From a plain checkout (``PYTHONPATH=.``, no install)
:func:`import_mapped` loads those folders under the same names, so there is one registry either way."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def import_mapped(name: str) -> ModuleType:
    """``otalign.<name>`` (``"solvers"`` or ``"modalities"``): the installed package, or the folder ``<name>/`` of
    the checkout that holds this ``otalign/``."""
    full = f"{__package__}.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as error:
        if error.name != full:
            raise
    folder = Path(__file__).resolve().parent.parent / name
    spec = importlib.util.spec_from_file_location(full, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"{full}: not installed and no {name}/ folder beside otalign/ (pip install -e .)",
                                  name=full)
    module = importlib.util.module_from_spec(spec)
    sys.modules[full] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[full]
        raise
    return module
