"""doc2query expansion: append generated queries to a document's text before indexing, so
the first stage matches the words users ask with (Nogueira et al., 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from models.gmlm import GenerativeMaskedLM
from models.gmlm_decoding import DecodingConfig, generate, length_candidates_for


@dataclass(frozen=True)
class ExpansionConfig:
    generator: str
    """A GMLM folder (``loupe train gmlm``)."""
    queries_per_document: int = 3
    iterations: int = 4
    batch_size: int = 16
    device: str | None = None

    def __post_init__(self) -> None:
        if self.queries_per_document < 1:
            raise ValueError("queries_per_document must be at least 1")


class DocumentExpander:
    def __init__(self, config: ExpansionConfig):
        from models.device import pick_device

        self.config = config
        self.model = GenerativeMaskedLM.load(config.generator, device=pick_device(config.device))
        n = config.queries_per_document
        self.decoding = DecodingConfig(
            iterations=config.iterations,
            length_candidates=length_candidates_for(n, 0.0),
            num_generations=n,
        )

    def queries(self, texts: Sequence[str]) -> list[list[str]]:
        """Up to ``queries_per_document`` distinct generated queries per text."""
        out: list[list[str]] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.config.batch_size):
                chunk = list(texts[start : start + self.config.batch_size])
                generations, _ = generate(self.model, chunk, self.decoding)
                out += [[g.text for g in gens] for gens in generations]
        return out
