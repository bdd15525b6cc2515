#!/usr/bin/env bash
# THERE (the GPU machine): install the wheels bench/gpu_wheels.sh prepared and a device call
# carried in .whl/, into $AVSF_SITE (default /tmp/avsf_site); then `export PYTHONPATH=$AVSF_SITE:$PWD`.
#
# DALI travels in parts over several calls (one call carries at most 64 MiB): every call's
# parts are stashed in /tmp/avsf_dali, which lasts while the machine stays warm; once all parts
# are there the wheel is put together, its SHA-256 checked, and installed. Until then this says
# which parts are missing and the check runs without DALI (its DALI entries skip).
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=${AVSF_SITE:-/tmp/avsf_site}
STASH=${AVSF_DALI_STASH:-/tmp/avsf_dali}
PIP=(python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE")
mkdir -p "$SITE" "$STASH"

if compgen -G ".whl/core/*.whl" > /dev/null; then
  "${PIP[@]}" .whl/core/*.whl
  echo "gpu_install: $(ls .whl/core/*.whl | wc -l) wheels installed into $SITE"
fi

for f in .whl/dali/part-* .whl/dali/PARTS .whl/dali/WHEEL .whl/dali/SHA256; do
  [ -f "$f" ] && cp "$f" "$STASH/"
done
if [ -f "$STASH/PARTS" ] && [ ! -f "$STASH/.installed" ]; then
  have=$(find "$STASH" -maxdepth 1 -name 'part-*' | wc -l)  # not ls: with no part yet it fails under pipefail
  need=$(cat "$STASH/PARTS")
  if [ "$have" -eq "$need" ]; then
    wheel=$(cat "$STASH/WHEEL")
    cat "$STASH"/part-* > "$STASH/$wheel"
    (cd "$STASH" && sha256sum -c --quiet SHA256)
    "${PIP[@]}" "$STASH/$wheel"
    rm -f "$STASH/$wheel" "$STASH"/part-*
    touch "$STASH/.installed"
    echo "gpu_install: DALI installed into $SITE"
  else
    echo "gpu_install: DALI: $have of $need parts here so far; carry the rest (the check skips DALI until then)"
  fi
fi
