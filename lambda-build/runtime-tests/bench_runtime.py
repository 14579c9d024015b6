"""Benchmark: the `hello` lambda under our runtime vs a bare Sanic app doing the same JSON echo,
same machine, same run, same load (wrk, keep-alive, 50 connections, one worker each); the
same echo with five user metrics updated per request (two labelled counters, a gauge up and down,
a histogram and a summary), to show what user metrics cost; and a handlers lambda given a
2-source body, reading `request.data` (parsed into EventSourceSchema) against one reading
`request.json` (no schema), to show what parsing the schema costs per request.

Run with scripts/bench-runtime (it makes the venv with Sanic and installs wrk when missing).
Prints throughput and p50/p99 side by side, and the ratio.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import lay_out, spawn, wait_healthy  # noqa: E402

DURATION = os.environ.get("BENCH_DURATION", "10s")
CONNECTIONS = os.environ.get("BENCH_CONNECTIONS", "50")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))

SANIC_APP = '''
import sys
from sanic import Sanic
from sanic.response import json
app = Sanic("bare_echo")
@app.route("/main", methods=["GET", "POST"])
async def main(request):
    return json({"echo": request.json})
@app.get("/healthcheck")
async def health(request):
    return json({"execution_time": 0.0})
if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), single_process=True, access_log=False, motd=False)
'''

METRICS_MAIN = '''
from luna_lambda_tools.public.metrics.user_metrics import Counter, Gauge, Histogram, Summary

requests = Counter("echo_requests", "Echo requests.", labelNames=["method"])
fields = Counter("echo_fields", "Top-level fields echoed.", labelNames=["kind"])
in_flight = Gauge("echo_in_flight", "Echoes in flight.")
size = Histogram("echo_body_bytes", "Body size.", buckets=[16, 64, 256, 1024, 4096])
depth = Summary("echo_list_items", "Items of list fields.")
USER_METRICS = [requests, fields, in_flight, size, depth]


async def main(request):
    in_flight.inc()
    data = request.json
    requests.inc(labels={"method": request.method})
    fields.inc(len(data or ()), labels={"kind": "json"})
    size.observe(len(request.body))
    depth.observe(3)
    in_flight.dec()
    return {"echo": data}
'''

HANDLERS_DATA = '''
async def main(request):
    return {"sources": len(request.data.sources)}
'''

HANDLERS_RAW = '''
async def main(request):
    return {"sources": len(request.json["sources"])}
'''

SOURCES_LUA = """
wrk.method = "POST"
wrk.body   = '{"sources": [{"filename": "a.jpg", "image_origin": "http://cam/1/a.jpg", "detect_ts": 1.5}, {"filename": "b.jpg", "image_origin": "http://cam/1/b.jpg", "source_data": {"tags": ["gate"]}}]}'
wrk.headers["Content-Type"] = "application/json"
"""

LUA = """
wrk.method = "POST"
wrk.body   = '{"data": {"a": 1, "b": [1, 2, 3], "c": "hello"}}'
wrk.headers["Content-Type"] = "application/json"
"""


def to_ms(value):
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def wrk(port, lua):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}", "--latency", "-s", lua, f"http://127.0.0.1:{port}/main"],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert errors is None, out
    return rps, p50, p99


def main():
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is not installed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="runtime-bench-"))
    lua = tmp / "post.lua"
    lua.write_text(LUA)
    sources_lua = tmp / "sources.lua"
    sources_lua.write_text(SOURCES_LUA)
    ours = wait_healthy(spawn(lay_out(tmp / "hello", example="hello")))
    metered = wait_healthy(spawn(lay_out(tmp / "metered", files={"lambda_main.py": METRICS_MAIN})))
    handlers = {"LAMBDA_TYPE": "handlers"}
    with_data = wait_healthy(spawn(lay_out(tmp / "data", files={"lambda_main.py": HANDLERS_DATA}), handlers))
    with_json = wait_healthy(spawn(lay_out(tmp / "json", files={"lambda_main.py": HANDLERS_RAW}), handlers))
    (tmp / "sanic_app.py").write_text(SANIC_APP)
    from conftest import free_port, Lambda
    port = free_port()
    sanic = Lambda(subprocess.Popen([sys.executable, str(tmp / "sanic_app.py"), str(port)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), port, tmp)
    wait_healthy(sanic)
    ours_name, metered_name = "runtime (uvicorn+httptools+uvloop)", "runtime + 5 user metrics/request"
    contenders = {ours_name: ours, metered_name: metered, "bare sanic": sanic}
    data_name, json_name = "handlers, request.data (schema)", "handlers, request.json (no schema)"
    schema_contenders = {data_name: with_data, json_name: with_json}
    results = {name: [] for name in [*contenders, *schema_contenders]}
    try:
        runs = [(name, lam, lua) for name, lam in contenders.items()]
        runs += [(name, lam, sources_lua) for name, lam in schema_contenders.items()]
        for _, lam, script in runs:  # warm-up
            subprocess.run(["wrk", "-t1", "-c10", "-d2s", "-s", script, f"http://127.0.0.1:{lam.port}/main"],
                           capture_output=True, check=True)
        for _ in range(ROUNDS):  # alternate, so drift hits all alike
            for name, lam, script in runs:
                results[name].append(wrk(lam.port, script))
        counted = metered.request("GET", "/metrics").body.decode()
        assert 'echo_requests_total{method="POST"}' in counted, counted
        parsed = with_data.request("POST", "/main", {"sources": [{"filename": "a.jpg"}, {"filename": "b.jpg"}]})
        assert parsed.status == 200 and parsed.json() == {"sources": 2}, parsed.body
    finally:
        for _, lam, _ in runs:
            lam.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    best = {k: max(v, key=lambda r: r[0]) for k, v in results.items()}
    print(f"hello lambda, POST /main JSON echo, wrk -t1 -c{CONNECTIONS} -d{DURATION}, best of {ROUNDS}, one worker")
    print(f"{'':38} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs sanic':>9}")
    sanic_rps = best["bare sanic"][0]
    for name, (rps, p50, p99) in best.items():
        print(f"{name:38} {rps:>10.0f} {p50:>8.2f} {p99:>8.2f} {rps / sanic_rps:>8.2f}x")
    parse_us = (1 / best[data_name][0] - 1 / best[json_name][0]) * 1e6
    print(f"EventSourceSchema of a 2-source body: {parse_us:.0f} us per request over request.json "
          f"(one worker's time per request: {1e6 / best[data_name][0]:.0f} us vs {1e6 / best[json_name][0]:.0f} us)")
    ratio = best[ours_name][0] / sanic_rps
    metered_ratio = best[metered_name][0] / sanic_rps
    p99 = best[ours_name][2]
    print(f"throughput ratio runtime/sanic: {ratio:.2f}x (target >= 1.4x: {'met' if ratio >= 1.4 else 'NOT met'})")
    print(f"with 5 user metrics per request: {metered_ratio:.2f}x sanic, {best[metered_name][0] / best[ours_name][0]:.2f}x the plain runtime")
    print(f"runtime p99: {p99:.2f} ms (target <= 5 ms: {'met' if p99 <= 5.0 else 'NOT met'})")


if __name__ == "__main__":
    main()
