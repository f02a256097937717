"""Time from ``vitdeca demo`` to the first result on the astronaut photo, per method (CPU).

Claims (issue 18): after start-up, the first result on the astronaut comes within 15 s with fitting and
within 3 s with the learned model (the shipped default model: ``regress``, and ``refine`` = regress then
a short fit).

Measured per repeat and method, each with a fresh server process on a free localhost port:
1. start-up: from spawning ``vitdeca demo`` to the page being served (imports, head model, examples);
2. first result: from the request to the reconstruction's answer, through Gradio's own API
   (``gradio_client``, the same queue and handler the page's button uses);
3. a second request on the same server (warm: numba kernels, allocator);
4. reference, same run: ``vitdeca reconstruct --demo`` as a fresh process, from spawn to exit.

Usage: ``python benchmarks/bench_demo.py [--repeats 3] [--methods regress,refine,fit]`` (needs the
``[demo]`` extra; offline, set ``VITDECA_ICT_FACEKIT``). Writes ``benchmarks/results/demo.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from vitdeca.storage import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "demo.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(port: int, log: Path) -> tuple[subprocess.Popen, float]:
    """Start ``vitdeca demo`` on ``port``; returns the process and the seconds until it serves."""
    start = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "vitdeca", "demo", "--port", str(port)], stdout=out, stderr=out
        )
    while True:
        if process.poll() is not None:
            raise SystemExit(f"vitdeca demo exited:\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).close()
            return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.2)


def request(port: int, photo: Path, method: str) -> tuple[float, str]:
    """One reconstruction through the page's API; (seconds, the message shown)."""
    from gradio_client import Client, handle_file

    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    start = time.perf_counter()
    out = client.predict(handle_file(str(photo)), None, method, False, False, api_name="/reconstruct")
    return time.perf_counter() - start, out[0]


def cli_seconds(folder: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "vitdeca",
            "-q",
            "reconstruct",
            "--demo",
            "--out",
            str(folder),
            "--no-progress",
        ],
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="regress,refine,fit", help="demo methods, comma-separated")
    args = parser.parse_args()
    from skimage import data

    from vitdeca import media

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows: dict[str, list[float]] = {"reconstruct --demo (reference, CLI default)": []}
    with tempfile.TemporaryDirectory() as tmp:
        photo = media.save_png(Path(tmp) / "astronaut.png", data.astronaut())
        for k in range(args.repeats):
            for method in methods:
                port = free_port()
                process, startup = serve(port, Path(tmp) / f"server{k}_{method}.log")
                try:
                    first, message = request(port, photo, method)
                    second, _ = request(port, photo, method)
                finally:
                    process.terminate()
                    process.wait(timeout=60)
                print(f"repeat {k}, {method}: start-up {startup:.1f} s, first {first:.1f} s, "
                      f"second {second:.1f} s: {message}")  # fmt: skip
                steps = (("start-up", startup), ("first result", first), ("second result", second))
                for step, value in steps:
                    rows.setdefault(f"{step}, {method}", []).append(value)
            rows["reconstruct --demo (reference, CLI default)"].append(cli_seconds(Path(tmp) / f"cli{k}"))
    write_table(rows, args.repeats)


def write_table(rows: dict[str, list[float]], repeats: int) -> None:
    load = os.getloadavg()[0]
    lines = [
        "# vitdeca demo: time to the first result on the astronaut, per method (CPU)",
        "",
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average at the end {load:.1f}; "
        f"median of {repeats} fresh servers per method "
        f"(`python benchmarks/bench_demo.py --repeats {repeats}`).",
        "",
        "| step | median s | min s | max s |",
        "|---|---|---|---|",
    ]
    for name, values in rows.items():
        lines.append(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_bytes(RESULTS, text.encode())


if __name__ == "__main__":
    main()
