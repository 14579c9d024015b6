"""The local orchestrator's zygote: imports the lambda runtime and its server once, then forks
replicas on request, each of which only imports its own lambda_main.

Usage: python zygote.py SOCKET RUNTIME_DIR
A request is one JSON line on a connection to the Unix socket SOCKET:
  {"app_dir": "...", "env": {"NAME": "value", ...}, "log": "/path/to/replica.log"}
with the replica's listening socket attached to its first bytes (SCM_RIGHTS); the replica
serves on it (LAMBDA_LISTEN_FD). The answer is one line: the replica's pid, or "error: <why>".

Written by the platform (embedded in the server binary); every replica it forks runs the same
runtime files as RUNTIME_DIR (the orchestrator keeps one zygote per interpreter and runtime).
"""

import ctypes
import json
import os
import signal
import socket
import sys
import traceback


def _die_with_parent():
    # PR_SET_PDEATHSIG: the zygote ends with the server that started it (its replicas do not:
    # they run on until the next server re-adopts them).
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    except Exception:
        pass


def _read_request(conn):
    """The request line and the listening socket that came with it (None when none did). The
    socket is not inherited by what the replica starts; it is closed if the request cannot be
    read whole."""
    data, fds, _, _ = socket.recv_fds(conn, 65536, 1)
    for extra in fds[1:]:
        os.close(extra)
    fd = fds[0] if fds else None
    try:
        if fd is not None:
            os.set_inheritable(fd, False)
        while data and not data.endswith(b"\n"):
            more = conn.recv(65536)
            if not more:
                break
            data += more
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    return data, fd


def _become_replica(request, runtime_dir, listen_fd):
    """In the forked child: take the replica's place and run its server. Never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setpgid(0, 0)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        app_dir = request["app_dir"]
        os.chdir(app_dir)
        os.environ.clear()
        os.environ.update(request["env"])
        if listen_fd is not None:
            os.environ["LAMBDA_LISTEN_FD"] = str(listen_fd)
        sys.path[sys.path.index(runtime_dir)] = app_dir
        sys.argv = [os.path.join(app_dir, "run.py")]
        # The runtime read its settings from the environment as it was imported: again, from
        # this replica's.
        sys.modules["luna_lambda_tools.config"].lambdaConfig.__init__()
        level = os.environ.get("LAMBDA_LOG_LEVEL", "INFO").upper()
        sys.modules["luna_lambda_tools.logger"].logger.setLevel(level)
        code = sys.modules["luna_lambda_tools.server"].main() or 0
    except SystemExit as e:
        # As the interpreter does at exit: a message is printed, and means status 1.
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main():
    path, runtime_dir = sys.argv[1], os.path.abspath(sys.argv[2])
    _die_with_parent()
    sys.path.insert(0, runtime_dir)
    # What a replica imports before its lambda_main, done once here.
    import luna_lambda_tools.server  # noqa: F401
    import uvicorn  # noqa: F401
    import uvicorn.lifespan.on  # noqa: F401
    import uvicorn.loops.uvloop  # noqa: F401
    import uvicorn.protocols.http.httptools_impl  # noqa: F401

    # The imports above may catch SIGTERM/SIGINT (found caught): the zygote must end on them,
    # or the parent-death signal would leave it running after a server that died.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Forked replicas are reaped by the kernel: the orchestrator watches them by pid.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    listener.bind(tmp)
    listener.listen(64)
    os.rename(tmp, path)  # ready: the socket appears only once the imports are done
    print(f"zygote {os.getpid()} ready for {runtime_dir}", flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            listen_fd = None
            try:
                line, listen_fd = _read_request(conn)
                request = json.loads(line)
            except (OSError, ValueError) as e:
                conn.sendall(f"error: bad request: {e}\n".encode())
                if listen_fd is not None:
                    os.close(listen_fd)
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                _become_replica(request, runtime_dir, listen_fd)
            if listen_fd is not None:
                os.close(listen_fd)  # the replica has its copy
            conn.sendall(f"{pid}\n".encode())


if __name__ == "__main__":
    main()
