#!/usr/bin/env bash
# The packaged MiniLM dual encoder fine-tuned with and without LAuReL (reports/laurel.md):
# three arms on the same data, seed and budget (configs/dual-scifact*.toml), each then
# evaluated on data it never trained on: SciFact test (dense retrieval from the whole
# corpus: nDCG@10, R@100) and TREC DL19 (its BM25 top-100 re-ranked by the encoder's cosine).
# Finished steps are skipped, so the script resumes. CPU: about an hour on 2 cores.
source "$(dirname "$0")/dual_env.sh"

[ -f runs/scifact-index/manifest.json ] ||
    "$loupe" index build --corpus "$D/beir-scifact" --out runs/scifact-index -q

# the untrained MiniLM, evaluated the same way (the baseline of every comparison)
[ -f runs/minilm-eval-scifact/metrics.json ] ||
    "$loupe" eval --queries "$D/beir-scifact/queries.jsonl" --split test \
        --qrels "$D/beir-scifact/qrels/test.tsv" --index runs/scifact-index --depth 100 \
        --out runs/minilm-eval-scifact -q
[ -f runs/minilm-eval-dl19/metrics.json ] ||
    "$loupe" eval --queries "$D/trec-dl-2019-passage/queries.tsv" \
        --qrels "$D/trec-dl-2019-passage/qrels.trec" \
        --candidates "$D/trec-dl-2019-passage/run.BM25.top100.trec" \
        --corpus "$D/trec-dl-2019-passage/corpus.jsonl" --reranker cosine \
        --out runs/minilm-eval-dl19 -q

train() {  # name, then the arguments of loupe train dual
    local name=$1; shift
    [ -f "runs/$name/summary.json" ] || "$loupe" train dual "$@" -q
}
train dual-scifact --config configs/dual-scifact.toml
train dual-scifact-laurel --config configs/dual-scifact.toml --laurel rw,lr \
    --out runs/dual-scifact-laurel
train dual-scifact-laurel-only --config configs/dual-scifact-laurel-only.toml

for name in dual-scifact dual-scifact-laurel dual-scifact-laurel-only; do
    bench/dual_eval_arm.sh "$name"
done
