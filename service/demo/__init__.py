"""`prompter demo` (``run``) and what it drives: a Label Studio client (``labelstudio``), child server processes
(``processes``, shared with the end-to-end tests) and a headless-Chromium screenshot (``screenshot``)."""
