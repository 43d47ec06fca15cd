"""pcrl_lib.exercises.check: what a learner's solution gets back (solved, not solved, wrong, strict mode)."""

import numpy as np
import pytest
import torch

from pcrl_lib import exercises
from pcrl_lib.exercises import Case, ExerciseFailed, ExerciseNotSolved, check, difference


def reference(x, scale=1.0):
    return torch.sigmoid(x) * scale


def unsolved(x, scale=1.0):
    raise NotImplementedError()


def test_a_correct_solution_is_returned_and_recorded(capsys):
    def solution(x, scale=1.0):
        return 1 / (1 + torch.exp(-x)) * scale

    got = check("t_ok", solution, reference, [torch.zeros(3), Case(torch.ones(2, 2), scale=2.0)])
    assert got is solution
    assert "✓ exercise t_ok: 2 case(s) agree" in capsys.readouterr().out
    assert exercises.status()["t_ok"] == "solved"


def test_an_unsolved_exercise_hands_back_the_reference_with_a_visible_note(capsys, monkeypatch):
    monkeypatch.delenv("PCRL_EXERCISES", raising=False)
    got = check("t_open", unsolved, reference, [torch.zeros(3)])
    assert got is reference
    out = capsys.readouterr().out
    assert "exercise t_open: not solved yet" in out and "reference" in out
    assert exercises.status()["t_open"] == "not solved"


def test_strict_mode_fails_an_unsolved_exercise(monkeypatch):
    monkeypatch.setenv("PCRL_EXERCISES", "strict")
    with pytest.raises(ExerciseNotSolved, match="t_strict: not solved yet"):
        check("t_strict", unsolved, reference, [torch.zeros(3)])


def test_a_wrong_solution_names_the_case_and_the_difference():
    def off(x, scale=1.0):
        return reference(x, scale) + (0.5 if scale == 2.0 else 0.0)

    with pytest.raises(ExerciseFailed, match=r"t_wrong: case 2 of 2 \(tensor\(2, 2\), scale=2\.0\).*max \|difference\| 0\.5"):
        check("t_wrong", off, reference, [torch.zeros(3), Case(torch.ones(2, 2), scale=2.0)])
    assert exercises.status()["t_wrong"] == "failed"


def test_arguments_are_copied_so_a_function_that_writes_its_input_cannot_fool_the_check():
    def in_place(x):
        x.mul_(2)
        return x

    x = torch.ones(3)
    assert check("t_copy", in_place, lambda v: v * 2, [x]) is in_place
    assert torch.equal(x, torch.ones(3)), "the caller's tensor is untouched"


@pytest.mark.parametrize("got, want, problem", [
    (np.ones(3), torch.ones(3), None),
    (torch.ones(3), torch.ones(4), "shape (3,), expected (4,)"),
    ((1.0, {"a": torch.zeros(2)}), (1.0, {"a": torch.zeros(2)}), None),
    ((1.0, {"a": torch.ones(2)}), (1.0, {"a": torch.zeros(2)}), "result[1]['a']: 2 of 2 values differ"),
    (float("nan"), float("nan"), None),
    (torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]), "NaN in different places"),
    (torch.tensor([True, False]), torch.tensor([True, True]), "1 of 2 boolean values differ"),
    ([1, 2], [1, 2, 3], "expected a sequence of 3 items"),
    ("a", 0.5, "expected a number"),
])
def test_difference(got, want, problem):
    found = difference(got, want, rtol=1e-5, atol=1e-6)
    assert (found is None) if problem is None else (problem in found)


def test_check_needs_cases_and_functions():
    with pytest.raises(ValueError, match="at least one case"):
        check("t_empty", reference, reference, [])
    with pytest.raises(TypeError, match="two functions"):
        check("t_type", 3, reference, [torch.zeros(1)])
