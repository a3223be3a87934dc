#!/usr/bin/env python3
"""The first launch of a new repository, end to end: with the launch
overlapped with the push (`build.local.spawner_shares_engine = true`, as the
quickstart sets it) against the same binary with it off (upstream's order:
build, push, then launch).

Usage: scripts/bench-first-launch.py BINARY [ROUNDS] [UPLINK_MBIT]

Each round runs `scripts/quickstart BINARY` in a fresh state directory: an
empty registry, an empty Bindery cache and a new example repository (a new
revision, so a new image), with the engine's build cache warm, as on a
deployment that has built other repositories on the same base. One client
reads `/build/git/<example>/HEAD` to `ready`, as the launch page's
EventSource does, and notes when each phase first arrived. Rounds alternate
the two modes (ROUNDS each, default 3); medians.

With UPLINK_MBIT, the engine pushes through a proxy that carries at most
that many megabits a second towards the registry (all connections
together), as a registry across a network link would: the push is then
bound by the link rather than by compressing on this machine's two cores."""
import asyncio, http.client, json, os, re, signal, socket, statistics, subprocess, sys, tempfile
import threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def first_launch(port, path):
    """Seconds from the request to the first event of each phase (and of the
    engine's `Successfully tagged`), and to `ready`."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    start = time.monotonic()
    c.request("GET", path, headers={"Accept": "text/event-stream"})
    r = c.getresponse()
    seen, buffer = {}, b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            raise SystemExit(f"the stream ended early: {seen}")
        buffer += chunk
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            if not frame.startswith(b"data: "):
                continue
            event = json.loads(frame[6:])
            now = time.monotonic() - start
            phase = event.get("phase")
            if phase:
                seen.setdefault(phase, now)
            if "Successfully tagged" in event.get("message", ""):
                seen.setdefault("tagged", now)
            if phase in ("ready", "failed"):
                if phase == "failed":
                    raise SystemExit(f"the launch failed: {event}")
                return seen


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    return port


def uplink(upstream, mbit):
    """A proxy to 127.0.0.1:upstream whose uploads share `mbit` Mbit/s; its port."""
    port, rate, free_at = free_port(), mbit * 1e6 / 8, [0.0]

    async def pipe(reader, writer, limited):
        try:
            while chunk := await reader.read(65536):
                if limited:
                    loop = asyncio.get_running_loop()
                    start = max(loop.time(), free_at[0])
                    free_at[0] = start + len(chunk) / rate
                    await asyncio.sleep(free_at[0] - loop.time())
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def client(reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    async def serve():
        server = await asyncio.start_server(client, "127.0.0.1", port)
        await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    return port


def round_(binary, overlap, mbit):
    with tempfile.TemporaryDirectory() as state:
        env = dict(os.environ, QUICKSTART_DIR=state,
                   BINDERY_BUILD__LOCAL__SPAWNER_SHARES_ENGINE=str(overlap).lower())
        if mbit:
            registry = free_port()
            pushed_through = uplink(registry, mbit)
            env.update(QUICKSTART_REGISTRY_PORT=str(registry),
                       BINDERY_REGISTRY__URL=f"http://127.0.0.1:{pushed_through}",
                       BINDERY_REGISTRY__IMAGE_PREFIX=f"127.0.0.1:{pushed_through}/binder-")
        quickstart = subprocess.Popen([os.path.join(ROOT, "scripts/quickstart"), binary],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True, start_new_session=True)
        try:
            launch = None
            for line in quickstart.stdout:
                if line.startswith("Launch: "):
                    launch = line.split(" ", 1)[1].strip()
                    break
            if launch is None:
                raise SystemExit("scripts/quickstart did not start; see its logs")
            m = re.match(r"http://127\.0\.0\.1:(\d+)/v2/(.*)\?", launch)
            return first_launch(int(m.group(1)), "/build/" + m.group(2))
        finally:
            os.killpg(quickstart.pid, signal.SIGINT)
            quickstart.wait(timeout=120)


def main():
    binary = os.path.realpath(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    mbit = float(sys.argv[3]) if len(sys.argv) > 3 else None
    got = {True: [], False: []}
    for i in range(rounds * 2):
        overlap = i % 2 == 0
        seen = round_(binary, overlap, mbit)
        got[overlap].append(seen)
        print(f"round {i + 1}: overlap={overlap} " +
              " ".join(f"{k}={v:.2f}" for k, v in sorted(seen.items(), key=lambda kv: kv[1])),
              flush=True)
    med = lambda xs: statistics.median(xs)
    print(f"{'':28}{'overlapped':>12}{'push, then launch':>20}")
    for what, key in [("image in the engine (tagged)", "tagged"), ("push starts", "pushing"),
                      ("push ends (built)", "built"), ("ready", "ready")]:
        a = med([s[key] for s in got[True]])
        b = med([s[key] for s in got[False]])
        print(f"{what:28}{a:11.2f}s{b:19.2f}s")
    a = med([s["ready"] - s["built"] for s in got[True]])
    b = med([s["ready"] - s["built"] for s in got[False]])
    print(f"{'built -> ready':28}{a:11.2f}s{b:19.2f}s")
    ratio = med([s["ready"] for s in got[True]]) / med([s["ready"] for s in got[False]])
    print(f"first launch, overlapped / push-then-launch: {ratio:.2f}x")


if __name__ == "__main__":
    main()
