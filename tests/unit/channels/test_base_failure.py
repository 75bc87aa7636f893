"""The adapters' one failure vocabulary: what a Failure row turns into as an Outcome."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.base import (
    PERMANENT,
    RETRY,
    Failure,
    FailureKind,
    Outcome,
    PermanentDelivery,
    RetryableDelivery,
)


@pytest.mark.parametrize(
    ("failure", "code", "expected"),
    [
        (PERMANENT, "MessageRejected", ("failed_permanent", "provider_messagerejected", None)),
        (RETRY, "Throttling", ("failed_retryable", "provider_throttling", None)),
        (RETRY, None, ("failed_retryable", "provider_error", None)),
        (
            Failure.permanent("unregistered", gone=True),
            "UNREGISTERED",
            ("failed_permanent", "unregistered", None),
        ),
        (Failure.retry("http_429").with_retry_after(30.0), "429", ("failed_retryable", "http_429", 30.0)),
        (
            Failure.retry("unauthenticated", reauth=True),
            "UNAUTHENTICATED",
            ("failed_retryable", "unauthenticated", None),
        ),
    ],
)
def test_outcome_of_a_failure(
    failure: Failure, code: str | None, expected: tuple[str, str, float | None]
) -> None:
    outcome = failure.outcome("p", code, "what the provider said")
    assert (outcome.status, outcome.reason, outcome.retry_after) == expected
    assert (outcome.provider, outcome.provider_code, outcome.detail) == ("p", code, "what the provider said")
    assert not outcome.ok


def test_the_kind_is_the_outcome_status() -> None:
    assert {k.value for k in FailureKind} == {"failed_retryable", "failed_permanent"}
    assert RETRY.retryable and not PERMANENT.retryable
    assert Failure.permanent(gone=True).gone and Failure.retry(reauth=True).reauth


@given(
    code=st.one_of(st.none(), st.text(max_size=20)),
    detail=st.text(max_size=20),
    reason=st.none() | st.text(min_size=1, max_size=10),
)
def test_a_table_row_and_a_raised_error_give_the_same_outcome(
    code: str | None, detail: str, reason: str | None
) -> None:
    assert Failure.retry(reason).outcome("p", code, detail) == Outcome.from_error(
        RetryableDelivery("p", code, detail, reason=reason)
    )
    assert Failure.permanent(reason).outcome("p", code, detail) == Outcome.from_error(
        PermanentDelivery("p", code, detail, reason=reason)
    )
