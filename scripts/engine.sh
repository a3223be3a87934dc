#!/usr/bin/env bash
# The build tests' real parts, made once per machine and reused: a Docker
# engine (Debian docker.io, started by hand, host networking only), the
# repo2docker CLI in a virtualenv, and base images made here, since no public
# registry is reachable: a Debian base by debootstrap, and on it a Jupyter
# single-user environment (jupyter-server + jupyterhub from PyPI), and on that
# one with JupyterLab, the quickstart's example environment.
# Prints DOCKER_HOST=… and REPO2DOCKER=… for the tests to read, and
# STARTED_DOCKERD=<pid file> when this run started the engine.
set -euo pipefail

dir="${XDG_CACHE_HOME:-$HOME/.cache}/bindery/engine"
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v flock >/dev/null || need+=(util-linux)
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
source "$(dirname "$0")/apt.sh"
apt_install engine "${need[@]}"

r2d="$dir/repo2docker"
if [ ! -x "$r2d/bin/jupyter-repo2docker" ] || ! "$r2d/bin/jupyter-repo2docker" --version 2>/dev/null | grep -qx 2024.07.0; then
  echo "engine: installing jupyter-repo2docker" >&2
  python3 -m venv "$r2d"
  # 2024.07.0, as upstream's default build image: later releases need the buildx plugin, which Debian 12 does not package.
  "$r2d/bin/pip" install -q "jupyter-repo2docker==2024.07.0" >&2
fi

sock="$dir/docker.sock"
export DOCKER_HOST="unix://$sock"
if ! docker version >/dev/null 2>&1; then
  cat > "$dir/daemon.json" <<JSON
{
  "data-root": "$dir/data",
  "exec-root": "$dir/exec",
  "pidfile": "$dir/docker.pid",
  "hosts": ["unix://$sock"],
  "storage-driver": "overlay2",
  "bridge": "none",
  "iptables": false,
  "default-ulimits": {
    "nofile": {"Name": "nofile", "Hard": 20000, "Soft": 20000},
    "nproc": {"Name": "nproc", "Hard": 16384, "Soft": 16384}
  }
}
JSON
  # A killed engine leaves its pid files, which stop dockerd from starting
  # (or have it wait on a containerd that is going away); a dying process may
  # linger a moment, or as a zombie; a hung one is stopped.
  for pid_file in "$dir/docker.pid:dockerd" "$dir/exec/containerd/containerd.pid:containerd"; do
    name="${pid_file##*:}"
    pid_file="${pid_file%:*}"
    [ -f "$pid_file" ] || continue
    old="$(cat "$pid_file")"
    for i in $(seq 1 100); do
      state="$(awk '{print $3}' "/proc/$old/stat" 2>/dev/null || true)"
      if [ -z "$state" ] || [ "$state" = Z ] || ! tr '\0' ' ' 2>/dev/null <"/proc/$old/cmdline" | grep -q "$name"; then
        break
      fi
      if [ "$i" = 100 ]; then
        echo "engine: $name (pid $old) is left from an engine that does not answer; stopping it" >&2
        kill -9 "$old" 2>/dev/null || true
      fi
      sleep 0.1
    done
    rm -f "$pid_file"
  done
  echo "engine: starting dockerd" >&2
  # fd 9 (the lock) must not live on in the daemon.
  setsid nohup dockerd --config-file "$dir/daemon.json" >"$dir/dockerd.log" 2>&1 </dev/null 9>&- &
  for _ in $(seq 1 100); do
    docker version >/dev/null 2>&1 && break
    sleep 0.2
  done
  docker version >/dev/null 2>&1 || { echo "engine: dockerd did not start; see $dir/dockerd.log" >&2; tail -20 "$dir/dockerd.log" >&2; exit 1; }
  started="$dir/docker.pid"
fi

if ! docker image inspect bindery-test/debian:bookworm >/dev/null 2>&1; then
  echo "engine: making a Debian base with debootstrap (about 30 s)" >&2
  rm -rf "$dir/rootfs"
  debootstrap --variant=minbase bookworm "$dir/rootfs" http://deb.debian.org/debian >"$dir/debootstrap.log" 2>&1 \
    || { tail -20 "$dir/debootstrap.log" >&2; exit 1; }
  tar -C "$dir/rootfs" -c . | docker import - bindery-test/debian:bookworm >/dev/null
  rm -rf "$dir/rootfs"
fi

if ! docker image inspect bindery-test/jupyter:1 >/dev/null 2>&1; then
  echo "engine: making a Jupyter single-user image (about 60 s)" >&2
  ctx="$(mktemp -d)"
  # HTTPS here goes through a proxy whose CA is in the host's bundle.
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca.crt"
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM bindery-test/debian:bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv tini >/dev/null && rm -rf /var/lib/apt/lists/*
COPY ca.crt /etc/ssl/certs/bindery-build-ca.crt
RUN python3 -m venv /opt/jupyter && PIP_CERT=/etc/ssl/certs/bindery-build-ca.crt /opt/jupyter/bin/pip install -q jupyterhub jupyter-server
RUN useradd -m -u 1000 -s /bin/bash jovyan
ENV PATH=/opt/jupyter/bin:$PATH HOME=/home/jovyan
USER jovyan
WORKDIR /home/jovyan
ENTRYPOINT ["tini", "--"]
CMD ["jupyter-server", "--ip=127.0.0.1"]
DOCKERFILE
  docker build -q --network host -t bindery-test/jupyter:1 "$ctx" >"$dir/jupyter-build.log" 2>&1 || { tail -30 "$dir/jupyter-build.log" >&2; exit 1; }
  rm -rf "$ctx"
fi

if ! docker image inspect bindery-test/jupyterlab:1 >/dev/null 2>&1; then
  echo "engine: adding JupyterLab to it (about 20 s)" >&2
  ctx="$(mktemp -d)"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca.crt"
  cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM bindery-test/jupyter:1
USER root
COPY ca.crt /tmp/ca.crt
RUN PIP_CERT=/tmp/ca.crt pip install -q --no-cache-dir jupyterlab && rm /tmp/ca.crt
USER jovyan
DOCKERFILE
  docker build -q --network host -t bindery-test/jupyterlab:1 "$ctx" >"$dir/jupyterlab-build.log" 2>&1 || { tail -30 "$dir/jupyterlab-build.log" >&2; exit 1; }
  rm -rf "$ctx"
fi

echo "DOCKER_HOST=$DOCKER_HOST"
echo "REPO2DOCKER=$r2d/bin/jupyter-repo2docker"
if [ -n "${started:-}" ]; then echo "STARTED_DOCKERD=$started"; fi
