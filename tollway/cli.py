"""`tollway` command line: serve, demo, mock-upstream, db."""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

import typer
import uvicorn

from tollway.admin_commands import register as register_admin_commands
from tollway.config import ConfigError, Settings, load_settings
from tollway.config.loader import ADMIN_TOKEN_VARIABLE, CONFIG_PATH_VARIABLE
from tollway.demo import run_demo
from tollway.governance.durations import parse_duration
from tollway.server.startup import prepare_database
from tollway.store.migrate import current, downgrade, upgrade
from tollway.testing.mock_upstream import MockSettings, serve_mock_upstream

app = typer.Typer(help="Tollway: an LLM gateway with exact, hierarchical budgets and rate limits.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
register_admin_commands(app)

ConfigOption = typer.Option(Path("tollway.yaml"), "--config", "-c", help="The configuration file (YAML or JSON).")


def _settings(path: Path) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        typer.echo(f"configuration error:\n{exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: Path = ConfigOption,
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8080, help="Port to bind."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes (use redis counters for more than one)."),
) -> None:
    """Run the gateway."""
    settings = _settings(config)
    _configure_logging(settings.log_level)
    _check_admin_token(settings, host)
    if workers > 1 and settings.counters.backend == "memory":
        typer.echo(f"warning: {workers} workers with in-memory counters enforce every limit once per worker; "
                   "use counters: {backend: redis, url: ...} for exact limits across workers", err=True)
    prepare(settings)
    grace_s = (parse_duration(settings.shutdown_grace_period).fixed_ms or 30_000) / 1000
    run_server(config, host, port, workers, settings.log_level, grace_s)


def _check_admin_token(settings: Settings, host: str) -> None:
    """The management API never runs open: without a configured token it refuses to
    start, except on a loopback address, where a token is generated for this run."""
    if not settings.management_api or settings.admin_token:
        return
    if not _is_loopback(host):
        typer.echo("refusing to start: the management API is enabled and no admin_token is set "
                   f"(set admin_token in the config file or {ADMIN_TOKEN_VARIABLE}, or management_api: false)", err=True)
        raise typer.Exit(2)
    token = secrets.token_urlsafe(24)
    os.environ[ADMIN_TOKEN_VARIABLE] = token  # the workers read their settings from the environment
    typer.echo(f"no admin_token configured: the management API on this loopback address uses {token} for this run")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare(settings: Settings) -> None:
    """Migrate the database and load the config file's governance, once, before workers start."""
    try:
        generated = asyncio.run(prepare_database(settings))
    except Exception as exc:  # noqa: BLE001 - any failure here is fatal and explained
        typer.echo(f"cannot prepare the database: {exc}", err=True)
        raise typer.Exit(3) from None
    for key in generated:
        typer.echo(f"generated virtual key {key.id!r} ({key.name}): {key.value}  (shown once; store it now)")


def run_server(config: Path, host: str, port: int, workers: int, log_level: str, grace_s: float = 30.0) -> None:
    os.environ[CONFIG_PATH_VARIABLE] = str(config.resolve())
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler
    # it found in place: this one, so that a graceful stop exits 0 rather than -SIGTERM.
    signal.signal(signal.SIGTERM, _exit_after_graceful_shutdown)
    uvicorn.run(
        "tollway.server.startup:worker_app", factory=True, host=host, port=port, workers=workers,
        loop="uvloop" if _has_uvloop() else "asyncio", http="httptools", lifespan="on",
        access_log=False, log_level=log_level, timeout_graceful_shutdown=grace_s, backlog=2048,
        proxy_headers=False, server_header=False,  # no per-request work for headers nobody reads
    )


def _exit_after_graceful_shutdown(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.command()
def demo(
    port: int = typer.Option(8080, help="Gateway port."),
    mock_port: int = typer.Option(9911, help="Port of the built-in mock provider."),
    directory: Path = typer.Option(Path(".tollway-demo"), help="Where the demo's config and database live."),
) -> None:
    """Run the gateway with a built-in mock provider and a demo governance config."""
    run_demo(port, mock_port, directory)


@app.command("mock-upstream")
def mock_upstream(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(9911),
    latency_ms: float = typer.Option(0.0, help="Delay before each response."),
    completion_tokens: int = typer.Option(16, help="Tokens generated per answer (capped by max_tokens)."),
    chunk_delay_ms: float = typer.Option(0.0, help="Delay between stream chunks."),
    stream_split_max_bytes: int = typer.Option(
        0, help="Write streams in pieces of 1 to N bytes cut at random offsets (0: one write per event)."),
    stream_jitter_ms: float = typer.Option(0.0, help="With split streams, a random pause of up to this before each piece."),
) -> None:
    """Serve a mock OpenAI / Anthropic / Azure provider (for tests, benchmarks and the demo)."""
    serve_mock_upstream(host, port, MockSettings(latency_ms=latency_ms, completion_tokens=completion_tokens,
                                                 chunk_delay_ms=chunk_delay_ms, stream_split_max_bytes=stream_split_max_bytes,
                                                 stream_jitter_ms=stream_jitter_ms))


@db_app.command("upgrade")
def db_upgrade(config: Path = ConfigOption, revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default: head)."""
    asyncio.run(upgrade(_settings(config).database_url, revision))
    typer.echo(f"upgraded to {revision}")


@db_app.command("downgrade")
def db_downgrade(config: Path = ConfigOption, revision: str = typer.Argument(..., help="Target revision, e.g. base or -1.")) -> None:
    """Revert migrations down to REVISION."""
    asyncio.run(downgrade(_settings(config).database_url, revision))
    typer.echo(f"downgraded to {revision}")


@db_app.command("current")
def db_current(config: Path = ConfigOption) -> None:
    """Print the database's current revision."""
    typer.echo(asyncio.run(current(_settings(config).database_url)) or "(empty database)")


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def main() -> None:
    app()
