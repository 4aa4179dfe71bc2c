#!/bin/sh
# The installs at the lock's exact versions (deploy/constraints.txt), for the image and for .venv:
#   install-locked.sh torch          torch 2.13.0, the CPU build (deploy/Dockerfile, make setup)
#   install-locked.sh dependencies   the runtime dependencies of pyproject.toml (deploy/Dockerfile)
#   install-locked.sh dev            the project, editable, with its dev extra (make setup)
# It runs the first `pip` and `python` on PATH: the image's venv, or the .venv/bin the Makefile puts first.
#
# torch comes from a local wheel folder that holds the CPU wheel (TORCH_WHEELS, or pip's find-links:
# its configuration or PIP_FIND_LINKS, which is /wheelhouse in the image), else from PyTorch's CPU
# wheel index (TORCH_INDEX_URL, default below: the one place that names it). The pin `==2.13.0+cpu`
# matches only the CPU build, which the package index does not hold, so no source can give the CUDA
# one. A failure names every place it tried.
set -eu
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
TORCH_WHEEL='torch-2.13.0+cpu-*.whl'
cert=/wheelhouse/ca.crt  # the image build's CA bundle (deploy/wheelhouse/)
[ -f "$cert" ] && export PIP_CERT="$cert"

what=${1:-}
folders="${TORCH_WHEELS:-} $(pip config list 2>/dev/null | sed -n "s/^[^=]*find-links='\(.*\)'$/\1/p" | tr '\n' ' ')"
folders=$(printf '%s\n' $folders | awk '!seen[$0]++' | tr '\n' ' ' | sed 's/ $//')  # each once
torch_folder=""
for folder in $folders; do
  # shellcheck disable=SC2086
  if ls "${folder#file://}"/$TORCH_WHEEL >/dev/null 2>&1; then torch_folder=${folder#file://}; break; fi
done
# Every place this install may take packages from, for the message of a failure.
tried="local wheel folders (TORCH_WHEELS, pip's find-links): ${folders:-none set}"
[ "$what" = torch ] && [ -n "$folders" ] && [ -z "$torch_folder" ] && tried="$tried, no $TORCH_WHEEL there"
if [ "${PIP_NO_INDEX:-0}" = 1 ]; then
  export PIP_NO_INDEX=1 && unset PIP_INDEX_URL
  tried="$tried
no index (PIP_NO_INDEX=1)"
else
  tried="$tried
the package index (PIP_INDEX_URL): ${PIP_INDEX_URL:-pip's default}"
fi

case "$what" in
  torch)
    if [ -n "$torch_folder" ]; then
      set -- torch==2.13.0+cpu --find-links "$torch_folder"
    else
      set -- torch==2.13.0+cpu
      if [ "${PIP_NO_INDEX:-0}" != 1 ]; then
        set -- "$@" --extra-index-url "$TORCH_INDEX_URL"
        tried="$tried
PyTorch's CPU wheel index (TORCH_INDEX_URL): $TORCH_INDEX_URL"
      fi
    fi ;;
  dependencies)
    # pyproject's [project].dependencies, read with the standard library (no project code yet).
    python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
    set -- -r /tmp/requirements.txt setuptools ;;
  dev) set -- -e '.[dev]' ;;
  *) echo "install-locked.sh: torch, dependencies or dev, not '$what'" >&2; exit 2 ;;
esac
pip install -c deploy/constraints.txt "$@" || {
  echo "install-locked.sh: could not install the locked $what. Tried:" >&2
  echo "$tried" | sed 's/^/  - /' >&2
  echo "Give it a source that answers and holds the lock's version:" >&2
  echo "  make setup: TORCH_WHEELS=<a folder holding the torch wheel>, or TORCH_INDEX_URL / PIP_INDEX_URL" >&2
  echo "  docker build: fill deploy/wheelhouse/ (see its README.md), or --build-arg PIP_INDEX_URL / TORCH_INDEX_URL" >&2
  exit 1
}
