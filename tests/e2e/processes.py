"""Process helpers for end-to-end tests; they live in the package (`service.demo.processes`), shared with the demo."""

from service.demo.processes import free_port, port_is_open, stop_process_group, tail, wait_until

__all__ = ["free_port", "port_is_open", "stop_process_group", "tail", "wait_until"]
