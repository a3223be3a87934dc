#!/usr/bin/env python3
"""Exec to the first complete `200 /versions` of `bindery serve`, and its RSS.

Usage: scripts/bench-start.py BINARY [ENV=VALUE ...]

Seven rounds, each of: a start with an empty data dir (a new pod), a warm
start (the compiled plugins on disk from the round before), and a start with
an empty data dir whose engine is configured otherwise than the one that
compiled the bundled plugins (fuel metering on), so it compiles them all at
start, as every start with an empty data dir did before they came compiled
with the binary. Medians, and the ratios to the warm start of the same run."""
import os, socket, statistics, subprocess, sys, tempfile, time

binary = sys.argv[1]
env = dict(os.environ)
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    env[k] = v


def rss(pid):
    line = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0]
    return int(line.split()[1]) / 1024


def start(data, extra=None):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    e = dict(env, **(extra or {}))
    t = time.monotonic()
    p = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                         env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"GET /versions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            if c.recv(12).startswith(b"HTTP/1.1 200"):
                break
        except OSError:
            pass
        time.sleep(0.0005)
    elapsed = time.monotonic() - t
    at_answer = rss(p.pid)
    time.sleep(1.0)
    idle = rss(p.pid)
    p.terminate(); p.wait()
    return elapsed * 1000, at_answer, idle


kinds = {"empty data dir": [], "warm": [], "empty data dir, compiling at start": []}
for _ in range(7):
    with tempfile.TemporaryDirectory() as d:
        kinds["empty data dir"].append(start(d))
        kinds["warm"].append(start(d))
    with tempfile.TemporaryDirectory() as d:
        kinds["empty data dir, compiling at start"].append(
            start(d, {"BINDERY_PLUGIN_RUNTIME__FUEL": str(1 << 40)}))
warm = statistics.median(r[0] for r in kinds["warm"])
for name, runs in kinds.items():
    ms = statistics.median(r[0] for r in runs)
    print(f"{name}: p50 {ms:.1f} ms ({ms / warm:.2f}x warm) [{', '.join(f'{r[0]:.0f}' for r in runs)}]; "
          f"RSS at answer {statistics.median(r[1] for r in runs):.1f} MiB, "
          f"1 s later {statistics.median(r[2] for r in runs):.1f} MiB")
