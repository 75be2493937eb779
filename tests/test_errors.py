"""The error catalogue: every code of spec/error-codes.txt, with its status, and nothing invented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conduit.platform.errors import CATALOGUE, ConduitError, validation_error

SPEC_CATALOGUE = Path(__file__).resolve().parents[2] / "shared" / "spec" / "error-codes.txt"
EXTENSIONS = {"EMAIL_IN_USE": 409, "INTERNAL_ERROR": 500, "SITE_UNAVAILABLE": 503, "BILLING_UNAVAILABLE": 503, "AGENT_INACTIVE": 409, "IDEMPOTENCY_KEY_REUSED": 409}


def spec_codes() -> dict[str, int]:
    rows = re.findall(r"^([A-Z_]+) \| (\d{3}) \|", SPEC_CATALOGUE.read_text(), flags=re.MULTILINE)
    return {code: int(status) for code, status in rows}


@pytest.mark.skipif(not SPEC_CATALOGUE.exists(), reason="the spec folder is not beside this checkout")
def test_catalogue_is_exactly_the_spec_plus_extensions():
    expected = {**spec_codes(), **EXTENSIONS}
    assert len(spec_codes()) == 40  # the catalogue parsed whole
    assert {code: entry.status for code, entry in CATALOGUE.items()} == expected


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_code_has_the_error_body_shape(code):
    error = ConduitError(code)
    assert error.body() == {"error": CATALOGUE[code].message, "code": code, "statusCode": CATALOGUE[code].status}
    assert error.status == CATALOGUE[code].status


def test_message_details_and_headers_are_carried():
    error = ConduitError("RATE_LIMITED", "slow down", headers={"Retry-After": "3"})
    assert error.body() == {"error": "slow down", "code": "RATE_LIMITED", "statusCode": 429}
    assert error.headers == {"Retry-After": "3"}
    assert validation_error("limit", "must be positive").body() == {
        "error": "Invalid limit: must be positive",
        "code": "VALIDATION_ERROR",
        "statusCode": 400,
        "details": [{"field": "limit", "message": "must be positive"}],
    }


def test_an_unknown_code_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown error code"):
        ConduitError("NOT_A_CODE")
