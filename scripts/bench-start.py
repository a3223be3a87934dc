#!/usr/bin/env python3
"""Exec to the first complete `200 /versions` of `bindery serve`, and its RSS.

Usage: scripts/bench-start.py BINARY DATA_DIR [ENV=VALUE ...]. The first round
may start with an empty data dir; seven warm rounds follow (median printed)."""
import subprocess, time, socket, sys, os, statistics
binary, data = sys.argv[1], sys.argv[2]
extra_env = dict(os.environ)
for kv in sys.argv[3:]:
    k, v = kv.split("=", 1); extra_env[k] = v
def once():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    t = time.monotonic()
    p = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data], env=extra_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"GET /versions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            if c.recv(12).startswith(b"HTTP/1.1 200"): break
        except OSError: pass
        time.sleep(0.0005)
    el = time.monotonic() - t
    rss = [l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0].split()[1]
    time.sleep(1.0)
    rss_idle = [l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0].split()[1]
    p.terminate(); p.wait()
    return el, int(rss)/1024, int(rss_idle)/1024
first = once()
rest = [once() for _ in range(7)]
print(f"first (empty data dir?) {first[0]*1000:.0f} ms; warm p50 {statistics.median(r[0] for r in rest)*1000:.0f} ms; RSS at answer {statistics.median(r[1] for r in rest):.1f} MiB, 1 s later {statistics.median(r[2] for r in rest):.1f} MiB")
