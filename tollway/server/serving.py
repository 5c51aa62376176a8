"""Running the gateway under uvicorn: the server's configuration, the connection limits
that fit the process's file-descriptor limit, and the worker processes."""

from __future__ import annotations

import logging
import resource
import sys
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from tollway.config.schema import ServerConfig, duration_s
from tollway.server.connections import (
    CapReport,
    ConnectionLimits,
    GuardedHttpToolsProtocol,
    connection_responses,
)

log = logging.getLogger("tollway.server")

_FD_RESERVE = 64  # descriptors kept for the database, the listening socket, logs and imports
_STARTUP_FAILURE = 3  # uvicorn's exit status when a worker could not start


class GatewayServerConfig(uvicorn.Config):
    """uvicorn's configuration plus the connection limits `GuardedHttpToolsProtocol`
    reads; picklable, so that worker processes get it too."""

    def __init__(self, app: Any, *, connection_limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, http=GuardedHttpToolsProtocol, **kwargs)
        self.connection_limits = connection_limits
        self.connection_responses = connection_responses(connection_limits)
        self.cap_report = CapReport()  # one per process: a worker gets its own copy


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit where allowed; the (soft, hard)
    limits in force afterwards. Worker processes inherit them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
        else:
            log.info("raised the open-file limit (RLIMIT_NOFILE) from %d to %d", soft, hard)
            soft = hard
    return soft, hard


def connection_limits(server: ServerConfig, fd_soft_limit: int) -> ConnectionLimits:
    """The limits for one worker: ``max_connections``, lowered so that every client
    connection can have an upstream connection too and a reserve stays free."""
    cap = server.max_connections
    if fd_soft_limit != resource.RLIM_INFINITY:
        cap = min(cap, max(16, (fd_soft_limit - _FD_RESERVE) // 2))
    return ConnectionLimits(max_connections=cap, max_head_bytes=server.max_request_head_bytes,
                            head_timeout_s=duration_s(server.header_read_timeout),
                            body_timeout_s=duration_s(server.body_read_timeout))


def prepare_limits(server: ServerConfig) -> ConnectionLimits:
    """Raise the fd limit (when configured) and derive the connection limits, logged."""
    soft, hard = raise_fd_limit() if server.raise_fd_limit else resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = connection_limits(server, soft)
    note = "" if limits.max_connections == server.max_connections else \
        f" (max_connections {server.max_connections} lowered to fit the open-file limit)"
    log.info("open-file limit %s (hard %s): at most %d connections per worker%s, request heads up to %d bytes, "
             "read within %g s", _limit(soft), _limit(hard), limits.max_connections, note, limits.max_head_bytes,
             limits.head_timeout_s)
    return limits


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def run_uvicorn(config: GatewayServerConfig) -> None:
    """Serve ``config`` in this process, or in ``config.workers`` worker processes
    (what `uvicorn.run` does, with our config class)."""
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    config.load_app()
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(_STARTUP_FAILURE)


def gateway_server_config(server: ServerConfig, limits: ConnectionLimits, **uvicorn_options: Any) -> GatewayServerConfig:
    """The server configuration for the gateway's app with ``uvicorn_options`` (host,
    port, workers, loop …)."""
    return GatewayServerConfig(
        "tollway.server.startup:worker_app", factory=True, connection_limits=limits,
        timeout_keep_alive=duration_s(server.keep_alive_timeout), lifespan="on", access_log=False, backlog=2048,
        proxy_headers=False, server_header=False,  # no per-request work for headers nobody reads
        **uvicorn_options)
