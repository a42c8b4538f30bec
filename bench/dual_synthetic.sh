#!/usr/bin/env bash
# Does the dual encoder gain from generated queries (issue 8, reports/softsrv.md)? The
# packaged MiniLM fine-tuned on the same real data, seed and budget (configs/dual-scifact.toml)
# alone and with the hard-prompt SciFact queries that pass the top-10 consistency filter
# (configs/dual-scifact-synthetic.toml; its header makes the pairs), each evaluated by
# bench/dual_eval_arm.sh. Finished steps are skipped, so the script resumes.
source "$(dirname "$0")/dual_env.sh"

[ -f runs/minilm-eval-scifact/metrics.json ] && [ -f runs/minilm-eval-dl19/metrics.json ] ||
    { echo "run bench/laurel_minilm.sh first: it writes the untrained baselines" >&2; exit 1; }

train() {  # name, then the arguments of loupe train dual
    local name=$1; shift
    [ -f "runs/$name/summary.json" ] || "$loupe" train dual "$@" --out "runs/$name" -q
}
train dual-synth-real --config configs/dual-scifact.toml
train dual-synth-hard-top10 --config configs/dual-scifact-synthetic.toml
for name in dual-synth-real dual-synth-hard-top10; do
    bench/dual_eval_arm.sh "$name"
done
