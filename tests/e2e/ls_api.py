"""The Label Studio REST calls that drive the ML backend workflow, each asserting its status code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ls_server import LabelStudioServer


@dataclass
class LabelStudioAPI:
    server: LabelStudioServer

    def create_project(self, title: str, label_config: str) -> dict[str, Any]:
        response = self.server.api(
            "POST", "/api/projects", json={"title": title, "label_config": label_config}, expect=201
        )
        return response.json()

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Import `[{"data": {...}}, ...]`; returns the new task ids in import order."""
        response = self.server.api("POST", f"/api/projects/{project_id}/import", json=tasks, expect=201)
        body = response.json()
        assert body.get("task_count") == len(tasks), f"imported {body} instead of {len(tasks)} tasks"
        return self.task_ids(project_id)[-len(tasks) :]

    def task_ids(self, project_id: int) -> list[int]:
        response = self.server.api(
            "GET", "/api/tasks", params={"project": project_id, "page_size": 10000, "fields": "all"}, expect=200
        )
        return sorted(task["id"] for task in response.json()["tasks"])

    def get_task(self, task_id: int) -> dict[str, Any]:
        return self.server.api("GET", f"/api/tasks/{task_id}", expect=200).json()

    def connect_ml_backend(
        self, project_id: int, url: str, title: str = "Prompter", is_interactive: bool = True
    ) -> dict[str, Any]:
        """Add the backend: LS calls its /health and /setup and creates a /webhook for all actions."""
        response = self.server.api(
            "POST",
            "/api/ml",
            json={"url": url, "project": project_id, "is_interactive": is_interactive, "title": title},
            expect=201,
        )
        backend = response.json()
        assert backend.get("state") == "CO", f"ML backend not connected: {backend}"
        return backend

    def get_ml_backend(self, ml_id: int) -> dict[str, Any]:
        return self.server.api("GET", f"/api/ml/{ml_id}", expect=200).json()

    def retrieve_predictions(self, project_id: int, task_ids: list[int]) -> dict[str, Any]:
        """The Data Manager's "Retrieve predictions" action: one /predict call for all the tasks.

        LS answers success even when /predict failed: check predictions or the log afterwards.
        """
        response = self.server.api(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": {"all": False, "included": task_ids}},
            expect=200,
        )
        return response.json()

    def interactive_annotating(self, ml_id: int, task_id: int, context: dict[str, Any]) -> dict[str, Any]:
        """What the labeling UI sends on Shift+Enter; LS returns `{"data": results[0]}` or `{"errors": [...]}`."""
        response = self.server.api(
            "POST",
            f"/api/ml/{ml_id}/interactive-annotating",
            json={"task": task_id, "context": context},
            expect=200,
        )
        body = response.json()
        assert "errors" not in body, f"interactive annotating failed: {body['errors']}"
        return body

    def create_annotation(self, task_id: int, result: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        """Save an annotation; LS delivers ANNOTATION_CREATED to the backend's /webhook before answering."""
        response = self.server.api(
            "POST", f"/api/tasks/{task_id}/annotations", json={"result": result, **extra}, expect=201
        )
        return response.json()

    def update_annotation(self, annotation_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        response = self.server.api("PATCH", f"/api/annotations/{annotation_id}", json={"result": result}, expect=200)
        return response.json()

    def list_predictions(self, task_id: int) -> list[dict[str, Any]]:
        return self.server.api("GET", "/api/predictions", params={"task": task_id}, expect=200).json()

    def train(self, ml_id: int) -> dict[str, Any] | None:
        """The project's "Start training" button: START_TRAINING reaches the backend's /webhook."""
        response = self.server.api("POST", f"/api/ml/{ml_id}/train", json={}, expect=200)
        return response.json() if response.content else None
