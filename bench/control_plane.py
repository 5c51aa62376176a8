"""The control plane at scale: what a gateway holding N virtual keys costs to start and
to hold, how fast the management API changes a key, what churn does to the proxy's
latency, and how long a change takes to reach a second gateway.

    .venv/bin/python bench/control_plane.py                          # 1k, 10k, 100k keys on SQLite
    .venv/bin/python bench/control_plane.py --keys 1000 --seconds 3  # a quick look
    .venv/bin/python bench/control_plane.py --keys 1000000 --postgres postgresql://u:pw@127.0.0.1/db

Per database and key count:

1. A synthetic bulk insert of N keys, each with a budget and a rate limit (Core inserts
   in batches; not timed as part of anything below).
2. Policy memory: the snapshot loaded in this process under `tracemalloc`, in bytes per
   key (what the policy retains, not the loader's garbage), and its load time.
3. Start: `tollway serve` spawned until `/health` answers; its RSS then.
4. API latency (p50/p99, ms) of create, update (block), unblock and delete of one key.
5. Proxy latency (p50/p99/max, ms) of chat completions with one of the N keys at a fixed
   rate (open loop): idle, then while a churner makes `--churn` changes per second
   through node A's API; measured on node B (which only applies the changes) and on
   node A (which also serves the API calls on the same event loop). The churner runs
   in a process of its own (`ChurnProcess`), so its client work does not delay the loop
   that times the proxy.
6. Propagation: in a churn phase of its own, keys created on node A and the time until
   node B (a second gateway on the same database) accepts them (p50/max, ms).

Everything runs on 127.0.0.1 (the mock upstream and the gateways are child processes).
Results are printed and written to bench/results/control_plane.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from contextlib import ExitStack
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import aiohttp
import yaml
from sqlalchemy import insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import free_port, wait_http
from machine import Isolation, cpu_seconds, machine_cpu, machine_use, py_spy, rss_mib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.postgres import start_postgres  # noqa: E402
from tollway.config.schema import VirtualKeyCacheConfig  # noqa: E402
from tollway.governance.counters.memory import MemoryCounterStore  # noqa: E402
from tollway.governance.engine import hash_key  # noqa: E402
from tollway.store import migrate  # noqa: E402
from tollway.store.database import Database  # noqa: E402
from tollway.store.key_cache import KeyCache, held_counters  # noqa: E402
from tollway.store.policy_sync import PolicyFollower  # noqa: E402
from tollway.store.snapshot import load_snapshot  # noqa: E402
from tollway.store.tables import Budget, Customer, RateLimit, Team, VirtualKey  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "control_plane.json"
ADMIN = "bench-admin-token-0123456789"
MODEL = "mock/gpt-4o-mini"
CHAT = json.dumps({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode()
KEYS_API = "/api/governance/virtual-keys"
BATCH = 5000


def key_value(index: int) -> str:
    return f"tw-bench-{index:010d}-0123456789abcdef"


async def seed(url: str, count: int) -> float:
    """Migrate and insert ``count`` keys with a budget and a rate limit each (one in a
    thousand in a team, one in a customer, one blocked: what the list filters find);
    seconds taken."""
    started = time.perf_counter()
    await migrate.upgrade(url)
    db = Database(url)
    now = datetime.now(timezone.utc)
    async with db.session() as session:
        await session.execute(insert(Customer), [{"id": "bench-customer", "name": "bench customer"}])
        await session.execute(insert(Team), [{"id": "bench-team", "name": "bench team"}])
        if db.dialect == "postgresql":
            await _seed_postgres(session, count)
        else:
            await _seed_rows(session, count, now)
        for column, value, remainder in (("team_id", "'bench-team'", 0), ("customer_id", "'bench-customer'", 1),
                                         ("is_active", "false", 2)):
            await session.execute(text(f"UPDATE virtual_keys SET {column} = {value} "
                                       f"WHERE id LIKE '%{remainder:03d}'"))
        await session.execute(text("UPDATE config_version SET version = version + 1"))
    await db.close()
    return time.perf_counter() - started


async def _seed_rows(session, count: int, now: datetime) -> None:
    for start in range(0, count, BATCH):
        indexes = range(start, min(count, start + BATCH))
        await session.execute(insert(Budget), [
            {"id": f"b-{i}", "max_limit": Decimal(100), "reset_duration": "1M", "current_usage": Decimal(0),
             "last_reset": now} for i in indexes])
        await session.execute(insert(RateLimit), [
            {"id": f"r-{i}", "request_max_limit": 10**6, "request_reset_duration": "1m", "token_current_usage": 0,
             "request_current_usage": 0, "token_last_reset": now, "request_last_reset": now} for i in indexes])
        await session.execute(insert(VirtualKey), [
            {"id": f"vk-{i:010d}", "name": f"customer {i}", "value_hash": hash_key(key_value(i)),
             "value_prefix": key_value(i)[:8], "allowed_models": [], "budget_id": f"b-{i}",
             "rate_limit_id": f"r-{i}", "created_at": now, "updated_at": now} for i in indexes])


async def _seed_postgres(session, count: int) -> None:
    """The same rows, generated by the server (a million in seconds, not minutes)."""
    series = f"FROM generate_series(0, {count - 1}) AS i"
    await session.execute(text(f"INSERT INTO budgets (id, max_limit, reset_duration, current_usage, last_reset) "
                               f"SELECT 'b-' || i, 100, '1M', 0, now() {series}"))
    await session.execute(text(f"INSERT INTO rate_limits (id, request_max_limit, request_reset_duration, "
                               f"token_current_usage, request_current_usage, token_last_reset, request_last_reset) "
                               f"SELECT 'r-' || i, 1000000, '1m', 0, 0, now(), now() {series}"))
    value = "'tw-bench-' || lpad(i::text, 10, '0') || '-0123456789abcdef'"
    await session.execute(text(
        f"INSERT INTO virtual_keys (id, name, description, value_hash, value_prefix, is_active, allowed_models, "
        f"budget_id, rate_limit_id, created_at, updated_at) "
        f"SELECT 'vk-' || lpad(i::text, 10, '0'), 'customer ' || i, '', encode(sha256(convert_to({value}, 'UTF8')), "
        f"'hex'), 'tw-bench', true, '[]'::json, 'b-' || i, 'r-' || i, now(), now() {series}"))
    await session.execute(text("ANALYZE"))


SAMPLE_KEYS = 20_000


class _NoCounters(MemoryCounterStore):
    """Keeps no counters: what the policy holds per key is measured without them."""

    async def load(self, states: object) -> None:
        return None  # keys loaded on demand to measure what a held key costs


async def policy_memory(url: str, count: int) -> dict:
    """Bytes per key the policy retains, and the load time at start (without tracing).

    With every key loaded at start (up to `load_all_up_to`) that is the whole snapshot;
    above it, the node starts without keys and the bytes are those of `SAMPLE_KEYS`
    keys loaded on demand (what each held key costs).
    """
    db = Database(url)
    on_demand = count > VirtualKeyCacheConfig().load_all_up_to
    follower = PolicyFollower(db, enforce_virtual_keys=True, keys_on_demand=on_demand)
    started = time.perf_counter()
    await follower.reload()
    if on_demand:
        await held_counters(db, follower.snapshot)
    load_s = time.perf_counter() - started
    if not on_demand:
        del follower
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        snapshot = await load_snapshot(db, enforce_virtual_keys=True)
        retained = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert len(snapshot.keys_by_hash) == count
        await db.close()
        return {"load_s": round(load_s, 3), "bytes_per_key": round(retained / max(count, 1)), "mode": "all"}
    cache = KeyCache(follower, _NoCounters(), max_keys=SAMPLE_KEYS * 2, miss_ttl_s=60)  # type: ignore[arg-type]
    sample = [hash_key(key_value(i)) for i in range(0, count, count // SAMPLE_KEYS)][:SAMPLE_KEYS]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    loading = time.perf_counter()
    for start in range(0, len(sample), 5000):
        await asyncio.gather(*(cache.snapshot_with(key_hash) for key_hash in sample[start:start + 5000]))
    loading = time.perf_counter() - loading
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    held = len(follower.snapshot.keys_by_hash)
    assert held == len(sample), held
    await db.close()
    return {"load_s": round(load_s, 3), "mode": "on_demand", "bytes_per_key_held": round(retained / held),
            "sample_keys": held, "lookup_queries": cache.queries,
            "sample_load_us_per_key_traced": round(loading / held * 1e6, 1)}


def gateway_config(url: str, mock_port: int) -> dict:
    return {
        "database_url": url, "admin_token": ADMIN, "enforce_virtual_keys": True, "log_level": "warning",
        "request_log": False,
        "providers": {"mock": {"type": "openai", "base_url": f"http://127.0.0.1:{mock_port}/v1",
                               "keys": [{"value": "sk-mock"}]}},
    }


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000, 2)

    return {"n": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 2)}


async def api_latency(session: aiohttp.ClientSession, base: str, rounds: int) -> dict:
    """Create, block, unblock and delete one key at a time, ``rounds`` times."""
    timings: dict[str, list[float]] = {"create": [], "update": [], "unblock": [], "delete": []}
    failures: dict[str, int] = {}
    for _ in range(rounds):
        key_id = "vk-api-" + secrets.token_hex(6)
        steps = [("create", "POST", KEYS_API, {"id": key_id, "name": "api bench",
                                                "budget": {"max_limit": 5, "reset_duration": "1d"}}),
                 ("update", "PUT", f"{KEYS_API}/{key_id}", {"is_active": False}),
                 ("unblock", "PATCH", f"{KEYS_API}/{key_id}", {"is_active": True}),
                 ("delete", "DELETE", f"{KEYS_API}/{key_id}", None)]
        for name, method, path, body in steps:
            started = time.perf_counter()
            async with session.request(method, base + path, json=body) as response:
                await response.read()
            if response.status not in (200, 201):
                failures[name] = failures.get(name, 0) + 1
                break
            timings[name].append(time.perf_counter() - started)
    return {name: percentiles(values) | {"failures": failures.get(name, 0)} for name, values in timings.items()}


async def list_latency(session: aiohttp.ClientSession, base: str, count: int, rounds: int) -> dict:
    """Reads of the key list at N keys: a page, a deep page by cursor, and the indexed
    filters (name prefix, team, customer, status), ``rounds`` times each."""
    middle = f"vk-{count // 2:010d}"
    queries = {"page": "?limit=50", "page_after": f"?limit=50&after={middle}",
               "name_prefix": f"?limit=50&name_prefix=customer%20{count // 3}",
               "team": "?limit=50&team_id=bench-team", "customer": "?limit=50&customer_id=bench-customer",
               "blocked": "?limit=50&is_active=false"}
    result = {}
    for name, query in queries.items():
        timings, failures = [], 0
        for _ in range(rounds):
            started = time.perf_counter()
            async with session.get(base + KEYS_API + query) as response:
                await response.read()
            if response.status != 200:
                failures += 1
                continue
            timings.append(time.perf_counter() - started)
        result[name] = percentiles(timings) | {"failures": failures}
    return result


async def proxy_load(session: aiohttp.ClientSession, base: str, value: str, rate: float, seconds: float) -> dict:
    """Open loop: one request every 1/``rate`` s whatever the answers' speed, so a stall
    shows in the latencies (a closed loop would just send fewer requests)."""
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {value}", "Content-Type": "application/json"}

    async def one() -> None:
        nonlocal errors
        started = time.perf_counter()
        try:
            async with session.post(base + "/v1/chat/completions", data=CHAT, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
                    return
        except aiohttp.ClientError:
            errors += 1
            return
        latencies.append(time.perf_counter() - started)

    tasks = []
    # This process's own collections would time as the gateway's latency: none while
    # timing, one after.
    gc.disable()
    try:
        start = time.perf_counter()
        for index in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    finally:
        gc.enable()
        gc.collect()
    return percentiles(latencies) | {"errors": errors, "rps": rate}


async def churn(session: aiohttp.ClientSession, base: str, other: str, per_second: float, stop: asyncio.Event,
                propagation: list[float], failures: list[str], probe_every: int = 20) -> int:
    """Changes on node ``base`` at ``per_second`` (open loop): keys created, and the
    oldest deleted once twenty exist; for every ``probe_every``-th change (a creation;
    0: none), the time until node ``other`` accepts the new key."""
    made: list[str] = []
    tasks: list[asyncio.Task] = []
    start = time.perf_counter()

    async def create(probe: bool) -> None:
        key_id = "vk-churn-" + secrets.token_hex(6)
        try:
            async with session.post(base + KEYS_API, json={"id": key_id, "name": "churn"}) as response:
                body = await response.json()
        except aiohttp.ClientError as exc:  # an overloaded node: counted, not fatal
            failures.append(f"create: {exc!r}")
            return
        if response.status != 201:
            failures.append(f"create: {response.status} {body}")
            return
        made.append(key_id)
        if probe:
            await _propagation(session, other, body["virtual_key"]["value"], time.perf_counter(), propagation)

    async def delete(key_id: str) -> None:
        try:
            async with session.delete(f"{base}{KEYS_API}/{key_id}") as response:
                if response.status != 200:
                    failures.append(f"delete: {response.status} {await response.text()}")
        except aiohttp.ClientError as exc:
            failures.append(f"delete: {exc!r}")

    index = 0
    while not stop.is_set():
        if index % 2 and len(made) > 20:
            tasks.append(asyncio.create_task(delete(made.pop(0))))
        else:
            tasks.append(asyncio.create_task(create(probe=bool(probe_every) and index % probe_every == 0)))
        index += 1
        await asyncio.sleep(max(0.0, start + index / per_second - time.perf_counter()))
    await asyncio.gather(*tasks)
    # What is left goes too, after the phase: a database reused by a later run then holds
    # the keys it was seeded with (`seeded_keys`, the policy's bytes per key).
    await asyncio.gather(*(delete(key_id) for key_id in made))
    return index


class ChurnProcess:
    """`churn` in a process of its own for ``seconds``. In the measuring process its
    client work (100 API calls a second: JSON, HTTP, the propagation probes) would share
    the loop that times the proxy's answers, and show as proxy latency that no gateway
    caused."""

    def __init__(self, base: str, other: str, per_second: float, seconds: float, probe_every: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_churn_main, args=(child, base, other, per_second, seconds,
                                                                  probe_every), daemon=True)
        self._process.start()
        if self._pipe.recv() != "ready":  # imports and session made before the phase starts
            raise RuntimeError("the churn process did not start")

    def go(self) -> None:
        self._pipe.send("go")

    async def result(self) -> tuple[int, list[float], list[str]]:
        """(changes made, propagation times in s, failures), once its time is up."""
        answer = await asyncio.get_running_loop().run_in_executor(None, self._pipe.recv)
        self._process.join(30)
        return answer


def _churn_main(pipe, base: str, other: str, per_second: float, seconds: float, probe_every: int) -> None:
    async def run() -> tuple[int, list[float], list[str]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         headers={"Authorization": f"Bearer {ADMIN}"}) as session:
            pipe.send("ready")
            pipe.recv()
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(seconds, stop.set)
            propagation: list[float] = []
            failures: list[str] = []
            changes = await churn(session, base, other, per_second, stop, propagation, failures, probe_every)
            return changes, propagation, failures

    pipe.send(asyncio.run(run()))


async def _propagation(session: aiohttp.ClientSession, other: str, value: str, created_at: float,
                       into: list[float]) -> None:
    headers = {"Authorization": f"Bearer {value}", "Content-Type": "application/json"}
    while time.perf_counter() - created_at < 10:
        async with session.post(other + "/v1/chat/completions", data=CHAT, headers=headers) as response:
            await response.read()
            if response.status == 200:
                into.append(time.perf_counter() - created_at)
                return
        await asyncio.sleep(0.01)


async def measure_nodes(a: str, b: str, count: int, args: argparse.Namespace, pids: dict[str, int],
                        work: Path) -> dict:
    """API latency on node A; the proxy's latency idle and under churn (changes made on
    A) on node B, which only applies the changes, and on A, which also serves the API.
    ``pids`` (node -> pid): each phase notes the CPU the node used (on a shared machine a
    steadier measure of what churn costs it than latency); with ``--profile`` each node
    is sampled by py-spy during its churn phase."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    connector = aiohttp.TCPConnector(limit=0)
    result: dict = {}
    async with aiohttp.ClientSession(connector=connector, headers=admin) as session:
        if "api" not in args.skip:
            result["api"] = await api_latency(session, a, args.api_rounds)
        if "list" not in args.skip:
            result["api_list"] = await list_latency(session, a, count, max(5, args.api_rounds // 5))
        value = key_value(count // 2)
        isolation = Isolation(args.isolate, pids["mock"])
        try:
            for _ in range(args.repeat):
                for node, url in (("b", b), ("a", a)):
                    isolation.favour(pids[node])
                    await _idle_then_churn(session, node, url, a, b, value, args, result,
                                           pids[node], work / f"py-spy-{count}-{node}.txt")
        finally:
            isolation.end()
        result["isolated"] = args.isolate
        result["propagation"] = await propagation(a, b, args)
    return result


async def propagation(a: str, b: str, args: argparse.Namespace) -> dict:
    """Churn on node A at ``--churn`` per second for ``--seconds``, every tenth key
    created polled on node B until it is accepted (a phase of its own: the probes are
    extra requests on node B that the latency phases should not carry)."""
    churner = ChurnProcess(a, b, args.churn, args.seconds, probe_every=20)
    churner.go()
    changes, times, failures = await churner.result()
    return percentiles(times) | {"changes_per_s": round(changes / args.seconds, 1), "failures": len(failures)}


async def _idle_then_churn(session: aiohttp.ClientSession, node: str, url: str, a: str, b: str, value: str,
                           args: argparse.Namespace, result: dict, pid: int, profile: Path) -> None:
    """One idle phase and one churn phase on ``node``; with ``--repeat``, each phase's
    results are listed under ``..._runs`` and the last one also stands alone. Each
    phase notes the node's CPU use (``cpu_pct``: percent of one core) and the load average."""
    await proxy_load(session, url, value, args.rate, 1.0)  # warm-up
    cpu, machine = cpu_seconds(pid), machine_cpu()
    idle = await proxy_load(session, url, value, args.rate, args.seconds)
    idle |= {"cpu_pct": round((cpu_seconds(pid) - cpu) / args.seconds * 100, 1), "load_1m": os.getloadavg()[0],
             "machine": machine_use(machine)}
    churner = ChurnProcess(a, b, args.churn, args.seconds, probe_every=0)  # propagation: its own phase
    spy = py_spy(pid, profile, args.seconds) if args.profile else None
    cpu, machine = cpu_seconds(pid), machine_cpu()
    churner.go()
    busy = await proxy_load(session, url, value, args.rate, args.seconds)
    busy |= {"cpu_pct": round((cpu_seconds(pid) - cpu) / args.seconds * 100, 1), "load_1m": os.getloadavg()[0],
             "machine": machine_use(machine)}
    changes, _, failures = await churner.result()
    if spy is not None:
        spy.wait(30)
    # Printed as it comes: on a loaded machine a run may not reach its end.
    print(json.dumps({"node": node, "idle": idle, "churn": busy, "failures": len(failures)}), flush=True)
    for name, phase in ((f"proxy_idle_{node}", idle), (f"proxy_churn_{node}", busy)):
        result[name] = phase
        result.setdefault(f"{name}_runs", []).append(
            {k: phase.get(k) for k in ("p50_ms", "p99_ms", "max_ms", "cpu_pct", "load_1m")})
    result[f"churn_changes_per_s_{node}"] = round(changes / args.seconds, 1)
    result[f"churn_failures_{node}"] = {"count": len(failures), "first": failures[:3]}


def start_gateway(config: Path, port: int, logs: object, probe: Path | None = None) -> tuple[subprocess.Popen, float]:
    """A gateway on ``port``; with ``probe``, under `stall_probe` writing its report there."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runner = ["-m", "tollway"]
    if probe is not None:
        runner = [str(Path(__file__).resolve().parent / "stall_probe.py")]
        env["TOLLWAY_STALL_REPORT"] = str(probe)
    process = subprocess.Popen([sys.executable, *runner, "serve", "--config", str(config), "--port", str(port)],
                               stdout=logs, stderr=logs, env=env)
    wait_http(f"http://127.0.0.1:{port}/health", timeout_s=600, process=process)
    return process, time.perf_counter() - started


async def seeded_keys(url: str) -> int | None:
    """How many keys a database seeded before holds (None: not seeded, or not by this bench)."""
    db = Database(url)
    try:
        async with db.session() as session:
            return int((await session.execute(text("SELECT count(*) FROM virtual_keys WHERE id LIKE 'vk-0%'"))).scalar_one())
    except Exception:
        return None
    finally:
        await db.close()


def run_point(url: str, count: int, args: argparse.Namespace, work: Path, mock_port: int, mock_pid: int) -> dict:
    reused = args.reuse and asyncio.run(seeded_keys(url)) == count
    if reused:
        asyncio.run(migrate.upgrade(url))  # seeded by an older tree, perhaps
    point: dict = {"keys": count, "seed_s": None if reused else round(asyncio.run(seed(url, count)), 1)}
    if "memory" not in args.skip:
        point["policy"] = asyncio.run(policy_memory(url, count))
    config = work / f"gateway-{count}.yaml"
    config.write_text(yaml.safe_dump(gateway_config(url, mock_port)))
    with ExitStack() as stack, open(work / f"gateways-{count}.log", "wb") as logs:
        a_port, b_port = free_port(), free_port()
        probes = {node: work / f"stalls-{count}-{node}.json" if args.probe else None for node in "ab"}
        node_a, point["start_s"] = start_gateway(config, a_port, logs, probes["a"])
        stack.callback(_stop, node_a)
        point["rss_mib"] = rss_mib(node_a.pid)
        node_b, _ = start_gateway(config, b_port, logs, probes["b"])
        stack.callback(_stop, node_b)
        pids = {"a": node_a.pid, "b": node_b.pid, "mock": mock_pid}
        point |= asyncio.run(measure_nodes(f"http://127.0.0.1:{a_port}", f"http://127.0.0.1:{b_port}", count, args,
                                           pids, work))
    return point


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(60)


def database_url(kind: str, args: argparse.Namespace, work: Path, count: int) -> str:
    if kind == "sqlite":
        return f"sqlite:///{work}/keys-{count}.db"
    base = args.postgres
    if args.reuse:
        return base  # seeded before when it holds the keys (`run_point` checks)
    db = Database(base)

    async def fresh() -> None:  # one empty schema per point
        async with db.engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
        await db.close()

    asyncio.run(fresh())
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--postgres", help="a PostgreSQL URL to measure too (its public schema is dropped!); with "
                        "--databases postgresql and no URL, a throw-away server is started and stopped")
    parser.add_argument("--seconds", type=float, default=10.0, help="proxy load per phase")
    parser.add_argument("--rate", type=float, default=200.0, help="proxy requests per second (open loop)")
    parser.add_argument("--churn", type=float, default=100.0, help="changes per second during the churn phase")
    parser.add_argument("--api-rounds", type=int, default=50)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the results (JSON)")
    parser.add_argument("--probe", action="store_true",
                        help="run the gateways under bench/stall_probe.py (reports beside the logs)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a database seeded with the same number of keys by an earlier run (SQLite files "
                             "under --work, PostgreSQL as given) instead of seeding it again")
    parser.add_argument("--work", type=Path, help="where the SQLite files and logs go (default: a new temp dir)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["memory", "api", "list"],
                        help="measurements to leave out (the policy memory, the API latency, the key list)")
    parser.add_argument("--repeat", type=int, default=1, help="idle/churn phase pairs per node (side by side)")
    parser.add_argument("--profile", action="store_true",
                        help="sample each node with py-spy during its churn phase (raw stacks beside the logs)")
    parser.add_argument("--isolate", action="store_true",
                        help="while a node is measured, run it, the mock upstream and the load generator under "
                             "SCHED_FIFO: the other node, the database and the churner stand in for other machines, "
                             "whose CPU a small machine would otherwise show as the measured node's latency")
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"],
                        help="which to measure (default: SQLite, and PostgreSQL when --postgres is given)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tollway-control-plane-"))
    work.mkdir(parents=True, exist_ok=True)
    mock_port = free_port()
    logs = open(work / "mock.log", "wb")  # noqa: SIM115 - closed in finally
    mock = subprocess.Popen([sys.executable, "-m", "tollway", "mock-upstream", "--port", str(mock_port)],
                            stdout=logs, stderr=logs, env={**os.environ, "PYTHONPATH": str(ROOT)})
    results: dict = {"args": vars(args), "points": []}
    server = None
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/_mock/stats", process=mock)
        if "postgresql" in (args.databases or []) and not args.postgres:
            server = start_postgres()  # a throw-away cluster, like the tests'; stopped at the end
            args.postgres = server.create_database("bench")
        for kind in args.databases or ["sqlite"] + (["postgresql"] if args.postgres else []):
            for count in args.keys:
                url = database_url(kind, args, work, count)
                point = {"database": kind, "load_average": os.getloadavg()}
                point |= run_point(url, count, args, work, mock_port, mock.pid)
                results["points"].append(point)
                print(json.dumps(point), flush=True)
    finally:
        mock.send_signal(signal.SIGTERM)
        mock.wait(30)
        logs.close()
        if server is not None:
            server.stop()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"written to {args.results}; logs in {work}")


if __name__ == "__main__":
    main()
