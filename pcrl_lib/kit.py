"""The README's two commands, runnable from a fresh clone with nothing but Python 3.10+::

    python3 -m pcrl_lib.kit course   # set up .venv, prepare data, run every notebook (quick profile)
    python3 -m pcrl_lib.kit test     # set up .venv, run the test suite incl. every notebook (smoke profile)

Both create the virtual environment ``.venv/`` at the repository root on first use and reuse it afterwards
(reinstalling only when ``pyproject.toml`` changed), then re-run themselves inside it. Extra arguments are passed
on: ``python3 -m pcrl_lib.kit course --profile smoke --only 00``, ``python3 -m pcrl_lib.kit test -k config``.
This module uses the standard library only, because it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from .notebook_save import write_server_config

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".pcrl-kit-installed"
# Notebook execution in tests: nbval runs every notebook in the smoke profile (PCRL_PROFILE below).
PYTEST_ARGS = ["tests", "notebooks", "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=900",
               "-p", "no:cacheprovider", "-q", "-ra", "--durations=15"]


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _install_digest() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv() -> Path:
    """Create or reuse ``.venv`` and install the kit (editable, with the test extra) when needed."""
    python = _venv_python()
    start = time.perf_counter()
    if not python.exists():
        if sys.version_info < (3, 10):
            sys.exit(f"error: Python 3.10+ is needed to create .venv, this is {sys.version.split()[0]}")
        print(f"creating virtual environment {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    else:
        print(f"reusing virtual environment {VENV}", flush=True)
    write_server_config(VENV)   # a Jupyter started from .venv saves notebooks without the reader's Python version
    digest = _install_digest()
    if STAMP.is_file() and STAMP.read_text().strip() == digest:
        print("dependencies up to date (pyproject.toml unchanged since the last install)", flush=True)
        return python
    print("installing the kit and its dependencies into .venv (first time: a few minutes) ...", flush=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run(pip + ["install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run(pip + ["install", "-q", "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(digest + "\n")
    print(f"installed in {time.perf_counter() - start:.0f} s", flush=True)
    return python


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("course", "test", "setup"):
        print("usage: python3 -m pcrl_lib.kit {course|test|setup} [extra arguments]", file=sys.stderr)
        return 2
    command, extra = argv[0], argv[1:]
    python = str(ensure_venv())
    env = dict(os.environ)
    if command == "setup":
        return 0
    if command == "course":
        if not any(a.startswith("--profile") for a in extra):
            extra = ["--profile", "quick", *extra]
        cmd = [python, "-m", "pcrl_lib.course", "run", *extra]
    else:
        env.setdefault("PCRL_PROFILE", "smoke")
        env.setdefault("TQDM_DISABLE", "1")
        env.setdefault("MPLBACKEND", "Agg")
        env.setdefault("PCRL_HEADLESS", "1")
        cmd = [python, "-m", "pytest", *PYTEST_ARGS, *extra]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
