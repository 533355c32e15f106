"""GET /review: the review page (history, pending proposals, accept / reject, rollback), plain HTML and JS.

Served through routes, not a static mount, so the app's basic-auth dependency covers the page and its files.
The page loads nothing from elsewhere; its Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
ASSETS = frozenset({"review.js", "evaluation.js", "review.css"})
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors 'none' for browsers that predate it
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["review"], include_in_schema=False)


@router.get("/review")
@router.get("/review/{project_id}")
def review_page(project_id: str | None = None) -> FileResponse:
    """The page; with a project id it opens on that project (the script reads it from the address)."""
    return FileResponse(STATIC_DIR / "review.html", media_type="text/html", headers=HEADERS)


@router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no file {name}")
    return FileResponse(STATIC_DIR / name, headers=HEADERS)
