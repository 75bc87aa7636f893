"""``python -m consumers.devstack.s3_store PORT``: moto's S3, alone, for the S3-backed broker.

tansu's S3 engine makes a dozen store requests per produce/fetch/heartbeat, and lists every batch
of a partition twice per fetch that returns records. ``moto_server`` spends most of that outside
S3's data: a soak profile (py-spy, 20 s) put 19 % of its CPU in the service dispatcher (every AWS
service's URL patterns matched under one lock, per request), 18 % in the request log line, and
25 % in listings, most of it moto's generic response serializer (a timestamp formatted, parsed
and formatted again per key). This serves moto's S3 backend app without the dispatcher and the
log, and answers a plain ListObjectsV2 (pages included) straight from the bucket
(:class:`FastList`); anything else (a delimiter, owners) goes to moto as before. The SES/SNS
moto stays a plain ``moto_server`` (tests read it back whole).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, quote
from xml.sax.saxutils import escape

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.core.utils import iso_8601_datetime_without_milliseconds_s3
from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from moto.s3.models import FakeKey, s3_backends
from werkzeug.serving import run_simple

__all__ = ["FastList", "QuietHandler", "main"]

# What FastList answers (all tansu and the retention ask); anything else goes to moto.
_PLAIN = {"list-type", "prefix", "max-keys", "encoding-type", "continuation-token", "start-after"}
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
_QUOT = {'"': "&quot;"}  # ETags are quoted


def list_xml(
    bucket: str,
    prefix: str,
    max_keys: int,
    url_encoded: bool,
    keys: list[FakeKey],
    *,
    next_token: str | None = None,
) -> bytes:
    """A ListObjectsV2 page (``keys`` sorted, at most ``max_keys``) as S3 writes it; ``next_token``:
    more follow (S3's tokens are opaque: this one is the last key of the page)."""

    def name(text: str) -> str:
        return escape(quote(text, safe="/") if url_encoded else text)

    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="{_XMLNS}">',
        f"<Name>{escape(bucket)}</Name><Prefix>{name(prefix)}</Prefix><MaxKeys>{max_keys}</MaxKeys>",
        f"<KeyCount>{len(keys)}</KeyCount><IsTruncated>{'true' if next_token else 'false'}</IsTruncated>",
        f"<NextContinuationToken>{escape(next_token)}</NextContinuationToken>" if next_token else "",
        "<EncodingType>url</EncodingType>" if url_encoded else "",
    ]
    for k in keys:
        parts.append(
            f"<Contents><Key>{name(k.name)}</Key>"
            f"<LastModified>{iso_8601_datetime_without_milliseconds_s3(k.last_modified)}</LastModified>"
            f"<ETag>{escape(k.etag, _QUOT)}</ETag><Size>{k.size}</Size>"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


def _readable(key: FakeKey) -> bool:
    """Its ETag can be had (computed once and cached by moto): False for a key deleted while it
    was being listed, whose content moto has already closed (the listing answered 500 once)."""
    try:
        return bool(key.etag)
    except ValueError:
        return False


class FastList:
    """WSGI middleware: ``GET /<bucket>?list-type=2[&prefix][&max-keys][&encoding-type=url]
    [&continuation-token|&start-after]`` answered from moto's bucket without its serializer (a
    listing of a few hundred batches costs ~1 ms instead of tens to hundreds, and a partition past
    a page does not fall off a cliff); every other request goes to ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        body = self._listing(environ)
        if body is None:
            return self.app(environ, start)
        start("200 OK", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]

    def _listing(self, environ: dict[str, Any]) -> bytes | None:
        bucket_name = environ.get("PATH_INFO", "").strip("/")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if environ.get("REQUEST_METHOD") != "GET" or not bucket_name or "/" in bucket_name:
            return None
        if query.get("list-type") != ["2"] or not set(query) <= _PLAIN:
            return None
        bucket = self.backend.buckets.get(bucket_name)
        encoding = query.get("encoding-type", [""])[0]
        if bucket is None or encoding not in ("", "url"):
            return None
        prefix = query.get("prefix", [""])[0]
        max_keys = int(query.get("max-keys", ["1000"])[0])
        after = query.get("continuation-token", query.get("start-after", [""]))[0]
        # list(): one atomic copy of the names (the broker writes and the retention deletes meanwhile)
        names = sorted(n for n in list(bucket.keys) if n.startswith(prefix) and n > after)
        page, more = names[:max_keys], len(names) > max_keys
        # Deleted meanwhile (the broker's retention deletes while tansu lists): gone from the answer.
        keys = [k for n in page if isinstance(k := bucket.keys.get(n), FakeKey) and _readable(k)]
        return list_xml(
            bucket_name, prefix, max_keys, encoding == "url", keys, next_token=page[-1] if more else None
        )


class QuietHandler(MotoRequestHandler):
    """No line per request: the broker's store answers tens of requests a second."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return

    def log(self, type: str, message: str, *args: Any) -> None:
        if type == "error":  # a failing request is still worth a line
            super().log(type, message, *args)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    port = int(args[0])
    host = args[1] if len(args) > 1 else "127.0.0.1"
    app = FastList(create_backend_app("s3"))
    run_simple(host, port, app, threaded=True, request_handler=QuietHandler)


if __name__ == "__main__":
    main()
