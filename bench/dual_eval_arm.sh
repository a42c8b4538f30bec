#!/usr/bin/env bash
# Evaluate one trained dual encoder (runs/NAME/best) on data it never trained on: SciFact
# test (dense retrieval from the whole corpus, with an index built by the encoder; nDCG@10,
# R@100) and TREC DL19 (its BM25 top-100 re-ranked by the encoder's cosine), each compared
# with the untrained MiniLM (runs/minilm-eval-*, bench/laurel_minilm.sh writes them).
# Finished steps are skipped.   usage: bench/dual_eval_arm.sh NAME
name=${1:?usage: bench/dual_eval_arm.sh NAME (a run folder under runs/)}
source "$(dirname "$0")/dual_env.sh"
[ -f "runs/$name-index/manifest.json" ] ||
    "$loupe" index build --corpus "$D/beir-scifact" --out "runs/$name-index" \
        --model "runs/$name/best" -q
[ -f "runs/$name-eval-scifact/metrics.json" ] ||
    "$loupe" eval --queries "$D/beir-scifact/queries.jsonl" --split test \
        --qrels "$D/beir-scifact/qrels/test.tsv" --index "runs/$name-index" --depth 100 \
        --compare runs/minilm-eval-scifact/run.trec --out "runs/$name-eval-scifact" -q
[ -f "runs/$name-eval-dl19/metrics.json" ] ||
    "$loupe" eval --queries "$D/trec-dl-2019-passage/queries.tsv" \
        --qrels "$D/trec-dl-2019-passage/qrels.trec" \
        --candidates "$D/trec-dl-2019-passage/run.BM25.top100.trec" \
        --corpus "$D/trec-dl-2019-passage/corpus.jsonl" --reranker "cosine:runs/$name/best" \
        --compare runs/minilm-eval-dl19/run.trec --out "runs/$name-eval-dl19" -q
