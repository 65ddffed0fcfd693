"""The sizes of ``ddl reproduce``: which of the thesis's experiments run, with which seeds, on which cluster
profile, in what time budget, and how each experiment's config is resized (by the experiment's view,
:meth:`~ddl_commodity.experiments.view.ExperimentView.at_scale`).

A run of a set is named after its config in ``configs/thesis/``; a repetition with another seed adds
``-seed<k>`` (``redshift-5k-same-3w-seed2``). Lists are in priority order: a scale with a budget runs the
runs every claim needs first, so a cut removes repetitions and extra schemes, not verdicts.
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
#: What every claim of the report reads (Fig 5.4, Tables 5.1/5.2, Figs 6.5, 6.7, 6.21-6.24): one claim's pair
#: of runs, the land-cover claims, then the other pair, so that a budget cut costs as few verdicts as it can.
CLAIM_RUNS = (
    *FIG_5_4_CELLS[:2], "landcover-default-8k", "landcover-fig6_7", "landcover-batch10", "landcover-batch50",
    "landcover-batch200", "landcover-default-2.5k", "landcover-dp-2.5k", *FIG_5_4_CELLS[2:],
)
#: Rows of Tables 5.1/5.2 and the schemes no claim needs.
TABLE_RUNS = ("redshift-5k-single", "redshift-5k-same-2w", "redshift-5k-disjoint-2w")
SCHEME_RUNS = ("landcover-fig6_10", "landcover-fig6_15", "landcover-fig6_18", "landcover-single-8k")
#: The spread over seeds: the 1- and 3-worker cells, same and disjoint, with seeds 2 and 3 as well as 1.
SEED_RUNS = tuple(f"{cell}-seed{k}" for k in (2, 3) for cell in FIG_5_4_CELLS)
COMPARE_8K = ("landcover-default-8k-compare", "landcover-dp-8k")
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


SCALES = {
    s.name: s for s in (
        Scale("smoke", (*CLAIM_RUNS, "redshift-5k-single"), None, None,
              "every claim's runs on toy sizes: all of the report's code in a few minutes"),
        Scale("small", SMALL_RUNS, None, None,
              "samples, epochs and steps cut to about half an hour on 2 cores"),
        Scale("thesis", CLAIM_RUNS + TABLE_RUNS + SCHEME_RUNS + SEED_RUNS + COMPARE_8K, "thesis", 150.0,
              "the thesis's sizes (5K spectra, 20 epochs, the 11.4M-weight model; 8K patches, >= 150 steady "
              "steps) on the thesis cluster profile, 3 seeds for the 1- and 3-worker cells, in 150 minutes"),
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
