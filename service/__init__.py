"""Prompter's service: speaks HTTP and Label Studio, and turns (tasks, prompt version) into predictions.

Rooms: ``api`` (the FastAPI app, its errors, auth and security, routes), ``runtime`` (the process's model: loading,
the queue, warming, events), ``store`` (tables, migrations, reads and writes), ``offline`` (``prompter label`` and
``eval``), ``bench`` and ``demo`` (tools for developers). At the top: the decision path (``predictor``, with
``prompting``, ``demonstrations``, ``embeddings``, ``labeling``), ``projects``, ``metrics``, ``settings``, ``cli``.
A request flows api -> runtime -> predictor -> ``constraints`` -> response; nothing here imports ``service.api``
except the app itself.
"""
