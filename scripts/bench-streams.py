#!/usr/bin/env python3
"""Memory per open event stream of `bindery serve`.

Usage: scripts/bench-streams.py BINARY [BASELINE_BINARY]

Each round starts the binary on an empty data dir (release build, embedded
defaults, the git provider allowed onto loopback), opens one `/build` stream
for a repository on a tarpit (a git server that accepts and never answers,
so the stream stays open, waiting in its resolution), which also pays the
first git operation's one-time set-up (libgit2 and OpenSSL), then opens
1,000 more and reads each one's headers and first keepalive: the RSS growth
over those 1,000 is the cost of a stream. Five rounds, alternating the
binaries when a baseline is given; medians."""
import os, socket, statistics, subprocess, sys, tempfile, threading, time

STREAMS = 1000


def tarpit():
    t = socket.socket(); t.bind(("127.0.0.1", 0)); t.listen(4096)
    held = []
    def accept():
        while True:
            held.append(t.accept()[0])
    threading.Thread(target=accept, daemon=True).start()
    return t.getsockname()[1]


def rss(pid):
    line = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0]
    return int(line.split()[1]) / 1024


def open_stream(port, request):
    c = socket.create_connection(("127.0.0.1", port)); c.sendall(request)
    return c


def until_keepalive(c):
    got = b""
    while b":keepalive" not in got:
        chunk = c.recv(4096)
        assert chunk, "a stream closed"
        got += chunk


def round_(binary, trap):
    with tempfile.TemporaryDirectory() as d:
        s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
        config = os.path.join(d, "bindery.toml")
        open(config, "w").write(f"""listen = "127.0.0.1:{port}"
data_dir = "{d}/data"
[web]
keepalive_secs = 1
max_connections = {STREAMS + 100}
[web.rate_limit]
limit = 0
[plugin_runtime]
call_timeout_ms = 300000
git_timeout_ms = 300000
reload_interval_ms = 0
[plugins.git]
private_networks = ["127.0.0.0/8"]
""")
        p = subprocess.Popen([binary, "serve", "--config", config], env=dict(os.environ, BINDERY_LOG="warn"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port)).close(); break
                except OSError:
                    time.sleep(0.01)
            request = (f"GET /build/git/git%3A%2F%2F127.0.0.1%3A{trap}%2Fx.git/main HTTP/1.1\r\n"
                       "Host: x\r\nAccept: text/event-stream\r\n\r\n").encode()
            first = open_stream(port, request); until_keepalive(first)
            time.sleep(1)
            before = rss(p.pid)
            streams = [open_stream(port, request) for _ in range(STREAMS)]
            for c in streams:
                until_keepalive(c)
            time.sleep(1)
            grown = rss(p.pid) - before
            for c in streams + [first]:
                c.close()
            return before, grown
        finally:
            p.terminate(); p.wait()


import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
trap = tarpit()
binaries = sys.argv[1:]
runs = {b: [] for b in binaries}
for _ in range(5):
    for b in binaries:
        runs[b].append(round_(b, trap))
base = statistics.median(g for _, g in runs[binaries[-1]])
for b in binaries:
    grown = statistics.median(g for _, g in runs[b])
    print(f"{b}: RSS with 1 stream {statistics.median(r for r, _ in runs[b]):.1f} MiB; "
          f"+{grown:.1f} MiB for {STREAMS} streams ({grown * 1024 / STREAMS:.1f} KiB each, "
          f"{grown / base:.2f}x the last binary) [{', '.join(f'{g:.1f}' for _, g in runs[b])}]")
