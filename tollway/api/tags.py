"""`/api/governance/tags`: the limits of request tags (SPEC §8 ``governance.tags``).

A tag is named by its normalised name (`tollway.governance.tags`), which is also its id
in paths: ``GET /api/governance/tags/finance`` (paths take the normalised name as it is). Its budget, rate limit and concurrency
limit are shared by every request carrying the tag, whichever key sends it. Tags need no
row to be used: a row is what gives one limits.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from tollway.api.context import RESET_USAGE, ApiWriter, PageDep, RuntimeDep, partial_update
from tollway.api.entity_routes import EntityRoutes
from tollway.api.limits import LiveUsage, iso, update_limits
from tollway.api.responses import TagEnvelope, TagList
from tollway.api.schemas import TagCreate, TagUpdate
from tollway.store.tables import Tag

router = APIRouter(prefix="/api/governance/tags", tags=["tags"])

KIND = "tag"


def tag_view(row: Tag, live: LiveUsage) -> dict[str, Any]:
    return {"id": row.id, "name": row.id, "budget": live.budget(row.budget), "rate_limit": live.rate_limit(row.rate_limit),
            "concurrency": live.concurrency(row.concurrency), "managed_by": row.managed_by,
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at)}


TAGS = EntityRoutes(Tag, KIND, param="tag", view=tag_view, envelope_model=TagEnvelope, searched=(Tag.id,))


@router.get("", response_model=TagList, summary="List tags with limits")
async def list_tags(
    runtime: RuntimeDep, page: PageDep,
    search: Annotated[str | None, Query(description="Case-insensitive part of the tag's name.")] = None,
) -> dict[str, Any]:
    return await TAGS.page(runtime, page, select(Tag), search)


@router.post("", status_code=201, response_model=TagEnvelope, summary="Give a tag limits")
async def create_tag(body: TagCreate, runtime: RuntimeDep) -> dict[str, Any]:
    def write(writer: ApiWriter) -> Tag:
        TAGS.check_new(writer.session, body.name)
        row, diff = TAGS.insert(writer, {"id": body.name}, {}, body)
        writer.record(row, KIND, body.name, diff)
        return row

    return await TAGS.changed(runtime, "tag created", write)


TAGS.add_get(router, "get_tag")


@partial_update(router, "/{tag}", response_model=TagEnvelope, summary="Change a tag's limits (partial)")
async def update_tag(tag: str, body: TagUpdate, runtime: RuntimeDep,
                     reset_usage: Annotated[bool, RESET_USAGE] = False) -> dict[str, Any]:
    def write(writer: ApiWriter) -> Tag:
        row = TAGS.load_to_change(writer.session, tag)
        diff: dict[str, Any] = {}
        update_limits(writer, row, body, diff, reset_usage=reset_usage)
        writer.record(row, KIND, tag, diff)
        return row

    return await TAGS.changed(runtime, "tag updated", write)


TAGS.add_delete(router, "delete_tag", "Deletes the tag's limits (their usage is retained: limits given to the "
                "tag again within the window take it back). Requests may still carry the tag.")
TAGS.add_resets(router)
