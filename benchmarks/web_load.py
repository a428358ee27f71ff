"""Load on the web service, on loopback: a burst of simulations, or many clients mixing everything.

Starts ``ketasim serve`` (uvicorn) on a free port with a temporary data folder, waits until the
model kernel is loaded, then either

- (default) sends ``--requests`` simulations at once with httpx.AsyncClient (each a different
  dose, so no answer is a copy of another); every request must succeed; or
- (``--mixed``) runs ``--clients`` concurrent clients for ``--duration`` seconds (each starting
  after a random delay of up to one think time, as users arrive spread out), each looping over
  a random choice of simulate (60 %), poll a trial (20 %), submit a small trial (8 %), download a
  finished trial's patients table (7 %) and list the runs (5 %), with an exponential think time
  of mean ``--think`` seconds between requests. A 429 to a trial submission (the service's limit of
  16 pending trials) is an answer, not an error; errors are 5xx answers and failed connections.
  After the clients stop, every accepted trial is waited for: each must finish ``done``.

Latency percentiles per kind of request are printed and written to
``results/benchmarks/web_load.json``. Not a timed test.

    KETASIM_CACHE_DIR=... python benchmarks/web_load.py --requests 50
    KETASIM_CACHE_DIR=... python benchmarks/web_load.py --mixed --clients 200 --duration 120 --days 7
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
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


def start_server(data: Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "ketasim", "serve", "--port", str(port), "--data", str(data),
                                "--workers", str(workers)],
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


TRIAL = {"trial": {"name": "load", "seed": 1, "assessments": ["24 h", "7 d"]},
         "population": {"n": 20, "preset": "treatment-resistant"},
         "arm": [{"name": "ketamine", "dose": [{"drug": "racemic-ketamine", "route": "iv", "amount": "0.5 mg/kg",
                                                "duration": "40 min"}]}]}
MIX = (("simulate", 0.60), ("poll", 0.20), ("submit_trial", 0.08), ("download", 0.07), ("list_runs", 0.05))


async def mixed(url: str, clients: int, duration_s: float, days: float, think_s: float, seed: int) -> dict:
    """Clients looping over the mix until the deadline; every request's kind, status and latency."""
    records: list[tuple[str, int, float]] = []
    failures: dict[str, int] = {}  # connection failures by exception type
    trials: list[str] = []
    done_trials: list[str] = []
    deadline = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def request(client, kind: str, method: str, path: str, **kw):
        started = time.perf_counter()
        try:
            response = await client.request(method, path, **kw)
            status = response.status_code
        except httpx.HTTPError as exc:
            response, status = None, 0  # a failed connection counts as an error
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
        records.append((kind, status, time.perf_counter() - started))
        return response

    async def one_client(client, rng: random.Random, i: int):
        n = 0
        await asyncio.sleep(rng.uniform(0, think_s))  # users arrive spread out, not all in the same instant
        while time.monotonic() < deadline:
            kind = rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
            if kind in ("poll", "download") and not trials:
                kind = "simulate"
            if kind == "simulate":
                await request(client, kind, "POST", "/api/simulate", json=scenario((7 * i + n) % 60, days))  # 0.2-0.79 mg/kg
            elif kind == "submit_trial":
                r = await request(client, kind, "POST", "/api/trials", json=TRIAL)
                if r is not None and r.status_code == 202:
                    trials.append(r.json()["id"])
            elif kind == "poll":
                r = await request(client, kind, "GET", f"/api/trials/{rng.choice(trials)}")
                if r is not None and r.status_code == 200 and r.json()["status"] == "done":
                    done_trials.append(r.json()["id"])
            elif kind == "download":
                target = rng.choice(done_trials) if done_trials else rng.choice(trials)
                await request(client, kind, "GET", f"/api/trials/{target}/patients", params={"format": "csv"})
            else:
                await request(client, kind, "GET", "/api/runs", params={"limit": 50})
            n += 1
            await asyncio.sleep(rng.expovariate(1.0 / think_s) if think_s > 0 else 0)

    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(client, random.Random(seed * 100_003 + i), i) for i in range(clients)))
        wall = time.perf_counter() - started
        outcome: dict[str, str] = {}
        finish_by = time.monotonic() + 900
        for run_id in trials:  # every accepted trial must complete
            while time.monotonic() < finish_by:
                status = (await client.get(f"/api/trials/{run_id}")).json()["status"]
                if status not in ("queued", "running"):
                    break
                await asyncio.sleep(0.5)
            outcome[run_id] = status
    return {"records": records, "trials": outcome, "wall": wall, "connection_failures": failures}


def summarise_mixed(result: dict) -> dict:
    kinds = {}
    for kind in [k for k, _ in MIX]:
        rows = [(s, t) for k, s, t in result["records"] if k == kind]
        if not rows:
            continue
        ok = [t for s, t in rows if 200 <= s < 300 or (kind == "submit_trial" and s == 429)
              or (kind == "download" and s == 409)]
        kinds[kind] = {"requests": len(rows), "errors (5xx or no answer)": sum(s >= 500 or s == 0 for s, _ in rows),
                       "status_codes": {str(c): sum(s == c for s, _ in rows) for c in sorted({s for s, _ in rows})},
                       **({f"p{q}": percentile(ok, q / 100) for q in (50, 95, 99)} if ok else {})}
    trials = result["trials"]
    return {"per_kind": kinds, "requests": len(result["records"]),
            "errors": sum(k["errors (5xx or no answer)"] for k in kinds.values()),
            "trials_accepted": len(trials), "trials_done": sum(s == "done" for s in trials.values()),
            "trials_not_done": {i: s for i, s in trials.items() if s != "done"}, "wall [s]": result["wall"],
            "connection_failures": result["connection_failures"]}


def main_mixed(args) -> None:
    with tempfile.TemporaryDirectory(prefix="ketasim-load-") as data:
        process, url = start_server(Path(data), workers=args.trial_workers)
        try:
            asyncio.run(burst(url, 2, args.days))  # warm connections and code paths
            summary = summarise_mixed(asyncio.run(mixed(url, args.clients, args.duration, args.days, args.think,
                                                        args.seed)))
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"{args.clients} clients for {args.duration:g} s (think time mean {args.think:g} s; simulate {args.days:g} d "
          f"on a 15-min grid; trials of {TRIAL['population']['n']} patients)")
    print("| request | n | errors | p50 [s] | p95 [s] | p99 [s] | status codes |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for kind, k in summary["per_kind"].items():
        codes = ", ".join(f"{c}: {n}" for c, n in k["status_codes"].items())
        print(f"| {kind} | {k['requests']} | {k['errors (5xx or no answer)']} | {k.get('p50', float('nan')):.2f} | "
              f"{k.get('p95', float('nan')):.2f} | {k.get('p99', float('nan')):.2f} | {codes} |")
    print(f"trials accepted {summary['trials_accepted']}, done {summary['trials_done']}; errors {summary['errors']} "
          f"(connection failures: {summary['connection_failures'] or 'none'})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "web_load --mixed", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "clients": args.clients, "duration [s]": args.duration, "think [s]": args.think, "simulated_days": args.days,
        "trial_workers": args.trial_workers, **summary, "cpus": os.cpu_count(), "python": platform.python_version(),
    }, indent=2))
    print(f"wrote {args.out}")
    if summary["errors"] or summary["trials_not_done"]:
        raise SystemExit(f"{summary['errors']} errors; trials not done: {summary['trials_not_done']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50, help="concurrent requests")
    parser.add_argument("--days", type=float, default=28.0, help="simulated days per request (15-min output grid)")
    parser.add_argument("--out", type=Path, default=OUT, help="JSON file for the results")
    parser.add_argument("--mixed", action="store_true", help="many clients mixing every kind of request")
    parser.add_argument("--clients", type=int, default=200, help="--mixed: concurrent clients")
    parser.add_argument("--duration", type=float, default=120.0, help="--mixed: seconds the clients run")
    parser.add_argument("--think", type=float, default=1.0, help="--mixed: mean think time between requests [s]")
    parser.add_argument("--trial-workers", type=int, default=1, help="--mixed: ketasim serve --workers")
    parser.add_argument("--seed", type=int, default=0, help="--mixed: the clients' random choices")
    args = parser.parse_args()
    if args.mixed:
        return main_mixed(args)

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
