"""The model host: ``host`` loads the engine once per process and answers what state it is in, ``queue`` batches
prepared tasks (interactive first, 503 when full), ``warming`` fills a project's caches before its first request,
``events`` lets the agent subscribe to what the webhooks bring."""
