"""Modality adapters (images, sensor time series, text), installed as ``otalign.modalities``.

Each submodule imports its heavy dependencies (torchvision, aeon, transformers) itself, so
``import otalign`` needs torch and numpy only.
"""
