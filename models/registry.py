"""Loading a re-ranker from a name: ``default``, a model folder or a Hugging Face name."""

from __future__ import annotations

from pathlib import Path

from models.backbone import DEFAULT_MODEL
from models.calibration import CALIBRATION_NAME, ScoreCalibration
from models.cross_encoder import CrossEncoderConfig, CrossEncoderReranker, is_cross_encoder
from models.encoder import EncoderConfig, TextEncoder
from models.late_interaction import LateInteractionModel, is_late_interaction_folder
from models.late_reranker import LateInteractionReranker
from models.reranker import DualEncoderReranker, Reranker

SHIPPED_RERANKER = Path(__file__).resolve().parent / "weights" / "reranker-default"
"""The trained default late-interaction re-ranker shipped in the repository (config + small
weights; its training config is configs/reranker-default.toml)."""


SHIPPED_MAXSIM_CALIBRATION = Path(__file__).resolve().parent / "weights" / "maxsim-default"
"""Holds ``calibration.json`` for untrained MaxSim over the packaged MiniLM (``maxsim``),
which has no model folder of its own."""


def default_reranker_path() -> Path | None:
    return SHIPPED_RERANKER if is_late_interaction_folder(SHIPPED_RERANKER) else None


def resolve_late_interaction(spec: str) -> Path:
    """The folder of a late-interaction model: ``default`` is the shipped one."""
    if spec in ("", DEFAULT_MODEL):
        shipped = default_reranker_path()
        if shipped is None:
            raise ValueError(
                "no trained default re-ranker ships with this install; "
                "pass a late-interaction model folder"
            )
        return shipped
    if not is_late_interaction_folder(spec):
        if is_cross_encoder(spec):
            raise ValueError(
                f"{spec} is a cross-encoder: it reads query and document together, so it has "
                "no token matrices to store; serve or evaluate it with --reranker, without "
                "a token store"
            )
        raise ValueError(
            f"{spec} is not a Loupe late-interaction model folder (or 'maxsim[:MODEL]')"
        )
    return Path(spec)


def zero_shot_backbone(spec: str) -> str | None:
    """The backbone ``maxsim`` or ``maxsim:MODEL`` names (None for other specs).

    >>> zero_shot_backbone("maxsim"), zero_shot_backbone("maxsim:BAAI/bge-small-en-v1.5")
    ('default', 'BAAI/bge-small-en-v1.5')
    >>> zero_shot_backbone("runs/lite/best") is None
    True
    """
    if spec == "maxsim" or spec.startswith("maxsim:"):
        return spec.partition(":")[2] or DEFAULT_MODEL
    return None


def calibration_folder(spec: str) -> Path:
    """Where ``spec``'s ``calibration.json`` lives: a late-interaction folder itself (the
    shipped one for ``default``), or, for ``maxsim`` over the packaged MiniLM, a folder
    shipped for it. Untrained MaxSim over other encoders has none.

    >>> calibration_folder("maxsim").name
    'maxsim-default'
    """
    backbone = zero_shot_backbone(spec)
    if backbone == DEFAULT_MODEL:
        return SHIPPED_MAXSIM_CALIBRATION
    if backbone is not None:
        raise ValueError(
            f"{spec}: only untrained MaxSim over the packaged encoder ('maxsim') has a place "
            "for a calibration; save a model folder for other encoders"
        )
    return resolve_late_interaction(spec)


def matching_calibration(model: LateInteractionModel, folder: Path) -> ScoreCalibration | None:
    """``folder``'s calibration.json for ``model``, or None where there is none. A
    calibration fitted to another model's scores (a retrained model copied over the folder)
    is refused: its probabilities would be wrong without any sign of it."""
    calibration = ScoreCalibration.load(folder)
    if calibration is None or not calibration.model_fingerprint:
        return calibration
    if calibration.model_fingerprint != model.fingerprint:
        raise ValueError(
            f"{folder / CALIBRATION_NAME} was fitted to another model's scores "
            f"(fingerprint {calibration.model_fingerprint}, this model {model.fingerprint}); "
            "refit it with loupe calibrate, or delete it"
        )
    return calibration


def load_late_interaction(
    spec: str, *, device: str | None = None, share_encoder: TextEncoder | None = None
) -> LateInteractionModel:
    """The late-interaction model ``spec`` names: ``default`` (the shipped one), ``maxsim`` or
    ``maxsim:MODEL`` (untrained MaxSim over that encoder's tokens) or a model folder."""
    backbone = zero_shot_backbone(spec)
    if backbone is not None:
        return LateInteractionModel.zero_shot(backbone, device=device, share_encoder=share_encoder)
    folder = resolve_late_interaction(spec)
    return LateInteractionModel.load(folder, device=device, share_encoder=share_encoder)


def load_reranker(
    spec: str = DEFAULT_MODEL,
    *,
    device: str | None = None,
    share_encoder: TextEncoder | None = None,
) -> Reranker:
    """A re-ranker for ``spec``; ``share_encoder`` lets a late-interaction model on the same
    frozen backbone reuse an encoder already in memory.

    - ``default``: the shipped LITE re-ranker (the packaged MiniLM's cosine if none ships);
    - ``maxsim`` or ``maxsim:MODEL``: untrained ColBERT-style MaxSim over the packaged
      MiniLM's (or MODEL's) token states; ``maxsim`` with the calibration shipped for it;
    - ``cosine`` or ``cosine:MODEL``: the dual encoder's cosine;
    - a Loupe late-interaction folder: that LITE / MaxSim model, with its
      ``calibration.json`` (``loupe calibrate``) where it has one, as the default has;
    - a sequence-classification model (folder or hub name): that cross-encoder, reading
      each (query, document) pair together, a long document as windows (one or two
      labels; others are refused);
    - any other folder or hub name: that encoder's dual-encoder cosine.
    """
    if spec in ("", DEFAULT_MODEL):
        shipped = default_reranker_path()
        if shipped is None:
            spec = "cosine"
        else:
            late = load_late_interaction(spec, device=device, share_encoder=share_encoder)
            calibration = matching_calibration(late, shipped)
            return LateInteractionReranker(late, name="reranker-default", calibration=calibration)
    if spec == "cosine" or spec.startswith("cosine:"):
        model = spec.partition(":")[2] or DEFAULT_MODEL
        return DualEncoderReranker(TextEncoder(EncoderConfig(model=model, device=device)))
    backbone = zero_shot_backbone(spec)
    if backbone is not None:
        late = load_late_interaction(spec, device=device, share_encoder=share_encoder)
        calibration = (
            matching_calibration(late, SHIPPED_MAXSIM_CALIBRATION)
            if backbone == DEFAULT_MODEL
            else None
        )
        return LateInteractionReranker(late, name=spec, calibration=calibration)
    if is_late_interaction_folder(spec):
        late = load_late_interaction(spec, device=device, share_encoder=share_encoder)
        calibration = matching_calibration(late, Path(spec))
        return LateInteractionReranker(
            late, name=f"lite:{Path(spec).name}", calibration=calibration
        )
    if is_cross_encoder(spec):
        return CrossEncoderReranker.load(CrossEncoderConfig(model=spec, device=device))
    return DualEncoderReranker(TextEncoder(EncoderConfig(model=spec, device=device)))


def reranker_max_tokens(reranker: Reranker) -> int | None:
    """Tokens of a document the re-ranker reads; the rest of a longer one is not scored."""
    if isinstance(reranker, LateInteractionReranker):
        return reranker.model.config.max_document_tokens
    if isinstance(reranker, DualEncoderReranker):
        return reranker.encoder.max_length
    if isinstance(reranker, CrossEncoderReranker):
        return reranker.window_tokens(reranker.config.max_windows)
    return None


def reranker_window_tokens(reranker: Reranker, windows: int) -> int | None:
    """Document tokens (special tokens not counted) that a re-ranker's first ``windows``
    windows cover, or None when it does not read documents as windows."""
    if isinstance(reranker, LateInteractionReranker):
        return reranker.model.config.window_tokens(windows) - 2
    if isinstance(reranker, CrossEncoderReranker):
        return reranker.window_tokens(windows)
    return None


def reranker_encoders(reranker: Reranker) -> list[TextEncoder]:
    """The text encoders a re-ranker runs (to choose their runtime); none for other kinds."""
    if isinstance(reranker, LateInteractionReranker):
        return [reranker.model.encoder]
    if isinstance(reranker, DualEncoderReranker):
        return [reranker.encoder]
    return []
