"""HTTP: the app (``app``), the routers (``routes``, mounted in ``main``), the one mapping of errors to status codes
(``errors``), basic auth and reviewer accounts (``auth``, ``reviewers``), the cross-site and body-size guards
(``security``), latency metrics (``telemetry``), Label Studio's payloads (``protocol``, ``webhook_payloads``)."""
