"""Spend reports at scale: N synthetic request-log rows, then what an operator waits for
(the overview page, the spend API by key/team/customer/provider/model/day, the usage
page's charts, the request log's pages) and what the proxy's requests pay while the
overview is reloaded back to back, on SQLite and PostgreSQL, through a real `tollway serve`.

    .venv/bin/python bench/reports.py --rows 10000000 --load-only   # once: minutes, kept
    .venv/bin/python bench/reports.py --rows 10000000 --databases sqlite,postgresql

The rows and their rollups are written in bulk by `bench/report_seed.py` (exactly what the
gateway writes: tests/store/test_report_seed.py) and kept under ``--data``
(/tmp/bench-reports: a SQLite file and a PostgreSQL cluster) for the next run; each
database's JSON marker there says when its data ends. Figures: printed and merged into
bench/results/reports.json, each with the load average at the time (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
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
from report_seed import fill_postgres, fill_sqlite, synthetic_rows  # noqa: E402

from tests.support.postgres import (  # noqa: E402 - the tests' server, kept here between runs
    _SERVER_OPTIONS,
    PostgresServer,
    PostgresUnavailable,
    find_bin_dir,
)
from tollway.store import migrate  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "reports.json"
DATA = Path("/tmp/bench-reports")
SPEND = "/api/usage/spend"
LOGS = "/api/logs"
CACHE_S = 1.1  # longer than the report cache keeps an answer


def _kept(data: Path, kind: str, rows: int) -> Path:
    return data / f"{kind}-{rows}.json"  # written once the database is fully loaded


def _loaded(data: Path, kind: str, rows: int, load: Any) -> dict[str, Any]:
    """The load's record: taken from an earlier run's, or made by ``load(now)`` now."""
    marker = _kept(data, kind, rows)
    if marker.exists():
        record = json.loads(marker.read_text())
        print(f"\n{kind}: reusing {rows:,} rows loaded {record['data_ends']} (load average {_load_average()})", flush=True)
        return record | {"reused": True}
    now = datetime.now(timezone.utc)
    print(f"\n{kind}: loading {rows:,} rows (load average {_load_average()})", flush=True)
    started = time.perf_counter()
    phases = asyncio.run(load(now))
    record = {"data_ends": now.isoformat(), "load_s": round(time.perf_counter() - started, 1), **phases,
              "load_load_average": _load_average()}
    marker.write_text(json.dumps(record))
    print(f"  {record}", flush=True)
    return record


def prepare_sqlite(data: Path, rows: int) -> tuple[str, dict[str, Any]]:
    """The SQLite database of ``rows`` rows under ``data`` (loaded on first use)."""
    path = data / f"sqlite-{rows}.db"
    url = f"sqlite:///{path}"

    async def load(now: datetime) -> dict[str, float]:
        path.unlink(missing_ok=True)
        await migrate.upgrade(url)
        return await asyncio.to_thread(fill_sqlite, str(path), synthetic_rows(rows, now))

    return url, _loaded(data, "sqlite", rows, load)


def kept_postgres(root: Path) -> PostgresServer:
    """A PostgreSQL server whose cluster stays under ``root`` between runs (created on
    first use), tuned as production would be at least (1 GB of shared buffers)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable("PostgreSQL server binaries not found")
    as_user = "postgres" if os.geteuid() == 0 else None
    root.mkdir(parents=True, exist_ok=True)
    if as_user:
        shutil.chown(root, user=as_user)
    server = PostgresServer(bin_dir=bin_dir, root=root, port=free_port(), as_user=as_user)
    if not server.data_dir.exists():
        server._run("initdb", "-D", str(server.data_dir), "-U", server.user, "--auth=trust", "--encoding=UTF8",
                    "--locale=C", "--no-sync")
    options = f"-p {server.port} -k {root} {_SERVER_OPTIONS} -c shared_buffers=1GB -c effective_cache_size=8GB"
    server._run("pg_ctl", "-D", str(server.data_dir), "-l", str(root / "server.log"), "-o", options, "-w", "-t", "60",
                "start")
    return server


def prepare_postgres(server: PostgresServer, data: Path, rows: int) -> tuple[str, dict[str, Any]]:
    """The PostgreSQL database of ``rows`` rows on ``server`` (loaded on first use)."""
    name = f"reports_{rows}"
    url = server.url(name)

    async def load(now: datetime) -> dict[str, float]:
        server._psql(f"DROP DATABASE IF EXISTS {name}")
        server._psql(f"CREATE DATABASE {name}")
        await migrate.upgrade(url)
        return await fill_postgres(url, synthetic_rows(rows, now))

    return url, _loaded(data, "postgresql", rows, load)


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


def report_queries(now: datetime, rows: int) -> list[tuple[str, str, dict[str, str]]]:
    """(label, path, params): the overview, the spend API, the usage page's charts."""
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    d30 = (now - timedelta(days=30)).isoformat()
    queries: list[tuple[str, str, dict[str, str]]] = [
        ("UI overview (30 days)", "/ui/", {}),
        ("UI overview (24 hours)", "/ui/", {"range": "24h"}),
    ]
    for group in ("key", "team", "customer", "provider", "model", "decision"):
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
        ("request log API, keyset page halfway back", LOGS, {"limit": "50", "before_id": str(rows // 2)}),
        ("request log API, one team, keyset page halfway back", LOGS,
         {"limit": "50", "team_id": "team-7", "before_id": str(rows // 2)}),
        ("request log API, denied, newest 50", LOGS, {"limit": "50", "decision": "request_limited"}),
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
        for label, path, params in report_queries(now, args.rows):
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
    """Load (or reuse) the ``kind`` database under ``args.data``, then measure it served."""
    now = datetime.now(timezone.utc)
    with ExitStack() as stack:
        if kind == "sqlite":
            url, loaded = prepare_sqlite(args.data, args.rows)
        else:
            server = kept_postgres(args.data / "pg")
            stack.callback(server._run, "pg_ctl", "-D", str(server.data_dir), "-m", "fast", "-w", "stop")
            url, loaded = prepare_postgres(server, args.data, args.rows)
        if args.load_only:
            return {"rows": args.rows, **loaded}
        measured = serve_and_measure(url, work, mock_port, now, args)
    return {"rows": args.rows, **loaded, **measured}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--rate", type=float, default=50.0, help="proxy requests per second (open loop)")
    parser.add_argument("--seconds", type=float, default=15.0, help="each proxy phase")
    parser.add_argument("--data", type=Path, default=DATA, help="where the loaded databases are kept between runs")
    parser.add_argument("--load-only", action="store_true", help="load the databases, measure nothing")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON file the figures are merged into")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tollway-reports-", dir="/tmp"))
    results: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        mock_port = free_port()
        with mock_service(mock_port, work / "mock.log").start():
            for kind in args.databases.split(","):
                results[kind] = run_database(kind, work, mock_port, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.load_only:
        return
    args.out.parent.mkdir(exist_ok=True)
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    args.out.write_text(json.dumps(earlier | results, indent=2) + "\n")  # a run of one database keeps the other's
    slow = [(kind, label) for kind in args.databases.split(",") for label, answer in results[kind]["answers"].items()
            if answer["median_ms"] >= 200]
    print(f"\nanswers at or over 200 ms: {slow or 'none'}")


if __name__ == "__main__":
    main()
