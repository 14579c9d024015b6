"""The build agent of the Kubernetes builder: makes a lambda's dependencies image inside a pod
whose container image is the lambda's base image itself.

It snapshots the filesystem, runs each step (the lambda's RUN instructions and `pip install -r
requirements.txt`, parsed by the server into spec.json: command, user, folder, environment),
turns each step's changes into a layer (new and changed files with their owners, modes, links and
extended attributes; whiteouts for what a step deleted), and pushes the layers, a config and a
manifest to the registry over its HTTP API. Nothing is nested: no container runtime, no extra
privileges. Python standard library only; everything is imported before the first step, so a step
that changes the system's Python cannot break the agent halfway.

Usage: agent.py SPEC_JSON. Writes the build log to standard output; the pushed manifest's digest
is the last line (`pushed <digest>`) and the termination message. Exit code 0 when pushed, 1 when a
step failed (its output is in the log, the step named), 2 on any other failure.
"""

import base64
import gzip
import hashlib
import http.client
import json
import os
import pwd
import ssl
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = OCI_MANIFEST + ", " + DOCKER_MANIFEST
CHUNK = 1 << 20


class StepFailed(Exception):
    """A step's command ended with a non-zero code."""


# ---------------------------------------------------------------------------------------------
# Snapshots and layers


def mount_points(mountinfo="/proc/self/mountinfo"):
    """Mount points other than `/` (kubelet's /etc/hosts, the ConfigMap, the scratch folder, ...):
    their content is not part of the image."""
    points = set()
    try:
        with open(mountinfo) as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point != "/":
                    points.add(point)
    except OSError:
        pass
    return points | {"/proc", "/sys", "/dev"}


def snapshot(root, excluded=()):
    """Path (relative to `root`, no leading slash) → the stat tuple a change is seen by: type and
    mode, owner, size, mtime, ctime (which no user-space tool can set back), inode, link target."""
    excluded = {os.path.normpath(p) for p in excluded}
    state = {}
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        kept = []
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if full in excluded:
                continue
            if os.path.islink(full):
                filenames.append(name)  # a link to a folder: an entry, not walked
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in kept + filenames:
            full = os.path.join(dirpath, name)
            if full in excluded:
                continue
            try:
                s = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISSOCK(s.st_mode):
                continue
            link = os.readlink(full) if stat.S_ISLNK(s.st_mode) else None
            rel = os.path.relpath(full, root)
            state[rel] = (s.st_mode, s.st_uid, s.st_gid, s.st_size, s.st_mtime_ns, s.st_ctime_ns,
                          s.st_ino, link)
    return state


def diff(before, after):
    """(changed or new paths, top-most deleted paths, folders replaced by a new one) between two
    snapshots, each sorted so that a folder comes before its content."""
    changed = sorted(p for p, st in after.items() if before.get(p) != st)
    deleted = {p for p in before if p not in after}
    top = sorted(p for p in deleted if os.path.dirname(p) not in deleted)
    replaced = sorted(
        p for p in changed
        if stat.S_ISDIR(after[p][0]) and p in before
        and (not stat.S_ISDIR(before[p][0]) or before[p][6] != after[p][6])
    )
    return changed, top, replaced


def _xattrs(path):
    headers = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return headers
    for name in names:
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return headers


def _whiteout(tar, arcname):
    info = tarfile.TarInfo(arcname)
    info.mtime = 0
    tar.addfile(info)


def write_layer(root, changed, deleted, replaced, out):
    """Writes the layer tar of a step's changes to the open file `out`: an entry per changed
    path (hard links inside the layer as links), `.wh.<name>` per deleted path and
    `.wh..wh..opq` in each folder that replaced an earlier one."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in deleted:
            parent, name = os.path.split(rel)
            _whiteout(tar, os.path.join(parent, ".wh." + name))
        opaque = set(replaced)
        for rel in changed:
            full = os.path.join(root, rel)
            try:
                info = tar.gettarinfo(full, arcname=rel)
            except OSError:
                continue  # gone since the snapshot
            if info is None:
                continue
            info.pax_headers.update(_xattrs(full))
            if info.isreg():
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if rel in opaque:
                _whiteout(tar, os.path.join(rel, ".wh..wh..opq"))


def compress(tar_path, gz_path):
    """gzips `tar_path` into `gz_path`: (digest of the gzip, its size, diff id of the tar)."""
    raw, packed = hashlib.sha256(), hashlib.sha256()

    class Tee:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            packed.update(b)
            return self.f.write(b)

        def flush(self):
            self.f.flush()

    with open(tar_path, "rb") as src, open(gz_path, "wb") as dst:
        with gzip.GzipFile(fileobj=Tee(dst), mode="wb", compresslevel=6, mtime=0) as gz:
            while True:
                b = src.read(CHUNK)
                if not b:
                    break
                raw.update(b)
                gz.write(b)
        size = dst.tell()
    return "sha256:" + packed.hexdigest(), size, "sha256:" + raw.hexdigest()


# ---------------------------------------------------------------------------------------------
# The registry


class Registry:
    """The few calls of the OCI distribution API a push needs, with Basic or Bearer auth."""

    def __init__(self, base, auth=None, ca=None):
        self.base = base.rstrip("/")
        self.basic = ("Basic " + base64.b64encode(auth.encode()).decode()) if auth else None
        self.token = None
        self.ctx = None
        if ca:  # trusted besides the system's CAs
            self.ctx = ssl.create_default_context()
            self.ctx.load_verify_locations(cafile=ca)

    def _bearer(self, challenge):
        params = {}
        for part in challenge[len("Bearer "):].split(","):
            if "=" in part:
                k, v = part.split("=", 1)
                params[k.strip()] = v.strip().strip('"')
        query = {k: params[k] for k in ("service", "scope") if k in params}
        url = params["realm"] + "?" + urllib.parse.urlencode(query)
        req = urllib.request.Request(url)
        if self.basic:
            req.add_header("Authorization", self.basic)
        with urllib.request.urlopen(req, context=self.ctx) as r:
            answer = json.load(r)
        self.token = "Bearer " + (answer.get("token") or answer["access_token"])

    def call(self, method, path, body=None, headers=None, ok=(200, 201, 202, 204), retried=False):
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        if self.token or self.basic:
            req.add_header("Authorization", self.token or self.basic)
        try:
            with urllib.request.urlopen(req, context=self.ctx) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            challenge = e.headers.get("WWW-Authenticate", "")
            if e.code == 401 and challenge.startswith("Bearer ") and not retried:
                self._bearer(challenge)
                if hasattr(body, "seek"):
                    body.seek(0)
                return self.call(method, path, body, headers, ok, retried=True)
            if e.code in ok:
                return e.code, e.headers, e.read()
            raise RuntimeError("registry: %s %s answered %s: %s"
                               % (method, urllib.parse.urlsplit(url).path, e.code,
                                  e.read()[:300].decode("utf-8", "replace"))) from None

    def manifest(self, repo, ref):
        _, headers, body = self.call("GET", "/v2/%s/manifests/%s" % (repo, ref),
                                     headers={"Accept": ACCEPT})
        return json.loads(body), headers.get("Docker-Content-Digest")

    def blob(self, repo, digest):
        return self.call("GET", "/v2/%s/blobs/%s" % (repo, digest))[2]

    def has_blob(self, repo, digest):
        return self.call("HEAD", "/v2/%s/blobs/%s" % (repo, digest), ok=(200, 404))[0] == 200

    def mount(self, repo, digest, source):
        """Links `digest` of `source` into `repo` without moving it; copies it when the
        registry does not mount."""
        if self.has_blob(repo, digest):
            return
        code, headers, _ = self.call(
            "POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s" % (repo, digest, source))
        if code == 201:
            return
        with tempfile.TemporaryFile() as f:
            f.write(self.blob(source, digest))
            f.seek(0)
            self._put(headers["Location"], digest, f)

    def push_file(self, repo, digest, path):
        if self.has_blob(repo, digest):
            return
        _, headers, _ = self.call("POST", "/v2/%s/blobs/uploads/" % repo)
        with open(path, "rb") as f:
            self._put(headers["Location"], digest, f)

    def push_bytes(self, repo, digest, data):
        if self.has_blob(repo, digest):
            return
        _, headers, _ = self.call("POST", "/v2/%s/blobs/uploads/" % repo)
        self._put(headers["Location"], digest, data)

    def _put(self, location, digest, body):
        sep = "&" if "?" in location else "?"
        size = len(body) if isinstance(body, bytes) else os.fstat(body.fileno()).st_size
        self.call("PUT", urllib.parse.urljoin(self.base + "/", location) + sep + "digest=" + digest,
                  body=body, headers={"Content-Type": "application/octet-stream",
                                      "Content-Length": str(size)})

    def put_manifest(self, repo, tag, manifest):
        body = json.dumps(manifest, separators=(",", ":")).encode()
        _, headers, _ = self.call("PUT", "/v2/%s/manifests/%s" % (repo, tag), body=body,
                                  headers={"Content-Type": manifest["mediaType"]})
        return headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(body).hexdigest()


# ---------------------------------------------------------------------------------------------
# Steps


def _demote(user):
    if user == "root":
        return None, "/root"
    entry = pwd.getpwnam(user)

    def become():
        os.setgid(entry.pw_gid)
        os.initgroups(user, entry.pw_gid)
        os.setuid(entry.pw_uid)

    return (become if os.getuid() != entry.pw_uid else None), entry.pw_dir


def registry_auth(config_path, registry_url):
    """`user:password` for the registry from a Docker config (`.dockerconfigjson`, as a Secret of
    type kubernetes.io/dockerconfigjson holds it), or None when it has no entry for it."""
    host = urllib.parse.urlsplit(registry_url).netloc
    with open(config_path) as f:
        auths = json.load(f).get("auths", {})
    for key, entry in auths.items():
        if key == host or urllib.parse.urlsplit(key).netloc == host:
            if entry.get("auth"):
                return base64.b64decode(entry["auth"]).decode()
            if entry.get("username") is not None:
                return "%s:%s" % (entry["username"], entry.get("password", ""))
    return None


def run_step(step, out=sys.stdout):
    """Runs one step with its user, folder and environment; its output goes to `out`."""
    become, home = _demote(step["user"])
    if not os.path.isdir(step["workdir"]):
        os.makedirs(step["workdir"])
        if become is not None:  # made by root for a step of another user: theirs
            entry = pwd.getpwnam(step["user"])
            os.chown(step["workdir"], entry.pw_uid, entry.pw_gid)
    env = dict(os.environ, HOME=home, USER=step["user"])
    env.update(step.get("env", {}))
    argv = step.get("argv") or ["/bin/sh", "-c", step["run"]]
    out.flush()
    proc = subprocess.run(argv, cwd=step["workdir"], env=env, preexec_fn=become,
                          stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise StepFailed("exit code %d" % proc.returncode)


def build(spec, root="/", scratch=None, out=sys.stdout):
    """Runs the spec's steps in `root` and pushes the image; answers the manifest's digest."""
    started = time.monotonic()
    scratch = scratch or spec.get("scratch") or tempfile.mkdtemp()
    auth = registry_auth(spec["auth_file"], spec["registry"]) if spec.get("auth_file") else None
    registry = Registry(spec["registry"], auth, spec.get("ca"))
    base_repo, base_ref, repo, tag = spec["base_repo"], spec["base_ref"], spec["repo"], spec["tag"]
    manifest, _ = registry.manifest(base_repo, base_ref)
    config = json.loads(registry.blob(base_repo, manifest["config"]["digest"]))
    for layer in manifest["layers"]:
        registry.mount(repo, layer["digest"], base_repo)
    excluded = mount_points() | {scratch} if root == "/" else {scratch}
    before = snapshot(root, excluded)
    print("==> snapshot of the base: %d paths (%.1f s)" % (len(before), time.monotonic() - started),
          file=out, flush=True)
    layers, history = [], []
    steps = spec["steps"]
    for n, step in enumerate(steps, 1):
        t = time.monotonic()
        print("==> [%d/%d] %s (as %s in %s)" % (n, len(steps), step["shown"], step["user"],
                                                step["workdir"]), file=out, flush=True)
        try:
            run_step(step, out)
        except StepFailed as e:
            raise StepFailed("step %d/%d failed (%s): %s" % (n, len(steps), e, step["shown"]))
        after = snapshot(root, excluded)
        changed, deleted, replaced = diff(before, after)
        before = after
        entry = {"created": "1970-01-01T00:00:00Z", "created_by": step["shown"]}
        if not changed and not deleted:
            entry["empty_layer"] = True
            history.append(entry)
            print("    no changes", file=out, flush=True)
            continue
        tar_path = os.path.join(scratch, "layer-%d.tar" % n)
        with open(tar_path, "wb") as f:
            write_layer(root, changed, deleted, replaced, f)
        digest, size, diff_id = compress(tar_path, tar_path + ".gz")
        registry.push_file(repo, digest, tar_path + ".gz")
        os.remove(tar_path)
        os.remove(tar_path + ".gz")
        layers.append({"mediaType": OCI_LAYER, "digest": digest, "size": size})
        config["rootfs"]["diff_ids"].append(diff_id)
        history.append(entry)
        print("    %d changed, %d deleted: layer of %d bytes (%.1f s)"
              % (len(changed), len(deleted), size, time.monotonic() - t), file=out, flush=True)
    apply_config(config, spec.get("config", {}), history)
    body = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    config_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    registry.push_bytes(repo, config_digest, body)
    image = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(body)},
        "layers": [dict(l, mediaType=_layer_type(l)) for l in manifest["layers"]] + layers,
    }
    digest = registry.put_manifest(repo, tag, image)
    print("==> %s:%s in %.1f s" % (repo, tag, time.monotonic() - started), file=out, flush=True)
    return digest


def _layer_type(layer):
    # A Docker v2 base layer in an OCI manifest: the same bytes, the OCI name.
    kind = layer.get("mediaType", OCI_LAYER)
    return OCI_LAYER if kind == "application/vnd.docker.image.rootfs.diff.tar.gzip" else kind


def apply_config(config, changes, history):
    """The base config with the steps' ENV, LABEL and EXPOSE and their history."""
    c = config.setdefault("config", {})
    env = c.get("Env") or []
    for key, value in changes.get("env", []):
        env = [e for e in env if not e.startswith(key + "=")] + ["%s=%s" % (key, value)]
    c["Env"] = env
    if changes.get("labels"):
        c["Labels"] = dict(c.get("Labels") or {}, **changes["labels"])
    for port in changes.get("exposed", []):
        c.setdefault("ExposedPorts", {})[port] = {}
    config.setdefault("history", []).extend(history)
    # When it was pushed: the garbage collector leaves young images alone.
    config["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def main(argv):
    with open(argv[1]) as f:
        spec = json.load(f)
    try:
        digest = build(spec)
    except StepFailed as e:
        message = str(e)
        code = 1
    except Exception as e:  # noqa: BLE001 - every failure ends the build with its message
        message = "build agent: %s: %s" % (type(e).__name__, e)
        code = 2
    else:
        message = "pushed " + digest
        code = 0
    print(message, flush=True)
    try:
        with open("/dev/termination-log", "w") as f:
            f.write(message)
    except OSError:
        pass
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
