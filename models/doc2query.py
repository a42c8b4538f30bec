"""doc2query expansion: append generated queries to a document's text before indexing, so
the first stage matches the words users ask with (Nogueira et al., 2019)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from models.gmlm import GenerativeMaskedLM
from models.gmlm_decoding import DecodingConfig, generate, length_candidates_for
from models.onnx_backbone import frozen_backbone_fingerprint


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

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What its queries depend on: the generator's weights and configuration and how it
        decodes (not the batch size or the device). Two expanders with equal fingerprints
        write the same queries for a text, so a rebuild may keep those it stored."""
        return {
            "generator": frozen_backbone_fingerprint(self.model),
            "generator_config": asdict(self.model.config),
            "decoding": asdict(self.decoding),
        }

    def queries(self, texts: Sequence[str]) -> list[list[str]]:
        """Up to ``queries_per_document`` distinct generated queries per text."""
        out: list[list[str]] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.config.batch_size):
                chunk = list(texts[start : start + self.config.batch_size])
                generations, _ = generate(self.model, chunk, self.decoding)
                out += [[g.text for g in gens] for gens in generations]
        return out

    def expand(
        self, texts: Sequence[str], known: Mapping[int, list[str]] | None = None
    ) -> list[list[str]]:
        """:meth:`queries` of ``texts``, but those ``known`` gives by position are taken
        as they are, not generated again."""
        known = known or {}
        todo = [i for i in range(len(texts)) if i not in known]
        generated = dict(zip(todo, self.queries([texts[i] for i in todo]), strict=True))
        return [known[i] if i in known else generated[i] for i in range(len(texts))]
