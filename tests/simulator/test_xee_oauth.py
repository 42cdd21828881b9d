"""The simulated Xee OAuth server: consent pages, grants, rotation, expiry, revocation."""

from __future__ import annotations

import httpx
import pytest

from tests.simulator.xee_support import REDIRECT, Xee, parse_form, query
from tests.support import running_sim


def _ask(xee: Xee, **overrides: str) -> httpx.Response:
    params = {
        "client_id": xee.client_auth[0],
        "response_type": "code",
        "scope": "account.read vehicles.read",
        "redirect_uri": REDIRECT,
        "state": "s t&a=te",
        **overrides,
    }
    return xee.authorize(**{k: v for k, v in params.items() if v != "-"})


# ---- the consent page ------------------------------------------------------------------------


def test_approve_redirects_with_code_and_state_verbatim(xee: Xee) -> None:
    page = _ask(xee)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    form = parse_form(page.text)
    assert form.hidden["redirect_uri"] == REDIRECT
    assert form.hidden["state"] == "s t&a=te"
    assert "Approve" in page.text
    assert "Deny" in page.text
    r = xee.submit(page, email=xee.username, password=xee.password, decision="approve")
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(REDIRECT + "?")
    params = query(location)
    assert params["state"] == "s t&a=te"
    assert len(params["code"]) >= 20
    token = xee.token_call(
        grant_type="authorization_code", code=params["code"], redirect_uri=REDIRECT
    )
    assert token.status_code == 200, token.text
    body = token.json()
    assert set(body) == {"access_token", "refresh_token", "expires_in", "scope", "token_type"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "account.read vehicles.read"
    assert xee.get("/users/me", body["access_token"]).json()["email"] == xee.username


def test_state_is_omitted_when_none_was_given(xee: Xee) -> None:
    page = _ask(xee, state="-")
    r = xee.submit(page, email=xee.username, password=xee.password, decision="approve")
    params = query(r.headers["location"])
    assert "state" not in params
    assert "code" in params


def test_deny_redirects_with_access_denied(xee: Xee) -> None:
    r = xee.submit(_ask(xee, state="abc"), decision="deny")
    assert r.status_code == 302
    assert query(r.headers["location"]) == {"error": "access_denied", "state": "abc"}


def test_wrong_password_shows_the_page_again(xee: Xee) -> None:
    page = _ask(xee)
    r = xee.submit(page, email=xee.username, password="nope", decision="approve")
    assert r.status_code == 200
    form = parse_form(r.text)
    assert "Wrong email or password" in form.error
    assert form.hidden["state"] == "s t&a=te"
    ok = xee.submit(r, email=xee.username, password=xee.password, decision="approve")
    assert ok.status_code == 302
    assert "code" in query(ok.headers["location"])


@pytest.mark.parametrize(
    "redirect_uri",
    ["https://evil.example/cb", "http://192.168.1.2:8123/cb", "-", "http://user@localhost/cb"],
)
def test_unregistered_redirect_uri_is_refused_without_redirect(xee: Xee, redirect_uri: str) -> None:
    r = _ask(xee, redirect_uri=redirect_uri)
    assert r.status_code == 400
    assert "location" not in r.headers
    assert "redirect_uri" in r.text
    # Posting the form by hand is refused the same way.
    post = xee.http.post(
        f"{xee.api}/oauth/authorize",
        data={
            "client_id": xee.client_auth[0],
            "response_type": "code",
            "redirect_uri": "https://evil.example/cb",
            "email": xee.username,
            "password": xee.password,
            "decision": "approve",
        },
    )
    assert post.status_code == 400
    assert "location" not in post.headers


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "http://localhost/cb",
        "http://localhost:9999/x/y",
        "http://127.0.0.1:1/",
        "https://localhost/",
    ],
)
def test_registered_redirect_uris(xee: Xee, redirect_uri: str) -> None:
    code = xee.consent(redirect_uri=redirect_uri)
    r = xee.token_call(grant_type="authorization_code", code=code, redirect_uri=redirect_uri)
    assert r.status_code == 200


def test_unknown_client_is_refused(xee: Xee) -> None:
    r = _ask(xee, client_id="someone-else")
    assert r.status_code == 400
    assert "location" not in r.headers


def test_unsupported_response_type_redirects_with_error(xee: Xee) -> None:
    r = _ask(xee, response_type="token", state="q")
    assert r.status_code == 302
    assert query(r.headers["location"]) == {"error": "unsupported_response_type", "state": "q"}


# ---- the token endpoint ----------------------------------------------------------------------


def test_code_is_single_use(xee: Xee) -> None:
    code = xee.consent()
    first = xee.token_call(grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert first.status_code == 200
    again = xee.token_call(grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_code_expires_after_ten_minutes(xee: Xee) -> None:
    code = xee.consent()
    xee.sim.advance(601)
    r = xee.token_call(grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


def test_redirect_uri_must_match_the_authorize_one(xee: Xee) -> None:
    code = xee.consent()
    r = xee.token_call(
        grant_type="authorization_code", code=code, redirect_uri="http://localhost/other"
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"
    missing = xee.token_call(grant_type="authorization_code", code=code)
    assert missing.status_code == 400
    assert missing.json()["error"] == "invalid_request"


def test_client_must_authenticate_with_basic(xee: Xee) -> None:
    form = {"grant_type": "password", "username": xee.username, "password": xee.password}
    for auth in [("car2mqtt-xee-client", "wrong"), ("other", "car2mqtt-xee-secret")]:
        r = xee.token_call(auth=auth, **form)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "invalid_client"
        assert r.json()["error_description"]
    # Credentials in the form instead of Basic do not count.
    bare = httpx.post(
        f"{xee.api}/oauth/token",
        data={**form, "client_id": xee.client_auth[0], "client_secret": xee.client_auth[1]},
    )
    assert bare.status_code == 401
    assert bare.json()["error"] == "invalid_client"
    garbled = httpx.post(
        f"{xee.api}/oauth/token", data=form, headers={"Authorization": "Basic !!!"}
    )
    assert garbled.status_code == 401


def test_password_grant(xee: Xee) -> None:
    pair = xee.login()
    assert pair["token_type"] == "bearer"
    assert "vehicles.read" in pair["scope"]
    wrong = xee.token_call(grant_type="password", username=xee.username, password="bad")
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    scoped = xee.token_call(
        grant_type="password", username=xee.username, password=xee.password, scope="account.read"
    )
    assert scoped.json()["scope"] == "account.read"


def test_unsupported_and_incomplete_grants(xee: Xee) -> None:
    r = xee.token_call(grant_type="client_credentials")
    assert r.status_code == 400
    assert r.json()["error"] == "unsupported_grant_type"
    for form in [{}, {"grant_type": "password", "username": "x"}, {"grant_type": "refresh_token"}]:
        r = xee.token_call(**form)
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_request"


# ---- refresh rotation ------------------------------------------------------------------------


def test_rotation_over_many_refreshes(xee: Xee) -> None:
    pair = xee.login()
    seen = {pair["refresh_token"]}
    for _ in range(12):
        xee.sim.advance(3000)
        old = pair
        r = xee.refresh(old["refresh_token"])
        assert r.status_code == 200, r.text
        pair = r.json()
        assert pair["refresh_token"] not in seen
        seen.add(pair["refresh_token"])
        assert xee.get("/users/me", pair["access_token"]).status_code == 200
        # The new pair was used: the old refresh token is dead.
        dead = xee.refresh(old["refresh_token"])
        assert dead.status_code == 400
        assert dead.json()["error"] == "invalid_request"
        assert dead.json()["error_description"]


def test_grace_replay_returns_the_same_pair(xee: Xee) -> None:
    first = xee.login()
    new = xee.refresh(first["refresh_token"])
    assert new.status_code == 200
    replay = xee.refresh(first["refresh_token"])
    assert replay.status_code == 200
    assert replay.json() == new.json()
    xee.sim.advance(30)
    assert xee.refresh(first["refresh_token"]).json() == new.json()


def test_grace_runs_out(xee: Xee) -> None:
    first = xee.login()
    assert xee.refresh(first["refresh_token"]).status_code == 200
    xee.sim.advance(60)
    r = xee.refresh(first["refresh_token"])
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_old_refresh_token_dies_when_the_new_one_is_used(xee: Xee) -> None:
    first = xee.login()
    second = xee.refresh(first["refresh_token"]).json()
    third = xee.refresh(second["refresh_token"])
    assert third.status_code == 200
    assert xee.refresh(first["refresh_token"]).status_code == 400
    # The old access token lives on until it expires.
    assert xee.get("/users/me", first["access_token"]).status_code == 200


def test_grace_zero_is_strict() -> None:
    with running_sim(xee_refresh_grace_s=0) as sim:
        xee = Xee(sim)
        first = xee.login()
        assert xee.refresh(first["refresh_token"]).status_code == 200
        r = xee.refresh(first["refresh_token"])
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_request"
        xee.close()


def test_refresh_tokens_expire() -> None:
    with running_sim(xee_refresh_ttl_s=7200) as sim:
        xee = Xee(sim)
        pair = xee.login()
        sim.advance(7200)
        r = xee.refresh(pair["refresh_token"])
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_request"
        xee.close()


# ---- access tokens ---------------------------------------------------------------------------


def test_token_expired(xee: Xee) -> None:
    pair = xee.login()
    xee.sim.advance(3599)
    assert xee.get("/users/me", pair["access_token"]).status_code == 200
    xee.sim.advance(1)
    r = xee.get("/users/me", pair["access_token"])
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "token_expired", "error_description": "Token has expired"}
    fresh = xee.refresh(pair["refresh_token"])
    assert xee.get("/users/me", fresh.json()["access_token"]).status_code == 200


def test_early_expiry() -> None:
    with running_sim(xee_early_expiry_s=600, xee_token_ttl_s=1800) as sim:
        xee = Xee(sim)
        pair = xee.login()
        assert pair["expires_in"] == 1800
        assert sim.info["xee"]["tokenTtlS"] == 1800
        sim.advance(1199)
        assert xee.get("/users/me", pair["access_token"]).status_code == 200
        sim.advance(1)
        assert xee.get("/users/me", pair["access_token"]).json()["error"] == "token_expired"
        xee.close()


def test_missing_or_unknown_token(xee: Xee) -> None:
    r = xee.http.get(f"{xee.api}/users/me")
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_token"
    assert xee.get("/users/me", "nope").json()["error"] == "invalid_token"


def test_revoke(xee: Xee) -> None:
    pair = xee.login()
    r = xee.http.post(
        f"{xee.api}/oauth/revoke", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert r.status_code == 204
    assert xee.get("/users/me", pair["access_token"]).json()["error"] == "invalid_token"
    assert xee.refresh(pair["refresh_token"]).json()["error"] == "invalid_request"
    again = xee.http.post(
        f"{xee.api}/oauth/revoke", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert again.status_code == 401


def test_suspended_account(xee: Xee) -> None:
    pair = xee.login()
    r = xee.admin("POST", f"/users/{xee.user_id}/suspend")
    assert r.status_code == 200
    assert r.json()["suspended"] is True
    api = xee.get("/users/me", pair["access_token"])
    assert api.status_code == 403
    assert api.json()["error"] == "account_suspended"
    for grant in [
        xee.refresh(pair["refresh_token"]),
        xee.token_call(grant_type="password", username=xee.username, password=xee.password),
    ]:
        assert grant.status_code == 400
        assert grant.json() == {"error": "invalid_grant", "error_description": "account suspended"}
    code = xee.consent()
    exchanged = xee.token_call(grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert exchanged.json()["error_description"] == "account suspended"
    assert xee.admin("POST", f"/users/{xee.user_id}/unsuspend").status_code == 200
    assert xee.get("/users/me", pair["access_token"]).status_code == 200


def test_admin_revokes_refresh_tokens_of_a_user(xee: Xee) -> None:
    pair = xee.login()
    r = xee.admin("POST", f"/users/{xee.user_id}/revoke-refresh-tokens")
    assert r.status_code == 200
    assert r.json()["revoked"] == 1
    assert xee.refresh(pair["refresh_token"]).json()["error"] == "invalid_request"
    assert xee.get("/users/me", pair["access_token"]).status_code == 200
    assert xee.admin("POST", "/users/nobody/revoke-refresh-tokens").status_code == 404


def test_admin_revokes_every_token(xee: Xee) -> None:
    pair = xee.login()
    r = xee.admin("POST", "/tokens/revoke")
    assert r.status_code == 200
    assert r.json()["revoked"] == 2
    assert xee.get("/users/me", pair["access_token"]).json()["error"] == "invalid_token"
    assert xee.refresh(pair["refresh_token"]).status_code == 400


def test_admin_creates_users(xee: Xee) -> None:
    r = xee.admin("POST", "/users", {"email": "second@xee.example", "password": "pw"})
    assert r.status_code == 201
    user = r.json()
    pair = xee.login("second@xee.example", "pw")
    assert xee.get("/users/me", pair["access_token"]).json()["id"] == user["id"]
    assert xee.get("/users/me/vehicles", pair["access_token"]).json() == []
    dup = xee.admin("POST", "/users", {"email": "SECOND@xee.example", "password": "x"})
    assert dup.status_code == 409
    bad = xee.admin("POST", "/users", {"email": "not-an-email", "password": "x"})
    assert bad.status_code == 400
    assert "email" in bad.json()["error"]
