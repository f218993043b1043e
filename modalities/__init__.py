"""Modality adapters (images, sensor time series, text), installed as ``otalign.modalities``.

Each submodule imports its heavy dependencies (torchvision, aeon, transformers) itself, so ``import otalign`` needs
torch and numpy only. Shared by the modalities: :class:`otalign.modalities.views.TwoViews` (two augmented views of
an input, a trainer view maker) and :func:`otalign.modalities.seeding.seeded`.
"""
