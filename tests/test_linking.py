"""Reading what comes back from an OAuth consent: pasted text, state and error checks."""

from __future__ import annotations

import pytest

from car2mqtt.linking import LinkFailed, check_redirect, redirect_params, state_problem

STATE = "s" * 43


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"https://localhost/?code=abc&state={STATE}",
            {"code": "abc", "state": STATE},
        ),
        (f"  ?code=abc&state={STATE}\n", {"code": "abc", "state": STATE}),
        (f"code=abc&state={STATE}", {"code": "abc", "state": STATE}),
        ("abc123==", {"code": "abc123=="}),  # a bare code, padding and all
        ("", {}),
        ("two words", {}),
        (
            f"http://127.0.0.1:8765/callback?error=access_denied&state={STATE}",
            {"error": "access_denied", "state": STATE},
        ),
    ],
)
def test_redirect_params(text: str, expected: dict[str, str]) -> None:
    assert redirect_params(text) == expected


def test_state_must_be_present_and_equal() -> None:
    assert state_problem({"code": "c", "state": STATE}, STATE) is None
    assert state_problem({"code": "c"}, STATE) is not None
    assert state_problem({"code": "c", "state": ""}, STATE) is not None
    assert state_problem({"code": "c", "state": STATE[:-1] + "t"}, STATE) is not None


def test_check_redirect() -> None:
    assert check_redirect({"code": "c", "state": STATE}, STATE) == "c"
    assert check_redirect({"code": "c"}, None) == "c"  # a bare pasted code
    with pytest.raises(LinkFailed, match="state"):
        check_redirect({"code": "c"}, STATE)
    with pytest.raises(LinkFailed, match="access_denied"):
        check_redirect({"error": "access_denied", "state": STATE}, STATE)
    with pytest.raises(LinkFailed, match="no authorization code"):
        check_redirect({"state": STATE}, STATE)
