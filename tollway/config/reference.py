"""The configuration reference (docs/configuration.md), generated from the schema.

Every section and field comes from the pydantic models in `tollway.config.schema`, so a
field added there appears here by itself. Its words come from, in order: the field's
`description`, the text kept below in `FIELD_TEXT`, or the comment at the end of the
field's line in schema.py. Print it with `tollway config reference` or
`python -m tollway.config.reference`; tests/docs checks that the file in docs/ matches.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Literal

import annotated_types
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tollway.config import schema
from tollway.config.schema import Settings

REGENERATE = "tollway config reference > docs/configuration.md"

INTRO = f"""\
# Configuration reference

<!-- Generated from tollway/config/schema.py by `{REGENERATE}`. Do not edit by hand:
     tests/docs/test_configuration_reference.py fails when this file and the schema differ. -->

Tollway reads one file, `tollway.yaml` by default (`--config FILE`; a name ending in
`.json` is read as JSON). It is read once at start; governance entities created through the
management API or the UI live in the database and need no restart.

Rules that apply everywhere:

- **`env.NAME`**: a string that is exactly `env.NAME` is replaced by the environment
  variable `NAME`; if it is not set, the gateway does not start and says which field needs it.
- **Unknown fields are errors**, reported with the nearest valid name
  (`counters.backnd: unknown field 'backnd'; did you mean 'backend'?`).
- **Dates stay text.** A date or time written without quotes (`api_version: 2024-06-01`) is
  read as the text written, never as a date: no setting is a date. Other YAML surprises are
  reported, not guessed: a text field given `0613`, `no` or `on` unquoted (YAML reads a
  number or a boolean) fails with "must be text ... put it in quotes".
- **Durations** are a whole number and a unit: `30s`, `5m`, `1h`, `1d`, `1w`, `1M`
  (calendar month), `1Y`, or multiples such as `15m` or `3M`.
- **Money** is in USD, as a decimal number (`10`, `0.25`).
- **Relative SQLite paths** in `database_url` (the default `sqlite:///tollway.db` too) are
  relative to the folder of the configuration file, not to the current directory.
- Check a file without starting anything: `tollway config check --config tollway.yaml`.

Errors name the file, the field's path and the problem, one line each, and the gateway
exits with code 2 (see [troubleshooting](troubleshooting.md#exit-codes)).
"""

# Words for fields whose schema line carries none; "Model.field" -> text.
FIELD_TEXT: dict[str, str] = {
    "Settings.database_url": "Where governance, usage and the request log are kept: `sqlite:///path.db` "
    "(created if missing; its folder must exist) or `postgresql://user:password@host:5432/dbname`.",
    "Settings.admin_token": "The bearer token of the management API and the UI login (at least 16 characters). "
    "Without it, `$TOLLWAY_ADMIN_TOKEN` is used; without either, `tollway serve` refuses to start except on a "
    "loopback address, where it prints a token generated for that run.",
    "Settings.management_api": "Serve the management API under `/api` and the admin UI under `/ui`. "
    "`false` turns both off (and the admin token is then not needed).",
    "Settings.enforce_virtual_keys": "Refuse requests that carry no virtual key (401 `virtual_key_required`). "
    "With `false`, such requests pass and meet only provider and model limits.",
    "Settings.counters": "Where live counters are kept: this process's memory, or Redis (shared by every worker "
    "and node).",
    "Settings.flush_interval": "How often counters are written to the database (and at a graceful stop). "
    "With memory counters a crash loses at most this much usage.",
    "Settings.max_body_bytes": "Request bodies larger than this get 413 before they are read, on every route "
    "but the multipart uploads (`media.max_upload_bytes`).",
    "Settings.media": "The media routes: images, audio, moderations (see `MediaConfig`, docs/media.md).",
    "MediaConfig.max_upload_bytes": "Multipart uploads (transcriptions, translations, image edits) larger than this "
    "get 413; they are streamed to the provider, never held whole.",
    "MediaConfig.max_audio_seconds": "The longest audio an upload is reserved for (default: bounded by its size "
    "alone).",
    "MediaConfig.audio_min_bytes_per_second": "An upload's worst-case duration is its size over this (750: 6 kbit/s).",
    "MediaConfig.audio_bytes_per_second": "An upload's estimated duration is its size over this (16,000: 128 kbit/s).",
    "Settings.providers": "The upstream providers, by the name clients use in `provider/model`.",
    "Settings.model_aliases": "Model names clients may send instead of `provider/model`, e.g. `fast: openai/gpt-4o-mini`.",
    "Settings.pricing": "Prices by `provider/model` or model name (USD per million tokens), overriding the "
    "`genai-prices` catalog.",
    "Settings.default_price": "The price of a model found neither in `pricing` nor in the catalog. Without it such "
    "a model is charged nothing (a warning is logged once).",
    "Settings.estimate": "How a request's tokens are estimated for its reservation before the call.",
    "Settings.governance": "Customers, teams, virtual keys and model limits the file manages: applied at every "
    "start, read-only in the API and the UI (see [governance](governance.md#who-manages-what-the-config-file-or-the-api)).",
    "Settings.request_log": "Write every request to the `request_logs` table (in batches, off the request path).",
    "Settings.fallbacks": "Per model (`provider/model`) or alias: the models tried in order when it fails "
    "(connection errors, timeouts, 429 and 5xx after retries); each is governed like a request of its own.",
    "Settings.request_log_retention": "Delete request-log rows older than this (at least `1d`; e.g. `90d`, `6M`), "
    "a minute after start and then hourly, in small batches. Omitted: rows are kept. Spend totals are kept "
    "in hourly and daily rollups, which outlive the log's rows.",
    "Settings.virtual_key_cache": "Whether every virtual key is loaded at start or each when first presented "
    "(above `load_all_up_to` stored keys), and the bounds of that cache (see "
    "[operations](operations.md#a-million-virtual-keys)).",
    "VirtualKeyCacheConfig.load_all_up_to": "With at most this many virtual keys stored, all are loaded at start "
    "(a node then never asks the database about a key); with more, keys are loaded on demand.",
    "VirtualKeyCacheConfig.max_keys": "Keys held when loaded on demand; beyond, a tenth of them is dropped "
    "(to load again when next presented).",
    "VirtualKeyCacheConfig.max_pending_lookups": "Distinct keys waiting to be looked up (in batches of 500, one "
    "query at a time); a request beyond this gets 503 `key_lookup_unavailable` instead of a place in the queue.",
    "Settings.cors_origins": "Browser origins allowed to call the management API, e.g. `[https://admin.example]`; "
    "empty: CORS is off.",
    "Settings.egress": "Outbound proxies for calls to providers; by default read from the environment "
    "(see [operations](operations.md#egress-proxies-private-cas-client-certificates)).",
    "EgressConfig.http_proxy": "The `http://` proxy for plain-HTTP upstreams (default: `$HTTP_PROXY`).",
    "EgressConfig.https_proxy": "The `http://` proxy for HTTPS upstreams, through a CONNECT tunnel "
    "(default: `$HTTPS_PROXY`).",
    "EgressConfig.no_proxy": "Hosts reached directly, as curl reads `NO_PROXY`: names, domain suffixes, `*`, "
    "IP addresses and CIDR ranges, optional `:port` (default: `$NO_PROXY`).",
    "Settings.log_level": "The gateway's log level (logs go to standard error).",
    "CountersConfig.backend": "`memory`: counters of this process only. `redis`: shared and exact across "
    "workers and nodes.",
    "CountersConfig.url": "Redis URL: `redis://host:6379/0`, `rediss://` for TLS, `unix:///path`; "
    "`user:password@` works.",
    "CountersConfig.on_failure": "When Redis is unreachable: `fail_closed` answers 503 `governance_unavailable` "
    "to requests that meet a limit; `fail_open` counts locally per process until Redis is back.",
    "CountersConfig.timeout_ms": "How long one Redis call may take before Redis counts as unreachable.",
    "CountersConfig.lease_ms": "How long a process's lease in Redis lasts without renewal: when a killed "
    "gateway's lease runs out, another process gives back its reservations and in-flight slots.",
    "Settings.request_log_unauthenticated_per_minute": "Request-log rows per minute for 401s without a known "
    "virtual key (`virtual_key_required`, `virtual_key_not_found`); the rest of each minute become one summary "
    "row per decision. `null`: a row for every one.",
    "Settings.server": "Limits that protect the HTTP server from clients that hold connections, send huge "
    "heads or stall (per worker process; see [operations](operations.md#clients-that-misbehave)).",
    "Settings.login_throttle": "Slows down guessing of the admin token at the UI login "
    "(see [operations](operations.md#clients-that-misbehave)).",
    "ServerConfig.max_connections": "Open connections per process; lowered at start to half the open-file limit "
    "less 64. At the cap, idle connections are closed longest idle first; with none idle, a new one gets 503.",
    "LoginThrottleConfig.free_failures": "Wrong tokens from one address that cost nothing.",
    "LoginThrottleConfig.base_delay": "The wait after the first failure past the free ones; it doubles with "
    "each further failure.",
    "LoginThrottleConfig.max_delay": "The longest wait.",
    "LoginThrottleConfig.global_free_failures": "Failures from all addresses together per `forget_after`; "
    "past them every address waits for the allowance to refill.",
    "Settings.governance_defaults": "How budgets and rate limits that do not say hold: `enforcement` and "
    "`on_insufficient` for all (see [governance](governance.md#worst-case-estimate-strict)).",
    "GovernanceDefaults.enforcement": "`estimate`: reserve the estimate (a limit can end above its maximum by the "
    "estimation error); `strict`: reserve the worst case, so spend never exceeds the limit.",
    "GovernanceDefaults.on_insufficient": "When a request's reservation does not fit: `refuse` (402/429), or "
    "`clamp`: lower its output cap to what fits (`x-tollway-clamped-max-tokens`).",
    "RateLimitConfig.on_insufficient": "None: governance_defaults.on_insufficient.",
    "EstimateConfig.injected_max_tokens": "Under `strict` enforcement, the output cap written into a request that "
    "sets none, and reserved.",
    "BudgetConfig.mode": "`enforce`, or `shadow`: counted but never denies; a request it would have denied is "
    "answered and logged with `would_deny` (see [governance](governance.md#shadow-limits)).",
    "RateLimitConfig.mode": "`enforce` or `shadow`, for both sides (see [governance](governance.md#shadow-limits)).",
    "ConcurrencyConfig.mode": "`enforce` or `shadow`: slots counted, never waited for or refused "
    "(see [governance](governance.md#shadow-limits)).",
    "ConcurrencyConfig.max_in_flight": "Requests in flight at once; more get 429 `concurrency_limited`.",
    "ConcurrencyConfig.queue_timeout_ms": "How long a request waits for a free slot before it is refused; "
    "`0`: refused at once.",
    "EstimateConfig.default_completion_tokens": "Completion tokens reserved for a request that sends no `max_tokens`.",
    "EstimateConfig.bytes_per_prompt_token": ("Scales the prompt estimate by 4 / this: 4 keeps it as fitted "
                                             "(see [governance](governance.md#how-good-the-estimate-is)), 2 doubles it."),
    "ProviderSettings.type": "The provider's API: `openai` (any OpenAI-compatible server), `azure` (Azure "
    "OpenAI), `anthropic`, `gemini` (Google's Gemini API; `keys` are API keys), `bedrock` (AWS Bedrock: "
    "requests signed with SigV4, no `keys`; see `region` and the `aws_*` fields), "
    "`vertex` (Google Cloud's Vertex AI: Gemini and Claude models; `project`, `region`, `credentials` instead of "
    "keys), or an OpenAI-compatible "
    "provider by name, whose base URL and price-catalog id are filled in (`ollama` and `vllm`: local servers "
    "that need no key).",
    "ProviderSettings.proxy": "An `http://` forward proxy for this provider (`user:password@` works); `none`: "
    "direct, whatever the environment says; unset: `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` or `egress`.",
    "Settings.alerts": "Webhooks told when a budget or rate limit crosses a threshold of its window or, at the "
    "last hour's rate, will run out before it resets (see [operations](operations.md#alerts)).",
    "AlertsConfig.webhooks": "Where alerts go; more can be added with `POST /api/alerts/webhooks`.",
    "AlertsConfig.thresholds": "Shares of each limit (used plus reserved, in its current window) that send "
    "`threshold_crossed`, each once per window.",
    "AlertsConfig.forecast": "Send `forecast_exhaustion` when, at the rate of the last hour, a limit runs out "
    "before its window resets (once per window).",
    "AlertsConfig.max_attempts": "Delivery attempts of one alert (network errors, timeouts, 5xx, 408, 425 and "
    "429 are retried), then it is marked failed in the delivery log.",
    "AlertsConfig.max_backoff": "The longest wait between two attempts, in seconds.",
    "WebhookConfig.url": "The receiver: an `http://` or `https://` URL.",
    "WebhookConfig.secret": "Signs each delivery: `x-tollway-signature: t=<unix>,v1=<hex HMAC-SHA256 of "
    "\"t.body\">` (at least 16 characters; usually `env.NAME`).",
    "WebhookConfig.events": "`threshold_crossed`, `forecast_exhaustion`; omitted: both.",
    "WebhookConfig.format": "`json`: the alert's fields; `slack`: `{\"text\": …}` for Slack-compatible "
    "incoming webhooks.",
    "ProviderSettings.ca_bundle": "A PEM file of CAs to trust for this provider instead of the system's.",
    "ProviderSettings.client_cert": "A client certificate (PEM) for upstreams that ask for one (mutual TLS).",
    "ProviderSettings.client_key": "The client certificate's key, when it is not in `client_cert`'s file.",
    "ProviderSettings.base_url": "The API's base URL; defaults to the provider's public API "
    "(required for `azure`).",
    "ProviderSettings.keys": "The provider's API keys; requests are spread over them by weight. At least one, "
    "except for local servers (`ollama`, `vllm`).",
    "ProviderSettings.api_version": "Azure's `api-version` query parameter, e.g. `2024-06-01` (required for "
    "`azure`).",
    "ProviderSettings.timeout": "How long to wait for the provider's answer (for streams: between chunks).",
    "ProviderSettings.connect_timeout": "How long to wait for a connection to the provider.",
    "ProviderSettings.max_retries": "Retries of a failed call (connection errors, 429 and 5xx) before answering.",
    "ProviderSettings.headers": "Extra headers sent with every call to this provider.",
    "ProviderSettings.deployments": "Azure: model name -> deployment name (default: the model name).",
    "ProviderSettings.project": "Vertex: the Google Cloud project (default: the `project_id` of `credentials`).",
    "ProviderSettings.region": "Vertex: the region (location) of the models, e.g. `us-east5`; `global`, `us` and "
    "`eu` use their own endpoints (default: `global`). Bedrock: the AWS region, e.g. `us-east-1` (required; the "
    "default base URL is `https://bedrock-runtime.REGION.amazonaws.com`).",
    "ProviderSettings.credentials": "Vertex: the service account's JSON key, inline (`env.NAME` holding the JSON) "
    "or the path of its file; omitted: Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, "
    "gcloud's login, the metadata server). Needs `pip install 'tollway[vertex]'`.",
    "ProviderSettings.publishers": "Vertex: model -> `google` or `anthropic`, for a model whose name does not "
    "say (default: `claude-*` is Anthropic's, any other Google's).",
    "ProviderSettings.responses_api": "Whether the provider serves OpenAI's Responses API itself (default: yes "
    "for `openai` and `azure`, no for the presets); `false`: `/v1/responses` is translated to chat completions. "
    "Anthropic providers are always translated.",
    "ProviderSettings.responses_api_version": "Azure: the `api-version` of `/openai/responses`.",
    "ProviderSettings.profile": "Bedrock: a named profile of the shared AWS files (`~/.aws/credentials`, "
    "`~/.aws/config`). Unset, with no `aws_access_key_id`: botocore's default chain (the `AWS_*` environment, "
    "the shared files, container and instance roles).",
    "ProviderSettings.aws_access_key_id": "Bedrock: an access key id, usually `env.NAME` (with "
    "`aws_secret_access_key`).",
    "ProviderSettings.aws_secret_access_key": "Bedrock: the secret of `aws_access_key_id`, usually `env.NAME`.",
    "ProviderSettings.aws_session_token": "Bedrock: the session token of temporary credentials, usually `env.NAME`.",
    "ProviderSettings.role_arn": "Bedrock: a role to assume through STS with the credentials above as the "
    "source; its temporary credentials are refreshed before they expire (the STS endpoint follows "
    "`AWS_ENDPOINT_URL_STS`).",
    "ProviderKeyConfig.value": "The key itself, usually `env.NAME`.",
    "ProviderKeyConfig.weight": "Share of the requests this key gets, relative to the other keys.",
    "ProviderKeyConfig.models": "Models this key serves; empty: every model.",
    "BudgetConfig.max_limit": "The budget in USD per period.",
    "BudgetConfig.reset_duration": "The period (a duration).",
    "BudgetConfig.calendar_aligned": "Start `d`/`w`/`M`/`Y` periods on calendar boundaries (a month from the 1st) "
    "instead of rolling from the last reset.",
    "BudgetConfig.timezone": "IANA time zone of calendar-aligned periods.",
    "BudgetConfig.week_start": "First day of a calendar-aligned week: 0 = Monday … 6 = Sunday.",
    "RateLimitConfig.token_max_limit": "Tokens (prompt + completion) per period.",
    "RateLimitConfig.token_reset_duration": "The token limit's period (a duration).",
    "RateLimitConfig.request_max_limit": "Requests per period.",
    "RateLimitConfig.request_reset_duration": "The request limit's period (a duration).",
    "CustomerConfig.id": "Stable identifier, used by teams' and keys' `customer_id`.",
    "CustomerConfig.name": "Name shown in denials, the UI and reports.",
    "TeamConfig.id": "Stable identifier, used by keys' `team_id`.",
    "TeamConfig.name": "Name shown in denials, the UI and reports.",
    "TeamConfig.customer_id": "The customer the team belongs to (its limits apply too).",
    "VirtualKeyConfig.id": "Stable identifier.",
    "VirtualKeyConfig.name": "Name shown in denials, the UI and reports.",
    "VirtualKeyConfig.value": "The key clients send (`tw-` and at least 16 more characters), usually "
    "`env.NAME`. Omitted: one is generated at first start and printed once.",
    "VirtualKeyConfig.description": "Free text.",
    "VirtualKeyConfig.is_active": "`false` blocks the key (403 `virtual_key_blocked`).",
    "VirtualKeyConfig.team_id": "The team the key belongs to (a key has a team or a customer, not both).",
    "VirtualKeyConfig.customer_id": "The customer the key belongs to directly.",
    "VirtualKeyConfig.allowed_models": "Models the key may use (`model` or `provider/model`); empty: all.",
    "VirtualKeyConfig.provider_configs": "Providers the key may use, each with a routing weight and its own "
    "limits; empty: every provider.",
    "ProviderConfigEntry.provider": "A provider name from `providers`.",
    "ProviderConfigEntry.allowed_models": "Models the key may use on this provider; empty: all.",
    "ProviderConfigEntry.allowed_keys": "Ids of the provider's keys this key may use; empty: all.",
    "ModelLimitConfig.model_name": "The model, as the provider names it.",
    "ModelLimitConfig.provider": "The provider; omitted: the limits apply to the model on every provider "
    "together.",
    "Governed.budget": "A budget in USD per period (see `BudgetConfig`).",
    "Governed.rate_limit": "Token and/or request limits per period (see `RateLimitConfig`).",
    "Governed.concurrency": "A limit on requests in flight at once (see `ConcurrencyConfig`).",
    "GovernanceConfig.customers": "Customers: the top of the hierarchy.",
    "GovernanceConfig.teams": "Teams, each optionally under a customer.",
    "GovernanceConfig.virtual_keys": "Virtual keys: what clients send instead of a provider key.",
    "GovernanceConfig.model_configs": "Limits per model, on one provider or on all.",
    "PriceConfig.input": "USD per million prompt tokens.",
    "PriceConfig.output": "USD per million completion tokens.",
    "PriceConfig.cached_input": "USD per million cached prompt tokens (default: `input`).",
    "PriceConfig.cache_write": "USD per million tokens written to a prompt cache (default: `input`).",
    "PriceConfig.per_image": "USD per generated or edited image: one number, or a mapping keyed `SIZE/QUALITY` "
    "(`1024x1024/hd`), `SIZE`, `QUALITY` or `default`, tried in that order (docs/media.md).",
    "PriceConfig.per_audio_second": "USD per second of audio transcribed or translated.",
    "PriceConfig.per_million_characters": "USD per million characters of speech input (`/v1/audio/speech`).",
    "PriceConfig.audio_input": "USD per million audio input tokens (token-priced transcription; default: `input`).",
    "PriceConfig.batch_ratio": "The share of the price a batch request costs (0.5: half); default: the catalog's batch "
    "price, else the full price (docs/batches.md).",
    "Settings.batches": "Batches: files, batches and message batches (see `BatchesConfig`, docs/batches.md).",
    "BatchesConfig.max_file_bytes": "A batch input file (or an Anthropic message batch's body) larger than this is "
    "refused with 413.",
    "BatchesConfig.poll_interval": "The follow-up asks the provider about a batch first this long after its "
    "submission, then twice as long each time.",
    "BatchesConfig.max_poll_interval": "The longest wait between two questions about one batch (at most `1h`).",
    "BatchesConfig.lease": "How long a node following a batch up holds it; one that dies leaves it to another after.",
}

# Where each section's model appears, written the way a person would write the path.
_MAP = "NAME"


def render() -> str:
    """The whole reference as Markdown."""
    parts = [INTRO]
    for paths, model in _sections():
        parts.append(_section(paths, model))
    return "\n".join(parts).rstrip() + "\n"


def _sections() -> list[tuple[list[str], type[BaseModel]]]:
    """Each model once, with every path that reaches it, in reading order."""
    paths: dict[type[BaseModel], list[str]] = {}

    def visit(model: type[BaseModel], path: str) -> None:
        known = model in paths
        paths.setdefault(model, []).append(path)
        if known:
            return
        for name, field in model.model_fields.items():
            for child, suffix in _models_in(field.annotation):
                visit(child, _join(path, name) + suffix)

    visit(Settings, "")
    return [(found, model) for model, found in paths.items()]


def _models_in(annotation: Any, suffix: str = "") -> Iterator[tuple[type[BaseModel], str]]:
    """The models a field's value holds, with how the path continues into them."""
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, suffix
        return
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and args:
        yield from _models_in(args[0], suffix + "[]")
    elif origin is dict and len(args) == 2:
        yield from _models_in(args[1], suffix + f".{_MAP}")
    elif origin in (typing.Union, types.UnionType):
        for option in args:
            yield from _models_in(option, suffix)


def _section(paths: list[str], model: type[BaseModel]) -> str:
    if len(paths) == 1:
        title = f"`{paths[0]}`" if paths[0] else "Top level"
    else:
        segment = paths[0].rsplit(".", 1)[-1].removesuffix("[]")
        title = f"`{paths[0] if segment == _MAP else segment}` (`{model.__name__}`)"
    summary = _model_summary(model, paths[0], named_in_title=len(paths) > 1)
    lines = [f"## {title}", "", *([summary, ""] if summary else [])]
    if len(paths) > 1:
        lines += ["Used at " + ", ".join(f"`{p}`" for p in paths) + ".", ""]
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        cells = [f"`{name}`", _type_text(model, name, field), _default_text(field), _description(model, name, field)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _model_summary(model: type[BaseModel], path: str, named_in_title: bool = False) -> str:
    doc = inspect.getdoc(model) or ""
    if doc.startswith(("A base class", "Usage docs")) or model.__doc__ is None:
        doc = ""
    first = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    if named_in_title:
        return first
    where = f"`{model.__name__}`" + (" (the file's top level)" if not path else "")
    return f"{where}. {first}" if first else f"{where}."


def _description(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    if field.description:
        return field.description
    for owner in model.__mro__:
        text = FIELD_TEXT.get(f"{owner.__name__}.{name}")
        if text:
            return text
    return _line_comment(model, name)


def _line_comment(model: type[BaseModel], name: str) -> str:
    """The comment at the end of the field's line in the schema, if there is one."""
    for owner in model.__mro__:
        if name not in getattr(owner, "__annotations__", {}):
            continue
        try:
            source = inspect.getsource(owner)
        except (OSError, TypeError):
            return ""
        match = re.search(rf"^\s+{re.escape(name)}:[^\n]*?#\s*(.+)$", source, re.MULTILINE)
        return _sentence(match.group(1)) if match else ""
    return ""


def _sentence(comment: str) -> str:
    comment = comment.strip()
    comment = comment[0].upper() + comment[1:] if comment else comment
    return comment if comment.endswith(".") else comment + "."


def _type_text(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    base = _annotation_text(field.annotation)
    if base in ("string", "string or null") and _is_duration(model, name):
        base = base.replace("string", "duration")
    bounds = _bounds(field.metadata) or _bounds(_annotated_metadata(field.annotation))
    return f"{base} ({bounds})" if bounds else base


def _is_duration(model: type[BaseModel], name: str) -> bool:
    for decorator in model.__pydantic_decorators__.field_validators.values():
        func = getattr(decorator.func, "__func__", decorator.func)
        if name in decorator.info.fields and (func is schema._duration or "retention" in func.__name__):
            return True
    return False


def _annotated_metadata(annotation: Any) -> list[Any]:
    """Constraints inside `Annotated[...] | None` (pydantic keeps them off the field)."""
    for option in typing.get_args(annotation) or ():
        if typing.get_origin(option) is typing.Annotated:
            found: list[Any] = []
            for item in typing.get_args(option)[1:]:
                found.extend(item.metadata if isinstance(item, FieldInfo) else [item])
            return found
    return []


def _annotation_text(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _annotation_text(args[0])
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        text = " or ".join(_annotation_text(a) for a in options)
        return f"{text} or null" if len(options) < len(args) else text
    if origin is Literal:
        return " \\| ".join(f'`"{a}"`' for a in args)
    if origin is list:
        return f"list of {_annotation_text(args[0])}"
    if origin is dict:
        return f"map of {_annotation_text(args[0])} to {_annotation_text(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"`{annotation.__name__}`"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Decimal: "decimal",
             AwareDatetime: "RFC 3339 time"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(metadata: list[Any]) -> str:
    words = []
    for item in metadata:
        if isinstance(item, annotated_types.Gt):
            words.append(f"> {_number(item.gt)}")
        elif isinstance(item, annotated_types.Ge):
            words.append(f"≥ {_number(item.ge)}")
        elif isinstance(item, annotated_types.Lt):
            words.append(f"< {_number(item.lt)}")
        elif isinstance(item, annotated_types.Le):
            words.append(f"≤ {_number(item.le)}")
        elif isinstance(item, annotated_types.MinLen) and item.min_length > 1:
            words.append(f"at least {item.min_length} long")
        elif isinstance(item, annotated_types.MinLen):
            words.append("not empty")
    return ", ".join(words)


def _number(value: Any) -> str:
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool) and value >= 10**6:
        return f"{int(value):,}".replace(",", "_")
    return str(value)


def _default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return _value_text(field.default_factory())  # type: ignore[call-arg]
    if field.default is PydanticUndefined:
        return "**required**"
    return _value_text(field.default)


def _value_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "(see its section)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (dict, list)) and not value:
        return "`{}`" if isinstance(value, dict) else "`[]`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") if "\\|" not in text else text.replace("\n", " ")


if __name__ == "__main__":
    print(render(), end="")
