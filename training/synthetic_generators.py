"""Query generators for synthetic training pairs: SoftSRV (a trained contextual soft prompt
and its frozen LM) and the hard-prompt baseline (a fixed few-shot template to a frozen LM).

A generator maps a batch of passages to ``num_per_prompt`` queries each; new kinds (e.g. a
GMLM parallel decoder) only need ``name`` and ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from index.readers._lines import json_objects, require_str
from models.causal_lm import PACKAGED_GEMMA, CausalLM, load_causal_lm
from models.device import pick_device
from models.prompted_lm import PromptedLM, SamplingConfig
from models.softsrv import load_soft_prompt
from training.softsrv_data import ContextCache


class QueryGenerator(Protocol):
    name: str

    def generate(self, passages: Sequence[str], sampling: SamplingConfig) -> list[list[str]]:
        """``sampling.num_per_prompt`` queries per passage (seed torch first)."""
        ...


class SoftSRVGenerator:
    """z of each passage -> trained prompt -> frozen LM samples."""

    def __init__(
        self, folder: Path, *, device: str | None = None, lm: CausalLM | None = None
    ) -> None:
        self.prompt, self.spec = load_soft_prompt(folder)
        torch_device = pick_device(device)
        self.lm = PromptedLM(
            lm or load_causal_lm(self.spec.lm, device=torch_device, dtype=self.spec.lm_dtype)
        )
        if self.lm.width != self.spec.prompt.width:
            raise ValueError(
                f"{folder} was trained for a {self.spec.prompt.width}-wide LM; "
                f"{self.lm.lm.name} is {self.lm.width}-wide"
            )
        self.prompt.to(torch_device)
        self.contexts = ContextCache.open(self.spec.context_encoder, None, device)
        self.name = f"softsrv-{self.spec.prompt.kind}"

    def generate(self, passages: Sequence[str], sampling: SamplingConfig) -> list[list[str]]:
        z = self.contexts.batch(list(passages)).to(self.lm.lm.device)
        return self.lm.sample(self.prompt(z), sampling)


@dataclass(frozen=True)
class Shot:
    passage: str
    query: str


def read_shots(path: Path) -> list[Shot]:
    """Few-shot examples, one ``{"passage": ..., "query": ...}`` object per line."""
    shots = [
        Shot(require_str(path, n, obj, "passage"), require_str(path, n, obj, "query"))
        for n, obj in json_objects(path)
    ]
    if not shots:
        raise ValueError(f"{path} holds no few-shot example")
    return shots


def clip(text: str, max_chars: int) -> str:
    """A passage cut to ``max_chars`` at a word boundary.

    >>> clip("one two three", 8)
    'one two'
    """
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    return text[:max_chars].rsplit(" ", 1)[0]


def few_shot_prompt(shots: Sequence[Shot], passage: str, max_chars: int = 300) -> str:
    """The fixed hard-prompt template: an instruction, the shots, then the passage.

    >>> print(few_shot_prompt([Shot("Cats purr.", "why do cats purr")], "Dogs bark."))
    Write a search query that the passage answers.
    <BLANKLINE>
    Passage: Cats purr.
    Query: why do cats purr
    <BLANKLINE>
    Passage: Dogs bark.
    Query:
    """
    parts = ["Write a search query that the passage answers.\n"]
    for shot in shots:
        parts.append(f"Passage: {clip(shot.passage, max_chars)}\nQuery: {shot.query}\n")
    parts.append(f"Passage: {clip(passage, max_chars)}\nQuery:")
    return "\n".join(parts)


class HardPromptGenerator:
    """The baseline: a fixed few-shot template to the same frozen LM."""

    name = "hard-prompt"

    def __init__(
        self,
        shots: Sequence[Shot],
        *,
        lm: str | CausalLM = PACKAGED_GEMMA,
        device: str | None = None,
        max_passage_chars: int = 300,
    ) -> None:
        loaded = lm if isinstance(lm, CausalLM) else load_causal_lm(lm, device=pick_device(device))
        self.lm = PromptedLM(loaded)
        self.shots = list(shots)
        self.max_passage_chars = max_passage_chars

    def generate(self, passages: Sequence[str], sampling: SamplingConfig) -> list[list[str]]:
        prompts = [few_shot_prompt(self.shots, p, self.max_passage_chars) for p in passages]
        return self.lm.sample_text(prompts, sampling)
