"""The web dashboard: HTML pages and static files served by the API itself.

Pages are thin shells (layout + a page fragment); the data comes from the JSON API
(`/api/v1/...`) through small ES modules in `static/js`, signed in with the session
cookie. The pages themselves carry no user data, so they need no auth; the API calls
they make do, and a 401 sends the browser to the sign-in page.

Charts use the Plotly bundle that ships inside the installed `plotly` wheel, served
from site-packages, so nothing third-party is copied into the repository and the
dashboard works offline.
"""

from __future__ import annotations

import mimetypes
from functools import cache, lru_cache
from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from api.dashboard.data import router as data_router
from api.dashboard.pages import PAGES, Page

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"

# The host's MIME tables decide StaticFiles' types; module scripts must be JavaScript.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/css", ".css")

# Own assets change with the code: let the browser revalidate them every time.
OWN_ASSET_CACHE = "no-cache"
# The vendor bundle's URL carries its version, so it may be cached for good.
VENDOR_CACHE = "public, max-age=31536000, immutable"

# Plotly draws with inline styles and data: URLs (for its icons); nothing else is inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)
router.include_router(data_router)


@lru_cache(maxsize=1)
def plotly_bundle() -> tuple[Path, str]:
    """Path and version of the Plotly JS bundle inside the installed `plotly` package."""
    import plotly

    path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    return path, getattr(plotly, "__version__", "0")


# Templates are the app's own files; shared markup lives in templates/_macros.html.
TEMPLATES = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)

NAV_LINKS = (
    ("jobs", "/", "Jobs"),
    ("new", "/jobs/new", "New job"),
    ("datasets", "/datasets", "Datasets"),
    ("models", "/models", "Models"),
    ("compare", "/compare", "Compare"),
)


@cache
def render_page(page: Page) -> str:
    """Fill the shared layout with one page's fragment (pages carry no data: cached)."""
    _, plotly_version = plotly_bundle()
    return TEMPLATES.get_template("layout.html").render(
        page=page, nav_links=NAV_LINKS, plotly_version=plotly_version
    )


def _add_page_route(page: Page) -> None:
    # Pages carry no user data (the script fetches it), so they need no sign-in.
    def show_page() -> HTMLResponse:
        return HTMLResponse(render_page(page), headers=PAGE_HEADERS)

    router.add_api_route(page.path, show_page, methods=["GET"], response_class=HTMLResponse)


for _page in PAGES.values():
    _add_page_route(_page)


@router.api_route("/static/vendor/plotly-{version}.min.js", methods=["GET", "HEAD"])
def plotly_js(version: str) -> FileResponse:
    path, installed = plotly_bundle()
    if version != installed or not path.is_file():
        raise HTTPException(status_code=404, detail="Not Found")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": VENDOR_CACHE})


class DashboardStaticFiles(StaticFiles):
    """The dashboard's own files (StaticFiles keeps requests inside the folder), marked to
    be revalidated on every use and never content-sniffed."""

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = OWN_ASSET_CACHE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_static(app: FastAPI) -> None:
    """Serve static/ under /static (after the router, so the Plotly route comes first)."""
    app.mount("/static", DashboardStaticFiles(directory=STATIC_DIR), name="static")
