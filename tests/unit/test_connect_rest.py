"""Which Connect answers mean "busy rebalancing, ask again"."""

from __future__ import annotations

import pytest
import requests

from fabric.connect.rest import _busy


def _response(status: int, body: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    return response


@pytest.mark.parametrize(
    ("status", "body", "busy"),
    [
        (409, '{"error_code":409,"message":"Cannot complete request momentarily"}', True),
        (
            500,
            '{"error_code":500,"message":"Request cannot be completed because a rebalance is '
            'expected"}',
            True,
        ),
        (500, '{"error_code":500,"message":"Failed to find any class that implements"}', False),
        (400, '{"error_code":400,"message":"Connector configuration is invalid"}', False),
        (200, "{}", False),
    ],
)
def test_only_rebalance_answers_are_retried(status: int, body: str, busy: bool) -> None:
    assert _busy(_response(status, body)) is busy
