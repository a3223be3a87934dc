# Sourced by the scripts that install what a fresh Debian machine lacks.
# apt_install <who> <package>...: installs the packages (none: nothing), as
# root or through sudo, saying so under <who>'s name.
apt_install() {
  local who="$1" sudo=""
  shift
  [ $# -gt 0 ] || return 0
  echo "$who: installing $*" >&2
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
