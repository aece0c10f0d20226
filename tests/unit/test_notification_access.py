"""The recipients configuration refuses a webhook that would carry notices in the clear:
https only, plain http to the machine itself (loopback) alone, which the embedded network
and the tests use (docs/notifications.md)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.notification.domain.recipients import Recipients


def with_webhook(url: str) -> Recipients:
    return Recipients.model_validate({"institutions": {"dgaspc-bc": {"webhook": url}}})


@pytest.mark.parametrize("url", [
    "https://sistem.dgaspc-bc.example.invalid/punte", "https://10.0.0.5:8443/hook",
    "http://127.0.0.1:9/punte", "http://127.3.4.5/punte", "http://localhost:8080/x", "http://[::1]:9/punte",
])
def test_https_and_loopback_http_are_accepted(url):
    assert with_webhook(url).institutions["dgaspc-bc"].webhook == url


@pytest.mark.parametrize("url", [
    "http://sistem.dgaspc-bc.example.invalid/punte", "http://10.0.0.5/hook", "http://127.0.0.1.example.invalid/x",
    "http://localhost.example.invalid/x", "ftp://127.0.0.1/x", "https:///no-host", "//127.0.0.1/x",
    "http://[::2]/x", "https://host name/x",
])
def test_anything_else_is_refused_at_start_with_a_clear_error(url):
    with pytest.raises(ValidationError) as refused:
        with_webhook(url)
    message = str(refused.value)
    assert "dgaspc-bc" in message and "webhook" in message and "https" in message
    assert url not in message  # a URL may carry a secret token
