"""Choosing the torch device: CUDA when present, CPU otherwise."""

from __future__ import annotations

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """Return ``requested`` if given, else ``cuda`` when a GPU is visible, else ``cpu``.

    >>> pick_device("cpu").type
    'cpu'
    """
    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
