"""Load on the web service: N concurrent ``POST /api/simulate`` requests on loopback.

Starts ``ketasim serve`` (uvicorn) on a free port with a temporary data folder, waits until the
model kernel is loaded, then sends ``--requests`` simulations at once with httpx.AsyncClient (each a
different dose, so no answer is a copy of another). Every request must succeed; the latency
percentiles are printed and written to ``results/benchmarks/web_load.json``. Not a timed test.

    KETASIM_CACHE_DIR=... python benchmarks/web_load.py --requests 50
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks" / "web_load.json"


def scenario(i: int, days: float) -> dict:
    amount = 0.2 + 0.01 * i  # mg/kg: a different dose per request
    return {"dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": f"{amount:.2f} mg/kg", "duration": "40 min"}],
            "simulation": {"duration": f"{days:g} d", "output_every": "15 min"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ketasim", "serve", "--port", str(port), "--data", str(data)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).json()["kernel"] == "ready":
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.terminate()
    raise SystemExit("ketasim serve did not become ready")


async def one(client: httpx.AsyncClient, i: int, days: float) -> tuple[int, float, int]:
    started = time.perf_counter()
    response = await client.post("/api/simulate", json=scenario(i, days))
    return response.status_code, time.perf_counter() - started, len(response.content)


async def burst(url: str, n: int, days: float) -> tuple[list[tuple[int, float, int]], float]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(one(client, i, days) for i in range(n)))
        return results, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50, help="concurrent requests")
    parser.add_argument("--days", type=float, default=28.0, help="simulated days per request (15-min output grid)")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON file for the results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ketasim-load-") as data:
        process, url = start_server(Path(data))
        try:
            asyncio.run(burst(url, 2, args.days))  # warm connections and code paths
            results, wall = asyncio.run(burst(url, args.requests, args.days))
        finally:
            process.terminate()
            process.wait(timeout=30)

    codes = [c for c, _, _ in results]
    latency = [t for _, t, _ in results]
    ok = sum(c == 200 for c in codes)
    stats = {"p50": percentile(latency, 0.5), "p95": percentile(latency, 0.95), "max": max(latency),
             "mean": statistics.fmean(latency)}
    print(f"{args.requests} concurrent POST /api/simulate ({args.days:g} d, 15-min grid) on loopback")
    print("| succeeded | p50 [s] | p95 [s] | max [s] | wall [s] | answer [kB] |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {ok}/{len(codes)} | {stats['p50']:.2f} | {stats['p95']:.2f} | {stats['max']:.2f} | {wall:.2f} | "
          f"{statistics.fmean(b for _, _, b in results) / 1024:.0f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "web_load", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "requests": args.requests, "succeeded": ok, "status_codes": sorted(set(codes)), "simulated_days": args.days,
        "latency [s]": stats, "wall [s]": wall, "cpus": os.cpu_count(), "python": platform.python_version(),
    }, indent=2))
    print(f"wrote {args.out}")
    if ok != len(codes):
        raise SystemExit(f"{len(codes) - ok} requests failed: status codes {sorted(set(codes))}")


if __name__ == "__main__":
    main()
