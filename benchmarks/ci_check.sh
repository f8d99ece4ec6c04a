#!/usr/bin/env bash
# Benchmark-suite check for CI (called from .ci/run).
#
# 1. `asv check`: every benchmark module imports and every benchmark is well
#    formed (parameters, setup signatures).
# 2. A --quick run (each benchmark called once, nothing saved) of a small
#    subset on the current Python, against the installed fastnn, for the numpy
#    and numba backends: one kernel class (both dtypes), one stability track
#    (m = 100, depth 2, both scalings and dtypes) and the quality track (float32,
#    both training runs, so the compiled sgd_loop is compiled and run) and one
#    minibatch Model.fit epoch (digits' shape, float32, so the compiled steps run).
#    asv exits 2 when any benchmark raised, which fails this script.
#    Backends that are not available here are skipped (asv prints "skipped"),
#    which is not a failure.
#
# Works from a fresh clone: no .asv/ folder and no asv machine file are needed
# (`asv machine --yes` writes ~/.asv-machine.json with this host's defaults).
# Needs fastnn installed (pip install -e .) and asv (pip install -e ".[bench]").
set -euo pipefail
cd "$(dirname "$0")/.."

export PIP_DISABLE_PIP_VERSION_CHECK=1
# Compiled Numba kernels are cached here across the benchmark processes
# (the same folder .ci/run uses; git-ignored).
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.numba_cache}"
# This is a does-it-run check, not a timing: one BLAS thread avoids OpenBLAS
# threads spin-waiting for a busy core on a loaded CI machine (a 1 ms GEMM
# can then take 60 ms).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"

if ! python -c "import asv" 2>/dev/null; then
  python -m pip install -q "asv>=0.6"
fi

start=$SECONDS
python -m asv machine --yes > /dev/null
python -m asv check -E existing:same

# Parameter-level selection: asv matches each regex against
# "name(param1, param2, ...)", with string parameters quoted.
python -m asv run -E existing:same --quick --show-stderr \
  --bench "bench_kernels\.TimeBackwardHidden\.time_backward_hidden\('(numpy|numba)'," \
  --bench "bench_stability\.TrackGradientError\.track_dW_rel_error\('(numpy|numba)', '(deferred|absorbed)', '(float32|float64)', 100, 2\)" \
  --bench "bench_quality\.TrackQuality\.track_test_accuracy\('(numpy|numba)', 'float32'," \
  --bench "bench_training\.TimeFitEpoch\.time_epoch\('digits', '(numpy|numba)', 'float32'\)" \
  || { status=$?; echo "ci_check: asv run failed (exit $status): a benchmark raised; see above" >&2; exit "$status"; }

echo "ci_check: benchmark suite OK ($((SECONDS - start)) s)"
