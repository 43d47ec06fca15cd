"""pcrl_lib.lesson: the notebooks' one-call setup and record."""

import json

import pytest
import torch

from pcrl_lib import exercises, lesson


def test_start_seeds_resolves_and_records(tmp_path, capsys):
    run = lesson.start("99_test", profile="smoke", output_dir=tmp_path / "out", seed=3, quiet=True)
    assert run.out_dir == (tmp_path / "out").resolve() and run.out_dir.is_dir()
    assert run.device == torch.device("cpu") and not run.real and run.cfg.name == "smoke"
    first = torch.rand(2)
    again = lesson.start("99_test", profile="smoke", output_dir=tmp_path / "out", seed=3, quiet=True)
    assert torch.equal(first, torch.rand(2)), "start() seeds torch's global generator"
    assert run.generator.initial_seed() == again.generator.initial_seed() == 3
    exercises.check("t_lesson", abs, abs, [1.0])
    path = run.record({"x": 1.5}, results=[{"a": 1}], parameters={"P": 2})
    record = json.loads(path.read_text())
    assert path == run.out_dir / "records" / "99_test.json"
    assert record["figures"] == {"x": 1.5} and record["results"] == [{"a": 1}] and record["parameters"] == {"P": 2}
    assert record["env"]["profile"] == "smoke" and record["exercises"]["t_lesson"] == "solved"
    assert f"record written: {path}" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, message", [
    ({"profile": "fast"}, "fast"),
    ({"profile": "paper"}, "DATA_ROOT"),
    ({"profile": "smoke", "seed": -1}, "SEED must be a non-negative int"),
    ({"profile": "smoke", "seed": 1.5}, "SEED must be a non-negative int"),
])
def test_start_refuses_bad_parameters_naming_them(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        lesson.start("99_test", output_dir=tmp_path, quiet=True, **kwargs)


def test_start_checks_the_named_datasets_when_real_data_is_used(tmp_path):
    (tmp_path / "nih").mkdir()
    with pytest.raises(ValueError, match="nih"):
        lesson.start("99_test", profile="quick", data_root=tmp_path, output_dir=tmp_path / "out", datasets=("nih",),
                     quiet=True)
