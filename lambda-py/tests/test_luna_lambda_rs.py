"""luna_lambda_rs from Python: every function, exceptions with their codes, the GIL released
during a long wait, and the embedded platform (create examples/hello, invoke, delete)."""

import asyncio
import threading
import time
import uuid
from pathlib import Path

import pytest

import luna_lambda_rs as ll

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "examples" / "hello"
ACCOUNT = "6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11"


def test_validate_folder_zip_and_bytes():
    report = ll.validate(HELLO)
    assert report.ok and bool(report) and report.problems == []
    bad = ll.validate(b"not a zip")
    assert not bad.ok
    assert bad.problems[0].code == "archive.not_zip" and bad.problems[0].severity == "error"


def test_validate_reports_every_problem_with_lines(tmp_path):
    (tmp_path / "lambda_main.py").write_text("def main(request):\n    return {}\n")
    (tmp_path / "requirements.txt").write_text("numpy\n-e ./local\n")
    report = ll.validate(tmp_path)
    codes = {(p.code, p.path, p.line) for p in report.problems}
    assert ("main.not_async", "lambda_main.py", 1) in codes
    assert ("requirements.forbidden_option", "requirements.txt", 2) in codes
    zip_path = tmp_path.parent / "bad.zip"
    zip_path.write_bytes(ll.pack(tmp_path))
    assert {p.code for p in ll.validate(zip_path).problems} == {p.code for p in report.problems}


def test_pack_is_deterministic():
    a, b = ll.pack(HELLO), ll.pack(str(HELLO))
    assert a == b and a[:2] == b"PK"
    assert ll.validate(a).ok


def test_render_dockerfile():
    text = ll.render_dockerfile(registry="reg:5000", base_image="lpa-lambda-base-fsdk", base_tag="v1",
                                has_requirements=True, user_docker_commands=["USER root", "RUN echo hi"])
    assert "FROM reg:5000/lpa-lambda-base-fsdk:v1" in text and "RUN echo hi" in text
    assert text.index("pip install") < text.index("COPY --chown=luna:luna lambda/")
    with pytest.raises(ll.ValidationError) as e:
        ll.render_dockerfile(user_docker_commands=["RUN a RUN b"])
    assert e.value.error_code == 42005 and e.value.problems[0].path == "user_docker_commands[0]"
    with pytest.raises(ValueError):
        ll.render_dockerfile(base_image="centos")


def test_exception_hierarchy():
    for exc in (ll.ValidationError, ll.NotFound, ll.Conflict, ll.ServerError):
        assert issubclass(exc, ll.LambdaError) and issubclass(exc, Exception)


def test_unreachable_server_is_a_server_error():
    with pytest.raises(ll.ServerError) as e:
        ll.Client("http://127.0.0.1:9").list()
    assert "luna-lambda serve" in str(e.value)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with ll.Platform.embedded(tmp_path_factory.mktemp("platform")) as p:
        yield p


def test_embedded_platform_create_invoke_delete(platform):
    client = platform.client(ACCOUNT)
    assert client.url == platform.url
    lambda_id = client.create(HELLO, name="hello-py")
    record = client.wait_until_running(lambda_id, timeout=120)
    assert record["status"] == "running" and record["lambda_version"] == 1
    answer = client.invoke(lambda_id, {"hi": 1})
    assert answer.status == 200 and answer.json() == {"echo": {"hi": 1}}
    assert answer.headers["lambda-version"] == "1"
    assert client.invoke(lambda_id, "not json", method="POST").status == 400
    assert client.get(lambda_id)["lambda_name"] == "hello-py"
    assert client.list(lambda_name="hello-py")["count"] == 1
    assert client.status(lambda_id)["replicas"][0]["status"] == "running"
    assert "==> built" in client.image_logs(lambda_id)
    assert len(client.logs(lambda_id, tail=5)) == 1
    assert client.set_config(lambda_id, {"k": 1}) == 1
    assert client.switch(lambda_id, False)["alive"] is False
    client.delete(lambda_id)
    with pytest.raises(ll.NotFound) as e:
        client.get(lambda_id)
    assert e.value.error_code == 42001 and e.value.status == 404


def test_errors_keep_their_codes(platform):
    client = platform.client(ACCOUNT)
    with pytest.raises(ll.ValidationError) as e:
        client.create(b"not a zip", name="broken")
    assert e.value.error_code == 42005 and e.value.problems[0].code == "archive.not_zip"
    first = client.create(HELLO, name="twice")
    with pytest.raises(ll.Conflict) as e:
        client.create(HELLO, name="twice")
    assert e.value.error_code == 42002
    with pytest.raises(ll.NotFound):
        client.get(str(uuid.uuid4()))
    client.delete(first)


def test_the_gil_is_released_while_waiting(platform):
    client = platform.client(ACCOUNT)
    lambda_id = client.create(HELLO, name="gil-check")
    ticks = 0
    stop = threading.Event()

    def spin():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    before = ticks
    client.wait_until_running(lambda_id, timeout=120)
    # A second, slow call in the same wait: the other thread must make progress during it.
    mid = ticks
    client.invoke(lambda_id, {"x": 1})
    stop.set()
    t.join()
    assert mid > before, "the other thread made no progress while waiting: the GIL was held"
    client.delete(lambda_id)


def test_async_client(platform):
    async def scenario():
        client = ll.AsyncClient(platform.url, ACCOUNT)
        lambda_id = await client.create(HELLO, name="async-py")
        await client.wait_until_running(lambda_id)
        answer, listing = await asyncio.gather(client.invoke(lambda_id, [1, 2]), client.list())
        await client.delete(lambda_id)
        return answer, listing

    answer, listing = asyncio.run(scenario())
    assert answer.json() == {"echo": [1, 2]}
    assert listing["count"] >= 1


def test_the_readme_example_runs_as_written(tmp_path):
    import contextlib
    import io
    import os

    text = (ROOT / "README.md").read_text()
    block = text.split("## Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert out.getvalue().splitlines() == ["True", "{'echo': {'hi': 1}}"]


TASKS_SUM = ROOT / "examples" / "tasks-sum"


def test_tasks_from_python(platform):
    assert not ll.validate(TASKS_SUM).ok  # a tasks lambda has no main ...
    assert ll.validate(TASKS_SUM, lambda_type="tasks").ok  # ... it has a BaseLambdaTask subclass
    with pytest.raises(ValueError):
        ll.validate(TASKS_SUM, lambda_type="agent")
    client = platform.client(account_id=ACCOUNT)
    lambda_id = client.create(TASKS_SUM, name="tasks-sum-py", lambda_type="tasks")
    client.wait_until_running(lambda_id)
    task_id = client.create_task(lambda_id, {"n": 100, "chunk": 30}, description="sum to 100")
    task = client.wait_task(task_id, timeout=60)
    assert task["status"] == "done" and task["description"] == "sum to 100"
    assert task["subtasks"] == {"total": 4, "done": 4, "failed": 0, "in_flight": 0}
    results = client.task_result(task_id)
    assert [r["sum"] for r in results] == [sum(range(a, min(a + 30, 100))) for a in range(0, 100, 30)]
    assert client.task_errors(task_id) == []
    assert client.get_task(task_id)["task_id"] == task_id
    assert client.list_tasks(lambda_id=lambda_id, status="done")["count"] == 1
    with pytest.raises(ll.Conflict) as e:
        client.cancel_task(task_id)
    assert e.value.error_code == 42023
    failed = client.wait_task(client.create_task(lambda_id, {"n": "many"}))
    assert failed["status"] == "failed"
    assert "content needs integers" in client.task_errors(failed["task_id"])[0]["error"]
    client.delete_task(task_id)
    with pytest.raises(ll.NotFound) as e:
        client.get_task(task_id)
    assert e.value.error_code == 42021
    client.delete(lambda_id)


def test_tokens_from_python(tmp_path, monkeypatch):
    admin = "python-test-bootstrap-admin-token-0123456789"
    monkeypatch.setenv("LUNA_LAMBDA_AUTH_MODE", "token")
    monkeypatch.setenv("LUNA_LAMBDA_ADMIN_TOKEN", admin)
    monkeypatch.delenv("LUNA_LAMBDA_TOKEN", raising=False)
    with ll.Platform.embedded(tmp_path / "secured") as p:
        with pytest.raises(ll.LambdaError) as e:
            ll.Client(p.url).list()
        assert e.value.error_code == 12008
        assert ll.Client(p.url, token=admin).list()["count"] == 0
        monkeypatch.setenv("LUNA_LAMBDA_TOKEN", admin)
        assert p.client().list()["count"] == 0
        assert isinstance(p.client(), ll.Client)

        async def listing():
            return await ll.AsyncClient(p.url, token=admin).list()

        assert asyncio.run(listing())["count"] == 0


def test_one_platform_per_data_folder(tmp_path):
    with ll.Platform.embedded(tmp_path / "one"):
        with pytest.raises(ll.LambdaError) as e:
            ll.Platform.embedded(tmp_path / "one")
        assert "another luna-lambda server" in str(e.value) and "--data-dir" in str(e.value)
    # Closed: the folder is free again.
    with ll.Platform.embedded(tmp_path / "one") as again:
        assert again.client().list()["count"] == 0


def test_https_with_a_private_ca(tmp_path, monkeypatch):
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    ca.cert_pem.write_to_path(str(ca_pem))
    monkeypatch.setenv("LUNA_LAMBDA_TLS_CERT", str(cert))
    monkeypatch.setenv("LUNA_LAMBDA_TLS_KEY", str(key))
    monkeypatch.delenv("LUNA_LAMBDA_CA", raising=False)
    with ll.Platform.embedded(tmp_path / "tls") as p:
        assert p.url.startswith("https://127.0.0.1:")
        assert ll.Client(p.url, ca=ca_pem).list()["count"] == 0
        with pytest.raises(ll.LambdaError) as e:
            ll.Client(p.url).list()
        assert "certificate" in str(e.value).lower()
        monkeypatch.setenv("LUNA_LAMBDA_CA", str(ca_pem))
        assert ll.Client(p.url).list()["count"] == 0
        with pytest.raises(ValueError) as e:
            ll.Client(p.url, ca=tmp_path / "missing.pem")
        assert "missing.pem" in str(e.value)
