"""Browser sign-in: exchange a token for an HttpOnly cookie (the dashboard uses it).

`/login?token=...` is the ready-to-open URL `lorita serve` prints; it sets the
cookie and redirects to the dashboard, so the token leaves the address bar.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse

from api.deps import SESSION_COOKIE, CurrentUser, SessionDep, SettingsDep
from api.schemas import Me, SessionIn
from store.settings import Settings
from store.tokens import verify_token

api_router = APIRouter(tags=["session"])
page_router = APIRouter(include_in_schema=False)

COOKIE_MAX_AGE_S = 30 * 24 * 3600


def set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        secure=settings.cookie_secure,
        # Lax: the cookie is not sent on cross-site POSTs (a CSRF guard for the forms).
        samesite="lax",
        path="/",
    )


@api_router.post("/session", response_model=Me)
def sign_in(body: SessionIn, session: SessionDep, settings: SettingsDep, response: Response):
    """Check a token and keep it in an HttpOnly cookie for the browser."""
    user = verify_token(session, body.token.strip())
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Invalid token.")
    set_session_cookie(response, body.token.strip(), settings)
    return Me(name=user.name)


@api_router.delete("/session", status_code=status.HTTP_204_NO_CONTENT)
def sign_out():
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@api_router.get("/me", response_model=Me)
def me(user: CurrentUser):
    return Me(name=user.name)


@page_router.get("/login")
def login(session: SessionDep, settings: SettingsDep, token: Annotated[str, Query(min_length=1)]):
    user = verify_token(session, token.strip())
    if user is None:
        return HTMLResponse(
            "<h1>Invalid token</h1><p>Ask for a new sign-in link "
            "(<code>lorita token create NAME</code>).</p>",
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    set_session_cookie(response, token.strip(), settings)
    return response
