"""A real Label Studio server for end-to-end tests, started from a migrated template database.

The server itself lives in the package (`service.demo.labelstudio`), shared with `prompter demo`:
`scripts/install_label_studio.sh` installs Label Studio into its own virtual environment and migrates a
template SQLite database once (with the test user and its legacy API token already in it). Each
`LabelStudioServer` copies that database into a fresh data directory and is healthy in a few seconds.
"""

from service.demo.labelstudio import (
    DEFAULT_TEMPLATE,
    DEFAULT_VENV,
    INSTALL_SCRIPT,
    Credentials,
    LabelStudioError,
    LabelStudioServer,
    template_credentials,
    template_dir,
    venv_dir,
)

__all__ = [
    "DEFAULT_TEMPLATE",
    "DEFAULT_VENV",
    "INSTALL_SCRIPT",
    "Credentials",
    "LabelStudioError",
    "LabelStudioServer",
    "template_credentials",
    "template_dir",
    "venv_dir",
]
