"""KL divergence from a teacher's score distribution over the same candidates."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def kl_distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """``KL(softmax(teacher/T) || softmax(student/T))`` averaged over the batch.

    Args:
        student: ``(batch, candidates)`` scores.
        teacher: ``(batch, candidates)`` scores (e.g. a run file's).

    Example:
        >>> t = torch.tensor([[2.0, 1.0, 0.0]])
        >>> float(kl_distillation_loss(t, t))
        0.0
    """
    log_student = F.log_softmax(student / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher / temperature, dim=-1)
    return F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
