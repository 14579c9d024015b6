"""The tasks benchmark (run it with scripts/bench-tasks): see that script's header."""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "target" / "release" / "luna-lambda"
REPLICAS, PER_REPLICA, ROUNDS = 2, 8, 2
TRIVIAL = '''
from luna_lambda_tools.public.tasks import BaseLambdaTask

class Trivial(BaseLambdaTask):
    async def splitTasksContent(self, content):
        return [{"x": x} for x in range(content["n"])]

    async def executeSubtask(self, subTaskContent):
        return {"x": subTaskContent["x"]}
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_platform(url, lambda_id, n, server_pid):
    cpu0, t0 = cpu_seconds(server_pid), time.perf_counter()
    task = http("POST", f"{url}/1/tasks", {"description": "bench", "content": {"lambda_id": lambda_id, "n": n}})["task_id"]
    while True:
        t = http("GET", f"{url}/1/tasks/{task}")
        if t["status"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.02)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(server_pid) - cpu0
    assert t["status"] == "done" and t["subtasks"]["done"] == n, t
    results = http("GET", f"{url}/1/tasks/{task}/result")["results"]
    assert [r["x"] for r in results] == list(range(n))
    return elapsed, cpu


async def direct(ports, n):
    """n subtasks over REPLICAS x PER_REPLICA keep-alive connections, round robin."""
    queue = asyncio.Queue()
    for x in range(n):
        queue.put_nowait(x)
    results = [None] * n

    async def worker(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not queue.empty():
                x = queue.get_nowait()
                body = json.dumps({"task_id": "direct", "subtask": x, "content": {"x": x}}).encode()
                writer.write(
                    b"POST /tasks/subtask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                results[x] = json.loads(await reader.readexactly(length))["result"]
        finally:
            writer.close()

    await asyncio.gather(*(worker(ports[i % len(ports)]) for i in range(len(ports) * PER_REPLICA)))
    assert [r["x"] for r in results] == list(range(n))


def run_direct(ports, n):
    t0 = time.perf_counter()
    asyncio.run(direct(ports, n))
    return time.perf_counter() - t0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    # The data folder (the platform's file store) on tmpfs by default: on a busy or slow disk the
    # platform's one write per subtask waits for I/O and the figure measures the disk, not the
    # platform. BENCH_TASKS_DIR=<folder> measures on a disk of your choice.
    base = os.environ.get("BENCH_TASKS_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    data = Path(tempfile.mkdtemp(prefix="bench-tasks-", dir=base))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", "LUNA_LAMBDA_LOG": "warn",
           "LUNA_LAMBDA_TASKS_CONCURRENCY_PER_REPLICA": str(PER_REPLICA)}
    server = subprocess.Popen([str(BIN), "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli = lambda *a: subprocess.run([str(BIN), *a], env={**env, "LUNA_LAMBDA_URL": url}, check=True,  # noqa: E731
                                    capture_output=True, text=True).stdout.strip()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                http("GET", f"{url}/version")
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        folder = data / "trivial"
        folder.mkdir()
        (folder / "lambda_main.py").write_text(TRIVIAL)
        (data / "params.json").write_text(json.dumps({"deploy_parameters": {"pod_count": REPLICAS}}))
        lambda_id = cli("create", str(folder), "--name", "trivial", "--type", "tasks",
                        "--param-file", str(data / "params.json"), "--wait", "--quiet")
        state = json.loads((data / "run" / lambda_id / "state.json").read_text())
        ports = [r["port"] for r in state["replicas"]]
        assert len(ports) == REPLICAS, state
        run_platform(url, lambda_id, min(n, 500), server.pid)  # warm-up
        run_direct(ports, min(n, 500))
        rows = {"platform (POST /1/tasks)": [], "direct asyncio loop": []}
        cpus = []
        for _ in range(ROUNDS):  # alternate, so drift hits both alike
            elapsed, cpu = run_platform(url, lambda_id, n, server.pid)
            rows["platform (POST /1/tasks)"].append(elapsed)
            cpus.append(cpu)
            rows["direct asyncio loop"].append(run_direct(ports, n))
        cli("delete", lambda_id)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    print(f"{n} trivial subtasks, {REPLICAS} replicas x {PER_REPLICA} in flight, best of {ROUNDS}, same machine (2 cores),"
          f" store in {base or tempfile.gettempdir()}")
    best = {k: min(v) for k, v in rows.items()}
    for name, t in best.items():
        print(f"  {name:28} {t:7.2f} s  {n / t:8.0f} subtasks/s")
    ratio = best["direct asyncio loop"] / best["platform (POST /1/tasks)"]
    per = (best["platform (POST /1/tasks)"] - best["direct asyncio loop"]) / n * 1e6
    print(f"  platform / direct throughput: {ratio:.2f} (target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
    print(f"  added wall time per subtask: {per:.0f} us; server CPU per subtask: {min(cpus) / n * 1e6:.0f} us"
          " (HTTP to the replica, the outcome written to the store, counts)")


if __name__ == "__main__":
    main()
