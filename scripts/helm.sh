#!/usr/bin/env bash
# The chart tests' tools, installed once per machine and reused: Helm's own
# library through PyPI `helm-python-sdk` (no helm binary; it needs Python
# >= 3.12), PyYAML, and `kubernetes-validate` (the Kubernetes OpenAPI
# schemas, bundled). Prints PYTHON=… for the tests to read.
set -euo pipefail

dir="${XDG_CACHE_HOME:-$HOME/.cache}/bindery/helm"
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9

venv="$dir/venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import helm_python, yaml, kubernetes_validate' 2>/dev/null; then
  python=""
  for candidate in python3.13 python3.12 "$HOME"/.pyenv/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.12*/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
      python="$candidate"
      break
    fi
  done
  if [ -z "$python" ]; then
    echo "helm: helm-python-sdk needs Python >= 3.12, and this machine has none (looked for python3.13, python3.12 and pyenv's)." >&2
    exit 1
  fi
  echo "helm: installing helm-python-sdk with $python" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q "helm-python-sdk==0.2.2" "PyYAML==6.0.3" "kubernetes-validate==1.37.0" >&2
fi
echo "PYTHON=$venv/bin/python"
