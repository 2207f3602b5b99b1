"""The service's own web pages (the simulator, the rules page): a shell HTML file and its script and style,
served from serving/static with headers that let a page load nothing but its own files and talk only to
this service. A page holds no data: it asks for an API key and calls the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
KEY_SCRIPT = "keyform.js"  # every page's key form (sessionStorage), loaded before the page's own script
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page_router(path: str, name: str) -> APIRouter:
    """`GET /<path>` serves `<name>.html`; `GET /<path>/<asset>` serves `<name>.js`, `<name>.css` and the
    shared `keyform.js` only (a fixed list: no path ever reaches the file system from the URL)."""
    assets = {f"{name}.js": "text/javascript", f"{name}.css": "text/css", KEY_SCRIPT: "text/javascript"}
    router = APIRouter(include_in_schema=False)

    @router.get(f"/{path}", name=f"{name}_page")
    def shell() -> FileResponse:
        return FileResponse(STATIC_DIR / f"{name}.html", media_type="text/html", headers=PAGE_HEADERS)

    @router.get(f"/{path}/{{asset}}", name=f"{name}_asset")
    def asset(asset: str) -> FileResponse:
        if asset not in assets:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return FileResponse(STATIC_DIR / asset, media_type=assets[asset], headers=PAGE_HEADERS)

    return router


index = APIRouter(include_in_schema=False)


@index.get("/", name="index_page")
def index_page() -> FileResponse:
    """The service's address in a browser (the start-up line gives it): its pages and who they are for."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)
