#!/usr/bin/env bash
# Prepare, HERE (a machine with the package registry), the wheels the GPU image lacks, into
# .whl/ (git-ignored) for bench/gpu_install.sh to install THERE (the GPU machine has no network).
#
#   bash bench/gpu_wheels.sh            # -> .whl/core/*.whl (~47 MB), .whl/dali/part-NN + PARTS, WHEEL, SHA256
#
# The image has torch 2.11 (cu130), torchvision, torchaudio, numpy, matplotlib, seaborn, tqdm,
# pytest-benchmark, tabulate, pyyaml, portalocker, networkx, six (device/KINDS.md); it lacks
# fvcore/iopath/yacs/termcolor, optuna and its deps, PyAV, soundfile and its deps, pytorchvideo,
# DALI and its pure-Python deps. Versions are those the CPU test environment runs.
# Binary wheels are fetched for the image's Python 3.12 on x86-64; fvcore and pytorchvideo are
# registry sdists (as is iopath 0.1.10), built into wheels here. DALI's wheel (199 MB) exceeds one device call's 64 MiB,
# so it is split into parts that travel in separate calls (docs/performance.md, "GPU check").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=.whl
PART_SIZE=${PART_SIZE:-45M}  # + the repository (~17 MB with its reports) stays under one call's 64 MiB
PLATFORMS=()
for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_24_x86_64 manylinux_2_27_x86_64 \
         manylinux_2_28_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
BINARY=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}")

CORE=(av==18.1.0 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 yacs==0.1.8 termcolor==3.3.0
      optuna==5.0.0 alembic==1.20.1 sqlalchemy==2.1.9 colorlog==6.12.0 mako==1.4.3 parameterized==0.9.0
      optree==0.20.0 astunparse==1.6.3 gast==0.7.0 nvtx==0.2.17 makefun==1.16.0 libcst==1.9.0)
SDISTS=(fvcore==0.1.5.post20221221 iopath==0.1.10 pytorchvideo==0.1.5)
DALI=nvidia-dali-cuda130==2.4.0

mkdir -p "$DEST/core" "$DEST/dali" "$DEST/dali-whole"
"$PY" -m pip download -q "${BINARY[@]}" -d "$DEST/core" "${CORE[@]}"
"$PY" -m pip wheel -q --no-deps -w "$DEST/core" "${SDISTS[@]}"
"$PY" -m pip download -q "${BINARY[@]}" -d "$DEST/dali-whole" "$DALI"

wheel=$(cd "$DEST/dali-whole" && ls nvidia_dali_cuda130-*.whl)
rm -f "$DEST"/dali/part-*
split -b "$PART_SIZE" -d -a 2 "$DEST/dali-whole/$wheel" "$DEST/dali/part-"
echo "$wheel" > "$DEST/dali/WHEEL"
ls "$DEST"/dali/part-* | wc -l | tr -d ' ' > "$DEST/dali/PARTS"
(cd "$DEST/dali-whole" && sha256sum "$wheel") > "$DEST/dali/SHA256"
rm -rf "$DEST/dali-whole"
echo "core wheels: $(du -sh "$DEST/core" | cut -f1) in $DEST/core; DALI: $(cat "$DEST/dali/PARTS") parts of $PART_SIZE in $DEST/dali"
