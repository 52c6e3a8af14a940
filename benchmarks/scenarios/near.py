"""``near``: the near cache's invalidation, churn, memory and hit ratio (issue #18).

* **invalidation delay**: a writer process sets a key (a few ms apart), a reader
  process polls it through a near cache; the time from the writer's ``set``
  returning to the reader first seeing the new value (p50, p99, max; target p99
  ≤ 5 ms), and the reads that returned an older value although they started
  more than 5 ms after the newer value's ``set`` returned (target 0);
* **churn**: one writer bumps a version on 1,000 keys while 3 reader processes
  read them; no reader may see a key's version go backwards, and 10 ms after the
  writer stops every reader sees the final versions;
* **memory**: bytes per near entry beyond its envelope (target ≤ 200), by
  ``tracemalloc`` over 10,000 entries;
* **hit ratio**: a Zipf(1.0) trace over 100,000 keys through a near store of
  10,000 entries, against a plain LRU of the same size;
* **broadcast cost**: what one invalidation of a key the process does not hold
  costs it (the price of broadcast mode).

The hit speed itself is in the ``hit`` scenario (``Cache.get (near)`` and its floor).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import multiprocessing
import random
import statistics
import sys
import time
import tracemalloc
import uuid
from typing import Any

from aiocache_patterns import NearCache
from aiocache_patterns.cache._near import NearStore
from aiocache_patterns.cache._stats import Counters
from benchmarks._report import ScenarioResult, Table
from benchmarks.scenarios import _near_workers as workers
from benchmarks.scenarios._base import RunContext

__all__ = ["SCENARIO", "NearScenario"]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _delay(url: str, writes: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    ns = f"bench-near-{uuid.uuid4().hex[:8]}"
    returned = ctx.Array("d", writes + 1, lock=False)
    ready = ctx.Event()
    out = ctx.Queue()
    reader = ctx.Process(target=workers.delay_reader, args=(url, ns, writes, returned, ready, out))
    writer = ctx.Process(target=workers.delay_writer, args=(url, ns, writes, returned, ready))
    reader.start()
    writer.start()
    result: dict[str, Any] = out.get(timeout=300)
    reader.join(30)
    writer.join(30)
    delays = [max(0.0, result["seen"][i] - returned[i]) for i in range(1, writes + 1)]
    result["delays"] = delays
    return result


def _churn(url: str, keys: int, seconds: float, readers: int) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    ns = f"bench-churn-{uuid.uuid4().hex[:8]}"
    ready = [ctx.Event() for _ in range(readers)]
    stop = ctx.Event()
    final = ctx.Value("q", 0)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=workers.churn_reader, args=(url, ns, keys, ready[i], stop, final, out))
        for i in range(readers)
    ]
    procs.append(
        ctx.Process(target=workers.churn_writer, args=(url, ns, keys, seconds, ready, final, stop))
    )
    for proc in procs:
        proc.start()
    results = [out.get(timeout=300) for _ in range(readers)]
    for proc in procs:
        proc.join(30)
    return results


def _store(max_entries: int, max_bytes: int = 2**40) -> tuple[NearStore, Counters]:
    counters = Counters()
    store = NearStore(
        NearCache(max_entries=max_entries, max_bytes=max_bytes),
        None,
        b"x:{",
        counters,
        time.time,
        2**30,
    )
    store.active = True
    return store, counters


def _envelope(payload: bytes) -> bytes:
    import struct

    now = time.time()
    return struct.pack(">2sddd", b"\xac\x01", now, 0.0, now + 3600) + payload


def _memory(entries: int) -> tuple[float, float]:
    """Bytes per entry beyond the envelope: (with the key's bytes object, without)."""
    store, _ = _store(entries * 2)
    rkeys = [f"bench:{{item:{i}}}".encode() for i in range(entries)]
    raws = [_envelope(b'{"id": %d, "title": "post"}' % i) for i in range(entries)]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for rkey, raw in zip(rkeys, raws, strict=True):
        ticket = store.begin(rkey)
        assert ticket is not None
        store.end(rkey, ticket, raw)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    keys_size = sum(sys.getsizeof(k) for k in rkeys)
    return grown / entries + keys_size / entries, grown / entries


def _zipf_trace(n_keys: int, length: int, s: float, seed: int) -> list[int]:
    weights = [1 / (i + 1) ** s for i in range(n_keys)]
    cumulative = []
    total = 0.0
    for w in weights:
        total += w
        cumulative.append(total)
    rng = random.Random(seed)
    order = list(range(n_keys))
    rng.shuffle(order)
    return [order[bisect.bisect(cumulative, rng.random() * total)] for _ in range(length)]


def _hit_ratios(trace: list[int], capacity: int) -> tuple[float, float]:
    store, counters = _store(capacity)
    raw = _envelope(b"1")
    keys = [b"x:{%d}" % i for i in range(max(trace) + 1)]
    for i in trace:
        rkey = keys[i]
        if store.lookup(rkey) is None:
            ticket = store.begin(rkey)
            assert ticket is not None
            store.end(rkey, ticket, raw)
    near_ratio = counters.near_hits / len(trace)
    lru: collections.OrderedDict[int, None] = collections.OrderedDict()
    hits = 0
    for i in trace:
        if i in lru:
            hits += 1
            lru.move_to_end(i)
        else:
            lru[i] = None
            if len(lru) > capacity:
                lru.popitem(last=False)
    return near_ratio, hits / len(trace)


def _broadcast_cost(n: int) -> float:
    """µs to handle one invalidation message naming a key this process does not hold."""
    store, _ = _store(10_000)
    keys = [[b"x:{other%d}" % i] for i in range(n)]
    heard = store._heard
    started = time.perf_counter()
    for message in keys:
        heard(message)
    return (time.perf_counter() - started) / n * 1e6


class NearScenario:
    name = "near"
    description = "near cache: invalidation delay, churn, memory per entry, Zipf hit ratio"

    async def run(self, ctx: RunContext) -> ScenarioResult:
        result = ScenarioResult(self.name, self.description, "", {}, [])
        url = ctx.target.url
        ctx.progress.start(self.name, 3)
        rows: list[list[str]] = []
        if url is None:
            result.notes.append(
                "invalidation delay and churn need a real Redis (client tracking): skipped"
            )
        else:
            writes = 100 if ctx.quick else 400
            ctx.progress.step("invalidation delay")
            delay = await asyncio.to_thread(_delay, url, writes)
            d = delay["delays"]
            p99 = _pct(d, 0.99)
            rows.append(["invalidation delay p50", _ms(statistics.median(d)), ""])
            rows.append(["invalidation delay p99", _ms(p99), "≤ 5 ms " + _tick(p99 <= 0.005)])
            rows.append(["invalidation delay max", _ms(max(d)), ""])
            rows.append(
                [
                    "stale reads after 5 ms",
                    f"{delay['stale']} of {delay['reads']:,}",
                    "0 " + _tick(delay["stale"] == 0),
                ]
            )
            rows.append(
                [
                    "reader process stalls > 2 ms (not scheduled: a busy machine)",
                    f"{delay['stalls']}, longest {_ms(delay['longest_stall'])}",
                    "",
                ]
            )
            seconds = 3.0 if ctx.quick else 10.0
            ctx.progress.step(f"churn ({seconds:g} s)")
            churn = await asyncio.to_thread(_churn, url, 1000, seconds, 3)
            backwards = sum(r["backwards"] for r in churn)
            behind = sum(r["behind"] for r in churn)
            reads = sum(r["reads"] for r in churn)
            rows.append(
                [
                    "churn: versions gone backwards",
                    f"{backwards} in {reads:,} reads",
                    "0 " + _tick(backwards == 0),
                ]
            )
            rows.append(
                [
                    "churn: keys behind 10 ms after the stop",
                    f"{behind} of {1000 * len(churn):,}",
                    "0 " + _tick(behind == 0),
                ]
            )
            rows.append(
                [
                    "churn: near hits",
                    f"{sum(r['near_hits'] for r in churn):,} of {reads:,} reads",
                    "",
                ]
            )
        ctx.progress.step("memory, hit ratio")
        with_key, without_key = _memory(10_000)
        rows.append(
            [
                "bytes per near entry beyond the envelope",
                f"{without_key:.0f} (+ the key: {with_key:.0f})",
                "≤ 200 " + _tick(without_key <= 200),
            ]
        )
        trace = _zipf_trace(100_000, 200_000 if ctx.quick else 1_000_000, 1.0, 11)
        near_ratio, lru_ratio = _hit_ratios(trace, 10_000)
        rows.append(
            [
                "Zipf(1.0) hit ratio, 10,000 of 100,000 keys",
                f"{near_ratio:.3f} (plain LRU {lru_ratio:.3f})",
                "≥ LRU " + _tick(near_ratio >= lru_ratio - 1e-9),
            ]
        )
        rows.append(
            [
                "one broadcast invalidation of a key not held",
                f"{_broadcast_cost(100_000):.2f} µs",
                "",
            ]
        )
        result.tables.append(Table("Near cache", ["measure", "value", "target"], rows))
        return result


def _tick(ok: bool) -> str:
    return "✓" if ok else "✗"


SCENARIO = NearScenario()
