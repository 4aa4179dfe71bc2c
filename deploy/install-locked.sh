#!/bin/sh
# The image's installs (deploy/Dockerfile), at the lock's exact versions (deploy/constraints.txt):
#   install-locked.sh torch          torch 2.13.0, the CPU build
#   install-locked.sh dependencies   the runtime dependencies of pyproject.toml
# From the wheelhouse (PIP_FIND_LINKS) first, then the index; a failure says which ones were tried.
set -eu
cert=/wheelhouse/ca.crt
[ -f "$cert" ] && export PIP_CERT="$cert"
torch_wheel=$(ls /wheelhouse/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n1 || true)
where="wheelhouse /wheelhouse ($(ls /wheelhouse/*.whl 2>/dev/null | wc -l) wheels)"
if [ "${PIP_NO_INDEX:-0}" = 1 ]; then
  export PIP_NO_INDEX=1; unset PIP_INDEX_URL; where="$where, no index (PIP_NO_INDEX=1)"
else
  where="$where, index ${PIP_INDEX_URL:-default}"
fi
case "$1" in
  torch)
    extra=""
    if [ -z "$torch_wheel" ] && [ "${PIP_NO_INDEX:-0}" != 1 ]; then
      extra="--extra-index-url $TORCH_INDEX_URL"; where="$where, torch index $TORCH_INDEX_URL"
    fi
    set -- torch==2.13.0+cpu $extra ;;
  dependencies)
    # pyproject's [project].dependencies, read with the standard library (no project code yet).
    python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
    set -- -r /tmp/requirements.txt setuptools ;;
  *) echo "install-locked.sh: torch or dependencies, not '$1'" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
pip install -c deploy/constraints.txt "$@" || {
  echo "install-locked.sh: could not install the locked $1 from: $where" >&2
  echo "  fill deploy/wheelhouse/ (see its README.md) or pass --build-arg PIP_INDEX_URL / TORCH_INDEX_URL" >&2
  exit 1
}
