"""Saving a course notebook in JupyterLab leaves git clean.

The committed notebooks carry the metadata JupyterLab writes for the kit's environment (``python3`` kernel, the
kernel's ``language_info``) except ``language_info.version``: that is each reader's own Python version, which no
committed value matches. :func:`drop_reader_python_version` is a Jupyter server *pre-save hook* that leaves it out
again on every save; the kit registers it in ``.venv`` (:func:`write_server_config`), so a Jupyter started from
``.venv`` uses it. Standard library only: the kit calls :func:`write_server_config` before anything is installed.
"""

from __future__ import annotations

import json
from pathlib import Path

HOOK = "pcrl_lib.notebook_save.drop_reader_python_version"
# A Jupyter server reads every JSON file of this folder under its environment's prefix (sys.prefix/etc/jupyter).
CONFIG_DIR = Path("etc") / "jupyter" / "jupyter_server_config.d"
CONFIG_NAME = "pcrl-kit.json"


def drop_reader_python_version(model: dict, **_) -> None:
    """Pre-save hook: remove ``metadata.language_info.version`` from a notebook ``model`` (in place)."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    language = model["content"].get("metadata", {}).get("language_info")
    if isinstance(language, dict):
        language.pop("version", None)


def write_server_config(prefix: str | Path) -> Path:
    """Register the hook for the Jupyter server of the environment at ``prefix`` (e.g. ``.venv``); idempotent."""
    path = Path(prefix) / CONFIG_DIR / CONFIG_NAME
    text = json.dumps({"FileContentsManager": {"pre_save_hook": HOOK}}, indent=2) + "\n"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path
