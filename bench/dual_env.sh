# Sourced by the dual-encoder bench scripts: strict mode, the repository root, the data
# folder ($D), the CLI ($loupe), threads, and one runtime for every arm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
D=${LOUPE_DATA_DIR:-../shared/data}
loupe="${LOUPE_VENV:-.venv}/bin/loupe"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export LOUPE_RUNTIME=${LOUPE_RUNTIME:-torch}  # the same runtime for every arm
