"""``python -m examples.http_load``: req/s and latency of a FastAPI app over real HTTP.

Starts ``python -m examples.http_load.app`` (one uvicorn worker, no access
log) against ``--redis-url``, else ``$REDIS_URL``, else a private
``redis-server`` on a free port (as ``python -m benchmarks`` does), and runs
wrk (``apt-get install wrk``) against:

* ``/cached/{id}``: ``@cache.cached`` over the fake database, ids drawn at
  random from ``--ids`` (1,000) so the cache is warm after the first pass;
* ``/uncached/{id}``: the same fake database (``--db-ms``, 20 ms a query)
  called directly;
* ``/floor/{id}``: the same answer with neither: what FastAPI and uvicorn
  alone serve on this machine, the ceiling for the cached route;

then makes one key cold and sends it ``--connections`` concurrent requests,
counting the database calls they cause. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks._target import open_target, redact

ROOT = Path(__file__).resolve().parents[2]
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
_LATENCY = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_REQUESTS = re.compile(r"^\s*(\d+) requests in", re.M)
_ERRORS = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)|Socket errors:.*", re.M)


@dataclass(frozen=True)
class WrkResult:
    route: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: str
    requests: int = 0
    #: The app process's CPU per request (µs), when /proc tells it.
    cpu_us: float | None = None


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of process ``pid`` so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_up(base: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with status {proc.returncode}")
        try:
            if httpx.get(f"{base}/stats", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the app did not answer at {base} within {timeout:.0f}s")


def _wrk(args: argparse.Namespace, base: str, route: str, workdir: Path, pid: int) -> WrkResult:
    script = workdir / f"{route}.lua"
    script.write_text(
        f"math.randomseed({os.getpid()})\n"
        "request = function()\n"
        f'  return wrk.format("GET", "/{route}/" .. math.random(1, {args.ids}))\n'
        "end\n"
    )
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s"]
    cmd += ["--latency", "-s", str(script), base]
    print(f"  {' '.join(cmd)}", file=sys.stderr, flush=True)
    before = _cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = _cpu_seconds(pid)
    result = parse_wrk(route, out)
    if before is None or after is None or not result.requests:
        return result
    return dataclasses.replace(result, cpu_us=(after - before) / result.requests * 1e6)


def parse_wrk(route: str, out: str) -> WrkResult:
    """req/s, p50 and p99 (ms) and errors from ``wrk --latency``'s output."""
    rps = _RPS.search(out)
    latency = {p: float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(out)}
    if rps is None or set(latency) != {"50", "99"}:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    errors = "; ".join(m.group(0).strip() for m in _ERRORS.finditer(out)) or "none"
    requests = _REQUESTS.search(out)
    count = int(requests.group(1)) if requests else 0
    return WrkResult(route, float(rps.group(1)), latency["50"], latency["99"], errors, count)


async def _cold_key(base: str, concurrency: int) -> tuple[int, int]:
    """Forget one key, send it ``concurrency`` requests at once: (200s, database calls)."""
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:
        await client.post("/forget/1")
        before = (await client.get("/stats")).json()["db_calls"]
        replies = await asyncio.gather(*(client.get("/cached/1") for _ in range(concurrency)))
        after = (await client.get("/stats")).json()["db_calls"]
    return sum(r.status_code == 200 for r in replies), after - before


def _run(args: argparse.Namespace, redis_url: str, label: str) -> int:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "examples.http_load.app", "--port", str(port)]
    cmd += ["--redis-url", redis_url, "--db-ms", str(args.db_ms), "--no-access-log"]
    if args.rate_limit is not None:
        cmd += ["--rate-limit", str(args.rate_limit)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL)
    try:
        _wait_up(base, proc)
        with tempfile.TemporaryDirectory(prefix="http-load-") as tmp:
            warm = argparse.Namespace(**{**vars(args), "duration": max(2, args.duration // 5)})
            print("warming the cache", file=sys.stderr, flush=True)
            _wrk(warm, base, "cached", Path(tmp), proc.pid)
            routes = ("cached", "uncached", "floor")
            results = [_wrk(args, base, r, Path(tmp), proc.pid) for r in routes]
        ok, loads = asyncio.run(_cold_key(base, args.connections))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    limited = f", rate limit {args.rate_limit}/min" if args.rate_limit else ""
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s over {args.ids:,} ids; "
        f"one uvicorn worker, no access log{limited}; fake database {args.db_ms:g} ms a "
        f"query; Redis: {label}\n"
    )
    print("| route | req/s | p50 ms | p99 ms | app CPU µs/req | errors |")
    print("|---|---|---|---|---|---|")
    for r in results:
        cpu = "—" if r.cpu_us is None else f"{r.cpu_us:,.0f}"
        print(
            f"| `/{r.route}/{{id}}` | {r.requests_per_s:,.0f} | {r.p50_ms:.1f} | "
            f"{r.p99_ms:.1f} | {cpu} | {r.errors} |"
        )
    cached, uncached, floor = results
    print(
        f"\nCached / uncached: {cached.requests_per_s / uncached.requests_per_s:.2f}x req/s; "
        f"cached / floor (FastAPI alone): {cached.requests_per_s / floor.requests_per_s:.2f}x."
    )
    print(
        f"A cold key under {args.connections} concurrent requests: {loads} database "
        f"call(s), {ok} of {args.connections} answered 200."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.http_load", description=__doc__)
    parser.add_argument("--redis-url", help="default: $REDIS_URL, else a private redis-server")
    parser.add_argument("--duration", type=int, default=15, help="seconds per route (15)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--ids", type=int, default=1000, help="distinct ids (1000)")
    parser.add_argument("--db-ms", type=float, default=20.0, help="fake query time (20)")
    parser.add_argument("--rate-limit", type=int, metavar="N", help="add the middleware")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not on PATH: apt-get install wrk (or brew install wrk)")
    with open_target(args.redis_url) as target:
        if target.url is None:
            raise SystemExit("needs a Redis: set REDIS_URL or install redis-server")
        return _run(args, target.url, redact(target.label))


if __name__ == "__main__":
    sys.exit(main())
