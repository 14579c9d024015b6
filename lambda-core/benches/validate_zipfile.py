"""Python's zipfile doing the same structural checks as lambda-core's validator, for the
benchmark in validate.rs. Prints the median time of N runs in milliseconds as `median_ms=<x>`.

Checks per entry: name (UTF-8, no '..', not absolute, no backslash), encryption flag, compression
method, symlink/device mode, declared-size limits and ratio; then every entry is read to its end
(zipfile verifies CRC-32 and size), and lambda_main.py is parsed with `ast` for `async def main`.
"""

import ast
import statistics
import sys
import time
import zipfile

MAX_ENTRIES = 10_000
MAX_TOTAL = 500 * 1024 * 1024
MAX_RATIO = 200
RATIO_MIN = 1024 * 1024


def validate(path):
    problems = []
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            return ["too_many_entries"]
        total = 0
        for info in infos:
            name = info.filename
            if name.startswith("/") or ".." in name.split("/") or "\\" in name:
                problems.append(("bad_name", name))
            if info.flag_bits & 0x1:
                problems.append(("encrypted", name))
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                problems.append(("method", name))
            mode = info.external_attr >> 16
            if mode and (mode & 0o170000) not in (0, 0o100000, 0o040000):
                problems.append(("special", name))
            total += info.file_size
            if info.file_size > RATIO_MIN and info.file_size // max(info.compress_size, 1) > MAX_RATIO:
                problems.append(("ratio", name))
        if total > MAX_TOTAL:
            problems.append(("total", ""))
        main_src = None
        for info in infos:
            if info.is_dir():
                continue
            with zf.open(info) as f:
                if info.filename == "lambda_main.py":
                    main_src = f.read()
                else:
                    while f.read(65536):
                        pass
        if main_src is None:
            problems.append(("main.missing", ""))
        else:
            tree = ast.parse(main_src.decode("utf-8"))
            if not any(isinstance(n, ast.AsyncFunctionDef) and n.name == "main" for n in tree.body):
                problems.append(("main.no_main", ""))
    return problems


def run(path, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        problems = validate(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert not problems, problems
    print(f"median_ms={statistics.median(times):.1f}")


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5)
