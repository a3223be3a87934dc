#!/usr/bin/env bash
# JupyterHub for the quickstart and the launch tests, installed once per
# machine and reused: jupyterhub and dockerspawner from PyPI in a virtualenv,
# and configurable-http-proxy from npm. Its configuration is
# scripts/jupyterhub_config.py; its single-user servers run in the Docker
# engine of scripts/engine.sh. Prints JUPYTERHUB=… and CHP=….
set -euo pipefail

dir="${XDG_CACHE_HOME:-$HOME/.cache}/bindery/hub"
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9

need=()
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
command -v npm >/dev/null || need+=(npm)
source "$(dirname "$0")/apt.sh"
apt_install hub "${need[@]}"

hub="$dir/venv"
if [ ! -x "$hub/bin/jupyterhub" ] || ! "$hub/bin/jupyterhub" --version 2>/dev/null | grep -qx 6.1.1; then
  echo "hub: installing jupyterhub and dockerspawner" >&2
  python3 -m venv "$hub"
  "$hub/bin/pip" install -q "jupyterhub==6.1.1" "dockerspawner==14.0.0" >&2
fi

chp="$dir/proxy/node_modules/.bin/configurable-http-proxy"
if [ ! -x "$chp" ]; then
  echo "hub: installing configurable-http-proxy" >&2
  npm install --silent --prefix "$dir/proxy" configurable-http-proxy@5.3.0 >&2
fi

echo "JUPYTERHUB=$hub/bin/jupyterhub"
echo "CHP=$chp"
