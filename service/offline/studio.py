"""A Label Studio project as the source of tasks and the place predictions go back to (label-studio-sdk)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from label_studio_sdk import LabelStudio, PredictionRequest
from label_studio_sdk.core.api_error import ApiError

from constraints.errors import PrompterError
from service.offline.tasks_io import InputTask
from service.store.models import as_task_id

PAGE_SIZE = 500
POST_BATCH = 500


class StudioError(PrompterError):
    """Label Studio cannot be reached, refuses the key, or has no such project; the message says which."""


@dataclass
class StudioProject:
    client: LabelStudio
    url: str
    project_id: int
    title: str
    label_config: str

    def _fail(self, exc: Exception, doing: str) -> StudioError:
        return studio_error(exc, self.url, doing, self.project_id)

    def tasks(self) -> list[InputTask]:
        """Every task of the project with its annotations and predictions, in id order."""
        try:
            pager = self.client.tasks.list(project=self.project_id, fields="all", page_size=PAGE_SIZE)
            raw = [_plain(task) for task in pager]
        except (ApiError, httpx.HTTPError) as exc:
            raise self._fail(exc, "listing the tasks of") from None
        items = []
        for task in raw:
            ident = as_task_id(task.get("id"))
            if ident is None:
                continue
            items.append(InputTask(ident, task, f"task {ident}"))
        items.sort(key=lambda item: item.id)
        return items

    def post_predictions(self, predictions: Iterable[tuple[int, dict[str, Any]]]) -> int:
        """Import ``(task id, {"model_version", "score", "result"})`` pairs in batches; returns how many."""
        requests = [
            PredictionRequest(
                task=tid,
                result=p["result"],
                score=p["score"],
                model_version=p["model_version"],
                project=self.project_id,
            )
            for tid, p in predictions
        ]
        for start in range(0, len(requests), POST_BATCH):
            try:
                self.client.projects.import_predictions(self.project_id, request=requests[start : start + POST_BATCH])
            except (ApiError, httpx.HTTPError) as exc:
                raise self._fail(exc, "posting predictions to") from None
        return len(requests)


def _plain(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return value.model_dump(mode="json", by_alias=True)


def studio_error(exc: Exception, url: str, doing: str, project_id: int | None = None) -> StudioError:
    where = f"project {project_id} at {url}" if project_id is not None else url
    if isinstance(exc, httpx.TimeoutException):
        return StudioError(f"Label Studio at {url} did not answer in time while {doing} {where}")
    if isinstance(exc, httpx.HTTPError):
        return StudioError(f"cannot reach Label Studio at {url} ({type(exc).__name__}: {exc}); is it running?")
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return StudioError(f"Label Studio at {url} refused the API key (HTTP {status}) while {doing} {where}")
    if status == 404 and project_id is not None:
        return StudioError(f"Label Studio at {url} has no project {project_id} (HTTP 404)")
    body = str(getattr(exc, "body", "") or "")[:300]
    return StudioError(f"Label Studio at {url} answered HTTP {status} while {doing} {where}: {body}")


def open_project(url: str, api_key: str | None, project_id: int, timeout: float = 60.0) -> StudioProject:
    """Connect and read the project's title and labeling config; StudioError if that is impossible."""
    if not url.startswith(("http://", "https://")):
        raise StudioError(f"--ls-url must start with http:// or https://, got {url!r}")
    if not api_key:
        raise StudioError("a Label Studio API key is needed: --ls-api-key")
    url = url.rstrip("/")
    client = LabelStudio(base_url=url, api_key=api_key, timeout=timeout)
    try:
        project = client.projects.get(project_id)
    except (ApiError, httpx.HTTPError) as exc:
        raise studio_error(exc, url, "reading", project_id) from None
    except ValueError as exc:  # the SDK validates JWT-looking keys before any request
        raise StudioError(f"the Label Studio API key is not usable: {exc}") from None
    return StudioProject(client, url, project_id, project.title or "", project.label_config or "")
