"""Virtual keys at scale through the management API: the bulk endpoint (all or nothing,
every entry checked before anything is written, values shown once), the list's indexed
filters (name prefix, id cursor) and its exact count (a stored count, kept by every
write), on SQLite and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import openai
import pytest
from sqlalchemy import text

from tests.api.support import admin, error, unique
from tests.support.gateway import RunningGateway

KEYS = "/api/governance/virtual-keys"
BULK = KEYS + "/bulk"
TEAMS = "/api/governance/teams"


def keys_named(api: httpx2.Client, prefix: str) -> list[dict[str, Any]]:
    page = api.get(KEYS, params={"name_prefix": prefix, "limit": 1000})
    assert page.status_code == 200, page.text
    return page.json()["virtual_keys"]


def test_bulk_creates_every_key_with_its_limits_and_shows_each_value_once(gateway, api) -> None:
    team = api.post(TEAMS, json={"id": unique("team"), "name": "bulk"}).json()["team"]
    prefix = unique("bulk")
    entries = [{"name": f"{prefix}-{i:04d}", "team_id": team["id"],
                "budget": {"max_limit": 1, "reset_duration": "1d"}} for i in range(300)]
    entries[7] |= {"id": unique("vk-chosen"), "value": "tw-" + unique("chosen-value-0123456789")}

    created = api.post(BULK, json={"virtual_keys": entries})

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["count"] == 300 == len(body["virtual_keys"])
    assert [key["name"] for key in body["virtual_keys"]] == [entry["name"] for entry in entries]
    values = [key["value"] for key in body["virtual_keys"]]
    assert len(set(values)) == 300 and all(value.startswith("tw-") for value in values)
    assert body["virtual_keys"][7]["value"] == entries[7]["value"]
    assert body["virtual_keys"][7]["id"] == entries[7]["id"]
    listed = keys_named(api, prefix)
    assert len(listed) == 300 and all(key["value"] is None for key in listed)
    assert all(key["budget"]["max_limit"] == 1 and key["team_id"] == team["id"] for key in listed)
    # The keys work at once, on this node, with the official SDK.
    client = openai.OpenAI(base_url=gateway.v1, api_key=values[299], max_retries=0)
    reply = client.chat.completions.create(model="openai/gpt-4o-mini", max_tokens=3,
                                           messages=[{"role": "user", "content": "hi"}])
    assert reply.usage.completion_tokens == 3


@pytest.mark.parametrize(("bad", "status", "field"), [
    ({"team_id": "no-such-team"}, 422, "virtual_keys[2].team_id"),
    ({"customer_id": "no-such-customer"}, 422, "virtual_keys[2].customer_id"),
    ({"budget": {"max_limit": -1, "reset_duration": "1d"}}, 422, "virtual_keys[2].budget.max_limit"),
    ({"budget": {"max_limit": "0.0000000001", "reset_duration": "1d"}}, 422, "virtual_keys[2].budget.max_limit"),
    ({"rate_limit": {"request_max_limit": 5, "request_reset_duration": "5 minutes"}}, 422,
     "virtual_keys[2].rate_limit.request_reset_duration"),
    ({"provider_configs": [{"provider": "nope"}]}, 422, "virtual_keys[2].provider_configs[0].provider"),
    ({"value": "not-a-key-value"}, 422, "virtual_keys[2].value"),
    ({"name": "  "}, 422, "virtual_keys[2].name"),
    ({"id": "DUPLICATE"}, 409, "virtual_keys[2].id"),  # the id of entry 0
    ({"value": "SAME"}, 409, "virtual_keys[2].value"),  # the value of entry 1
])
def test_one_bad_entry_rejects_the_whole_call_naming_it_and_writes_nothing(api, bad, status, field) -> None:
    prefix = unique("rejected")
    shared_id, shared_value = unique("vk-dup"), "tw-" + unique("same-value-0123456789")
    entries = [{"name": f"{prefix}-{i}"} for i in range(5)]
    entries[0]["id"], entries[1]["value"] = shared_id, shared_value
    replacements = {"DUPLICATE": shared_id, "SAME": shared_value}
    entries[2] |= {name: replacements.get(value, value) if isinstance(value, str) else value
                   for name, value in bad.items()}

    rejected = api.post(BULK, json={"virtual_keys": entries})

    assert error(rejected, status)["field"] == field
    assert keys_named(api, prefix) == []
    assert api.get(f"{KEYS}/{shared_id}").status_code == 404


def test_a_bad_entry_found_while_writing_far_into_the_call_undoes_the_entries_written_before_it(api) -> None:
    """The keys are written in steps; a budget that rounds to zero shows only when its
    row is built, here after hundreds of keys were written: all of them go."""
    prefix = unique("late")
    entries = [{"name": f"{prefix}-{i}", "budget": {"max_limit": 1, "reset_duration": "1d"}} for i in range(450)]
    entries[420]["budget"] = {"max_limit": "0.0000000001", "reset_duration": "1d"}

    rejected = api.post(BULK, json={"virtual_keys": entries})

    assert error(rejected, 422)["field"] == "virtual_keys[420].budget.max_limit"
    assert keys_named(api, prefix) == []


def test_entries_clashing_with_stored_keys_are_rejected(api) -> None:
    existing = api.post(KEYS, json={"id": unique("vk-old"), "name": "old",
                                    "value": "tw-" + unique("stored-value-0123456789")}).json()["virtual_key"]
    prefix = unique("clash")
    same_id = [{"name": f"{prefix}-a"}, {"id": existing["id"], "name": f"{prefix}-b"}]
    same_value = [{"name": f"{prefix}-a"}, {"name": f"{prefix}-b", "value": existing["value"]}]

    assert error(api.post(BULK, json={"virtual_keys": same_id}), 409)["field"] == "virtual_keys[1].id"
    assert error(api.post(BULK, json={"virtual_keys": same_value}), 409)["field"] == "virtual_keys[1].value"
    assert keys_named(api, prefix) == []


def test_bulk_takes_one_to_ten_thousand_keys(api) -> None:
    assert error(api.post(BULK, json={"virtual_keys": []}), 422)["field"] == "virtual_keys"
    too_many = {"virtual_keys": [{"name": "k"}] * 10_001}
    assert error(api.post(BULK, json=too_many), 422)["field"] == "virtual_keys"
    assert error(api.post(BULK, json={"keys": [{"name": "k"}]}), 422)["details"]


def test_name_prefix_is_exact_and_case_sensitive_and_the_cursor_pages_through_everything(api) -> None:
    prefix = unique("Pfx_%")  # LIKE wildcards in the prefix are taken literally
    names = [f"{prefix}{i:02d}" for i in range(25)] + [prefix.lower() + "x", prefix.replace("_%", "ab") + "y"]
    assert api.post(BULK, json={"virtual_keys": [{"name": name} for name in names]}).status_code == 201

    found = keys_named(api, prefix)
    assert sorted(key["name"] for key in found) == sorted(names[:25])

    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"name_prefix": prefix, "limit": 10} | ({"after": after} if after else {})
        page = api.get(KEYS, params=params).json()["virtual_keys"]
        if not page:
            break
        seen += [key["id"] for key in page]
        after = page[-1]["id"]
    assert seen == sorted(key["id"] for key in found)


def stored_keys(gateway: RunningGateway) -> int:
    """The number of key rows, counted in the database (not through the API)."""
    async def count() -> int:
        async with gateway.runtime.db.session() as session:
            return int(await session.scalar(text("SELECT count(*) FROM virtual_keys")))

    return gateway.call(count())


def listed_count(api: httpx2.Client, **params: Any) -> int:
    page = api.get(KEYS, params={"limit": 1} | params)
    assert page.status_code == 200, page.text
    return int(page.json()["count"])


def test_the_unfiltered_count_stays_exact_through_creates_bulk_creates_failed_bulks_and_deletes(gateway, api) -> None:
    """The list's unfiltered ``count`` is the stored count the writes keep (not a scan of
    a million rows); it must be as exact as counting."""
    before = listed_count(api)
    assert before == stored_keys(gateway)
    one = api.post(KEYS, json={"name": unique("counted")}).json()["virtual_key"]
    prefix = unique("counted-bulk")
    assert api.post(BULK, json={"virtual_keys": [{"name": f"{prefix}-{i}"} for i in range(120)]}).status_code == 201
    assert listed_count(api) == before + 121 == stored_keys(gateway)

    late_failure = [{"name": f"{prefix}-x{i}"} for i in range(150)]
    late_failure[140]["budget"] = {"max_limit": "0.0000000001", "reset_duration": "1d"}
    assert api.post(BULK, json={"virtual_keys": late_failure}).status_code == 422  # 140 rows written, undone
    assert listed_count(api) == before + 121 == stored_keys(gateway)

    assert api.delete(f"{KEYS}/{one['id']}").status_code == 200
    assert listed_count(api) == before + 120 == stored_keys(gateway)
    # A cursor page counts every page too (the cursor only picks where the page starts),
    # and a filtered list counts what matches.
    assert listed_count(api, after=one["id"]) == before + 120
    assert listed_count(api, name_prefix=prefix) == 120 == listed_count(api, name_prefix=prefix, after=prefix)


def test_concurrent_creates_give_the_exact_count(gateway, api) -> None:
    if gateway.runtime.db.dialect == "sqlite":
        pytest.skip("SQLite has one writer at a time: concurrent writers wait for its lock (and time out under load)")
    before = listed_count(api)
    prefix = unique("concurrent")

    def create(index: int) -> int:
        with admin(gateway) as client:
            if index % 3:
                return client.post(KEYS, json={"name": f"{prefix}-{index}"}).status_code
            body = {"virtual_keys": [{"name": f"{prefix}-{index}-{i}"} for i in range(10)]}
            return client.post(BULK, json=body).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(create, range(24)))

    assert statuses == [201] * 24
    assert listed_count(api) == before + 16 + 8 * 10 == stored_keys(gateway)
    assert listed_count(api, name_prefix=prefix) == 96
