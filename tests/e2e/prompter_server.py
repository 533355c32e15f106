"""`prompter serve` as a subprocess for end-to-end tests (`service.processes.PrompterServer`)."""

from service.processes import REPO, PrompterServer

__all__ = ["REPO", "PrompterServer"]
