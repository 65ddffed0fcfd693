"""The sizes of ``ddl reproduce``: which of the thesis's experiments run, with which seeds, on which cluster
profile, in what time budget, and how each experiment's config is resized (by the experiment's view,
:meth:`~ddl_commodity.experiments.view.ExperimentView.at_scale`).

A run of a set is named after its config in ``configs/thesis/``; a repetition with another seed adds
``-seed<k>`` (``redshift-5k-same-3w-seed2``). Lists are in priority order: a scale with a budget runs the
runs every claim needs first, so a cut removes repetitions and extra schemes, not verdicts. The thesis scale has
no budget: it runs every claim's runs (:data:`THESIS_RUNS`) and resumes where it stopped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ddl_commodity.errors import UserInputError

THESIS_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "thesis"
_SEEDED = re.compile(r"^(?P<config>.+)-seed(?P<seed>\d+)$")

#: The 1- and 3-worker cells of Fig 5.4 (and the rows of Tables 5.1/5.2 with most weight).
FIG_5_4_CELLS = ("redshift-5k-same-1w", "redshift-5k-same-3w", "redshift-5k-disjoint-1w", "redshift-5k-disjoint-3w")
#: The runs of the central claims (Figs 5.4, 6.5-6.8, 6.21-6.24), which every scale runs: one pair of Fig 5.4,
#: the land-cover runs, then the other pair, so that a budget cut costs as few verdicts as it can.
CLAIM_RUNS = (
    *FIG_5_4_CELLS[:2], "landcover-default-8k", "landcover-fig6_7", "landcover-batch10", "landcover-batch50",
    "landcover-batch200", "landcover-default-2.5k", "landcover-dp-2.5k", *FIG_5_4_CELLS[2:],
)


def redshift_run(size: str, dist: str, workers: str) -> str:
    """The run of one cell of Figs 5.3-5.6: ``redshift-5k-same-3w``, or ``redshift-5k-single`` (no distribution)."""
    return f"redshift-{size}-single" if workers == "single" else f"redshift-{size}-{dist}-{workers}"


def _redshift(size: str, cells: tuple[str, ...] = ("single", "same-1w", "same-2w", "same-3w", "disjoint-1w",
                                                    "disjoint-2w", "disjoint-3w")) -> tuple[str, ...]:
    return tuple(f"redshift-{size}-{c}" for c in cells)


#: Every run a claim of chapters 5 and 6 reads (:data:`ddl_commodity.reproduce.claims.CLAIMS`), in the order the
#: thesis scale runs them: the land-cover runs, 5K and 15K spectra (after these every claim has a verdict), then
#: seeds 2 and 3 of every 5K cell (Figs 5.3-5.6 and Tables 5.1/5.2 turn on differences a seed can make) and of the
#: 15K cells of Figs 5.3(c,d) and 5.4. Interrupted, the set resumes where it stopped.
THESIS_RUNS = (
    "landcover-default-8k", "landcover-single-8k", "landcover-batch10", "landcover-batch50", "landcover-batch200",
    "landcover-fig6_7", "landcover-fig6_10", "landcover-fig6_15", "landcover-fig6_18", "landcover-default-2.5k",
    "landcover-dp-2.5k", "landcover-dp-8k",
    *_redshift("5k"),
    *_redshift("15k"),
    *(f"{run}-seed{k}" for k in (2, 3) for run in _redshift("5k")),
    *(f"{run}-seed{k}" for k in (2, 3) for run in _redshift("15k", ("single", "same-1w", "same-3w", "disjoint-1w",
                                                                    "disjoint-3w"))),
)
#: Seconds each run of the thesis scale is expected to take on 2 cores with the thesis profile, as measured there;
#: 15K spectra three times the 5K cells. The ETA scales them by the pace of the runs finished so far. The 1-worker
#: disjoint cells and batch 50 take 0 s: at this scale they are the same runs as the 1-worker same cells and
#: landcover-default-8k.
THESIS_SECONDS = {
    "redshift-5k-single": 110, "redshift-5k-same-1w": 490, "redshift-5k-same-2w": 490, "redshift-5k-same-3w": 890,
    "redshift-5k-disjoint-1w": 0, "redshift-5k-disjoint-2w": 315, "redshift-5k-disjoint-3w": 340,
    "landcover-default-8k": 560, "landcover-single-8k": 140, "landcover-batch10": 650, "landcover-batch50": 0,
    "landcover-batch200": 600, "landcover-fig6_7": 510, "landcover-fig6_10": 480, "landcover-fig6_15": 680,
    "landcover-fig6_18": 500, "landcover-default-2.5k": 205, "landcover-dp-2.5k": 190, "landcover-dp-8k": 485,
}
THESIS_SECONDS |= {k.replace("-5k-", "-15k-"): 3 * v for k, v in THESIS_SECONDS.items() if "-5k-" in k}


def estimated_seconds(run: str, scale: str) -> float | None:
    """The expected seconds of a run of the thesis scale (:data:`THESIS_SECONDS`); None at other scales."""
    return THESIS_SECONDS.get(config_and_seed(run)[0]) if scale == "thesis" else None


SMALL_RUNS = (
    "redshift-5k-single", "redshift-5k-same-1w", "redshift-5k-same-2w", "redshift-5k-same-3w",
    "redshift-5k-disjoint-1w", "redshift-5k-disjoint-2w", "redshift-5k-disjoint-3w",
    "landcover-default-8k", "landcover-single-8k", "landcover-batch10", "landcover-batch50", "landcover-batch200",
    "landcover-fig6_7", "landcover-fig6_10", "landcover-fig6_15", "landcover-fig6_18",
    "landcover-default-2.5k", "landcover-dp-2.5k",
)


@dataclass(frozen=True)
class Scale:
    """One size of the thesis's experiment set.

    Args:
        name: what ``--scale`` takes.
        runs: run names, in the order they run.
        profile: cluster profile every run gets unless ``--profile`` names another (None: plain nodes).
        budget_minutes: runs predicted to end past it are cut (recorded, with the reason); None: no cut.
        about: one line for ``--help`` and the report.
    """

    name: str
    runs: tuple[str, ...]
    profile: str | None
    budget_minutes: float | None
    about: str
    min_epochs: dict[str, int] | None = None

    def adjust(self, doc: dict) -> dict:
        """A config resized by its experiment's view, with at least ``min_epochs[experiment]`` full epochs
        (the thesis trained land cover for 10: Figs 6.4, 6.6)."""
        epochs = (self.min_epochs or {}).get(doc.get("experiment", ""))
        if epochs:
            training = doc.setdefault("training", {})
            training.pop("steps_per_epoch", None)
            training["epochs"] = max(epochs, training.get("epochs", 1))
        return doc


SCALES = {
    s.name: s for s in (
        Scale("smoke", (*CLAIM_RUNS, "redshift-5k-single"), None, None,
              "the runs of Figs 5.4, 6.5-6.8 and 6.21-6.24 on toy sizes: all of the report's code in a few minutes "
              "(the claims without their runs say so)"),
        Scale("small", SMALL_RUNS, None, None,
              "samples, epochs and steps cut to about half an hour on 2 cores"),
        Scale("thesis", THESIS_RUNS, "thesis", None,
              "every claim's runs at the thesis's sizes (5K and 15K spectra, 20 epochs, the 11.4M-weight model; "
              "2.5K and 8K patches, 10 full epochs) on the thesis cluster profile, 3 seeds of every 5K cell and "
              "of the 1- and 3-worker 15K cells: about 9 hours on 2 cores", {"landcover": 10}),
        Scale("full", tuple(sorted(p.stem for p in THESIS_CONFIGS.glob("*.yaml"))), None, None,
              "every config of configs/thesis/ unchanged, 15K spectra included (hours)"),
    )
}


def get(name: str) -> Scale:
    try:
        return SCALES[name]
    except KeyError:
        raise UserInputError(f"--scale must be one of {', '.join(SCALES)}, got {name!r}") from None


def config_and_seed(run: str) -> tuple[str, int | None]:
    """``redshift-5k-same-3w-seed2`` -> (``redshift-5k-same-3w``, 2); a plain name keeps its config's seed."""
    m = _SEEDED.match(run)
    return (m["config"], int(m["seed"])) if m else (run, None)
