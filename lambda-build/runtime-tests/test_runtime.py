"""The runtime driven over real HTTP: every route, every error path, request ids, user context,
graceful shutdown, workers, and lambdas that fail to start."""

import json
import re
import signal
import threading
import time
from pathlib import Path

RID = re.compile(r"^\d{10},[0-9a-f-]{36}$")


def test_hello_echoes_json_with_request_id_and_version(start):
    lam = start("hello")
    r = lam.request("POST", "/main", {"a": [1, 2]})
    assert r.status == 200
    assert r.json() == {"echo": {"a": [1, 2]}}
    assert RID.match(r.headers["luna-request-id"]), r.headers
    assert r.headers["lambda-version"] == "7"
    r = lam.request("POST", "/main", {"x": 1}, headers={"Luna-Request-Id": "1700000000,abc"})
    assert r.headers["luna-request-id"] == "1700000000,abc"


def test_get_main_with_no_body(start):
    r = start("hello").request("GET", "/main")
    assert r.status == 200 and r.json() == {"echo": None}


def test_invalid_json_is_a_400_not_a_crash(start):
    lam = start("hello")
    r = lam.request("POST", "/main", b"{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400
    body = r.json()
    assert body["error_code"] == 12001 and "not valid JSON" in body["detail"]
    assert lam.request("POST", "/main", {"still": "alive"}).status == 200


def test_healthcheck_metrics_and_unknown_routes(start):
    lam = start("hello")
    h = lam.request("GET", "/healthcheck")
    assert h.status == 200 and isinstance(h.json()["execution_time"], float)
    assert RID.match(h.headers["luna-request-id"])
    for _ in range(3):
        lam.request("POST", "/main", {})
    assert lam.request("GET", "/nope").status == 404
    assert lam.request("GET", "/nope").json()["error_code"] == 12006
    r = lam.request("PUT", "/main", b"")
    assert r.status == 405 and r.json()["error_code"] == 12007
    m = lam.request("GET", "/metrics")
    assert m.status == 200 and m.headers["content-type"].startswith("text/plain")
    text = m.body.decode()
    assert 'lambda_requests_total{route="/main",method="POST",status="200"} 3' in text
    assert 'lambda_request_duration_seconds_count{route="/main",method="POST",status="200"} 3' in text
    assert 'lambda_request_duration_seconds_bucket{route="/main",method="POST",status="200",le="+Inf"} 3' in text
    assert 'route="other",method="GET",status="404"} 2' in text


def test_docs_by_accept_and_404_without_docs(start):
    lam = start("with-docs")
    html = lam.request("GET", "/docs", headers={"Accept": "text/html"})
    assert html.status == 200 and b"<h1>with-docs</h1>" in html.body
    assert html.headers["content-type"].startswith("text/html")
    yml = lam.request("GET", "/docs", headers={"Accept": "application/x-yaml"})
    assert yml.status == 200 and yml.body.startswith(b"openapi: 3.0.0")
    assert lam.request("GET", "/main?name=ann").json() == {"greeting": "hello, ann"}
    assert start("hello").request("GET", "/docs").status == 404


def test_user_exception_status_and_body(start):
    lam = start("user-exception")
    r = lam.request("POST", "/main", {"age": "old"})
    assert r.status == 422
    assert r.json() == {"error_code": 42004, "desc": "Lambda exception", "detail": "field 'age' must be an integer"}
    assert lam.request("POST", "/main", {"age": 30}).json() == {"adult": True}


ERRORS = """
from luna_lambda_tools import UserException

async def main(request):
    kind = request.args.get("kind")
    if kind == "boom":
        raise RuntimeError("kaboom")
    if kind == "list":
        return [1, 2]
    if kind == "unserializable":
        return {"x": object()}
    if kind == "clients":
        return {"faces": request.clients.faces}
    return {"headers": dict(request.headers.items()), "ct": request.headers["CONTENT-TYPE"],
            "args": request.args.getlist("v"), "method": request.method, "path": request.path,
            "body_len": len(request.body), "same": request.getBody() == request.body,
            "rid": request.requestId}
"""


def test_exceptions_and_bad_returns_are_500_42004(start):
    lam = start(files={"lambda_main.py": ERRORS})
    boom = lam.request("GET", "/main?kind=boom")
    assert boom.status == 500
    assert boom.json()["error_code"] == 42004 and boom.json()["detail"] == "RuntimeError: kaboom"
    lst = lam.request("GET", "/main?kind=list")
    assert lst.status == 500 and "returned list" in lst.json()["detail"]
    uns = lam.request("GET", "/main?kind=unserializable")
    assert uns.status == 500 and "JSON-serializable" in uns.json()["detail"]
    cl = lam.request("GET", "/main?kind=clients")
    assert cl.status == 500 and "LUNA_FACES_ADDRESS" in cl.json()["detail"]
    ok = lam.request("POST", "/main?v=1&v=2", b"abc", headers={"Content-Type": "text/plain", "Luna-Request-Id": "1,x"})
    body = ok.json()
    assert body["ct"] == "text/plain" and body["headers"]["content-type"] == "text/plain"
    assert body["args"] == ["1", "2"] and body["method"] == "POST" and body["path"] == "/main"
    assert body["body_len"] == 3 and body["same"] and body["rid"] == "1,x"
    lam.stop()
    log = lam.output()
    assert "kaboom" in log and "Traceback" in log, log


def test_handlers_lambda_data_handler_id_and_models(start):
    lam = start("handlers", env={"LAMBDA_TYPE": "handlers"})
    body = {"sources": [{"filename": "a.jpg"}, {"filename": "b.jpg"}, {"image_origin": "http://cam/1"}]}
    r = lam.request("POST", "/main", body, headers={"Luna-Handler-Id": "h-42"})
    assert r.status == 200, r.body
    assert r.json() == {"handler_id": "h-42", "sources": 3, "aggregate": False, "filenames": ["a.jpg", "b.jpg", None]}
    bad = lam.request("POST", "/main", {"sources": [1, 2, 3]})
    assert bad.status == 400 and bad.json()["error_code"] == 12001, bad.body
    assert bad.json()["detail"].startswith("request data does not match EventSourceSchema: sources.0: a source must be an object")
    lam.stop()
    assert "handler h-42: 3 source(s): ['a.jpg', 'b.jpg', None]" in lam.output()
    models = """
import pydantic
from luna_lambda_tools import HandlersLambdaRequest

class Event(pydantic.BaseModel):
    name: str
    score: float

def plain(data):
    return {"keys": sorted(data)}

async def main(request: HandlersLambdaRequest) -> dict:
    if request.args.get("plain"):
        return request.getRequestData(plain)
    ev = request.getRequestData(Event)
    return {"name": ev.name, "score": ev.score}
"""
    lam2 = start(files={"lambda_main.py": models}, env={"LAMBDA_TYPE": "handlers"})
    assert lam2.request("POST", "/main", {"name": "a", "score": 1}).json() == {"name": "a", "score": 1.0}
    bad = lam2.request("POST", "/main", {"name": "a"})
    assert bad.status == 400 and "Event" in bad.json()["detail"]
    assert lam2.request("POST", "/main?plain=1", {"b": 1, "a": 2}).json() == {"keys": ["a", "b"]}


def test_user_context_and_user_config(start, tmp_path):
    cfg = tmp_path / "user_config.json"
    cfg.write_text(json.dumps({"threshold": 0.5}))
    lam = start("user-context", env={"LAMBDA_USER_CONFIG_FILE": str(cfg)})
    first = lam.request("GET", "/main").json()
    second = lam.request("GET", "/main").json()
    assert first == {"greeting": "ready", "count": 1, "config": {"threshold": 0.5}}
    assert second["count"] == 2
    assert lam.stop() == 0
    log = lam.output()
    assert "user context started" in log and "stopped after 2 requests" in log, log


def test_user_config_from_the_environment(start):
    lam = start("user-context", env={"LAMBDA_USER_CONFIG": '{"mode": "env"}'})
    assert lam.request("GET", "/main").json()["config"] == {"mode": "env"}


def test_body_limit_is_413(start):
    lam = start("hello", env={"LAMBDA_MAX_BODY_BYTES": "1000"})
    r = lam.request("POST", "/main", b"x" * 2000, headers={"Content-Type": "application/json"})
    assert r.status == 413 and r.json()["error_code"] == 12003
    assert lam.request("POST", "/main", {"small": True}).status == 200


SLOW = """
import asyncio, pathlib, os

class UserCtx:
    async def onShutdown(self):
        pathlib.Path(os.environ["SHUTDOWN_MARK"]).write_text("done")

async def main(request):
    pathlib.Path(os.environ["INFLIGHT_MARK"]).touch()
    await asyncio.sleep(float(request.args.get("sleep", "0")))
    return {"slept": True}
"""


def test_sigterm_finishes_in_flight_requests_then_runs_on_shutdown(start, tmp_path):
    mark = tmp_path / "shutdown.mark"
    inflight = tmp_path / "inflight.mark"
    lam = start(files={"lambda_main.py": SLOW}, env={"SHUTDOWN_MARK": str(mark), "INFLIGHT_MARK": str(inflight)})
    result = {}

    def call():
        result["r"] = lam.request("GET", "/main?sleep=1.0")

    t = threading.Thread(target=call)
    t.start()
    deadline = time.monotonic() + 10
    while not inflight.exists():  # readiness: main() has started
        assert time.monotonic() < deadline, "request never reached main()"
        time.sleep(0.01)
    lam.proc.send_signal(signal.SIGTERM)
    t.join(10)
    assert result["r"].status == 200 and result["r"].json() == {"slept": True}
    assert lam.proc.wait(10) == 0
    assert mark.read_text() == "done"


def alive(pid):
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False


def test_workers_run_that_many_processes(start):
    lam = start(files={"lambda_main.py": "import os\nasync def main(r):\n    return {'pid': os.getpid()}\n"},
                env={"LAMBDA_WORKERS": "2"})
    children = set()
    for task in Path(f"/proc/{lam.proc.pid}/task").iterdir():
        children |= set((task / "children").read_text().split())
    # uvicorn's supervisor keeps one process per worker (a resource tracker may add one more).
    pids = {int(p) for p in children}
    served = {lam.request("GET", "/main").json()["pid"] for _ in range(20)}
    assert served <= pids and len(pids) >= 2, (served, pids)
    # Killing the supervisor outright must not leave orphan workers behind.
    lam.proc.kill()
    lam.proc.wait(10)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in served):
        assert time.monotonic() < deadline, f"workers {served} outlived their supervisor"
        time.sleep(0.05)


def test_import_failure_exits_non_zero_with_a_clear_message(start):
    lam = start(files={"lambda_main.py": "import not_a_module_xyz\nasync def main(r):\n    return {}\n"}, healthy=False)
    assert lam.proc.wait(15) != 0
    err = lam.output()
    assert "cannot import lambda_main.py" in err and "not_a_module_xyz" in err, err


def test_sync_main_exits_non_zero(start):
    lam = start(files={"lambda_main.py": "def main(r):\n    return {}\n"}, healthy=False)
    assert lam.proc.wait(15) != 0
    assert "is not `async def`" in lam.output()


def test_failing_on_start_exits_non_zero(start):
    src = "class UserCtx:\n    async def onStart(self):\n        raise ValueError('no model file')\nasync def main(r):\n    return {}\n"
    lam = start(files={"lambda_main.py": src}, healthy=False)
    assert lam.proc.wait(15) != 0
    assert "no model file" in lam.output()
