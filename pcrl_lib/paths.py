"""Where the kit keeps things: repository root, data caches, run folders.

Nothing is created on import; callers create what they write.
Environment overrides: ``PCRL_HOME`` (repository root), ``PCRL_CACHE`` (data cache folder).
"""

from __future__ import annotations

import os
from pathlib import Path

_MARKER = "pyproject.toml"


def repo_root() -> Path:
    """The kit's root folder (the one holding ``pyproject.toml`` and ``notebooks/``).

    Looks at ``PCRL_HOME``, then walks up from the current directory, then from this package.
    """
    env = os.environ.get("PCRL_HOME")
    if env:
        return Path(env).resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / _MARKER).is_file() and (folder / "pcrl_lib").is_dir():
                return folder
    return Path(__file__).resolve().parent.parent


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def cache_dir() -> Path:
    """Git-ignored cache for downloaded demo data, synthetic look-alikes and prepared arrays."""
    env = os.environ.get("PCRL_CACHE")
    return Path(env).resolve() if env else repo_root() / "data" / "cache"


def runs_dir(profile: str) -> Path:
    """Default output folder of a course run in ``profile``: ``runs/<profile>``."""
    return repo_root() / "runs" / profile


def resolve_output_dir(output_dir: str | os.PathLike | None, profile: str) -> Path:
    """The notebooks' ``OUTPUT_DIR`` parameter: ``None`` means ``runs/<profile>``. Creates it."""
    out = Path(output_dir).expanduser().resolve() if output_dir else runs_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    return out
