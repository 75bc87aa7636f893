"""The httpx errors that mean a request never left, for adapters that must not resend blindly.

A refusal before any byte of the request was sent (no connection, a proxy refusing the tunnel, a
URL httpx cannot send) cannot have been acted on by the provider, so the message may go to the
next provider at once (``provider_unavailable``). Every other transport error or timeout may come
after the provider got the request and stays ambiguous (``provider_timeout``). Webhooks do not use
this: they resend under the same ``webhook-id`` whatever the error.
"""

from __future__ import annotations

import httpx

__all__ = ["REFUSED_BEFORE_SENDING"]

REFUSED_BEFORE_SENDING: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)
