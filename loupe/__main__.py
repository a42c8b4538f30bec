"""``python -m loupe`` (and ``torchrun -m loupe``): the ``loupe`` command line."""

from __future__ import annotations

from loupe.cli import main

main()
