"""Where each project lives in Label Studio: its address and title, for the review page's links.

Label Studio sends its ``hostname`` and an ``access_token`` on every ``/setup`` (it repeats it on project views)
and the project's ``title`` on every webhook. The address and title are kept in memory and shown; the token is
used once, in the background, to read the project's title, and is never stored, returned or logged.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

TITLE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ProjectLink:
    """A project as Label Studio shows it: ``url`` opens its data manager, ``task_url`` a task."""

    hostname: str | None = None
    title: str | None = None

    def url(self, project_id: str) -> str | None:
        return f"{self.hostname}/projects/{project_id}/data" if self.hostname and project_id.isdigit() else None

    def task_url(self, project_id: str) -> str | None:
        """The address of a task, with ``{task_id}`` left to fill in."""
        base = self.url(project_id)
        return f"{base}?task={{task_id}}" if base else None


_links: dict[str, ProjectLink] = {}
_lock = threading.Lock()


def clean_hostname(hostname: object) -> str | None:
    """An http(s) origin (no path, no credentials), or None."""
    if not isinstance(hostname, str):
        return None
    parts = urlsplit(hostname.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    return f"{parts.scheme}://{parts.netloc}".rstrip("/")


def get(project_id: str) -> ProjectLink:
    with _lock:
        return _links.get(project_id, ProjectLink())


def remember(project_id: str, hostname: object = None, title: object = None) -> ProjectLink:
    """Keep what is known; a missing value leaves the earlier one."""
    with _lock:
        old = _links.get(project_id, ProjectLink())
        link = ProjectLink(
            clean_hostname(hostname) or old.hostname,
            title.strip() if isinstance(title, str) and title.strip() else old.title,
        )
        _links[project_id] = link
        return link


def fetch_title_soon(project_id: str, hostname: object, access_token: object) -> None:
    """Ask Label Studio for the project's title in a thread (``/setup`` must answer within 3 s)."""
    base = clean_hostname(hostname)
    if base is None or not project_id.isdigit() or not isinstance(access_token, str) or not access_token:
        return
    if get(project_id).title:
        return
    threading.Thread(target=_fetch_title, args=(project_id, base, access_token), name="ls-title", daemon=True).start()


def _fetch_title(project_id: str, base: str, token: str) -> None:
    for scheme in ("Token", "Bearer"):  # a legacy token, or a personal access token's JWT
        try:
            response = httpx.get(
                f"{base}/api/projects/{project_id}",
                headers={"Authorization": f"{scheme} {token}"},
                timeout=TITLE_TIMEOUT_S,
            )
        except httpx.HTTPError as exc:
            log.info("project %s: Label Studio at %s did not give its title: %s", project_id, base, type(exc).__name__)
            return
        if response.status_code == 200:
            title = response.json().get("title") if "json" in response.headers.get("content-type", "") else None
            remember(project_id, title=title)
            return
    log.info("project %s: Label Studio at %s refused the title request (%s)", project_id, base, response.status_code)
