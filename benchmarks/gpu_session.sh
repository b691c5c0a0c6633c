#!/usr/bin/env bash
# Every GPU check and GPU benchmark of the open issues, in one command, for a session that is
# lent a GPU machine (the device tool's `run`, from the repository root; the machine has JAX,
# Flax, Optax, scikit-learn, matplotlib and pytest, but neither SALib nor OpenTURNS):
#
#   bash benchmarks/gpu_session.sh [STEP ...]   # results under $OUT (or benchmarks/results/gpu)
#
# STEP is any of: device hsic-large sweep-grid search-grid hypergrad tests multi-gpu (default:
# all, in that order; multi-gpu skips itself on a machine with one GPU), and, asked by name only,
# compile-programs (issue 16: what the grid's training program costs XLA to compile on the GPU). One device call may run
# 10 minutes: run `device hsic-large sweep-grid search-grid` in one call and `hypergrad tests` in
# a second.
#
# It writes, per step, a log and the benchmark's JSON/Markdown files; copy those named
# *_gpu.* into benchmarks/results/ and commit them with the device named (the files do).
#   1. the device (nvidia-smi, jax.devices());
#   2. the test suite on the GPU (reference-library tests skip or fail to import: listed);
#   3. issue 3: HSIC at n = 1e5, d = 20, V + R2 and Gamma p-values (target < 1 s);
#   4. issue 2: the GridSearchCV grid on the GPU, compilation included (target < 10 s),
#      with scikit-learn on the machine's CPU cores beside it;
#   5. issue 18: the GridSearchCV grid through hsens_jax.search.sklearn.GridSearchCV on the GPU, a
#      fresh process with an empty compilation cache (target < 10 s, compilation included) and
#      one with a warm cache, scikit-learn's GridSearchCV(n_jobs=-1) on the CPU cores beside it;
#   6. issue 5 and issue 4: hypergradient and Sobol benchmarks on the GPU;
#   7. issue 19 (multi-gpu): one process per GPU (CUDA_VISIBLE_DEVICES=i, explicit flags on
#      localhost): the sweep on 1, 2, 4... processes (results compared with 1 process) and HSIC
#      at n = 1e6 sharded over the group (benchmarks/bench_distributed.py --platform gpu).
set -u -o pipefail
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
unset JAX_PLATFORMS
STEPS=" ${*:-device hsic-large sweep-grid search-grid hypergrad tests multi-gpu} "
step() {
    [[ $STEPS == *" $1 "* ]] || return 0
    echo "== $1" | tee -a "$OUT/session.log"; shift; "$@" 2>&1 | tee -a "$OUT/session.log"
}

step device bash -c 'nvidia-smi; python3 -c "import jax; print(jax.__version__, jax.devices())"'
step hsic-large timeout 300 python3 benchmarks/bench_hsic_large.py --n 100000 --d 20 --tag gpu --out "$OUT"
step sweep-grid timeout 600 python3 benchmarks/bench_sweep.py --tag gpu --out "$OUT"
step search-grid timeout 590 python3 benchmarks/bench_search_sklearn.py --rounds 1 --tag gpu --out "$OUT"
step compile-programs timeout 300 python3 benchmarks/bench_compile_programs.py --out "$OUT"
step hypergrad timeout 600 python3 benchmarks/bench_hypergrad.py --out "$OUT/hypergrad_gpu"
step tests env JAX_PLATFORMS=cuda timeout 580 python3 -m pytest -q -p no:cacheprovider --continue-on-collection-errors \
    -o addopts="-ra --import-mode=importlib" tests
step multi-gpu bash -c '
    N=$(nvidia-smi -L 2>/dev/null | wc -l)
    if [ "$N" -lt 2 ]; then echo "multi-gpu: $N GPU(s) here, the check needs 2 or more (skipped)"; exit 0; fi
    P=1; for p in 2 4 8; do [ "$p" -le "$N" ] && P="$P $p"; done
    timeout 590 python3 benchmarks/bench_distributed.py --platform gpu --processes $P --configs 256 \
        --weak-configs 256 --epochs 10 --hsic-n 1000000 --hsic-d 4 --hsic-calls 1 --timeout 280 \
        --tag gpu --out "$OUT"'
echo "done: files under $OUT"
