#!/usr/bin/env bash
# The GPU check (issue 11) on the GPU machine, in one command:
#   bash bench/gpu_check.sh [--phases tests,bench,...]     # arguments go to python -m bench.gpu_check
# Installs the carried wheels (bench/gpu_install.sh), runs the check (at most 8 minutes), writes
# reports/bench/gpu/gpu_check.{json,md} and bench_cuda.json, and copies them to $OUT when the
# device tool set it (so they come back). Without a GPU it is the dry run.
set -uo pipefail
cd "$(dirname "$0")/.."
bash bench/gpu_install.sh || exit 1
export PYTHONPATH="${AVSF_SITE:-/tmp/avsf_site}:$PWD" PYTHONUNBUFFERED=1
"${PYTHON:-python3}" -m bench.gpu_check "$@"
rc=$?
if [ -n "${OUT:-}" ]; then
  cp reports/bench/gpu/gpu_check.json reports/bench/gpu/gpu_check.md reports/bench/gpu/bench_cuda.json \
     reports/bench/gpu/train_phase.json "$OUT"/ 2>/dev/null || true
fi
exit $rc
