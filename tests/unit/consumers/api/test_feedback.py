"""When ``herald run api`` warns that SES feedback is off: only with an SES configuration set."""

from __future__ import annotations

from consumers.api.feedback import ses_feedback_warning
from consumers.infra.provider_settings import FeedbackSettings

ARN = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"


def test_warns_only_when_a_configuration_set_sends_feedback_nobody_accepts() -> None:
    off, on = FeedbackSettings(), FeedbackSettings(sns_topic_arns=[ARN])
    warning = ses_feedback_warning("herald-prod", off)
    assert warning is not None and "HERALD_PROVIDERS__FEEDBACK__SNS_TOPIC_ARNS" in warning
    assert "herald-prod" in warning
    assert ses_feedback_warning(None, off) is None  # no configuration set: SES sends no events
    assert ses_feedback_warning("herald-prod", on) is None
