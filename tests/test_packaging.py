"""pyproject.toml and environment.yml must list the same packages (conda and pip users get one kit)."""

import re
import tomllib

import yaml

# conda-forge spells a few packages differently from PyPI
CONDA_TO_PYPI = {"simpleitk": "simpleitk"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    pip_side = {_name(r) for r in project["dependencies"]} | {_name(r) for r in project["optional-dependencies"]["test"]}
    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    conda_side = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            conda_side |= {_name(r) for r in dep["pip"] if not r.startswith("-e")}
        elif _name(dep) not in ("python", "pip"):
            conda_side.add(CONDA_TO_PYPI.get(_name(dep), _name(dep)))
    assert pip_side - conda_side == set(), f"in pyproject.toml but not environment.yml: {sorted(pip_side - conda_side)}"
    assert conda_side - pip_side == set(), f"in environment.yml but not pyproject.toml: {sorted(conda_side - pip_side)}"


def test_torch_pins_agree(repo_root):
    text = (repo_root / "pyproject.toml").read_text() + (repo_root / "environment.yml").read_text()
    assert text.count("torch==2.14.1") == 2 and text.count("torchvision==0.29.1") == 2
