"""The Kubernetes builder's agent (lambda-build/agent/agent.py): snapshots, layers with whiteouts,
and a whole build pushed to a registry that speaks the distribution API (a small one in process)."""

import gzip
import hashlib
import importlib.util
import io
import json
import os
import pwd
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[1] / "agent" / "agent.py"
spec = importlib.util.spec_from_file_location("agent", AGENT)
agent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent)


def layer_of(root, before):
    after = agent.snapshot(str(root))
    changed, deleted, replaced = agent.diff(before, after)
    buf = io.BytesIO()
    agent.write_layer(str(root), changed, deleted, replaced, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        return {m.name: m for m in t.getmembers()}, {
            m.name: t.extractfile(m).read() for m in t.getmembers() if m.isreg()}


def test_a_layer_holds_what_changed_and_whiteouts_for_what_went(tmp_path):
    (tmp_path / "keep").write_text("same")
    (tmp_path / "edit").write_text("aaaa")
    (tmp_path / "gone" / "deep").mkdir(parents=True)
    (tmp_path / "gone" / "deep" / "f").write_text("x")
    (tmp_path / "redo").mkdir()
    (tmp_path / "redo" / "old").write_text("o")
    (tmp_path / "was-file").write_text("f")
    before = agent.snapshot(str(tmp_path))

    # Same size and mtime as before: only the ctime (and content) tells.
    st = os.stat(tmp_path / "edit")
    (tmp_path / "edit").write_text("bbbb")
    os.utime(tmp_path / "edit", ns=(st.st_atime_ns, st.st_mtime_ns))
    (tmp_path / "new").write_text("new file")
    os.link(tmp_path / "new", tmp_path / "new-link")
    os.symlink("new", tmp_path / "sym")
    os.setxattr(tmp_path / "new", "user.origin", b"step\xff")
    for p in sorted((tmp_path / "gone").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (tmp_path / "gone").rmdir()
    (tmp_path / "redo" / "old").unlink()
    (tmp_path / "redo").rmdir()
    (tmp_path / "redo").mkdir()
    (tmp_path / "redo" / "fresh").write_text("f")
    (tmp_path / "was-file").unlink()
    (tmp_path / "was-file").mkdir()

    members, data = layer_of(tmp_path, before)
    assert "keep" not in members
    assert data["edit"] == b"bbbb"
    assert data["new"] == b"new file"
    assert members["new-link"].islnk() and members["new-link"].linkname == "new"
    assert members["sym"].issym() and members["sym"].linkname == "new"
    assert members["new"].pax_headers["SCHILY.xattr.user.origin"].encode(
        "utf-8", "surrogateescape") == b"step\xff"
    assert ".wh.gone" in members, "the top-most deleted folder is whited out"
    assert not any(n.startswith("gone/") for n in members), "not what was inside it"
    # A recreated folder hides the old content: by an opaque whiteout when it is a new inode,
    # else by a whiteout of each file that went (the file system may reuse the inode).
    assert {"redo/.wh..wh..opq", "redo/.wh.old"} & set(members)
    assert members["was-file"].isdir() and "was-file/.wh..wh..opq" in members
    assert data["redo/fresh"] == b"f"
    assert members["edit"].uid == os.getuid()


def test_nothing_changed_gives_no_paths(tmp_path):
    (tmp_path / "a").write_text("1")
    s = agent.snapshot(str(tmp_path))
    assert agent.diff(s, agent.snapshot(str(tmp_path))) == ([], [], [])


class Registry(BaseHTTPRequestHandler):
    """Blobs and manifests in memory; cross-repository mounts answered 201."""

    blobs = {}
    manifests = {}
    # "Basic ..." every request must carry, when set.
    required = None

    def log_message(self, *args):
        pass

    def _refused(self):
        if self.required and self.headers.get("Authorization") != self.required:
            self._answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return True
        return False

    def _answer(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        if self._refused():
            return
        digest = self.path.rsplit("/", 1)[1]
        self._answer(200 if digest in self.blobs else 404)

    def do_GET(self):
        if self._refused():
            return
        _, _, repo_kind, ref = self.path.rsplit("/", 3)
        if "/manifests/" in self.path:
            body = self.manifests[self.path.split("/v2/")[1].replace("/manifests/", ":")]
            self._answer(200, body, [("Content-Type", agent.OCI_MANIFEST)])
        else:
            self._answer(200, self.blobs[ref])

    def do_POST(self):
        if self._refused():
            return
        if "mount=" in self.path:
            self._answer(201)
        else:
            self._answer(202, headers=[("Location", "/v2/uploads/1")])

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self._refused():
            return
        if "/manifests/" in self.path:
            self.manifests[self.path.split("/v2/")[1].replace("/manifests/", ":")] = body
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            self._answer(201, headers=[("Docker-Content-Digest", digest)])
            return
        digest = self.path.split("digest=")[1]
        assert digest == "sha256:" + hashlib.sha256(body).hexdigest()
        self.blobs[digest] = body
        self._answer(201)


@pytest.fixture
def registry():
    Registry.blobs, Registry.manifests, Registry.required = {}, {}, None
    base_layer = gzip.compress(b"base")
    layer_digest = "sha256:" + hashlib.sha256(base_layer).hexdigest()
    config = json.dumps({"config": {"Env": ["PATH=/usr/bin", "KEEP=1"]},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    Registry.blobs.update({layer_digest: base_layer, config_digest: config})
    Registry.manifests["base:1"] = json.dumps({
        "schemaVersion": 2, "mediaType": agent.DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": layer_digest, "size": len(base_layer)}]}).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


def spec_for(registry, root, steps):
    me = pwd.getpwuid(os.getuid()).pw_name
    return {
        "registry": registry, "base_repo": "base", "base_ref": "1",
        "repo": "deps", "tag": "k1",
        "steps": [dict({"user": me, "workdir": str(root), "env": {}}, **s) for s in steps],
        "config": {"env": [["TOOL", "on"], ["KEEP", "2"]], "labels": {"team": "cv"},
                   "exposed": ["9000/tcp"]},
    }


def test_a_build_pushes_a_layer_per_changing_step_and_the_config(registry, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "old").write_text("x")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = io.StringIO()
    steps = [{"shown": "RUN make", "run": "echo built > made && rm old && echo said"},
             {"shown": "RUN true", "argv": ["true"]}]
    with open(tmp_path / "log", "w+") as log:
        digest = agent.build(spec_for(registry, root, steps), str(root), str(scratch), log)
        log.seek(0)
        text = log.read()
    assert "said" in text and "[1/2] RUN make" in text and "no changes" in text
    manifest = json.loads(Registry.manifests["deps:k1"])
    assert digest == "sha256:" + hashlib.sha256(Registry.manifests["deps:k1"]).hexdigest()
    assert [l["mediaType"] for l in manifest["layers"]] == [agent.OCI_LAYER] * 2
    config = json.loads(Registry.blobs[manifest["config"]["digest"]])
    assert config["config"]["Env"] == ["PATH=/usr/bin", "TOOL=on", "KEEP=2"]
    assert config["config"]["Labels"] == {"team": "cv"}
    assert config["config"]["ExposedPorts"] == {"9000/tcp": {}}
    assert len(config["rootfs"]["diff_ids"]) == 2
    assert [h.get("empty_layer", False) for h in config["history"]] == [False, True]
    layer = gzip.decompress(Registry.blobs[manifest["layers"][1]["digest"]])
    assert config["rootfs"]["diff_ids"][1] == "sha256:" + hashlib.sha256(layer).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(layer)) as t:
        names = t.getnames()
    assert "made" in names and ".wh.old" in names
    assert os.listdir(scratch) == [], "layer files are removed once pushed"


def test_a_failing_step_names_itself_and_pushes_nothing(registry, tmp_path):
    steps = [{"shown": "RUN exit 3", "run": "echo before failing; exit 3"}]
    with open(tmp_path / "log", "w+") as log:
        with pytest.raises(agent.StepFailed, match=r"step 1/1 failed \(exit code 3\): RUN exit 3"):
            agent.build(spec_for(registry, tmp_path, steps), str(tmp_path), str(tmp_path), log)
        log.seek(0)
        assert "before failing" in log.read()
    assert "deps:k1" not in Registry.manifests


def test_registry_credentials_come_from_the_mounted_docker_config(registry, tmp_path):
    import base64
    Registry.required = "Basic " + base64.b64encode(b"builder:s3cret").decode()
    host = registry.split("//")[1]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(b"builder:s3cret").decode()}}}))
    assert agent.registry_auth(str(config), registry) == "builder:s3cret"
    assert agent.registry_auth(str(config), "http://elsewhere:5000") is None
    steps = [{"shown": "RUN touch x", "run": "touch x"}]
    with open(tmp_path / "log", "w") as log:
        with pytest.raises(RuntimeError, match="answered 401"):
            agent.build(spec_for(registry, tmp_path, steps), str(tmp_path), str(tmp_path), log)
        spec = dict(spec_for(registry, tmp_path, steps), auth_file=str(config))
        digest = agent.build(spec, str(tmp_path), str(tmp_path), log)
    assert digest.startswith("sha256:") and "deps:k1" in Registry.manifests
