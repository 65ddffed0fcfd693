"""How a claim is judged, declared as data: a threshold on one number, or an ordering of named numbers.

A :class:`Rule` turns one measured value (a number, or ``{name: number}`` for the orderings) into a verdict,
``agree``, ``partly`` or ``no``. A claim measured on several seeds is judged per seed: the same verdict on every
seed is the claim's; seeds that disagree make it ``partly`` (the range is reported beside it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

KINDS = ("at_least", "at_most", "near", "top", "bottom", "order", "all_at_least", "all_at_most")


@dataclass(frozen=True)
class Rule:
    """One judging rule.

    Args:
        kind: ``at_least`` / ``at_most`` (a number against ``agree``, then ``partly``); ``near`` (a number within
            ``agree``, then ``partly``, of ``target``); ``top`` / ``bottom``
            (``{name: number}``: the ``subjects`` should be the highest / lowest ``len(subjects)`` of them; all
            of them -> agree, some (or, for one subject, the next place) -> partly); ``order`` (``{name:
            number}``: the ``subjects`` from highest to lowest; every neighbour >= the next and the first >
            the last -> agree, only the first > the last -> partly); ``all_at_least`` / ``all_at_most`` (every
            number of ``{name: number}`` against ``agree``; at least half of them -> partly).
        agree: the threshold for ``agree``.
        partly: the threshold for ``partly`` (None: no partly band).
        subjects: the names the orderings speak of.
        unit: printed after thresholds.
        target: the value a ``near`` rule is about.
    """

    kind: str
    agree: float = 0.0
    partly: float | None = None
    subjects: tuple[str, ...] = ()
    unit: str = ""
    target: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.kind == "near" and self.target is None:
            raise ValueError("a near rule names its target")
        if self.kind in ("top", "bottom", "order") and not self.subjects:
            raise ValueError(f"a {self.kind} rule names its subjects")

    def describe(self) -> str:
        """The rule in words, for the report."""
        u = self.unit
        band = lambda op: f"; partly if {op} {self.partly:g}{u}" if self.partly is not None else ""  # noqa: E731
        said = {
            "at_least": f"agree if >= {self.agree:g}{u}{band('>=')}",
            "at_most": f"agree if <= {self.agree:g}{u}{band('<=')}",
            "near": f"agree if within {self.agree:g}{u} of {self.target or 0:g}{u}{band('within')}",
            "top": f"agree if {' and '.join(self.subjects)} {'is' if len(self.subjects) == 1 else 'are'} the "
                   f"highest{'' if len(self.subjects) == 1 else f' {len(self.subjects)}'}; partly if "
                   + ("second" if len(self.subjects) == 1 else "one of them is"),
            "bottom": f"agree if {' and '.join(self.subjects)} {'is' if len(self.subjects) == 1 else 'are'} the "
                      f"lowest{'' if len(self.subjects) == 1 else f' {len(self.subjects)}'}; partly if "
                      + ("second lowest" if len(self.subjects) == 1 else "one of them is"),
            "order": f"agree if {' > '.join(self.subjects)}" if len(self.subjects) == 2 else
                     f"agree if {' >= '.join(self.subjects)} (first > last); partly if only first > last",
            "all_at_least": f"agree if every one >= {self.agree:g}{u}; partly if at least half",
            "all_at_most": f"agree if every one <= {self.agree:g}{u}; partly if at least half",
        }
        return said[self.kind]

    def judge(self, value: float | dict[str, float]) -> str:
        """``agree``, ``partly`` or ``no`` for one measured value."""
        if self.kind in ("at_least", "at_most", "near"):
            sign = 1.0 if self.kind == "at_least" else -1.0
            if self.kind == "near":  # the distance from the target, at most
                value = abs(value - self.target)
            if sign * value >= sign * self.agree:
                return "agree"
            return "partly" if self.partly is not None and sign * value >= sign * self.partly else "no"
        if self.kind in ("top", "bottom"):
            return self._rank(value, highest=self.kind == "top")
        if self.kind == "order":
            chain = [value[s] for s in self.subjects]
            if chain[0] <= chain[-1]:
                return "no"
            return "agree" if all(a >= b for a, b in itertools.pairwise(chain)) else "partly"
        sign = 1.0 if self.kind == "all_at_least" else -1.0
        held = sum(sign * v >= sign * self.agree for v in value.values())
        return "agree" if held == len(value) else "partly" if 2 * held >= len(value) else "no"

    def _rank(self, value: dict[str, float], highest: bool) -> str:
        ranked = sorted(value, key=lambda k: value[k], reverse=highest)
        n = len(self.subjects)
        inside = sum(s in ranked[:n] for s in self.subjects)
        if inside == n:
            return "agree"
        if n == 1:
            return "partly" if self.subjects[0] in ranked[:2] and len(ranked) > 2 else "no"
        return "partly" if inside else "no"


def combine(verdicts: list[str]) -> str:
    """One verdict of several seeds' verdicts: theirs when they agree, else ``partly``."""
    return verdicts[0] if len(set(verdicts)) == 1 else "partly"
