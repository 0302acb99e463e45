"""Browser sign-in: exchange a token for an HttpOnly cookie (the dashboard uses it).

`/login#token=...` is the ready-to-open URL `lorita serve` prints. The token sits
in the fragment, which browsers never send to the server (nor to logs or in a
Referer); the sign-in page reads it, says which user it signs in as, and asks
for a click before it POSTs it. Opening a link therefore never signs anyone in
by itself: a link crafted with someone else's token (login CSRF, which would
put the victim's uploads into the attacker's account) needs the victim to
confirm a sign-in as that other name. Cross-site pages cannot make the POST:
it takes a JSON body, which a form cannot send and fetch sends only after a
CORS preflight this API never allows.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from api.deps import SESSION_COOKIE, CurrentUser, SettingsDep, run_for_request
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
async def sign_in(body: SessionIn, request: Request, settings: SettingsDep, response: Response):
    """Check a token and keep it in an HttpOnly cookie for the browser."""
    token = body.token.strip()
    user = await run_for_request(request, settings, lambda session: verify_token(session, token))
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
def login(token: Annotated[str | None, Query()] = None):
    """To the sign-in page, which asks before it signs in. A fragment (`#token=...`)
    survives the redirect by itself; an older `?token=` link is moved into one."""
    target = "/signin"
    if token and token.strip():
        target += "#token=" + quote(token.strip(), safe="")
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
