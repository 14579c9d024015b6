"""Fixtures: start the real runtime (run.py) as a subprocess on a free port, in a folder laid
out as the builders lay it out (the lambda's files + run.py + luna_lambda_tools), and wait for
/healthcheck with a deadline."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "lambda-build" / "runtime"
EXAMPLES = ROOT / "examples"
DEADLINE = 20.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)


class Lambda:
    """A running lambda process."""

    def __init__(self, proc, port, folder):
        self.proc = proc
        self.port = port
        self.folder = folder

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def output(self):
        return self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""


def lay_out(folder, files=None, example=None):
    """Copies an example (or writes `files`) plus the runtime into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    if example:
        shutil.copytree(EXAMPLES / example, folder, dirs_exist_ok=True)
    for name, text in (files or {}).items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    shutil.copy(RUNTIME / "run.py", folder / "run.py")
    shutil.copytree(RUNTIME / "luna_lambda_tools", folder / "luna_lambda_tools", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def spawn(folder, env=None):
    port = free_port()
    full_env = {
        **os.environ,
        "LAMBDA_PORT": str(port),
        "LAMBDA_HOST": "127.0.0.1",
        "LAMBDA_VERSION": "7",
        "PYTHONDONTWRITEBYTECODE": "1",
        **(env or {}),
    }
    proc = subprocess.Popen([sys.executable, str(folder / "run.py")], cwd=folder, env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return Lambda(proc, port, folder)


def wait_healthy(lam):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if lam.proc.poll() is not None:
            raise AssertionError(f"lambda exited with {lam.proc.returncode}: {lam.output()}")
        try:
            if lam.request("GET", "/healthcheck", timeout=1).status == 200:
                return lam
        except OSError:
            pass
        time.sleep(0.05)
    lam.stop(signal.SIGKILL)
    raise AssertionError(f"lambda not healthy within {DEADLINE}s: {lam.output()}")


@pytest.fixture
def start(tmp_path):
    started = []

    def _start(example=None, files=None, env=None, healthy=True):
        folder = lay_out(tmp_path / f"lambda{len(started)}", files=files, example=example)
        lam = spawn(folder, env)
        started.append(lam)
        return wait_healthy(lam) if healthy else lam

    yield _start
    for lam in started:
        lam.stop(signal.SIGKILL)
