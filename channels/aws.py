"""AWS settings, one pooled aioboto3 client per process and service, and reading a ClientError once.

botocore's own retries are off: Herald's channel consumer retries in-process (briefly) and
the fallback consumer reschedules, so a provider fault is seen and classified exactly once.

:class:`~channels.aws_settings.AwsSettings` (re-exported here) is the one declaration of these
knobs: Herald's settings object nests it as ``HERALD_AWS__*``; it lives apart so that reading settings
imports no aioboto3.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
from aiohttp import ClientConnectorError
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ProxyConnectionError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError
from pydantic import SecretStr

from channels.aws_settings import AwsSettings
from channels.base import PERMANENT, RETRY, Failure, Outcome, RetryableDelivery

__all__ = ["AwsSettings", "call_classified", "classify", "error_code", "open_client"]


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


async def open_client(
    service: str, settings: AwsSettings, *, max_pool_connections: int = 64
) -> tuple[Any, AsyncExitStack]:
    """(client, stack): the client lives until ``await stack.aclose()``."""
    session = aioboto3.Session(
        aws_access_key_id=_reveal(settings.access_key_id),
        aws_secret_access_key=_reveal(settings.secret_access_key),
        region_name=settings.region,
    )
    config = Config(
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max_pool_connections,
    )
    stack = AsyncExitStack()
    client = await stack.enter_async_context(
        session.client(service, endpoint_url=settings.endpoint_url, config=config)
    )
    return client, stack


def error_code(exc: ClientError) -> tuple[str, int | None, str]:
    """(code, HTTP status, message) of a botocore ClientError."""
    err = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(err.get("Code") or "Unknown"), status, str(err.get("Message") or "")


log = logging.getLogger(__name__)


# Refused credentials, the same codes for every AWS service: our configuration, not the message.
# Retried as `provider_auth`, so the breaker opens and the next provider takes over instead of
# every message failing for good (a 4xx would otherwise read as the request's fault).
_CREDENTIAL_CODES: dict[str, Failure] = {
    code: Failure.retry("provider_auth")
    for code in (
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "AccessDenied",
        "AccessDeniedException",
    )
}


def classify(table: Mapping[str, Failure], code: str, status: int | None) -> Failure:
    """An AWS error code through a service's table, then the credential codes every service shares
    (retry, ``provider_auth``). Other codes: a 4xx other than 408/429 is the request's fault
    (permanent); 5xx, throttling and no status at all retry. Pure."""
    if code in table:
        return table[code]
    if code in _CREDENTIAL_CODES:
        return _CREDENTIAL_CODES[code]
    if status is not None and 400 <= status < 500 and status not in (408, 429):
        return PERMANENT
    return RETRY


async def call_classified(
    provider: str,
    call: Callable[..., Awaitable[dict[str, Any]]],
    params: dict[str, Any],
    *,
    table: Mapping[str, Failure],
) -> dict[str, Any] | Outcome:
    """Call an AWS API; a failure comes back as an Outcome classified through ``table``.

    A connection that could not be made (refused, TLS, connect timeout) is ``provider_unavailable``:
    nothing was sent, the next provider may take it. A timeout or broken connection once the
    request went out is ``provider_timeout``: the provider may have acted (the consumer resends
    it only where a duplicate beats a loss). Errors before any request (credentials, parameters)
    retry as ``provider_auth``/``provider_error``.
    """
    try:
        return await call(**params)
    except ClientError as exc:
        code, status, text = error_code(exc)
        failure = classify(table, code, status)
        if failure.retryable and code not in table and code not in _CREDENTIAL_CODES:
            log.warning("%s: unclassified error %s (HTTP %s): %s; retrying", provider, code, status, text)
        return failure.outcome(provider, code, text[:500])
    except (BotoCoreError, ResponseParserError, TimeoutError) as exc:
        return Outcome.from_error(
            RetryableDelivery(provider, type(exc).__name__, str(exc)[:500], reason=_no_answer(exc))
        )


def _no_answer(exc: BaseException) -> str:
    """Why no answer came back: whether the request can have reached the provider (docstring above).

    aiobotocore raises EndpointConnectionError for any aiohttp connection error, including a reset
    while waiting for the answer (after SES may have sent the mail): only a connection that was
    never made (aiohttp's ClientConnectorError, DNS) is a refusal; the rest may have been acted on.
    That includes a stale pooled connection: with no byte of answer, a server that closed it while
    idle and one that took the request and then closed look the same (docs/guarantees.md).
    """
    if isinstance(exc, ConnectTimeoutError | SSLError | ProxyConnectionError):
        return "provider_unavailable"
    if isinstance(exc, EndpointConnectionError) and isinstance(
        exc.kwargs.get("error"), ClientConnectorError | socket.gaierror
    ):
        return "provider_unavailable"
    if isinstance(exc, BotoConnectionError | HTTPClientError | ResponseParserError | TimeoutError):
        return "provider_timeout"
    return "provider_auth" if isinstance(exc, NoCredentialsError) else "provider_error"
