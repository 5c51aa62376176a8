"""`tollway` command line: serve, demo, mock-upstream, db, config.

Exit codes of `serve` (docs/troubleshooting.md#exit-codes): 0 a graceful stop, 2 the
configuration (or no admin token on a public address), 3 the database, 4 the address
cannot be listened on (the port is in use, or not allowed).
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import ipaddress
import logging
import os
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tollway.admin_commands import register as register_admin_commands
from tollway.config import ConfigError, Settings, load_settings
from tollway.config.loader import ADMIN_TOKEN_VARIABLE, CONFIG_PATH_VARIABLE
from tollway.config.schema import ServerConfig
from tollway.demo import run_demo
from tollway.governance.durations import parse_duration

if TYPE_CHECKING:
    from tollway.server.connections import ConnectionLimits

# The server, the store and the mock are imported by the commands that use them: the
# admin commands (keys, teams, ...) then start in a fraction of the time.

app = typer.Typer(help="Tollway: an LLM gateway with exact, hierarchical budgets and rate limits.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
config_app = typer.Typer(help="The configuration file: check one, print the reference.", no_args_is_help=True)
app.add_typer(config_app, name="config")
register_admin_commands(app)

EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_ADDRESS = 4

ConfigOption = typer.Option(Path("tollway.yaml"), "--config", "-c", help="The configuration file (YAML or JSON).")


def _settings(path: Path) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        typer.echo(f"configuration error:\n{exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None


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
    _check_address_free(host, port)
    if workers > 1 and settings.counters.backend == "memory":
        typer.echo(f"warning: {workers} workers with in-memory counters enforce every limit once per worker; "
                   "use counters: {backend: redis, url: ...} for exact limits across workers", err=True)
    prepare(settings)
    grace_s = (parse_duration(settings.shutdown_grace_period).fixed_ms or 30_000) / 1000
    from tollway.server.serving import prepare_limits

    limits = prepare_limits(settings.server)
    run_server(config, host, port, workers, settings.log_level, grace_s, settings.server, limits)


def _check_admin_token(settings: Settings, host: str) -> None:
    """The management API never runs open: without a configured token it refuses to
    start, except on a loopback address, where a token is generated for this run."""
    if not settings.management_api or settings.admin_token:
        return
    if not _is_loopback(host):
        typer.echo("refusing to start: the management API is enabled and no admin_token is set "
                   f"(set admin_token in the config file or {ADMIN_TOKEN_VARIABLE}, or management_api: false)", err=True)
        raise typer.Exit(EXIT_CONFIG)
    token = secrets.token_urlsafe(24)
    os.environ[ADMIN_TOKEN_VARIABLE] = token  # the workers read their settings from the environment
    typer.echo(f"no admin_token configured: the management API on this loopback address uses {token} for this run")


def _check_address_free(host: str, port: int) -> None:
    """Bind the address once, as uvicorn will, so that a port in use is one clear line and
    exit code 4 before the database is touched, not a traceback after it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no conflict
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = "the port is already in use (another gateway or program listens there); stop it or choose --port"
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need privileges); choose --port 1024 or above"
        else:
            reason = getattr(exc, "strerror", None) or str(exc)
        typer.echo(f"cannot listen on {host}:{port}: {reason}", err=True)
        raise typer.Exit(EXIT_ADDRESS) from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare(settings: Settings) -> None:
    """Migrate the database and load the config file's governance, once, before workers start."""
    from tollway.server.startup import prepare_database

    try:
        generated = asyncio.run(prepare_database(settings))
    except Exception as exc:
        typer.echo(f"cannot prepare the database: {exc}", err=True)
        raise typer.Exit(EXIT_DATABASE) from None
    for key in generated:
        typer.echo(f"generated virtual key {key.id!r} ({key.name}): {key.value}  (shown once; store it now)")


def run_server(config: Path, host: str, port: int, workers: int, log_level: str, grace_s: float,
               server: ServerConfig, limits: ConnectionLimits) -> None:
    from tollway.server.serving import gateway_server_config, run_uvicorn

    os.environ[CONFIG_PATH_VARIABLE] = str(config.resolve())
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler
    # it found in place: this one, so that a graceful stop exits 0 rather than -SIGTERM.
    signal.signal(signal.SIGTERM, _exit_after_graceful_shutdown)
    try:
        run_uvicorn(gateway_server_config(
            server, limits, host=host, port=port, workers=workers, loop="uvloop" if _has_uvloop() else "asyncio",
            log_level=log_level, timeout_graceful_shutdown=grace_s))
    except KeyboardInterrupt:
        pass


def _exit_after_graceful_shutdown(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.command()
def demo(
    port: int = typer.Option(8080, help="Gateway port."),
    mock_port: int = typer.Option(None, help="Port of the built-in mock provider (default: a free one)."),
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
    from tollway.testing.mock_upstream import MockSettings, serve_mock_upstream

    serve_mock_upstream(host, port, MockSettings(latency_ms=latency_ms, completion_tokens=completion_tokens,
                                                 chunk_delay_ms=chunk_delay_ms, stream_split_max_bytes=stream_split_max_bytes,
                                                 stream_jitter_ms=stream_jitter_ms))


@db_app.command("upgrade")
def db_upgrade(config: Path = ConfigOption, revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from tollway.store.migrate import upgrade

    asyncio.run(upgrade(_settings(config).database_url, revision))
    typer.echo(f"upgraded to {revision}")


@db_app.command("downgrade")
def db_downgrade(config: Path = ConfigOption, revision: str = typer.Argument(..., help="Target revision, e.g. base or -1.")) -> None:
    """Revert migrations down to REVISION."""
    from tollway.store.migrate import downgrade

    asyncio.run(downgrade(_settings(config).database_url, revision))
    typer.echo(f"downgraded to {revision}")


@db_app.command("current")
def db_current(config: Path = ConfigOption) -> None:
    """Print the database's current revision."""
    from tollway.store.migrate import current

    typer.echo(asyncio.run(current(_settings(config).database_url)) or "(empty database)")


@config_app.command("check")
def config_check(config: Path = ConfigOption) -> None:
    """Load and validate a configuration file (env.NAME values included), start nothing."""
    settings = _settings(config)
    gov = settings.governance
    typer.echo(f"{config}: valid: {len(settings.providers)} providers, {len(gov.customers)} customers, "
               f"{len(gov.teams)} teams, {len(gov.virtual_keys)} virtual keys, {len(gov.model_configs)} model configs; "
               f"database {settings.database_url.split('@')[-1]}")


@config_app.command("reference")
def config_reference() -> None:
    """Print the configuration reference (Markdown, as in docs/configuration.md)."""
    from tollway.config.reference import render

    typer.echo(render(), nl=False)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _has_uvloop() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def main() -> None:
    app()
