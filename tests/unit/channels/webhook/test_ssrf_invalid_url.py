"""Registration refuses what delivery cannot parse; delivery classifies it permanent (invalid_url)."""

from __future__ import annotations

import httpx
import pytest

from channels.webhook.http import classify_error
from channels.webhook.ssrf import BlockedDestination, check_url


@pytest.mark.parametrize(
    "url",
    [
        "http://0177.0.0.1/",
        "http://[::1/",
        "http://a\x00b.example.com/",
        "http://999.1.1.1/",
        "https://exa mple.com:99999/",
    ],
)
def test_registration_refuses_what_delivery_cannot_parse(url: str) -> None:
    with pytest.raises(BlockedDestination) as caught:
        check_url(url)
    assert caught.value.reason == "invalid_url"


def test_delivery_classifies_an_unparseable_url_as_permanent_invalid_url() -> None:
    with pytest.raises(httpx.InvalidURL) as raised:
        httpx.URL("http://0177.0.0.1/")
    code, failure = classify_error(raised.value)
    assert (code, failure.kind.value, failure.reason) == ("invalid_url", "failed_permanent", "invalid_url")
