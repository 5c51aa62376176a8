"""Request tags (SPEC §8): how a tag is spelled, which tags a key lets a request carry,
and the limits a request's tags add to its plan.

A tag is normalised before anything compares it: surrounding spaces dropped, ASCII
letters lower-cased; what remains must be 1 to `MAX_TAG_LENGTH` characters of
``a-z 0-9 . _ : / -``. Anything else (other characters, Unicode look-alikes, an empty
item) is refused rather than folded, so that no two spellings of one tag count apart
and a client cannot slip past a tag's budget by writing ``Finance `` or ``fіnance``
(Cyrillic i). A request carries at most `MAX_REQUEST_TAGS` distinct tags: each tag with
limits adds counter operations, and a client must not multiply the work of one request.

A key's ``allowed_tags`` (when set) are the only tags its requests may name (403
``tag_not_allowed`` otherwise); its ``forced_tags`` are added to every request it makes,
named or not (the operator's answer to a client that omits a tag).

Pure: the enforcer holds a `TagPlanner` and runs it on each plan.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Iterable

from tollway.governance.decisions import Denial, tag_not_allowed
from tollway.governance.engine import LimitCheck, Plan, RequestFacts, amounts_for
from tollway.governance.inventory import limit_checks
from tollway.governance.memo_scope import KeyMemoScope
from tollway.governance.model import Kind, PolicySnapshot, VirtualKeyPolicy

MAX_TAG_LENGTH = 64
MAX_REQUEST_TAGS = 16
TAG_CHARACTERS = frozenset(string.ascii_lowercase + string.digits + "._:/-")
# Distinct tag sets remembered per snapshot: clients choose tags, so the memo is bounded.
_MEMO_SIZE = 4096
_NO_TAGS: tuple[str, ...] = ()


class BadTag(ValueError):
    """A tag (or a list of tags) that cannot be accepted; the message says why."""


def normalise_tag(text: str) -> str:
    """``text`` as the tag it names (stripped, lower-cased); `BadTag` when it is no valid tag."""
    tag = text.strip().lower()
    if not tag:
        raise BadTag("a tag must not be empty")
    if len(tag) > MAX_TAG_LENGTH:
        raise BadTag(f"tag {tag[:MAX_TAG_LENGTH]!r}… is longer than {MAX_TAG_LENGTH} characters")
    if not TAG_CHARACTERS.issuperset(tag):
        raise BadTag(f"tag {tag!r} has characters other than letters a-z, digits and . _ : / -")
    return tag


def normalise_tags(values: Iterable[str], limit: int = MAX_REQUEST_TAGS) -> tuple[str, ...]:
    """The distinct tags of ``values``, normalised, in first-seen order; `BadTag` for a
    bad one or more than ``limit`` distinct tags."""
    tags: dict[str, None] = {}
    for value in values:
        tags[normalise_tag(value)] = None
        if len(tags) > limit:
            raise BadTag(f"at most {limit} distinct tags per request")
    return tuple(tags)


def header_tags(value: str) -> tuple[str, ...]:
    """The tags of an ``x-tollway-tags`` value: comma-separated (empty items, as in a
    trailing comma, are refused like any empty tag)."""
    if not value.strip():
        return _NO_TAGS
    return normalise_tags(value.split(","))


def key_tags(key: VirtualKeyPolicy, requested: tuple[str, ...]) -> tuple[str, ...] | Denial:
    """The tags a request of ``key`` carries: ``requested`` (normalised) with the key's
    forced tags, or the denial of a requested tag outside its allowed tags. Forced tags
    are always allowed: the operator set them."""
    allowed = key.allowed_tags
    if allowed:
        for tag in requested:
            if tag not in allowed and tag not in key.forced_tags:
                return tag_not_allowed(key.limits.scope, tag, allowed)
    if not key.forced_tags:
        return requested
    return requested + tuple(tag for tag in key.forced_tags if tag not in requested)


class TagPlanner:
    """Adds the tags of a request to its plan, with the checks of the tags that have limits.

    The checks of one tag set are built once per snapshot (memoised, bounded), so a
    tagged request costs a dict lookup; with no tag limits configured it costs nothing
    beyond reading the request's tags.
    """

    __slots__ = ("_memo", "_scope")

    def __init__(self) -> None:
        self._scope = KeyMemoScope()  # the tags' limits are among what clears it
        # (identity of the plan's checks, tags) -> (those checks, the checks with the tags')
        self._memo: dict[tuple[int, tuple[str, ...]], tuple[tuple[LimitCheck, ...], tuple[LimitCheck, ...]]] = {}

    def apply(self, snapshot: PolicySnapshot, facts: RequestFacts, planned: Plan) -> Plan | Denial:
        """``planned`` with the request's tags and their checks, or the denial of a tag
        the key may not use."""
        tags = facts.tags
        key = planned.key
        if key is not None and (key.allowed_tags or key.forced_tags):
            tagged = key_tags(key, tags)
            if isinstance(tagged, Denial):
                return tagged
            tags = tagged
        if not tags:
            return planned
        planned.tags = tags
        if snapshot.tags:
            checks = self._checks(snapshot, planned.checks, tags)
            if checks is not planned.checks:
                planned.checks, planned.amounts = checks, amounts_for(checks, facts)
        return planned

    def _checks(self, snapshot: PolicySnapshot, base: tuple[LimitCheck, ...],
                tags: tuple[str, ...]) -> tuple[LimitCheck, ...]:
        if not self._scope.carries_over(snapshot):
            self._memo = {}
        memo_key = (id(base), tags)
        entry = self._memo.get(memo_key)
        if entry is not None and entry[0] is base:  # the id is of a tuple still alive: the same checks
            return entry[1]
        if len(self._memo) >= _MEMO_SIZE:
            del self._memo[next(iter(self._memo))]
        checks = with_tag_checks(snapshot, base, tags)
        self._memo[memo_key] = (base, checks)
        return checks


def with_tag_checks(snapshot: PolicySnapshot, base: tuple[LimitCheck, ...],
                    tags: Iterable[str]) -> tuple[LimitCheck, ...]:
    """``base`` with the checks of the ``tags`` that have limits: their rate limits and
    budgets after the other levels', their concurrency limits after the others' (a
    request another limit refuses never waits for a slot). ``base`` itself when none has."""
    counted: list[LimitCheck] = []
    in_flight: list[LimitCheck] = []
    for tag in sorted(set(tags)):
        governed = snapshot.tags.get(tag)
        if governed is None:
            continue
        for check in limit_checks(governed):
            if check.kind is not Kind.IN_FLIGHT:
                counted.append(check)
            elif check.shadow and check.queue_timeout_ms:  # a shadow slot is counted, never waited for
                in_flight.append(dataclasses.replace(check, queue_timeout_ms=0))
            else:
                in_flight.append(check)
    if not counted and not in_flight:
        return base
    split = next((index for index, check in enumerate(base) if check.kind is Kind.IN_FLIGHT), len(base))
    return (*base[:split], *counted, *base[split:], *in_flight)
