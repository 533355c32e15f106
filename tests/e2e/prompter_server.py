"""`prompter serve` as a subprocess for end-to-end tests (`service.demo.processes.PrompterServer`)."""

from service.demo.processes import REPO, PrompterServer

__all__ = ["REPO", "PrompterServer"]
