"""The broker's S3 store answers a listing exactly as moto's own S3 app does (botocore reads both)."""

from __future__ import annotations

import uuid
from typing import Any
from xml.etree import ElementTree

import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import create_backend_app
from moto.s3.models import s3_backends
from werkzeug.test import Client

from consumers.devstack.s3_store import FastList

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@pytest.fixture
def bucket() -> Any:
    name = f"tansu-{uuid.uuid4().hex[:8]}"
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(name, "us-east-1")
    for i in range(30):
        key = f"clusters/c/topics/t/partitions/{i % 2:010}/records/{i:020}.batch"
        backend.put_object(name, key, b"x" * i)
    backend.put_object(name, "clusters/c/groups/consumers/g a&b<1>.json", b"{}")
    backend.delete_object(name, f"clusters/c/topics/t/partitions/{0:010}/records/{0:020}.batch")
    yield name
    for key in list(backend.get_bucket(name).keys):
        backend.delete_object(name, key)
    backend.delete_bucket(name)


def _listing(
    client: Client, bucket: str, query: str
) -> tuple[int, list[tuple[str | None, ...]], dict[str, str]]:
    response = client.get(f"/{bucket}?{query}")
    root = ElementTree.fromstring(response.data)
    contents = [
        tuple(c.findtext(NS + f) for f in ("Key", "LastModified", "ETag", "Size"))
        for c in root.iter(NS + "Contents")
    ]
    head = {f: root.findtext(NS + f) or "" for f in ("Name", "Prefix", "KeyCount", "IsTruncated", "MaxKeys")}
    return response.status_code, contents, head


@pytest.mark.parametrize(
    "query",
    [
        "list-type=2&prefix=clusters/c/topics/t/partitions/0000000001/records/",
        "list-type=2&prefix=clusters/c/topics/t/partitions/0000000000/records/",
        "list-type=2&prefix=clusters/",
        "list-type=2&prefix=clusters/&encoding-type=url",
        "list-type=2&prefix=nothing/",
        "list-type=2",
        "list-type=2&prefix=clusters/&max-keys=7",  # the first of several pages
        "list-type=2&prefix=clusters/&start-after=clusters/c/topics/t/partitions/0000000001/",
        "list-type=2&prefix=clusters/&delimiter=/",  # not a plain listing: moto's own answer
    ],
)
def test_a_listing_is_the_one_moto_gives(bucket: str, query: str) -> None:
    moto_app = create_backend_app("s3")
    ours = _listing(Client(FastList(moto_app)), bucket, query)
    theirs = _listing(Client(moto_app), bucket, query)
    assert ours == theirs
    assert ours[0] == 200


def test_it_answers_a_plain_listing_itself(bucket: str) -> None:
    def refuse(environ: dict[str, Any], start: Any) -> list[bytes]:
        raise AssertionError(f"passed to moto: {environ['QUERY_STRING']}")

    status, contents, head = _listing(Client(FastList(refuse)), bucket, "list-type=2&prefix=clusters/c/")
    assert status == 200
    assert head["KeyCount"] == "30" == str(len(contents))  # 30 batches, one deleted, one group file
    assert [c[0] for c in contents] == sorted(c[0] or "" for c in contents)


def test_a_key_deleted_while_it_is_listed_is_left_out(bucket: str) -> None:
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    key = backend.get_bucket(bucket).keys[
        "clusters/c/topics/t/partitions/0000000001/records/00000000000000000001.batch"
    ]
    key.dispose()  # what moto's delete does to the content (a listing raced with it)
    key._etag = None
    status, contents, _ = _listing(
        Client(FastList(create_backend_app("s3"))), bucket, "list-type=2&prefix=clusters/"
    )
    assert status == 200
    assert key.name not in [c[0] for c in contents]


def test_pages_follow_their_tokens_to_the_whole_listing(bucket: str) -> None:
    def pages(client: Client) -> list[str]:
        names: list[str] = []
        token = ""
        while True:
            query = "list-type=2&prefix=clusters/&max-keys=4" + (
                f"&continuation-token={token}" if token else ""
            )
            root = ElementTree.fromstring(client.get(f"/{bucket}?{query}").data)
            names += [k.text or "" for k in root.iter(NS + "Key")]
            token = root.findtext(NS + "NextContinuationToken") or ""
            if root.findtext(NS + "IsTruncated") != "true":
                return names

    moto_app = create_backend_app("s3")
    ours = pages(Client(FastList(moto_app)))
    assert ours == pages(Client(moto_app))
    assert len(ours) == 30
