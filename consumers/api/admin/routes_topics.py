"""``/v1/topics/{key}``: broadcast groups. Create or rename (PUT), read, delete; subscribe and
unsubscribe in batches of up to 1,000; list subscribers a page at a time (keyset on user id)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from consumers.api.admin.auth import Caller, require
from consumers.api.admin.keys import Scope
from consumers.api.admin.recipient_models import check_id
from consumers.api.admin.topics_pg import SubscriberPage, SubscribersIn, TopicIn, TopicOut, TopicStore
from consumers.api.deps import ApiContext, invalid
from consumers.api.problems import ProblemError, problem_responses

__all__ = ["router"]

Writer = Annotated[Caller, Depends(require(Scope.TOPICS_WRITE))]
TopicKey = Annotated[str, Path(description="The topic's key, e.g. `project:42:watchers`.", max_length=200)]


def _store(request: Request) -> TopicStore:
    ctx: ApiContext = request.app.state.ctx
    return TopicStore(ctx.pool)


def _key(value: str) -> str:
    why = check_id(value)
    if why is not None:
        raise invalid(("path", "key"), why, "value_error")
    return value


def _ids(body: SubscribersIn) -> list[str]:
    for i, uid in enumerate(body.user_ids):
        why = check_id(uid)
        if why is not None:
            raise invalid(("body", "user_ids", str(i)), why, "value_error")
    return body.user_ids


def _cursor(after: str) -> str:
    """A page cursor is the last user id seen: the same rules as any user id (or empty)."""
    why = check_id(after) if after else None
    if why is not None:
        raise invalid(("query", "after"), why, "value_error")
    return after


def _no_topic() -> ProblemError:
    return ProblemError(404, "no such topic", kind="not-found")


def router() -> APIRouter:
    r = APIRouter(tags=["admin: topics"], responses=problem_responses(401, 403, 404, 422, 429, 503))

    @r.put("/v1/topics/{key}", response_model=TopicOut)
    async def put_topic(
        request: Request, response: Response, key: TopicKey, body: TopicIn, caller: Writer
    ) -> TopicOut:
        store = _store(request)
        created = await store.put(caller.tenant, _key(key), body.name)
        response.status_code = 201 if created else 200
        out = await store.get(caller.tenant, key)
        assert out is not None
        return out

    @r.get("/v1/topics/{key}", response_model=TopicOut)
    async def get_topic(request: Request, key: TopicKey, caller: Writer) -> TopicOut:
        out = await _store(request).get(caller.tenant, _key(key))
        if out is None:
            raise _no_topic()
        return out

    @r.delete("/v1/topics/{key}", status_code=204)
    async def delete_topic(request: Request, key: TopicKey, caller: Writer) -> Response:
        if not await _store(request).delete(caller.tenant, _key(key)):
            raise _no_topic()
        return Response(status_code=204)

    @r.post("/v1/topics/{key}/subscribers")
    async def subscribe(
        request: Request, key: TopicKey, body: SubscribersIn, caller: Writer
    ) -> dict[str, int]:
        """Subscribe up to 1,000 user ids (already subscribed ones are left as they are)."""
        added = await _store(request).add(caller.tenant, _key(key), _ids(body))
        if added is None:
            raise _no_topic()
        return {"added": added}

    @r.delete("/v1/topics/{key}/subscribers")
    async def unsubscribe(
        request: Request, key: TopicKey, body: SubscribersIn, caller: Writer
    ) -> dict[str, int]:
        removed = await _store(request).remove(caller.tenant, _key(key), _ids(body))
        if removed is None:
            raise _no_topic()
        return {"removed": removed}

    @r.get("/v1/topics/{key}/subscribers", response_model=SubscriberPage)
    async def list_subscribers(
        request: Request,
        key: TopicKey,
        caller: Writer,
        after: Annotated[str, Query(max_length=200, description="The previous page's next_cursor.")] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> SubscriberPage:
        store = _store(request)
        if await store.get(caller.tenant, _key(key)) is None:
            raise _no_topic()
        ids = await store.page(caller.tenant, key, _cursor(after), limit)
        return SubscriberPage(user_ids=ids, next_cursor=ids[-1] if len(ids) == limit else None)

    return r
