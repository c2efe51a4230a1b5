#!/usr/bin/env bash
# Reward learning side by side: PrefLab's trainer and imitation 1.0.1 on the same fixed pool of
# Pendulum-v1 segments, same oracle labels, same 32-32 net, one torch thread each; one table.
#
#   benchmarks/reward_learning_compare.sh [extra args for benchmarks/reward_learning.py]
#
# PREFLAB_PYTHON (default .venv/bin/python) runs PrefLab's side; IMITATION_PYTHON (default
# /tmp/imitation-venv/bin/python) is a separate virtualenv made with
#   python3.11 -m venv /tmp/imitation-venv
#   /tmp/imitation-venv/bin/pip install torch==2.13.0 imitation==1.0.1   # CPU torch wheel
# Writes benchmarks/results/reward_learning_{preflab,imitation,compare}.json.
# On a busy shared machine (imitation's full runs then take over an hour, and the load drifts
# between the two sides) see benchmarks/reward_learning_paired.py: accuracy from full runs,
# speed from PrefLab runs before and after a short imitation timing on the same pool.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFLAB_PYTHON=${PREFLAB_PYTHON:-.venv/bin/python}
IMITATION_PYTHON=${IMITATION_PYTHON:-/tmp/imitation-venv/bin/python}
if ! "$IMITATION_PYTHON" -c "import imitation" 2>/dev/null; then
    echo "no imitation under $IMITATION_PYTHON; see the header of this script" >&2
    exit 2
fi
export OMP_NUM_THREADS=1 TQDM_DISABLE=1
exec "$PREFLAB_PYTHON" benchmarks/reward_learning.py \
    --budgets 50 200 500 1000 --seeds 3 --ensemble-size 1 3 \
    --out benchmarks/results/reward_learning_preflab.json \
    --imitation-python "$IMITATION_PYTHON" \
    --compare-out benchmarks/results/reward_learning_compare.json \
    "$@"
