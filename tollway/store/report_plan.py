"""Which rows answer a spend report over [start, end): a pure plan, no I/O.

A range is cut into whole calendar months, whole UTC days and whole UTC hours (each one
rollup row per group) and at most two partial hours at its ends, which only the request
log can answer exactly. Most ranges end now, inside the current hour, day and month: no
request has been logged after now, so that hour's (or day's, or month's) rollup row holds
exactly the requests of the range's last piece. The same holds at the start when the log
has nothing between the bucket's start and the range's start. So the end is moved out to
the furthest boundary before the first logged request after it, and the start back to the
furthest boundary after the last logged request before it (never to where nothing was
logged before it: the log's retention may have pruned rows the rollups still count).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tollway.store.spend_rollup import day_of, hour_of, month_of

LOG = "log"
SPANS = ("hour", "day", "month")  # finest first


@dataclass(frozen=True, slots=True)
class Segment:
    """[start, end) answered by ``source``: a rollup span ("hour", "day", "month") or the
    log; ``sign`` -1 for days taken back out of a month (see `fold_months`)."""

    source: str
    start: datetime
    end: datetime
    sign: int = 1


def floor(moment: datetime, span: str) -> datetime:
    """The start of the ``span`` that ``moment`` falls in."""
    return hour_of(moment) if span == "hour" else day_of(moment) if span == "day" else month_of(moment)


def following(start: datetime, span: str) -> datetime:
    """The start of the ``span`` after the one starting at ``start``."""
    if span == "hour":
        return start + timedelta(hours=1)
    if span == "day":
        return start + timedelta(days=1)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def ceiling(moment: datetime, span: str) -> datetime:
    """The first ``span`` boundary at or after ``moment``."""
    start = floor(moment, span)
    return start if start == moment else following(start, span)


def widen(start: datetime, end: datetime, spans: tuple[str, ...], before: datetime | None,
          after: datetime | None) -> tuple[datetime, datetime]:
    """[start, end) widened to the coarsest boundaries that add no logged request:
    ``before`` is the last request logged before ``start`` (None: none — and then the start
    stays, as rows may have been pruned), ``after`` the first logged at or after ``end``."""
    for span in reversed(spans):
        candidate = floor(start, span)
        if candidate == start:
            break
        if before is not None and before < candidate:
            start = candidate
            break
    for span in reversed(spans):
        candidate = ceiling(end, span)
        if candidate == end:
            break
        if after is None or after >= candidate:
            end = candidate
            break
    return start, end


def segments(start: datetime, end: datetime, spans: tuple[str, ...]) -> list[Segment]:
    """[start, end) as the fewest whole ``spans`` (finest first) and partial hours from the
    log, greedily from the start: coarser pieces as soon as the position is aligned to them."""
    out: list[Segment] = []
    position = start
    while position < end:
        for span in reversed(spans):
            step = following(position, span)
            if floor(position, span) == position and step <= end:
                _append(out, span, position, step)
                position = step
                break
        else:
            step = min(ceiling(position, "hour") if hour_of(position) != position else end, end)
            _append(out, LOG, position, step)
            position = step
    return out


def plan(start: datetime, end: datetime, spans: tuple[str, ...], before: datetime | None,
         after: datetime | None) -> list[Segment]:
    """The segments answering [start, end) (see the module's docstring)."""
    pieces = segments(*widen(start, end, spans, before, after), spans)
    if "day" in spans:
        pieces = fold(pieces, "hour", "day")
    return fold(pieces, "day", "month") if "month" in spans else pieces


def fold_months(pieces: list[Segment]) -> list[Segment]:
    """`fold` of days into months (kept for its callers)."""
    return fold(pieces, "day", "month")


def fold(pieces: list[Segment], fine: str, coarse: str) -> list[Segment]:
    """Runs of ``fine`` pieces covering most of a ``coarse`` bucket, as the bucket less the
    ``fine`` pieces it has beyond them: a rolling 30 days reads about 2 × 15 rows per group
    instead of 30, and the 23 hours before a range's first midnight 2 rows instead of 23
    (sums subtract exactly; what the taken-out pieces hold of the range is added by its
    own pieces). Taken-out pieces (``sign`` -1) come last."""
    kept: list[Segment] = []
    taken_out: list[Segment] = []
    for piece in pieces:
        if piece.sign < 0:
            taken_out.append(piece)
            continue
        if piece.source != fine:
            _append(kept, piece.source, piece.start, piece.end)  # joined to a bucket folded just before
            continue
        position = piece.start
        while position < piece.end:
            bucket = floor(position, coarse)
            bucket_end = following(bucket, coarse)
            run_end = min(piece.end, bucket_end)
            inside = run_end - position
            if (bucket_end - bucket) - inside < inside:
                _append(kept, coarse, bucket, bucket_end)
                taken_out += [Segment(fine, a, b, -1) for a, b in ((bucket, position), (run_end, bucket_end)) if a < b]
            else:
                _append(kept, fine, position, run_end)
            position = run_end
    return kept + taken_out


def _append(out: list[Segment], source: str, start: datetime, end: datetime) -> None:
    if out and out[-1].source == source and out[-1].end == start and out[-1].sign > 0:
        out[-1] = Segment(source, out[-1].start, end)
    else:
        out.append(Segment(source, start, end))
