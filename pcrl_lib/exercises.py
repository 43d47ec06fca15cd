"""Exercises with automatic checks, in the nbgrader convention.

An exercise is two notebook cells:

* a **solution cell** (metadata ``nbgrader.solution = true``, tag ``exercise``) that defines one function whose body
  holds the solution between ``### BEGIN SOLUTION`` and ``### END SOLUTION``. The student version
  (``python -m pcrl_lib.course student``, :mod:`pcrl_lib.student`) replaces that region with
  ``raise NotImplementedError()``, so the cell must do nothing else at top level;
* a **check cell** (``nbgrader.grade = true``, tag ``exercise-check``) that calls :func:`check` with the library
  function the exercise re-derives, optionally followed by hidden cases between ``### BEGIN HIDDEN TESTS`` and
  ``### END HIDDEN TESTS``.

:func:`check` returns the function later cells should use: the learner's when it agrees with the library on
every case, the library's (with a visible note) while the exercise is not solved, so the course runs end to end
either way. With ``PCRL_EXERCISES=strict`` in the environment an unsolved exercise fails its check instead, which
is what a grader (nbgrader's autograder, or the kit's tests of the student notebooks) wants.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch

STRICT_ENV = "PCRL_EXERCISES"
_STATUS: dict[str, str] = {}


class ExerciseNotSolved(AssertionError):
    """Raised by :func:`check` in strict mode when the learner's function still raises NotImplementedError."""


class ExerciseFailed(AssertionError):
    """The learner's function disagrees with the library on a case (the message names the case and the difference)."""


class Case:
    """One set of arguments for :func:`check`: ``Case(x, 3, inverse=True)`` calls ``f(x, 3, inverse=True)``.

    A plain tuple in ``cases`` is positional arguments only; any other value is a single positional argument."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs

    def __repr__(self) -> str:
        parts = [_short(a) for a in self.args] + [f"{k}={_short(v)}" for k, v in self.kwargs.items()]
        return f"({', '.join(parts)})"


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"array{value.shape}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_case(case: Any) -> Case:
    if isinstance(case, Case):
        return case
    if isinstance(case, tuple):
        return Case(*case)
    return Case(case)


def _name(fn: Callable) -> str:
    module = getattr(fn, "__module__", None) or ""
    if module.startswith("pcrl_lib"):   # TCAGate.forward, not forward
        return f"{module}.{getattr(fn, '__qualname__', None) or fn.__name__}"
    return getattr(fn, "__name__", None) or repr(fn)


def difference(got: Any, want: Any, rtol: float, atol: float, where: str = "result") -> str | None:
    """``None`` when ``got`` equals ``want`` within ``|got − want| ≤ atol + rtol·|want|`` (recursively through
    tensors, arrays, numbers, sequences and dicts), else one line saying where and by how much they differ."""
    if isinstance(want, (torch.Tensor, np.ndarray)) or isinstance(got, (torch.Tensor, np.ndarray)):
        try:
            g = torch.as_tensor(np.asarray(got) if not isinstance(got, torch.Tensor) else got).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            return f"{where}: expected an array/tensor, got {type(got).__name__}"
        w = torch.as_tensor(np.asarray(want) if not isinstance(want, torch.Tensor) else want).detach().cpu()
        if tuple(g.shape) != tuple(w.shape):
            return f"{where}: shape {tuple(g.shape)}, expected {tuple(w.shape)}"
        if w.dtype == torch.bool or g.dtype == torch.bool:
            wrong = int((g.bool() != w.bool()).sum())
            return None if wrong == 0 else f"{where}: {wrong} of {w.numel()} boolean values differ"
        g, w = g.double(), w.double()
        if not torch.equal(torch.isnan(g), torch.isnan(w)):
            return f"{where}: NaN in different places"
        g, w = torch.nan_to_num(g, nan=0.0), torch.nan_to_num(w, nan=0.0)
        error = (g - w).abs()
        bad = error > atol + rtol * w.abs()
        if bool(bad.any()):
            return f"{where}: {int(bad.sum())} of {w.numel()} values differ, max |difference| {float(error.max()):.3g}"
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return f"{where}: expected a dict with keys {sorted(want)}, got {_short(got)}"
        for key in want:
            found = difference(got[key], want[key], rtol, atol, f"{where}[{key!r}]")
            if found:
                return found
        return None
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return f"{where}: expected a sequence of {len(want)} items, got {_short(got)}"
        for i, (g, w) in enumerate(zip(got, want)):
            found = difference(g, w, rtol, atol, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        try:
            value = float(got)
        except (TypeError, ValueError):
            return f"{where}: expected a number, got {_short(got)}"
        if math.isnan(want) and math.isnan(value):
            return None
        return None if abs(value - want) <= atol + rtol * abs(want) else f"{where}: {value:.6g}, expected {want:.6g}"
    return None if got == want else f"{where}: {_short(got)}, expected {_short(want)}"


def check(name: str, solution: Callable, reference: Callable, cases: Sequence[Any], *, rtol: float = 1e-5,
          atol: float = 1e-6) -> Callable:
    """Compare the learner's ``solution`` with the library's ``reference`` on every case; return what to use next.

    Args:
        name: the exercise's id (its nbgrader ``grade_id``), used in messages and in :func:`status`.
        solution: the function the learner wrote in the solution cell.
        reference: the library function it re-derives (same signature).
        cases: argument sets: :class:`Case`, a tuple of positional arguments, or a single argument. Arguments are
            deep-copied for each call, so a function that writes into its input cannot change the next call's.
        rtol, atol: tolerance of the comparison (see :func:`difference`).

    Returns ``solution`` when it agrees on all cases; ``reference`` (after printing a note) when ``solution``
    raises NotImplementedError, unless ``PCRL_EXERCISES=strict`` (then :class:`ExerciseNotSolved`).
    Raises :class:`ExerciseFailed` naming the first case that differs.
    """
    if not callable(solution) or not callable(reference):
        raise TypeError(f"exercise {name}: check(name, solution, reference, cases) takes two functions")
    cases = [_as_case(c) for c in cases]
    if not cases:
        raise ValueError(f"exercise {name}: give at least one case to check")
    for index, case in enumerate(cases, start=1):
        want = reference(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        try:
            got = solution(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
        except NotImplementedError:
            _STATUS[name] = "not solved"
            if os.environ.get(STRICT_ENV, "").lower() == "strict":
                raise ExerciseNotSolved(f"exercise {name}: not solved yet ({_name(solution)} raises "
                                        "NotImplementedError)") from None
            print(f"✗ exercise {name}: not solved yet — the notebook continues with the library's "
                  f"{_name(reference)}. Write your solution in the cell above and run both cells again.")
            return reference
        problem = difference(got, want, rtol, atol)
        if problem:
            _STATUS[name] = "failed"
            raise ExerciseFailed(f"exercise {name}: case {index} of {len(cases)} {case!r} differs from "
                                 f"{_name(reference)}: {problem}")
    _STATUS[name] = "solved"
    print(f"✓ exercise {name}: {len(cases)} case(s) agree with {_name(reference)}")
    return solution


def status() -> dict[str, str]:
    """The exercises checked in this kernel so far: id → ``solved`` / ``not solved`` / ``failed``."""
    return dict(_STATUS)
