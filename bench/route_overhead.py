"""The routes suite of `overhead.py`: the routes added after chat completions — the
Responses API (plain and streamed), Anthropic token counting, image generation, audio
transcription (a multipart upload), moderations and Google's `generateContent` (plain and
streamed) — each driven against the mock directly, the gateway without governance and the
five-level governed gateway, in the same terms as the chat figures: added p50 latency and
gateway CPU µs per request.

The gateways are the chat suite's (`plain_config`, `bench_config`) with an Anthropic and a
Gemini provider on the same mock added by `add_route_providers`, and prices for the media
models in their own units, so every governed request is priced and reserved as in
production.
"""

from __future__ import annotations

import json
import struct
import uuid
from dataclasses import dataclass, field

from loadgen import ProcessMeter, metered_drive, summarise

PROMPT = "Summarise the following text in one sentence. " * 20  # ≈ 1 KB, as the chat figures send
ANTHROPIC_VERSION = {"anthropic-version": "2023-06-01"}
MEDIA_PRICES = {
    "mock/dall-e-3": {"per_image": {"1024x1024/standard": 0.04, "default": 0.04}},
    "mock/whisper-1": {"per_audio_second": 0.0001},
    "mock/omni-moderation-latest": {"input": 0, "output": 0},
    "gemini/gemini-2.0-flash": {"input": 0.1, "output": 0.4},
}


def add_route_providers(config: dict, mock_port: int) -> dict:
    """``config`` with an Anthropic and a Gemini provider on the mock, and media prices."""
    mock = f"http://127.0.0.1:{mock_port}"
    config["providers"]["anthropic"] = {"type": "anthropic", "base_url": mock, "keys": [{"value": "sk-ant-bench"}]}
    config["providers"]["gemini"] = {"type": "gemini", "base_url": mock, "keys": [{"value": "AIza-bench"}]}
    config["pricing"] = {**config.get("pricing", {}), **MEDIA_PRICES}
    return config


@dataclass(frozen=True)
class Scenario:
    """One route: the request to the mock directly and the same request to a gateway.

    ``auth``: the header a client sends its key in on this route (the mock's own check
    wants one too); ``model``: the model as the mock sees it, the gateway's is
    ``provider/model``.
    """

    name: str
    path: str  # {model} stands for the model, in the path for Google's routes
    model: str
    provider: str
    body: dict | None = None
    form: dict | None = None  # a multipart upload: field -> text, or (filename, bytes)
    headers: dict[str, str] = field(default_factory=dict)
    auth: str = "authorization"
    stream: bool = False

    def request(self, target: str, key: str) -> tuple[str, dict[str, str], bytes]:
        """(path, headers, body) for ``target`` (``direct`` or a gateway) with ``key``."""
        model = self.model if target == "direct" else f"{self.provider}/{self.model}"
        path = self.path.replace("{model}", model)
        headers = dict(self.headers)
        headers[self.auth] = f"Bearer {key}" if self.auth == "authorization" else key
        if self.form is not None:
            body, content_type = multipart({"model": model, **self.form})  # text fields first, as the SDKs send
        else:
            body = json.dumps({**self.body, "model": model} if "{model}" not in self.path else self.body).encode()
            content_type = "application/json"
        headers["Content-Type"] = content_type
        return path, headers, body


def multipart(fields: dict) -> tuple[bytes, str]:
    """A multipart/form-data body (and its Content-Type) as the OpenAI SDK sends uploads."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data = value
            head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n")
            parts.append(head.encode() + data + b"\r\n")
        else:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV of silence (the mock reads the duration from its header)."""
    data = b"\x00\x00" * int(seconds * rate)
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 1, 1, rate, rate * 2, 2,
                         16, b"data", len(data))
    return header + data


_GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}], "generationConfig": {"maxOutputTokens": 16}}

SCENARIOS = (
    Scenario("responses", "/v1/responses", "gpt-4o-mini", "mock", {"input": PROMPT, "max_output_tokens": 16}),
    Scenario("responses stream", "/v1/responses", "gpt-4o-mini", "mock",
             {"input": PROMPT, "max_output_tokens": 16, "stream": True}, stream=True),
    Scenario("count_tokens", "/v1/messages/count_tokens", "claude-sonnet-4-5", "anthropic",
             {"messages": [{"role": "user", "content": PROMPT}]}, headers=ANTHROPIC_VERSION, auth="x-api-key"),
    Scenario("images", "/v1/images/generations", "dall-e-3", "mock",
             {"prompt": "a lighthouse at dawn", "size": "1024x1024", "quality": "standard"}),
    Scenario("transcription", "/v1/audio/transcriptions", "whisper-1", "mock", form={"file": ("a.wav", wav(2.0))}),
    Scenario("moderations", "/v1/moderations", "omni-moderation-latest", "mock", {"input": PROMPT}),
    Scenario("gemini generate", "/v1beta/models/{model}:generateContent", "gemini-2.0-flash", "gemini", _GEMINI_BODY,
             auth="x-goog-api-key"),
    Scenario("gemini stream", "/v1beta/models/{model}:streamGenerateContent?alt=sse", "gemini-2.0-flash", "gemini",
             _GEMINI_BODY, auth="x-goog-api-key", stream=True),
)
TARGETS = ("direct", "gateway", "governed")


async def measure_routes(ports: dict[str, int], meters: dict[str, ProcessMeter], keys: dict[str, str],
                         concurrencies: list[int], repeats: int, seconds: float, names: list[str] | None = None) -> dict:
    """{concurrency: {scenario: {target: summary}}}; targets alternate within each repeat."""
    return {concurrency: {scenario.name: await _measure_route(scenario, ports, meters, keys, concurrency, repeats, seconds)
                          for scenario in SCENARIOS if not names or scenario.name in names}
            for concurrency in concurrencies}


async def _measure_route(scenario: Scenario, ports: dict[str, int], meters: dict[str, ProcessMeter], keys: dict[str, str],
                         concurrency: int, repeats: int, seconds: float) -> dict:
    requests = {}
    for target in TARGETS:
        path, headers, body = scenario.request(target, keys[target])
        requests[target] = (f"http://127.0.0.1:{ports[target]}{path}", headers, body)
    for url, headers, body in requests.values():  # warm-up, not counted
        await metered_drive(None, url, headers, body, concurrency, 0.5, scenario.stream)
    runs: dict[str, list] = {target: [] for target in TARGETS}
    for _ in range(repeats):
        for target, (url, headers, body) in requests.items():
            runs[target].append(await metered_drive(meters[target], url, headers, body, concurrency, seconds,
                                                    scenario.stream))
    return {target: summarise(r) for target, r in runs.items()}


def report_routes(by_concurrency: dict) -> None:
    for concurrency, results in by_concurrency.items():
        _report_concurrency(results, concurrency)


def _report_concurrency(results: dict, concurrency: int) -> None:
    print(f"\nrecent routes at concurrency {concurrency}, one gateway worker, medians: what the gateway adds over the "
          "mock (direct); governed = five levels, 7 counters")
    print("(+p50: the target's p50 minus the mock's; µs: CPU per request of the gateway process, and of the mock for"
          " direct)")
    print(f"{'route':>17} {'direct p50':>10} {'gateway +p50':>12} {'governed +p50':>13} {'gateway p99':>11}"
          f" {'governed p99':>12} {'mock µs':>7} {'gateway µs':>10} {'governed µs':>11} {'req/s g/gov':>13} {'errors':>6}")
    for name, by_target in results.items():
        direct, plain, governed = (by_target[target] for target in TARGETS)
        errors = sum(by_target[target]["errors"] for target in TARGETS)
        cpu_us = [by_target[target].get("cpu_s_per_1k", 0) * 1000 for target in TARGETS]
        print(f"{name:>17} {direct['p50_ms']:>10.3f} {plain['p50_ms'] - direct['p50_ms']:>12.3f}"
              f" {governed['p50_ms'] - direct['p50_ms']:>13.3f} {plain['p99_ms']:>11.2f} {governed['p99_ms']:>12.2f}"
              f" {cpu_us[0]:>7.0f} {cpu_us[1]:>10.0f} {cpu_us[2]:>11.0f} {plain['rps']:>6.0f}/{governed['rps']:<6.0f} {errors:>6}")
