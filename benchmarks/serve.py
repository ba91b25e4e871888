"""``recognizer serve`` under load: latency of POST /transcribe, and many concurrent requests.

    python benchmarks/serve.py --checkpoint runs/an4/.../averaged.ckpt --audio data.wav

Starts ``recognizer serve`` on a free local port (a real uvicorn process), then:

1. ``--sequential`` requests one after another with the file: p50 / p95 latency;
2. ``--concurrent`` requests at once (threads): all must complete with 200; wall time and p50 / p95;
3. a few bad uploads (empty, garbage, unknown type): their status codes, and the server still answers.

Prints Markdown.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx  # the test extra's HTTP client
import numpy as np
import soundfile

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--audio", required=True, help="the file every request sends")
    parser.add_argument("--sequential", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=100)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "recognizer"), "serve", "--checkpoint", args.checkpoint, "--port", str(port), "--device", "cpu"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        data, name = Path(args.audio).read_bytes(), Path(args.audio).name
        duration = soundfile.info(args.audio).duration

        def request(_: int = 0) -> tuple[int, float]:
            start = time.perf_counter()
            response = httpx.post(f"{url}/transcribe", files={"file": (name, data)}, timeout=600)
            return response.status_code, time.perf_counter() - start

        request()  # warm-up
        sequential = [request() for _ in range(args.sequential)]
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrent) as pool:
            concurrent = list(pool.map(request, range(args.concurrent)))
        wall = time.perf_counter() - start
        bad = {
            "empty.wav": b"",
            "garbage.wav": b"RIFF\x00\x01garbage",
            "notes.txt": b"hello",
            "silence.wav": np.zeros(10, dtype="<i2").tobytes(),
        }
        codes = {n: httpx.post(f"{url}/transcribe", files={"file": (n, b)}).status_code for n, b in bad.items()}
        alive = httpx.get(f"{url}/health").status_code
    finally:
        server.terminate()
        server.wait(timeout=30)

    def ms(values: list[float], q: float) -> str:
        return f"{1000 * float(np.percentile(values, q)):.0f} ms"

    seq = [s for _, s in sequential]
    con = [s for _, s in concurrent]
    print(f"\n{name}: {duration:.2f} s of audio; server: recognizer serve, 1 uvicorn worker, CPU\n")
    print("| requests | completed 200 | p50 | p95 | wall |\n|---|---|---|---|---|")
    print(
        f"| {args.sequential} one after another | {sum(c == 200 for c, _ in sequential)} | {ms(seq, 50)} | "
        f"{ms(seq, 95)} | {sum(seq):.1f} s |"
    )
    print(
        f"| {args.concurrent} at once | {sum(c == 200 for c, _ in concurrent)} | {ms(con, 50)} | "
        f"{ms(con, 95)} | {wall:.1f} s |"
    )
    print(f"\n- bad uploads: {', '.join(f'{n} {c}' for n, c in codes.items())}; /health after them: {alive}")
    print(f"- median latency / audio duration: {statistics.median(seq) / duration:.3f}")


if __name__ == "__main__":
    main()
