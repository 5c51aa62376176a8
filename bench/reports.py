"""Spend reports at scale: N synthetic request-log rows, then what an operator waits for
(the overview page, the spend API by key/team/customer/provider/model/day, the usage
page's charts) and what the proxy's requests pay while the overview is reloaded in a loop,
on SQLite and on a throw-away PostgreSQL, through a real `tollway serve`.

    .venv/bin/python bench/reports.py --rows 1000000
    .venv/bin/python bench/reports.py --rows 10000000 --databases sqlite,postgresql

Rows are in time order over 90 days ending now (as a gateway writes them), 2,000 keys,
50 teams, 10 customers, 3 providers, 6 models, 5 % denied. They are loaded in bulk (SQLite:
executemany in 200k-row transactions; PostgreSQL: COPY) into the first schema revision,
and the rollups are then built by the gateway's own migration (the backfill an upgrade
runs) — the same sums the request-log writer adds batch by batch. Everything lives in a
temporary folder under /tmp that is deleted at the end. Figures: printed and written to
bench/results/reports.json, each with the load average at the time (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from control_plane import ADMIN, CHAT, KEYS_API, _stop, proxy_load, start_gateway  # noqa: E402
from gateways import mock_service  # noqa: E402
from loadgen import free_port  # noqa: E402

from tests.support.postgres import start_postgres  # noqa: E402 - a throw-away server, as the tests use
from tollway.store import migrate  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "reports.json"
DAYS = 90
BATCH = 200_000
SPEND = "/api/usage/spend"
LOGS = "/api/logs"
CACHE_S = 1.1  # longer than the report cache keeps an answer
_COLUMNS = ("at", "request_id", "virtual_key_id", "team_id", "customer_id", "provider", "model", "status", "decision",
            "prompt_tokens", "completion_tokens", "cached_tokens", "cost", "latency_ms", "stream")


def synthetic_rows(count: int, now: datetime, seed: int = 1) -> Iterator[tuple[Any, ...]]:
    """``count`` rows evenly over the 90 days before ``now``, as text where SQLite keeps
    text (times as naive UTC, cost as a decimal string)."""
    rng = random.Random(seed)
    start = now - timedelta(days=DAYS)
    step_us = DAYS * 86_400 * 10**6 / count
    providers = ("openai", "anthropic", "azure")
    for i in range(count):
        number = rng.randrange(2000)
        allowed = rng.random() < 0.95
        at = (start + timedelta(microseconds=int(i * step_us))).replace(tzinfo=None)
        yield (at.isoformat(" ", "microseconds"), f"r{i}", f"vk-{number}", f"team-{number % 50}",
               f"customer-{number % 10}", providers[i % 3], f"model-{number % 6}",
               200 if allowed else 429, "allow" if allowed else "request_limited",
               rng.randrange(2000) if allowed else 0, rng.randrange(800) if allowed else 0, 0,
               f"0.{rng.randrange(10**6):09d}" if allowed else "0", round(rng.random() * 900, 3), 0)


def fill_sqlite(path: Path, count: int, now: datetime) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA cache_size=-1000000")  # 1 GB: the index builds sort in memory
    indexes = [sql for (sql,) in connection.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'request_logs' AND sql IS NOT NULL")]
    for statement in indexes:  # built once after the rows: far cheaper than kept up row by row
        connection.execute("DROP INDEX " + statement.split()[2])
    sql = f"INSERT INTO request_logs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    rows = synthetic_rows(count, now)
    while True:
        batch = [row for _, row in zip(range(BATCH), rows, strict=False)]
        if not batch:
            break
        with connection:  # one transaction per batch
            connection.executemany(sql, batch)
    for statement in indexes:
        connection.execute(statement)
    connection.close()


async def fill_postgres(url: str, count: int, now: datetime) -> None:
    import asyncpg

    async def csv_chunks() -> AsyncIterator[bytes]:
        lines: list[str] = []
        for row in synthetic_rows(count, now):
            lines.append(",".join(map(str, (f"{row[0]}+00", *row[1:14], "true" if row[14] else "false"))))
            if len(lines) == 20_000:
                yield ("\n".join(lines) + "\n").encode()
                lines = []
        if lines:
            yield ("\n".join(lines) + "\n").encode()

    connection = await asyncpg.connect(url)
    try:
        indexes = [row["indexdef"] for row in await connection.fetch(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'request_logs' AND indexname NOT LIKE 'pk_%'")]
        for statement in indexes:  # built once after the rows, as for SQLite
            await connection.execute("DROP INDEX " + statement.split()[2])
        await connection.copy_to_table("request_logs", source=csv_chunks(), columns=list(_COLUMNS), format="csv")
        await connection.execute("SET maintenance_work_mem = '1GB'")
        for statement in indexes:
            await connection.execute(statement)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def load(url: str, fill: Any) -> dict[str, float]:
    """Schema at the first revision, the rows, then the upgrade that builds the rollups."""
    await migrate.upgrade(url, "0001")
    started = time.perf_counter()
    await fill()
    filled = time.perf_counter() - started
    started = time.perf_counter()
    await migrate.upgrade(url)
    return {"fill_s": round(filled, 1), "rollups_backfill_s": round(time.perf_counter() - started, 1)}


def _load_average() -> float:
    return round(os.getloadavg()[0], 2)


async def timed(session: aiohttp.ClientSession, url: str, params: dict[str, str] | None = None,
                repeats: int = 5) -> dict[str, Any]:
    """Median and worst of ``repeats`` GETs (after one warm-up), with the load average. Each
    GET waits out the gateway's one-second report cache first: these are computed answers,
    not cached ones."""
    async with session.get(url, params=params) as response:
        await response.read()
        if response.status != 200 or "/login" in str(response.url):
            raise RuntimeError(f"{url} {params}: {response.status} {(await response.text())[:300]}")
    times = []
    for _ in range(repeats):
        await asyncio.sleep(CACHE_S)
        started = time.perf_counter()
        async with session.get(url, params=params) as response:
            await response.read()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1), "load": _load_average()}


def report_queries(now: datetime) -> list[tuple[str, str, dict[str, str]]]:
    """(label, path, params): the overview, the spend API, the usage page's charts."""
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    d30 = (now - timedelta(days=30)).isoformat()
    queries: list[tuple[str, str, dict[str, str]]] = [
        ("UI overview (30 days)", "/ui/", {}),
        ("UI overview (24 hours)", "/ui/", {"range": "24h"}),
    ]
    for group in ("key", "team", "customer", "provider", "model"):
        queries.append((f"spend API, month by {group}", SPEND, {"start": month.isoformat(), "group_by": group}))
    queries += [
        ("spend API, 30 days by day", SPEND, {"start": d30, "interval": "day"}),
        ("spend API, 30 days, one team by key and day", SPEND,
         {"start": d30, "team_id": "team-7", "group_by": "key", "interval": "day"}),
        ("spend API, 90 days, one key by day", SPEND,
         {"start": (now - timedelta(days=90)).isoformat(), "virtual_key_id": "vk-7", "interval": "day"}),
        ("spend API, 24 hours by hour", SPEND, {"start": (now - timedelta(hours=24)).isoformat(), "interval": "hour"}),
        ("spend API, 24 hours, one team by hour", SPEND,
         {"start": (now - timedelta(hours=24)).isoformat(), "team_id": "team-7", "interval": "hour"}),
    ]
    for group in ("key", "team", "customer", "provider", "model"):
        queries.append((f"UI usage charts, 30 days by {group}", "/ui/usage", {"range": "30d", "by": group}))
    queries += [
        ("UI usage charts, 7 days, one team by key", "/ui/usage", {"range": "7d", "by": "key", "team_id": "team-7"}),
        ("UI usage charts, 24 hours, one model by key", "/ui/usage",
         {"range": "24h", "by": "key", "model": "openai/model-3"}),
        ("request log API, newest 50", LOGS, {"limit": "50"}),
        ("request log API, one team, newest 50", LOGS, {"limit": "50", "team_id": "team-7"}),
        ("request log API, one key, 7 days, newest 50", LOGS,
         {"limit": "50", "virtual_key_id": "vk-7", "start": (now - timedelta(days=7)).isoformat()}),
        ("UI request log", "/ui/logs", {}),
    ]
    return queries


async def log_in(session: aiohttp.ClientSession, base: str) -> None:
    async with session.post(f"{base}/ui/login", data={"token": ADMIN, "next": "/ui/"}, allow_redirects=False) as response:
        if response.status != 303:
            raise RuntimeError(f"UI login: {response.status}")


async def overview_loop(session: aiohttp.ClientSession, base: str, stop: asyncio.Event) -> int:
    """The overview reloaded back to back (an operator holding F5), until ``stop``."""
    reloads = 0
    while not stop.is_set():
        async with session.get(f"{base}/ui/") as response:
            await response.read()
        reloads += 1
    return reloads


async def measure(base: str, now: datetime, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"answers": {}}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"},
                                     connector=aiohttp.TCPConnector(limit=0),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # 127.0.0.1's cookie
        await log_in(session, base)
        for path, body in (("/api/governance/teams", {"id": "team-7", "name": "Team seven"}),
                           (KEYS_API, {"id": "vk-7", "name": "Key seven", "team_id": "team-7"})):
            async with session.post(base + path, json=body) as response:  # named, as the filters look them up
                if response.status not in (201, 409):  # 409: a reused database has them
                    raise RuntimeError(f"{path}: {response.status} {await response.text()}")
        for label, path, params in report_queries(now):
            result["answers"][label] = await timed(session, base + path, params)
            print(f"  {label:<48} {result['answers'][label]}", flush=True)
        async with session.post(base + KEYS_API, json={"name": "reports bench"}) as response:
            value = (await response.json())["virtual_key"]["value"]
        async with session.post(base + "/v1/chat/completions", data=CHAT,
                                headers={"Authorization": f"Bearer {value}", "Content-Type": "application/json"}) as response:
            if response.status != 200:
                raise RuntimeError(f"proxy: {response.status} {await response.text()}")
        await proxy_load(session, base, value, args.rate, 2.0)  # warm-up
        load_before = _load_average()
        idle = await proxy_load(session, base, value, args.rate, args.seconds)
        stop = asyncio.Event()
        reloader = asyncio.create_task(overview_loop(session, base, stop))
        busy = await proxy_load(session, base, value, args.rate, args.seconds)
        stop.set()
        reloads = await reloader
        result["proxy"] = {"idle": idle | {"load": load_before},
                           "overview_reloading": busy | {"load": _load_average(),
                                                         "overview_reloads_per_s": round(reloads / args.seconds, 1)}}
        print(f"  proxy without reloads {result['proxy']['idle']}\n  proxy with reloads    "
              f"{result['proxy']['overview_reloading']}", flush=True)
    return result


def serve_and_measure(url: str, work: Path, mock_port: int, now: datetime, args: argparse.Namespace) -> dict[str, Any]:
    config = work / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "database_url": url, "admin_token": ADMIN, "log_level": "warning",
        "providers": {"mock": {"type": "openai", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                               "keys": [{"value": "sk-mock"}]}}}))
    port = free_port()
    with open(work / "gateway.log", "wb") as logs:
        gateway, _ = start_gateway(config, port, logs)
        try:
            return asyncio.run(measure(f"http://127.0.0.1:{port}", now, args))
        finally:
            _stop(gateway)


def run_database(kind: str, work: Path, mock_port: int, args: argparse.Namespace) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    if args.reuse:  # a database an earlier run loaded (copied aside): measure it again
        print(f"\n{kind}: measuring {args.reuse} (load average {_load_average()})", flush=True)
        return {"rows": args.rows, "reused": True, **serve_and_measure(args.reuse, work, mock_port, now, args)}
    with ExitStack() as stack:
        if kind == "sqlite":
            path = work / "tollway.db"
            url = f"sqlite:///{path}"

            async def fill() -> None:
                await asyncio.to_thread(fill_sqlite, path, args.rows, now)
        else:
            server = start_postgres()
            stack.callback(server.stop)
            url = server.create_database()

            async def fill() -> None:
                await fill_postgres(url, args.rows, now)
        print(f"\n{kind}: loading {args.rows:,} rows (load average {_load_average()})", flush=True)
        loaded = asyncio.run(load(url, fill))
        print(f"  {loaded}", flush=True)
        measured = serve_and_measure(url, work, mock_port, now, args)
    return {"rows": args.rows, **loaded, **measured}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--rate", type=float, default=50.0, help="proxy requests per second (open loop)")
    parser.add_argument("--seconds", type=float, default=15.0, help="each proxy phase")
    parser.add_argument("--reuse", help="measure this already loaded database (URL; one database kind)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON file the figures are merged into")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tollway-reports-", dir="/tmp"))
    results: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        mock_port = free_port()
        with mock_service(mock_port, work / "mock.log").start():
            for kind in args.databases.split(","):
                results[kind] = run_database(kind, work, mock_port, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(exist_ok=True)
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    args.out.write_text(json.dumps(earlier | results, indent=2) + "\n")  # a run of one database keeps the other's
    slow = [(kind, label) for kind in args.databases.split(",") for label, answer in results[kind]["answers"].items()
            if answer["median_ms"] >= 200]
    print(f"\nanswers at or over 200 ms: {slow or 'none'}")


if __name__ == "__main__":
    main()
