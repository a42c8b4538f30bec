"""Margin-MSE (Hofstätter et al.): match the teacher's positive-negative margins."""

from __future__ import annotations

import torch


def margin_mse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error between student and teacher margins ``s[:, 0] - s[:, j]``.

    Args:
        student: ``(batch, candidates)``, the positive in column 0.
        teacher: ``(batch, candidates)`` aligned with ``student``.

    Example:
        >>> s = torch.tensor([[3.0, 1.0]]); t = torch.tensor([[5.0, 3.0]])
        >>> float(margin_mse_loss(s, t))
        0.0
    """
    student_margin = student[:, :1] - student[:, 1:]
    teacher_margin = teacher[:, :1] - teacher[:, 1:]
    return torch.mean((student_margin - teacher_margin) ** 2)
