"""The access log never shows a sign-in token."""

import logging

from api.redact import RedactTokens


def test_token_in_access_log_is_masked():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/login?token=lrt_secret123&next=/", "1.1", 303),
        None,
    )
    assert RedactTokens().filter(record)
    message = record.getMessage()
    assert "lrt_secret123" not in message
    assert "/login?token=***&next=/" in message
