"""Parity with the original luna_lambda_tools, over real HTTP: the documented module paths, user
metrics (also summed across workers), additional routes, Sanic-style args, the healthcheck's
include_luna_services, msgpack bodies of handlers lambdas, monitorLastActivity, and local runs with
the original's two-line run.py."""

import http.client
import os
import shutil
import signal
import subprocess
import sys
import time

import msgpack

from conftest import RUNTIME, free_port, wait_healthy, Lambda

IMPORTS = '''
import luna_lambda_tools as flat
from luna_lambda_tools import StandaloneLambdaRequest, HandlersLambdaRequest, UserException, logger, lambdaConfig
from luna_lambda_tools.public.standalone.standalone_request import StandaloneLambdaRequest as S
from luna_lambda_tools.public.handlers.handlers_request import HandlersLambdaRequest as H
from luna_lambda_tools.public.handlers.schemas import EventSourceSchema
from luna_lambda_tools.public.exceptions import UserException as UE, UserTaskLambdaException
from luna_lambda_tools.public.logger import logger as L
from luna_lambda_tools.public.config import lambdaConfig as C
from luna_lambda_tools.public.metrics.user_metrics import Counter, Gauge, Histogram, Summary
from luna_lambda_tools.public.monitoring import monitorLastActivity
from luna_lambda_tools.public.user_handlers.base_handler import LambdaUserHandler
from luna_lambda_tools.public.run import run
from luna_lambda_tools.public.run_debug import run as run_debug
from luna_lambda_tools.public.clients import Clients
from luna_lambda_tools.public.clients.faces import Faces


async def main(request):
    same = [S is StandaloneLambdaRequest, H is HandlersLambdaRequest, UE is UserException, L is logger,
            C is lambdaConfig, flat.Counter is Counter, flat.LambdaUserHandler is LambdaUserHandler,
            flat.UserTaskLambdaException is UserTaskLambdaException, callable(run), callable(run_debug),
            callable(monitorLastActivity), isinstance(request, S)]
    try:
        Faces()
        faces = "built"
    except Exception as e:
        faces = type(e).__name__ + ": " + str(e)
    schema = EventSourceSchema.model_validate({"sources": [{"filename": "a.jpg"}], "aggregate_attributes": 1})
    return {"same": same, "faces": faces, "schema": schema.asDict()}
'''


def test_every_documented_module_path_imports_our_implementation(start):
    r = start(files={"lambda_main.py": IMPORTS}).request("GET", "/main")
    assert r.status == 200, r.body
    body = r.json()
    assert all(body["same"]), body["same"]
    assert body["faces"].startswith("LunaServicesNotConfigured: Faces needs the LUNA service setting LUNA_FACES_ADDRESS"), body
    # asDict gives snake_case keys, as the original's does.
    assert body["schema"] == {"sources": [{"filename": "a.jpg", "source_type": 0}], "aggregate_attributes": True, "use_exif_info": True}


def metric_lines(lam, path="/metrics"):
    r = lam.request("GET", path)
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain"), r.body
    return r.body.decode()


def test_user_metrics_are_exposed_with_the_runtime_metrics(start):
    lam = start("user-metrics")
    for text, lang in (("a bb ccc", "en"), ("dddd", "de"), ("x y", "en")):
        r = lam.request("POST", "/main", {"text": text, "language": lang})
        assert r.status == 200, r.body
    text = metric_lines(lam)
    for line in (
        "# TYPE words_seen_total counter",
        'words_seen_total{language="de"} 1',
        'words_seen_total{language="en"} 5',
        "# TYPE requests_in_flight gauge",
        "requests_in_flight 0",
        "# TYPE text_length_chars histogram",
        'text_length_chars_bucket{le="10.0"} 3',
        'text_length_chars_bucket{le="+Inf"} 3',
        "text_length_chars_sum 15",
        "text_length_chars_count 3",
        "# TYPE word_length_chars summary",
        "word_length_chars_count 6",
        "word_length_chars_sum 12",
        'lambda_requests_total{route="/main",method="POST",status="200"} 3',
    ):
        assert line in text.splitlines(), f"{line!r} not in:\n{text}"
    # /lambda_metrics (the original's path for Prometheus) serves the same families.
    lambda_metrics = metric_lines(lam, "/lambda_metrics")
    user = [line for line in text.splitlines() if not line.startswith(("lambda_", "# HELP lambda_", "# TYPE lambda_"))]
    assert user and all(line in lambda_metrics.splitlines() for line in user), lambda_metrics


BAD_METRICS = '''
from luna_lambda_tools.public.metrics.user_metrics import Counter, Histogram
hits = Counter("hits", "Hits.", labelNames=["kind"])
USER_METRICS = [hits]

async def main(request):
    what = request.args.get("what")
    if what == "undeclared":
        hits.inc(labels={"colour": "red"})
    elif what == "missing":
        hits.inc(labels={})
    elif what == "negative":
        hits.inc(-1, labels={"kind": "a"})
    elif what == "name":
        Counter("not a name", "x")
    elif what == "buckets":
        Histogram("h", "x", buckets=[2, 1])
    return {}
'''


def test_wrong_metric_use_is_a_clear_error(start):
    lam = start(files={"lambda_main.py": BAD_METRICS})
    cases = {
        "undeclared": "label(s) ['colour'] not declared; declared labelNames are ['kind']",
        "missing": "label 'kind' is missing",
        "negative": "can only go up",
        "name": "metric name 'not a name' is not a valid Prometheus name",
        "buckets": "strictly increasing",
    }
    for what, message in cases.items():
        r = lam.request("GET", f"/main?what={what}")
        assert r.status == 500 and r.json()["error_code"] == 42004, r.body
        assert message in r.json()["detail"], (what, r.json())


def test_bad_user_metrics_stop_the_lambda_at_startup(start):
    cases = {
        'from luna_lambda_tools import Counter\nc = Counter("bad-name", "x")\nUSER_METRICS = [c]\n': "'bad-name' is not a valid Prometheus name",
        'from luna_lambda_tools import Counter\nUSER_METRICS = [Counter("a", "x"), Counter("a_total", "y")]\n': "metric name 'a' is used twice",
        'from luna_lambda_tools import Gauge\nUSER_METRICS = [Gauge("lambda_requests", "x")]\n': "metric name 'lambda_requests' is used twice",
        'USER_METRICS = ["hits"]\n': "USER_METRICS holds 'hits'",
        'USER_METRICS = 3\n': "USER_METRICS in lambda_main.py must be a list",
        'from luna_lambda_tools import Counter\nUSER_METRICS = [Counter("c", "x", labelNames=["le"])]\n': "label name 'le' is reserved",
    }
    for source, message in cases.items():
        lam = start(files={"lambda_main.py": source + "\nasync def main(request):\n    return {}\n"}, healthy=False)
        assert lam.proc.wait(timeout=20) == 3
        out = lam.output()
        assert message in out, out


COUNT_PIDS = '''
import os
from luna_lambda_tools import Counter, Gauge
served = Counter("served", "Requests served.", labelNames=["path"])
workers_seen = Gauge("worker_gauge", "One per worker that served.")
USER_METRICS = [served, workers_seen]
seen = False

async def main(request):
    global seen
    served.inc(labels={"path": "main"})
    if not seen:
        seen = True
        workers_seen.inc()
    return {"pid": os.getpid()}
'''


def test_metrics_are_summed_across_workers(start):
    lam = start(files={"lambda_main.py": COUNT_PIDS}, env={"LAMBDA_WORKERS": "2"})
    pids, sent = set(), 0
    deadline = time.monotonic() + 20
    while (len(pids) < 2 or sent < 40) and time.monotonic() < deadline:
        r = lam.request("GET", "/main")  # a new connection each time: the kernel spreads them
        assert r.status == 200
        pids.add(r.json()["pid"])
        sent += 1
    assert len(pids) == 2, f"only {pids} answered {sent} requests"
    for _ in range(6):  # whichever worker answers, it reports the whole lambda
        text = metric_lines(lam)
        assert f'served_total{{path="main"}} {sent}' in text.splitlines(), text
        assert "worker_gauge 2" in text.splitlines(), text
        assert f'lambda_requests_total{{route="/main",method="GET",status="200"}} {sent}' in text


def test_additional_routes(start):
    lam = start("routes")
    created = lam.request("POST", "/items", {"name": "lamp"}, headers={"Luna-Account-Id": "6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11"})
    assert created.status == 201 and created.headers["location"] == "/items/1", created.body
    assert created.json() == {"id": 1, "name": "lamp", "account": "6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11"}
    lam.request("POST", "/items", {"name": "desk"})
    got = lam.request("GET", "/items/1?fields=name")
    assert got.status == 200 and got.json() == {"name": "lamp"}
    assert lam.request("GET", "/items/1/?fields=id").json() == {"id": 1}
    missing = lam.request("GET", "/items/1")
    assert missing.status == 400 and missing.json()["error_code"] == 12004
    assert missing.json()["detail"] == "query parameter 'fields' is required"
    assert lam.request("GET", "/items/9?fields=id").status == 404
    assert lam.request("GET", "/items/abc?fields=id").status == 404  # <item_id:int> does not match
    page = lam.request("GET", "/items?page=2&page_size=1")
    assert page.json() == {"items": [{"id": 2, "name": "desk", "account": None}], "count": 2}
    bad_page = lam.request("GET", "/items?page_size=0")
    assert bad_page.status == 400 and "query parameter 'page_size'='0' is invalid" in bad_page.json()["detail"]
    not_allowed = lam.request("PUT", "/items/1", {"name": "x"})
    assert not_allowed.status == 405 and not_allowed.headers["allow"] == "GET, DELETE"
    assert not_allowed.json()["error_code"] == 12007
    bad = lam.request("POST", "/items", {"name": 3})
    assert bad.status == 400 and bad.json()["detail"] == "expected a JSON object with a string 'name'"
    bad_account = lam.request("POST", "/items", {"name": "x"}, headers={"Luna-Account-Id": "nope"})
    assert bad_account.status == 400 and bad_account.json()["error_code"] == 12005
    deleted = lam.request("DELETE", "/items/1")
    assert deleted.status == 204 and deleted.body == b""
    assert lam.request("POST", "/main").json()["items"] == 1
    assert lam.request("GET", "/other").status == 404
    assert 'lambda_requests_total{route="/items/<item_id:int>",method="PUT",status="405"} 1' in metric_lines(lam)


HANDLER_HELPERS = '''
from pydantic import BaseModel
from luna_lambda_tools import LambdaUserHandler, UserException

class Model(BaseModel):
    n: int

class Helpers(LambdaUserHandler):
    route = "/helpers/<what>/<rest:path>"

    async def post(self, what, rest):
        if what == "both":
            return self.sendResponse(json={"a": 1}, body=b"x")
        if what == "text":
            return self.sendResponse(202, body="plain", headers={"X-Rest": rest})
        if what == "model":
            return self.success(json={"n": self.loadDataFromJson(self.request.json, Model).n})
        if what == "user":
            raise UserException(418, "teapot")
        if what == "string":
            return "not a response"
        if what == "list":
            return [1, 2]
        if what == "none":
            return None
        if what == "query":
            return self.success(json={"n": self.loadDataFromQuery(Model).n})
        if what == "refuse":
            return self.setMethodNotAllowed()
        if what == "int":
            return self.success(json={"n": self.getQueryParam("n", validator=int)})
        return self.error(409, {"custom": what})

async def main(request):
    return {"args": request.args["a"], "first": request.args.get("a"), "all": request.args.getlist("a"),
            "missing": request.args.get("zzz", "dflt")}
'''


def test_handler_helpers_and_error_paths(start):
    lam = start(files={"lambda_main.py": HANDLER_HELPERS})
    both = lam.request("POST", "/helpers/both/x")
    assert both.status == 500 and both.json()["detail"] == "ValueError: sendResponse takes json or body, not both"
    text = lam.request("POST", "/helpers/text/a/b/c")
    assert (text.status, text.body, text.headers["x-rest"]) == (202, b"plain", "a/b/c")
    assert text.headers["content-type"].startswith("text/plain")
    assert lam.request("POST", "/helpers/model/x", {"n": "5"}).json() == {"n": 5}
    model = lam.request("POST", "/helpers/model/x", {"n": "five"})
    assert model.status == 400 and "data does not match Model" in model.json()["detail"]
    assert lam.request("POST", "/helpers/user/x").status == 418
    string = lam.request("POST", "/helpers/string/x")
    assert string.status == 500 and "Helpers.post returned str" in string.json()["detail"]
    assert lam.request("POST", "/helpers/list/x").json() == [1, 2]
    assert lam.request("POST", "/helpers/none/x").status == 204
    assert lam.request("POST", "/helpers/int/x?n=7").json() == {"n": 7}
    bad_int = lam.request("POST", "/helpers/int/x?n=seven")
    assert bad_int.status == 400 and "query parameter 'n'='seven' is invalid" in bad_int.json()["detail"]
    assert lam.request("POST", "/helpers/query/x?n=4").json() == {"n": 4}
    assert lam.request("POST", "/helpers/query/x?n=four").status == 400
    refused = lam.request("POST", "/helpers/refuse/x")
    assert refused.status == 405 and refused.headers["allow"] == "POST" and refused.json()["error_code"] == 12007
    assert lam.request("POST", "/helpers/other/x").json() == {"custom": "other"}
    assert lam.request("POST", "/helpers/other/x").status == 409
    no_get = lam.request("GET", "/helpers/a/b")
    assert no_get.status == 405 and no_get.headers["allow"] == "POST"
    # request.args behaves like Sanic's.
    args = lam.request("GET", "/main?a=1&a=2").json()
    assert args == {"args": ["1", "2"], "first": "1", "all": ["1", "2"], "missing": "dflt"}


def test_route_collisions_are_refused_at_startup(start):
    base = "from luna_lambda_tools import LambdaUserHandler\n\nasync def main(request):\n    return {}\n"
    cases = {
        "class A(LambdaUserHandler):\n    route = '/metrics'\n    async def get(self): pass\n":
            "A.route '/metrics' collides with the runtime's route /metrics",
        "class A(LambdaUserHandler):\n    route = '/lambda_metrics/'\n    async def get(self): pass\n":
            "collides with the runtime's route /lambda_metrics",
        "class A(LambdaUserHandler):\n    route = '/x/<a>'\n    async def get(self, a): pass\n"
        "class B(LambdaUserHandler):\n    route = '/x/<b:int>'\n    async def get(self, b): pass\n":
            "B.route '/x/<b:int>' collides with A.route '/x/<a>'",
        "class A(LambdaUserHandler):\n    route = 'x'\n": "route must be a path starting with '/'",
        "class A(LambdaUserHandler):\n    route = '/x/<a:date>'\n": "parameter type 'date' is not one of",
        "class A(LambdaUserHandler):\n    route = '/x'\n    def get(self): pass\n": "A.get must be `async def`",
    }
    for source, message in cases.items():
        lam = start(files={"lambda_main.py": base + source}, healthy=False)
        assert lam.proc.wait(timeout=20) == 3
        out = lam.output()
        assert message in out, out


def test_healthcheck_include_luna_services(start):
    lam = start("hello")
    assert set(lam.request("GET", "/healthcheck?include_luna_services=0").json()) == {"execution_time", "last_activity"}
    with_services = lam.request("GET", "/healthcheck?include_luna_services=1")
    assert with_services.status == 200 and with_services.json()["luna_services"] == {}
    bad = lam.request("GET", "/healthcheck?include_luna_services=2")
    assert bad.status == 400 and bad.json()["error_code"] == 12004


def test_handlers_lambda_reads_msgpack_and_json(start):
    lam = start("handlers-msgpack", env={"LAMBDA_TYPE": "handlers"})
    packed = msgpack.packb({"sources": [{"image": b"\x00" * 10}, {"image": b"\x01" * 5}]})
    r = lam.request("POST", "/main", packed, headers={"Content-Type": "application/msgpack", "Luna-Handler-Id": "h1"})
    assert r.status == 200, r.body
    assert r.json() == {"handler_id": "h1", "content_type": "application/msgpack", "sources": 2, "image_bytes": 15}
    j = lam.request("POST", "/main", {"sources": [{"image": "abc"}]})
    assert j.json()["sources"] == 1 and j.json()["image_bytes"] == 3
    bad = lam.request("POST", "/main", b"\xc1", headers={"Content-Type": "application/msgpack"})
    assert bad.status == 400 and bad.json()["error_code"] == 12001 and "not valid MessagePack" in bad.json()["detail"]


ACTIVITY = '''
from luna_lambda_tools.public.monitoring import monitorLastActivity

@monitorLastActivity
async def background():
    return 1

async def main(request):
    if request.args.get("call"):
        monitorLastActivity()
    else:
        await background()
    return {}
'''


def test_monitor_last_activity_is_reported_by_the_healthcheck(start):
    for env in ({}, {"LAMBDA_WORKERS": "2"}):
        lam = start(files={"lambda_main.py": ACTIVITY}, env=env)
        assert lam.request("GET", "/healthcheck").json()["last_activity"] is None
        before = time.time()
        lam.request("GET", "/main")
        deadline = time.monotonic() + 10
        while True:  # with two workers, the healthcheck may be answered by the other one
            mark = lam.request("GET", "/healthcheck").json()["last_activity"]
            if mark is not None or time.monotonic() > deadline:
                break
        assert mark is not None and before - 1 <= mark <= time.time() + 1, (env, mark)


RUN_PY = "from luna_lambda_tools.public.run import run\n\nrun(lambdaType=\"standalone\")\n"


def installed_runtime(tmp_path):
    """`pip install ./lambda-build/runtime` (without its dependencies, which the test venv has)
    into a folder of its own; returns that folder."""
    src = tmp_path / "runtime-src"
    shutil.copytree(RUNTIME, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--target", str(target), str(src)],
        check=True,
    )
    assert (target / "luna_lambda_tools" / "py.typed").exists()
    assert (target / "luna_lambda_tools" / "public" / "run.py").exists()
    return target


def test_pip_installed_runtime_serves_a_folder_with_the_originals_run_py(tmp_path):
    site = installed_runtime(tmp_path)
    for name, script in (("run.py", RUN_PY), ("run_debug.py", RUN_PY.replace(".run import", ".run_debug import"))):
        folder = tmp_path / f"lambda-{name}"
        folder.mkdir()
        shutil.copy(RUNTIME.parents[1] / "examples" / "hello" / "lambda_main.py", folder)
        (folder / name).write_text(script)
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(site), "LAMBDA_PORT": str(port), "LAMBDA_HOST": "127.0.0.1", "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen([sys.executable, name], cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        lam = Lambda(proc, port, folder)
        try:
            wait_healthy(lam)
            r = lam.request("POST", "/main", {"local": True})
            assert r.status == 200 and r.json() == {"echo": {"local": True}}
            assert r.headers["lambda-version"] == "1"
        finally:
            assert lam.stop(signal.SIGTERM) == 0
        assert "luna_lambda" in lam.output()
    bad = tmp_path / "bad-type"
    bad.mkdir()
    shutil.copy(RUNTIME.parents[1] / "examples" / "hello" / "lambda_main.py", bad)
    (bad / "run.py").write_text(RUN_PY.replace("standalone", "agent"))
    out = subprocess.run([sys.executable, "run.py"], cwd=bad, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "lambdaType='agent' is not one of ['standalone', 'handlers', 'tasks']" in out.stderr


def test_examples_type_check_against_the_installed_runtime(tmp_path):
    """Editors and type checkers see the runtime's hints (py.typed): mypy passes on the examples."""
    site = installed_runtime(tmp_path)
    examples = RUNTIME.parents[1] / "examples"
    for example in sorted(examples.glob("*/lambda_main.py")):
        out = subprocess.run(
            [sys.executable, "-m", "mypy", "--no-incremental", "--ignore-missing-imports", "--check-untyped-defs", str(example)],
            env={**os.environ, "MYPYPATH": str(site), "PYTHONPATH": str(site)},
            capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, f"{example}: {out.stdout}{out.stderr}"
    # And a wrong attribute of the request is caught.
    wrong = tmp_path / "wrong.py"
    wrong.write_text("from luna_lambda_tools import StandaloneLambdaRequest\n\nasync def main(request: StandaloneLambdaRequest) -> dict:\n    return {'x': request.jsonn}\n")
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", str(wrong)], env={**os.environ, "MYPYPATH": str(site)}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and 'has no attribute "jsonn"' in out.stdout, out.stdout


TASK = '''
import asyncio
from luna_lambda_tools.public.tasks import BaseLambdaTask
from luna_lambda_tools.public.exceptions import UserTaskLambdaException

class Doubler(BaseLambdaTask):
    async def onStart(self):
        self.factor = 2

    async def splitTasksContent(self, content):
        if content.get("fail") == "split":
            raise UserTaskLambdaException("cannot split that")
        if content.get("fail") == "shape":
            return {"not": "a list"}
        return [{"x": x} for x in range(content["n"])]

    async def executeSubtask(self, subTaskContent):
        x = subTaskContent["x"]
        if x == 3:
            raise UserTaskLambdaException("three is unlucky")
        if x == 4:
            raise RuntimeError("replica trouble")
        if x == 5:
            return "not a dict"
        return {"y": x * self.factor, "task": self.taskId, "account": self.accountId,
                "config": self.config.userConfig, "lambda": self.lambdaId}
'''


def test_tasks_lambda_split_and_subtasks(start):
    lam = start(files={"lambda_main.py": TASK}, env={"LAMBDA_TYPE": "tasks", "LAMBDA_ID": "lam-1", "LAMBDA_USER_CONFIG": '{"k": 1}'})
    call = {"task_id": "t-1", "account_id": "acc", "content": {"n": 3}}
    split = lam.request("POST", "/tasks/split", call)
    assert split.status == 200 and split.json() == {"subtasks": [{"x": 0}, {"x": 1}, {"x": 2}]}
    sub = lam.request("POST", "/tasks/subtask", {**call, "subtask": 2, "content": {"x": 2}})
    assert sub.status == 200
    assert sub.json() == {"result": {"y": 4, "task": "t-1", "account": "acc", "config": {"k": 1}, "lambda": "lam-1"}}
    unlucky = lam.request("POST", "/tasks/subtask", {**call, "content": {"x": 3}})
    assert unlucky.status == 422 and unlucky.json()["detail"] == "three is unlucky"
    trouble = lam.request("POST", "/tasks/subtask", {**call, "content": {"x": 4}})
    assert trouble.status == 500 and trouble.json()["detail"] == "RuntimeError: replica trouble"
    shape = lam.request("POST", "/tasks/subtask", {**call, "content": {"x": 5}})
    assert shape.status == 422 and "must return a dict or a list" in shape.json()["detail"]
    bad_split = lam.request("POST", "/tasks/split", {**call, "content": {"fail": "split"}})
    assert bad_split.status == 422 and bad_split.json()["detail"] == "cannot split that"
    bad_shape = lam.request("POST", "/tasks/split", {**call, "content": {"fail": "shape"}})
    assert bad_shape.status == 422 and "must return a list of dicts" in bad_shape.json()["detail"]
    assert lam.request("POST", "/tasks/split", {"no": "content"}).status == 400
    assert lam.request("GET", "/tasks/split").status == 405
    assert lam.request("POST", "/main", {}).status == 404
    # A standalone lambda has no task routes.
    assert start("hello").request("POST", "/tasks/split", call).status == 404


def test_tasks_lambda_needs_exactly_one_task_class(start):
    cases = {
        "x = 1\n": "defines exactly one BaseLambdaTask subclass; found none",
        TASK + "\nclass Other(Doubler):\n    pass\n": "found Doubler, Other",
        "from luna_lambda_tools import BaseLambdaTask\nclass T(BaseLambdaTask):\n    async def splitTasksContent(self, c):\n        return []\n": "T must define `async def executeSubtask",
    }
    for source, message in cases.items():
        lam = start(files={"lambda_main.py": source}, env={"LAMBDA_TYPE": "tasks"}, healthy=False)
        assert lam.proc.wait(timeout=20) == 3
        assert message in lam.output(), lam.output()


def test_tasks_sum_example(start):
    lam = start("tasks-sum", env={"LAMBDA_TYPE": "tasks"})
    split = lam.request("POST", "/tasks/split", {"task_id": "t", "content": {"n": 25, "chunk": 10}}).json()["subtasks"]
    assert split == [{"from": 0, "to": 10}, {"from": 10, "to": 20}, {"from": 20, "to": 25}]
    total = sum(lam.request("POST", "/tasks/subtask", {"task_id": "t", "content": c}).json()["result"]["sum"] for c in split)
    assert total == sum(range(25))
    assert lam.request("POST", "/tasks/split", {"task_id": "t", "content": {"n": "x"}}).status == 422
