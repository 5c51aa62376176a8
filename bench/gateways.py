"""What the comparison sends and which limits each gateway gets, and the process handle
that starts, meters and stops a gateway (or the mock upstream).

`Limits` is the one description of governance for a run; `tollway_side` and
`litellm_side` render it into each gateway's own configuration, so both sides always
enforce the same numbers at the same levels.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from loadgen import ProcessMeter, wait_http

ROOT = Path(__file__).resolve().parent.parent
TOLLWAY_PYTHON = ROOT / ".venv" / "bin" / "python"

MODEL = "gpt-4o-mini"
PROMPT = "Summarise the following text in one sentence. " * 20  # ≈ 1 KB request body
MAX_TOKENS = 16
COMPLETION_TOKENS = 16  # what the mock generates; max_tokens caps it at the same number
PRICE_INPUT = Decimal("1.0")   # USD per million tokens, set on both gateways
PRICE_OUTPUT = Decimal("2.0")

# The mock's token rules (tollway/testing/mock_content.py): ceil(len/4) per text + 3 per message.
PROMPT_TOKENS = math.ceil(len(PROMPT) / 4) + 3
COST_PER_REQUEST = (PROMPT_TOKENS * PRICE_INPUT + COMPLETION_TOKENS * PRICE_OUTPUT) / Decimal(1_000_000)

HUGE_REQUESTS = 10**9
HUGE_TOKENS = 10**12
HUGE_USD = 1_000_000


def payload(model: str, stream: bool) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


@dataclass(frozen=True)
class Limits:
    """Governance for one gateway start; None leaves a level without that limit.

    model_*: the model on the mock provider (Tollway model config; LiteLLM deployment rpm/tpm
    with enforce_model_rate_limits). provider_budget_usd: the provider (Tollway provider
    budget; LiteLLM provider_budget_config). key_*: the client's key (Tollway virtual key;
    LiteLLM key from the custom_auth hook, budget as the key's model_max_budget).
    """

    model_rpm: int | None = None
    model_tpm: int | None = None
    provider_budget_usd: Decimal | float | None = None
    key_rpm: int | None = None
    key_tpm: int | None = None
    key_budget_usd: Decimal | float | None = None

    @staticmethod
    def load() -> Limits:
        """Every level switched on, with limits no benchmark reaches."""
        return Limits(model_rpm=HUGE_REQUESTS, model_tpm=HUGE_TOKENS, provider_budget_usd=HUGE_USD,
                      key_rpm=HUGE_REQUESTS, key_tpm=HUGE_TOKENS, key_budget_usd=HUGE_USD)

    def describe(self) -> dict:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in self.__dict__.items() if v is not None}


@dataclass
class Service:
    """A started process (gateway or mock) with its base URL and a CPU/RSS meter."""

    name: str
    command: list[str]
    base_url: str
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    log: Path | None = None
    process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120) -> Service:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(self.command, env={**os.environ, **self.env}, cwd=self.cwd,
                                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_http(self.base_url + self.ready_path, timeout_s, self.process)
        except RuntimeError as exc:
            self.stop()
            tail = self.log.read_text(errors="replace")[-3000:] if self.log and self.log.exists() else ""
            raise RuntimeError(f"{self.name} did not start: {exc}\n--- log tail ---\n{tail}") from None
        return self

    @property
    def meter(self) -> ProcessMeter:
        assert self.process is not None
        return ProcessMeter(self.process.pid)

    def stop(self) -> None:
        """SIGTERM to the process group we started (the server and its workers), then wait."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mock_service(port: int, log: Path) -> Service:
    return Service("mock", [str(TOLLWAY_PYTHON), "-m", "tollway", "mock-upstream", "--port", str(port)],
                   f"http://127.0.0.1:{port}", "/_mock/stats", log=log, cwd=ROOT)
