#!/usr/bin/env bash
# The launch tests' JupyterHub, installed once per machine and reused:
# jupyterhub and dockerspawner from PyPI in a virtualenv, and
# configurable-http-proxy from npm. The tests write the hub's config and start
# it themselves, on free loopback ports; its single-user servers run in the
# Docker engine of scripts/engine.sh. Prints JUPYTERHUB=… and CHP=….
set -euo pipefail

dir="${XDG_CACHE_HOME:-$HOME/.cache}/bindery/hub"
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9

hub="$dir/venv"
if [ ! -x "$hub/bin/jupyterhub" ] || ! "$hub/bin/jupyterhub" --version 2>/dev/null | grep -qx 6.1.1; then
  echo "hub: installing jupyterhub and dockerspawner" >&2
  python3 -m venv "$hub"
  "$hub/bin/pip" install -q "jupyterhub==6.1.1" "dockerspawner==14.0.0" >&2
fi

chp="$dir/proxy/node_modules/.bin/configurable-http-proxy"
if [ ! -x "$chp" ]; then
  command -v npm >/dev/null || { echo "hub: npm is needed for configurable-http-proxy" >&2; exit 1; }
  echo "hub: installing configurable-http-proxy" >&2
  npm install --silent --prefix "$dir/proxy" configurable-http-proxy@5.3.0 >&2
fi

echo "JUPYTERHUB=$hub/bin/jupyterhub"
echo "CHP=$chp"
