"""Modality adapters (images, sensor time series, text), installed as ``otalign.modalities``.

Each submodule imports its heavy dependencies (torchvision, aeon, transformers) itself, so ``import otalign`` needs
torch and numpy only. Shared by the modalities: :class:`otalign.modalities.views.TwoViews` (two augmented views of
an input, a trainer view maker) and :func:`otalign.modalities.seeding.seeded`.
"""

if __name__ == "modalities":  # imported from a checkout's root as a top-level package: a second, separate registry
    raise ImportError("modalities/ is installed as otalign.modalities: `import otalign` (from a checkout, `pip install -e .` or "
                      "PYTHONPATH=.) and use otalign.modalities")

