"""Controlled LAuReL experiment (issue 5, reports/laurel.md): a small BERT encoder trained as a
dual encoder from the same seed on the same data, as

    baseline (L layers) | + LAuReL-RW | + LAuReL-RW+LR | one extra layer (L + 1)

then scored on data it never trained on, with its parameters and encoding latency.

    python -m bench.laurel_controlled [--steps 400] [--seeds 0 1 2] [--out runs/laurel-controlled]
    python -m bench.laurel_controlled --quick     # tiny sizes, a few steps (CI)

Data (SciFact, ../shared/data/beir-scifact): training pairs are (title -> abstract) for
documents no SciFact query judges, minus a held-out set of those documents, plus the SciFact
train claims (claim -> judged abstract) and the MS MARCO triples' (query -> positive).
Evaluation: the held-out titles (MRR@10 of their own abstract) and the SciFact test claims
(nDCG@10, R@100), each retrieving from the whole 5,183-document corpus by cosine.

The encoder: ``BertModel`` with the MiniLM tokenizer; word embeddings taken from the packaged
MiniLM, reduced to the model's width by PCA and frozen (the same for every arm, so the arms
differ only in their transformer layers); everything else starts random from the seed. Mean
pooling; in-batch softmax cross-entropy (scale 20); AdamW; bf16 autocast on the CPU.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ir_measures
import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from bench.harness import markdown_table
from evaluation.datasets import data_root
from index.readers.corpus import read_corpus
from index.readers.queries import read_queries
from index.readers.trec import read_qrels
from models.backbone import resolve_model_path
from models.laurel import LaurelConfig, apply_laurel, count_added_parameters
from models.pooling import l2_normalize, mean_pool
from training.losses import listwise_softmax_ce
from training.trainer import Trainer, TrainerConfig, seed_everything


@dataclass(frozen=True)
class Arm:
    """One arm of the experiment: extra layers and LAuReL variants over the baseline."""

    name: str
    extra_layers: int = 0
    laurel: tuple[str, ...] = ()


ARMS = (
    Arm("baseline"),
    Arm("+LAuReL-RW", laurel=("rw",)),
    Arm("+LAuReL-RW+LR", laurel=("rw", "lr")),
    Arm("+1 layer", extra_layers=1),
)


@dataclass(frozen=True)
class Setup:
    layers: int = 4
    width: int = 256
    heads: int = 4
    rank: int = 16
    steps: int = 400
    batch_size: int = 32
    learning_rate: float = 5e-4
    warmup_steps: int = 40
    query_tokens: int = 32
    passage_tokens: int = 96
    heldout_titles: int = 500
    scale: float = 20.0
    cpu_bf16: bool = True


@dataclass
class Data:
    """Tokenised texts: training pairs, the corpus, and the two held-out query sets."""

    train_queries: list[list[int]]
    train_passages: list[list[int]]
    corpus_ids: list[str]
    corpus: list[list[int]]
    title_queries: dict[str, list[int]]
    title_qrels: dict[str, dict[str, int]]
    test_queries: dict[str, list[int]]
    test_qrels: dict[str, dict[str, int]]


def load_data(setup: Setup, tokenizer: Any, seed: int = 0, corpus_limit: int | None = None) -> Data:
    """SciFact title/claim pairs and MS MARCO triples, split as the module docstring says.

    ``corpus_limit`` (quick mode) keeps that many documents beyond the judged and held-out
    ones, and as many training pairs."""
    scifact = data_root() / "beir-scifact"
    triples = data_root() / "msmarco-train-triples-sample" / "triples.train.sample100.tsv"
    docs = list(read_corpus(scifact / "corpus.jsonl"))
    train_qrels = read_qrels(scifact / "qrels" / "train.tsv")
    test_qrels = read_qrels(scifact / "qrels" / "test.tsv")
    judged = {d for qrels in (train_qrels, test_qrels) for docs_ in qrels.values() for d in docs_}
    titled = sorted(d.id for d in docs if d.title.strip() and d.id not in judged)
    heldout = set(random.Random(seed).sample(titled, min(setup.heldout_titles, len(titled) // 5)))
    by_id = {d.id: d for d in docs}
    queries = read_queries(scifact / "queries.jsonl")

    pairs = [(by_id[d].title, by_id[d].text) for d in titled if d not in heldout]
    pairs += [
        (queries[q], by_id[d].text)
        for q, judged_docs in train_qrels.items()
        for d, grade in judged_docs.items()
        if grade > 0 and q in queries and d in by_id
    ]
    if triples.is_file():
        seen = set()
        for line in triples.read_text(encoding="utf-8").splitlines():
            query, positive, *_ = line.split("\t")
            if (query, positive) not in seen:
                seen.add((query, positive))
                pairs.append((query, positive))

    def ids(texts: Sequence[str], limit: int) -> list[list[int]]:
        return tokenizer(list(texts), truncation=True, max_length=limit)["input_ids"]

    if corpus_limit is not None:
        needed = heldout | {d for docs_ in test_qrels.values() for d in docs_}
        docs = [d for d in docs if d.id in needed] + [d for d in docs if d.id not in needed][
            :corpus_limit
        ]
        pairs = pairs[:corpus_limit]
    test = {q: queries[q] for q in test_qrels if q in queries}
    heldout_ids = sorted(heldout)
    title_ids = ids([by_id[d].title for d in heldout_ids], setup.query_tokens)
    return Data(
        train_queries=ids([q for q, _ in pairs], setup.query_tokens),
        train_passages=ids([p for _, p in pairs], setup.passage_tokens),
        corpus_ids=[d.id for d in docs],
        corpus=ids([d.text for d in docs], setup.passage_tokens),
        title_queries=dict(zip(heldout_ids, title_ids, strict=True)),
        title_qrels={d: {d: 1} for d in heldout},
        test_queries=dict(zip(test, ids(list(test.values()), setup.query_tokens), strict=True)),
        test_qrels=test_qrels,
    )


def pad(rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> ``(n, longest)`` ids and attention mask (pad id 0)."""
    longest = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def pca_embeddings(width: int) -> torch.Tensor:
    """The packaged MiniLM's word embeddings ``(vocab, 384)`` reduced to ``(vocab, width)``."""
    minilm = AutoModel.from_pretrained(resolve_model_path("default"), dtype=torch.float32)
    table = minilm.get_input_embeddings().weight.detach()
    if width >= table.shape[1]:
        return table[:, :width].clone()
    centred = table - table.mean(0)
    _, _, v = torch.pca_lowrank(centred, q=width, center=False, niter=4)
    reduced = centred @ v  # (vocab, width)
    return reduced / reduced.std() * table.std()


class SmallDualEncoder(nn.Module):
    """A ``BertModel`` with frozen word embeddings, mean-pooled to unit vectors."""

    def __init__(self, setup: Setup, arm: Arm, embeddings: torch.Tensor, seed: int):
        super().__init__()
        seed_everything(seed)
        config = BertConfig(
            vocab_size=embeddings.shape[0],
            hidden_size=setup.width,
            num_hidden_layers=setup.layers + arm.extra_layers,
            num_attention_heads=setup.heads,
            intermediate_size=4 * setup.width,
            max_position_embeddings=max(setup.passage_tokens, setup.query_tokens),
        )
        self.model = BertModel(config, add_pooling_layer=False)
        self.model.get_input_embeddings().weight.data.copy_(embeddings)
        self.model.get_input_embeddings().weight.requires_grad_(False)
        if arm.laurel:
            apply_laurel(self.model, LaurelConfig(arm.laurel, rank=setup.rank))
        self.scale = setup.scale

    def embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(n, tokens)`` ids and mask -> ``(n, width)`` unit vectors."""
        states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return l2_normalize(mean_pool(states.float(), mask))

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        q_ids, q_mask, p_ids, p_mask = batch
        scores = self.scale * self.embed(q_ids, q_mask) @ self.embed(p_ids, p_mask).T  # (b, b)
        return listwise_softmax_ce(scores, torch.arange(len(scores)))

    def trained_parameters(self) -> int:
        """Parameters that train (everything except the frozen word embeddings)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def batches(data: Data, batch_size: int, seed: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless seeded mini-batches of distinct training pairs."""
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            order = list(range(len(data.train_queries)))
            rng.shuffle(order)
        chosen, order = order[:batch_size], order[batch_size:]
        yield (
            *pad([data.train_queries[i] for i in chosen]),
            *pad([data.train_passages[i] for i in chosen]),
        )


@torch.no_grad()
def encode(model: SmallDualEncoder, rows: Sequence[list[int]], batch: int = 128) -> torch.Tensor:
    """``(n, width)`` unit vectors, encoded longest-first in fp32."""
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    out = torch.empty(len(rows), model.model.config.hidden_size)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        out[chunk] = model.embed(*pad([rows[i] for i in chunk]))
    return out


def retrieval_metrics(
    queries: dict[str, list[int]],
    qrels: dict[str, dict[str, int]],
    model: SmallDualEncoder,
    corpus: torch.Tensor,
    corpus_ids: list[str],
) -> dict[str, float]:
    """nDCG@10, RR@10 and R@100 of cosine retrieval from the whole corpus."""
    vectors = encode(model, list(queries.values()))
    top = (vectors @ corpus.T).topk(100, dim=1)
    run = {
        qid: {corpus_ids[j]: float(s) for s, j in zip(scores.tolist(), idx.tolist(), strict=True)}
        for qid, scores, idx in zip(queries, top.values, top.indices, strict=True)
    }
    measures = [ir_measures.nDCG @ 10, ir_measures.RR @ 10, ir_measures.R @ 100]
    values = ir_measures.calc_aggregate(measures, qrels, run)
    return {str(m): round(float(v), 4) for m, v in values.items()}


def encode_latency_ms(model: SmallDualEncoder, passages: int, tokens: int, repeats: int) -> float:
    """Median ms to encode ``passages`` random passages of ``tokens`` tokens in one batch."""
    ids = torch.randint(1000, 20000, (passages, tokens))
    mask = torch.ones_like(ids)
    model.eval()
    times = []
    with torch.no_grad():
        model.embed(ids, mask)
        for _ in range(repeats):
            start = time.perf_counter()
            model.embed(ids, mask)
            times.append(1000 * (time.perf_counter() - start))
    return round(statistics.median(times), 1)


def run_arm(
    setup: Setup, arm: Arm, seed: int, data: Data, embeddings: torch.Tensor, out: Path
) -> dict[str, Any]:
    """Train one arm from ``seed`` and score it; the result is cached in ``out``."""
    folder = out / f"{arm.name.replace('+', 'plus-').replace(' ', '-')}-seed{seed}"
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    model = SmallDualEncoder(setup, arm, embeddings, seed)
    trainer = Trainer(
        TrainerConfig(
            out=folder,
            max_steps=setup.steps,
            learning_rate=setup.learning_rate,
            warmup_steps=setup.warmup_steps,
            seed=seed,
            eval_every=0,
            checkpoint_every=100,
            cpu_bf16=setup.cpu_bf16,
            show_progress=False,
        ),
        model,
        model.loss,
        batches(data, setup.batch_size, seed),
    )
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    corpus = encode(model, data.corpus)
    result = {
        "arm": arm.name,
        "seed": seed,
        "trained_parameters": model.trained_parameters(),
        "laurel_parameters": count_added_parameters(model.model) if arm.laurel else 0,
        "train_s": round(train_s, 1),
        "titles": retrieval_metrics(
            data.title_queries, data.title_qrels, model, corpus, data.corpus_ids
        ),
        "scifact_test": retrieval_metrics(
            data.test_queries, data.test_qrels, model, corpus, data.corpus_ids
        ),
    }
    if arm.laurel:
        result["laurel_weights"] = _rw_summary(model.model)
    torch.save(model.state_dict(), folder / "model.pt")
    done.write_text(json.dumps(result, indent=2))
    return result


def _rw_summary(model: nn.Module) -> dict[str, float]:
    """Mean learned alpha and beta over the residual sites (RW arms)."""
    alphas = [p.item() for n, p in model.named_parameters() if n.endswith("laurel.alpha")]
    betas = [p.item() for n, p in model.named_parameters() if n.endswith("laurel.beta")]
    if not alphas:
        return {}
    return {
        "mean_alpha": round(statistics.mean(alphas), 3),
        "mean_beta": round(statistics.mean(betas), 3),
    }


def summarise(results: list[dict[str, Any]], latency: dict[str, float]) -> list[dict[str, Any]]:
    """Per arm: mean and standard deviation over seeds of each metric."""
    rows = []
    for arm in ARMS:
        mine = [r for r in results if r["arm"] == arm.name]
        if not mine:
            continue
        row: dict[str, Any] = {
            "arm": arm.name,
            "seeds": [r["seed"] for r in mine],
            "trained_parameters": mine[0]["trained_parameters"],
            "laurel_parameters": mine[0]["laurel_parameters"],
            "encode_ms": latency.get(arm.name),
        }
        for split, metric in (
            ("titles", "RR@10"),
            ("scifact_test", "nDCG@10"),
            ("scifact_test", "R@100"),
        ):
            values = [r[split][metric] for r in mine]
            row[f"{split} {metric}"] = round(statistics.mean(values), 4)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            row[f"{split} {metric} sd"] = round(spread, 4)
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    lines = []
    for row in rows:
        lines.append(
            [
                row["arm"],
                f"{row['trained_parameters']:,}",
                f"{row['trained_parameters'] - base['trained_parameters']:+,}",
                f"{row['titles RR@10']:.4f} ± {row['titles RR@10 sd']:.4f}",
                f"{row['scifact_test nDCG@10']:.4f} ± {row['scifact_test nDCG@10 sd']:.4f}",
                f"{row['scifact_test R@100']:.4f} ± {row['scifact_test R@100 sd']:.4f}",
                row["encode_ms"],
            ]
        )
    return markdown_table(
        [
            "arm",
            "trained parameters",
            "vs baseline",
            "held-out titles RR@10",
            "SciFact test nDCG@10",
            "SciFact test R@100",
            "encode ms",
        ],
        lines,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=Setup.steps)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--layers", type=int, default=Setup.layers)
    parser.add_argument("--width", type=int, default=Setup.width)
    parser.add_argument("--out", type=Path, default=Path("runs/laurel-controlled"))
    parser.add_argument("--latency-repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny model, 3 steps, 1 seed")
    args = parser.parse_args(argv)
    setup = Setup(layers=args.layers, width=args.width, steps=args.steps)
    seeds = args.seeds
    if args.quick:
        setup = Setup(layers=1, width=32, heads=2, rank=4, steps=3, batch_size=8, heldout_titles=20)
        seeds = [0]
    if not (data_root() / "beir-scifact" / "corpus.jsonl").is_file():
        raise SystemExit(f"needs {data_root()}/beir-scifact (set LOUPE_DATA_DIR)")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    data = load_data(setup, tokenizer, corpus_limit=200 if args.quick else None)
    embeddings = pca_embeddings(setup.width)
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        f"{len(data.train_queries):,} training pairs, {len(data.corpus):,} documents, "
        f"{len(data.title_queries)} held-out titles, {len(data.test_queries)} test claims"
    )
    results = []
    for seed in seeds:
        for arm in ARMS:
            result = run_arm(setup, arm, seed, data, embeddings, args.out)
            print(json.dumps(result))
            results.append(result)
    latency = {
        arm.name: encode_latency_ms(
            SmallDualEncoder(setup, arm, embeddings, 0),
            32,
            setup.passage_tokens,
            1 if args.quick else args.latency_repeats,
        )
        for arm in ARMS
    }
    rows = summarise(results, latency)
    payload = {
        "setup": asdict(setup),
        "seeds": seeds,
        "threads": torch.get_num_threads(),
        "training_pairs": len(data.train_queries),
        "rows": rows,
        "runs": results,
    }
    (args.out / "summary.json").write_text(json.dumps(payload, indent=2))
    print(table(rows))
    return payload


if __name__ == "__main__":
    main()
