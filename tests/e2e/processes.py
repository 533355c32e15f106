"""Process helpers for end-to-end tests; they live in the package (`service.processes`), shared with `prompter demo`."""

from service.processes import free_port, port_is_open, stop_process_group, tail, wait_until

__all__ = ["free_port", "port_is_open", "stop_process_group", "tail", "wait_until"]
