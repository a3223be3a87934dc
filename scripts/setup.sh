# Sourced by the other scripts: installs what building Bindery needs on a
# Debian machine and picks a cargo target directory outside the checkout.
set -euo pipefail

need_pkgs=()
command -v git >/dev/null || need_pkgs+=(git)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need_pkgs+=(libssl-dev)
command -v cc >/dev/null || need_pkgs+=(gcc)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v python3 >/dev/null || need_pkgs+=(python3)
# The quickstart's and the tests' real components: an OCI registry (htpasswd
# and token auth, the token signed with openssl), a browser.
command -v docker-registry >/dev/null || need_pkgs+=(docker-registry)
command -v htpasswd >/dev/null || need_pkgs+=(apache2-utils)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v chromium >/dev/null || need_pkgs+=(chromium)
# Network namespaces for the tests that must send nothing off the machine.
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
apt_install setup "${need_pkgs[@]}"

if ! command -v cargo >/dev/null; then
  echo "setup: Rust is not installed; install it with rustup (https://rustup.rs) and run this again" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 target (plugins are built for it)" >&2
  rustup target add wasm32-wasip2 >/dev/null
fi

# rustfmt and clippy come with rustup's default profile; a minimal install
# lacks them.
setup_rust_components() {
  local missing=()
  for c in "$@"; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || missing+=("$c")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: adding the Rust components ${missing[*]}" >&2
    rustup component add "${missing[@]}" >/dev/null
  fi
}

# Builds are slow (wasmtime alone takes minutes): keep them outside the
# checkout so every clone on this machine reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bindery/target}"
mkdir -p "$CARGO_TARGET_DIR"
