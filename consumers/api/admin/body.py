"""A request body read as JSON inside a handler, answering 422 as FastAPI does for a declared body.

The admin routes read their body themselves, after the key is checked: a declared body parameter
is read and parsed by FastAPI before any dependency runs, so anyone could make us parse 8 MiB of JSON.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError

__all__ = ["json_body"]


async def json_body(request: Request) -> Any:
    """The body parsed as JSON (any JSON value: the caller validates its shape); 422 at ``body``
    (``json_invalid``) when it is not JSON."""
    try:
        return json.loads(await request.body())
    except ValueError:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": "not JSON", "type": "json_invalid"}]
        ) from None
