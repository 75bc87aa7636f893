"""``/v1/recipients/{id}``: identify (PUT replaces, PATCH merges), read, and erase (DELETE).

The id is the rest of the path (``{id:recipient_id}``): new ids may not contain ``/``
(:func:`~consumers.api.admin.recipient_models.check_new_id`), but one stored before that rule (by a
batch or an import), or a user id events named, must stay readable and erasable. The rest of the
path may not end in ``/``: ``DELETE /v1/recipients/u-42/`` would otherwise erase the (absent)
recipient ``u-42/`` and answer 200; unmatched, it gets the app's redirect to ``/v1/recipients/u-42``
as before, and ``/v1/recipients/`` a 404.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.convertors import Convertor, register_url_convertor

from consumers.api.admin.auth import Caller, require
from consumers.api.admin.body import json_body
from consumers.api.admin.context import AdminContext
from consumers.api.admin.keys import Scope
from consumers.api.admin.recipient_models import (
    ErasureOut,
    RecipientIn,
    RecipientOut,
    RecipientPatch,
    check_id,
    check_new_id,
)
from consumers.api.admin.recipients_bulk import BatchRow, parse_row, put_many
from consumers.api.admin.recipients_pg import RecipientStore
from consumers.api.deps import ApiContext, invalid
from consumers.api.problems import ProblemError, problem_responses

__all__ = ["check_properties", "router"]


class RecipientIdConvertor(Convertor[str]):
    """The rest of the path, ``/`` included, but not ending in one (see the module docstring)."""

    regex = ".*[^/]"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("recipient_id", RecipientIdConvertor())


def _admin(ctx: ApiContext) -> AdminContext:
    assert ctx.admin is not None  # the routes' auth dependency answered 503 otherwise
    return ctx.admin


Reader = Annotated[Caller, Depends(require(Scope.RECIPIENTS_READ))]
Writer = Annotated[Caller, Depends(require(Scope.RECIPIENTS_WRITE))]
RecipientId = Annotated[str, Path(description="The recipient's id (the events' user_id).", max_length=200)]


def _store(request: Request) -> RecipientStore:
    ctx: ApiContext = request.app.state.ctx
    return RecipientStore(ctx.pool)


def _checked_id(value: str, *, new: bool = False) -> str:
    why = check_new_id(value) if new else check_id(value)
    if why is not None:
        raise invalid(("path", "id"), why, "value_error")
    return value


def check_properties(props: dict[str, Any] | None, max_bytes: int, loc: tuple[str, ...]) -> None:
    if props is not None and len(json.dumps(props).encode()) > max_bytes:
        raise invalid(loc, f"properties over {max_bytes} bytes of JSON", "value_error.too_large")


class BatchIn(BaseModel, extra="forbid"):
    recipients: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=1000,
        description="Objects with `id` and the fields of PUT /v1/recipients/{id}.",
    )


# The body is read in the handler, after the key is checked (see consumers/api/admin/body.py).
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": BatchIn.model_json_schema()}},
    }
}


async def _batch_body(request: Request) -> BatchIn:
    raw = await json_body(request)
    try:
        return BatchIn.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


class BatchRowOut(BaseModel):
    index: int
    id: str | None
    status: str = Field(description="created, updated or invalid.")
    errors: list[dict[str, str]] | None = None


class BatchOut(BaseModel):
    results: list[BatchRowOut]


async def _batch(request: Request, caller: Caller, body: BatchIn) -> BatchOut:
    ctx: ApiContext = request.app.state.ctx
    out: list[BatchRowOut | None] = [None] * len(body.recipients)
    valid: list[tuple[int, BatchRow]] = []
    for i, raw in enumerate(body.recipients):
        parsed = parse_row(raw, _admin(ctx).settings.recipient_properties_max_bytes)
        if isinstance(parsed, BatchRow):
            valid.append((i, parsed))
        else:
            ident = raw.get("id")
            errors = [{"loc": e.loc, "msg": e.msg} for e in parsed]
            out[i] = BatchRowOut(
                index=i, id=ident if isinstance(ident, str) else None, status="invalid", errors=errors
            )
    if valid:
        async with ctx.pool.acquire() as conn:
            results = await put_many(conn, caller.tenant, [row for _, row in valid])
        for (i, _), res in zip(valid, results, strict=True):
            out[i] = BatchRowOut(index=i, id=res.id, status=res.status)
    return BatchOut(results=[r for r in out if r is not None])


def _not_found() -> ProblemError:
    return ProblemError(404, "no such recipient", kind="not-found")


def router() -> APIRouter:
    r = APIRouter(tags=["admin: recipients"], responses=problem_responses(401, 403, 422, 429, 503))

    @r.post(
        "/v1/recipients:batch",
        response_model=BatchOut,
        responses=problem_responses(413),
        openapi_extra=_BATCH_BODY,
    )
    async def batch_recipients(request: Request, caller: Writer) -> BatchOut:
        """Create or replace up to 1,000 recipients; each row answers created, updated or invalid."""
        return await _batch(request, caller, await _batch_body(request))

    @r.put("/v1/recipients/{id:recipient_id}", response_model=RecipientOut)
    async def put_recipient(
        request: Request, response: Response, id: RecipientId, body: RecipientIn, caller: Writer
    ) -> RecipientOut:
        """Create or replace a recipient (an absent field takes its default; preferences are replaced)."""
        ctx: ApiContext = request.app.state.ctx
        check_properties(
            body.properties, _admin(ctx).settings.recipient_properties_max_bytes, ("body", "properties")
        )
        out, created = await _store(request).put(caller.tenant, _checked_id(id, new=True), body)
        response.status_code = 201 if created else 200
        return out

    @r.patch(
        "/v1/recipients/{id:recipient_id}", response_model=RecipientOut, responses=problem_responses(404)
    )
    async def patch_recipient(
        request: Request, id: RecipientId, body: RecipientPatch, caller: Writer
    ) -> RecipientOut:
        """Merge fields into a recipient: properties merge key by key (null removes one)."""
        ctx: ApiContext = request.app.state.ctx
        check_properties(
            body.properties, _admin(ctx).settings.recipient_properties_max_bytes, ("body", "properties")
        )
        out = await _store(request).patch(caller.tenant, _checked_id(id), body)
        if out is None:
            raise _not_found()
        return out

    @r.get("/v1/recipients/{id:recipient_id}", response_model=RecipientOut, responses=problem_responses(404))
    async def get_recipient(request: Request, id: RecipientId, caller: Reader) -> RecipientOut:
        out = await _store(request).get(caller.tenant, _checked_id(id))
        if out is None:
            raise _not_found()
        return out

    @r.delete("/v1/recipients/{id:recipient_id}", response_model=ErasureOut)
    async def erase_recipient(request: Request, id: RecipientId, caller: Writer) -> ErasureOut:
        """Erase everything kept about the recipient in the caller's tenant: row, devices,
        preferences, inbox, pending steps (the same id in another tenant is untouched)."""
        removed = await _store(request).erase(caller.tenant, _checked_id(id))
        return ErasureOut(id=id, removed=removed)

    return r
