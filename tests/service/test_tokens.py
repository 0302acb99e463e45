"""Tokens: list and revoke them, no silent second token, and sign-in links that cannot
sign a visitor in unasked (login CSRF)."""

from __future__ import annotations

import uuid

import pytest

from store.db import session_scope
from store.tokens import (
    TokenExists,
    create_token_cli,
    list_tokens_cli,
    revoke_token_cli,
    tokens_of,
)


def me(client, token: str):
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def test_a_second_token_needs_add_and_revoke_ends_it(settings, client, capsys):
    name = f"dora-{uuid.uuid4().hex[:6]}"
    first = create_token_cli(name, settings)
    with pytest.raises(TokenExists, match="--add"):
        create_token_cli(name, settings)
    second = create_token_cli(name, settings, add=True)
    assert first != second
    assert me(client, first).json() == {"name": name} == me(client, second).json()

    capsys.readouterr()
    rows = list_tokens_cli(name, settings)
    listing = capsys.readouterr().out
    assert [row.prefix for row in rows] == [first[:12], second[:12]]
    assert first[:12] in listing and second[:12] in listing and first not in listing

    assert revoke_token_cli(str(rows[0].id), settings)
    assert me(client, first).status_code == 401
    assert me(client, second).status_code == 200
    # By its printed prefix too; then nothing is left to revoke.
    assert revoke_token_cli(second[:12], settings)
    assert me(client, second).status_code == 401
    assert not revoke_token_cli(second[:12], settings)
    with session_scope(settings) as session:
        assert tokens_of(session, name) == []


def test_revoked_token_ends_the_browser_session(settings, client):
    name = f"ed-{uuid.uuid4().hex[:6]}"
    token = create_token_cli(name, settings)
    client.cookies.clear()
    assert client.post("/api/v1/session", json={"token": token}).status_code == 200
    assert client.get("/api/v1/me").json() == {"name": name}
    assert revoke_token_cli(token[:12], settings)
    assert client.get("/api/v1/me").status_code == 401
    client.cookies.clear()


def test_sign_in_link_does_not_sign_in_by_itself(settings, client):
    attacker = create_token_cli(f"mallory-{uuid.uuid4().hex[:6]}", settings)
    client.cookies.clear()
    for link in (f"/login?token={attacker}", "/login"):
        response = client.get(link, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/signin")
        assert "set-cookie" not in response.headers
    # The token moves out of the query into the fragment the sign-in page reads.
    response = client.get(f"/login?token={attacker}", follow_redirects=False)
    assert response.headers["location"] == f"/signin#token={attacker}"
    page = client.get(response.headers["location"])
    assert page.status_code == 200 and "set-cookie" not in page.headers
    assert client.get("/api/v1/me").status_code == 401


def test_cross_site_form_cannot_post_a_token(settings, client):
    """A form on another site can only send form or text bodies; the sign-in takes JSON."""
    token = create_token_cli(f"nia-{uuid.uuid4().hex[:6]}", settings)
    client.cookies.clear()
    for content_type, body in (
        ("text/plain", f'{{"token": "{token}"}}'),
        ("application/x-www-form-urlencoded", f"token={token}"),
    ):
        response = client.post(
            "/api/v1/session", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 422, response.text
        assert "set-cookie" not in response.headers
    assert client.get("/api/v1/me").status_code == 401
