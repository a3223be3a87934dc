#!/usr/bin/env bash
# Upstream BinderHub's own JavaScript client (@jupyterhub/binderhub-client,
# what its launch page and JupyterLab extensions use), bundled into one ES
# module a test page can import in Chromium; installed once per machine and
# reused. Prints BINDERHUB_CLIENT=<the bundle>.
set -euo pipefail

dir="${XDG_CACHE_HOME:-$HOME/.cache}/bindery/js-client"
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9

need=()
command -v npm >/dev/null || need+=(npm)
source "$(dirname "$0")/apt.sh"
apt_install js-client "${need[@]}"

version=0.5.0
bundle="$dir/binderhub-client-$version.mjs"
if [ ! -s "$bundle" ]; then
  echo "js-client: installing @jupyterhub/binderhub-client $version" >&2
  npm install --silent --prefix "$dir" "@jupyterhub/binderhub-client@$version" esbuild@0.24.2 >&2
  echo 'export { BinderRepository } from "@jupyterhub/binderhub-client/client.js";' > "$dir/entry.mjs"
  "$dir/node_modules/.bin/esbuild" "$dir/entry.mjs" --bundle --format=esm --platform=browser \
    --log-level=warning --outfile="$bundle.tmp"
  mv "$bundle.tmp" "$bundle"
fi
echo "BINDERHUB_CLIENT=$bundle"
