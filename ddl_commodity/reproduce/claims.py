"""Every testable statement of the thesis's sections 5.3 and 6.3 as data, and the judge that gives each a verdict.

A :class:`Claim` holds the thesis's figure or table, its words quoted exactly, the quantity we measure, the
measure that computes it (a name in :data:`~ddl_commodity.reproduce.measures.MEASURES` and its parameters), the
:class:`~ddl_commodity.reproduce.rules.Rule` that judges it, and the runs it reads. :func:`judge` turns run
summaries into a verdict: ``agree``, ``partly``, ``no``, or ``not testable here`` with the reason; never blank.
Where the thesis's words and its measure differ (Fig 5.4 says "time" and counts epochs), a claim has ``also``
measures, judged by the same rule and shown beside the one the verdict rests on. A claim measured on several
seeds is judged per seed (:func:`~ddl_commodity.reproduce.rules.combine`) and reports the range.

Thresholds: where the thesis gives a reduction, agree means at least half of it (25% less -> >= 12.5%), so
that a gain of the thesis's kind but a smaller size still agrees and no gain does not; orderings are the
thesis's own (the PS highest, model parallel below data parallel); "similar" is within 25% (2 points of
accuracy), partly within 50% (5 points).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from ddl_commodity.reproduce.measures import LENIENT, MEASURES, PLATEAU, Measured, NotTestable
from ddl_commodity.reproduce.rules import Rule, combine
from ddl_commodity.reproduce.runsets import config_and_seed, redshift_run

#: Thesis Tables 5.1 and 5.2 (5K samples): epochs to stable training accuracy per worker.
THESIS_TABLES = {
    PLATEAU: {
        "same": {"single": [8], "1w": [8], "2w": [7, 7], "3w": [6, 6, 6]},
        "disjoint": {"single": [8], "1w": [8], "2w": [6, 5], "3w": [6, 6, 6]},
    },
    LENIENT: {
        "same": {"single": [14], "1w": [16], "2w": [13, 13], "3w": [13, 13, 13]},
        "disjoint": {"single": [14], "1w": [16], "2w": [15, 15], "3w": [10, 10, 10]},
    },
}


@dataclass(frozen=True)
class Claim:
    """One testable statement of the thesis.

    Args:
        id: short and stable (``fig5_4-5k-same``).
        figure: the thesis's figure or table (``Fig 5.4``).
        words: the thesis's words, quoted exactly.
        quantity: what we measure, in words.
        measure: a name of :data:`~ddl_commodity.reproduce.measures.MEASURES`.
        params: its parameters.
        rule: how the measured value is judged.
        runs: the runs it reads (configs of ``configs/thesis/``; their ``-seed<k>`` repetitions add seeds).
        unit: printed after our number.
        also: (label, parameter changes) of further measures judged by the same rule; the verdict rests on
            ``measure``.
        draws: the figure of the report the claim rests on (:mod:`ddl_commodity.reproduce.figures`).
    """

    id: str
    figure: str
    words: str
    quantity: str
    measure: str
    params: dict
    rule: Rule
    runs: tuple[str, ...]
    unit: str = ""
    also: tuple[tuple[str, dict], ...] = ()
    draws: str = ""
    rests_on: str = field(default="")


def _redshift_runs(size: str, cells: tuple[str, ...] = ("1w", "3w"),
                   dists: tuple[str, ...] = ("same", "disjoint")) -> tuple[str, ...]:
    """The runs of ``cells`` (``single`` once) of each distribution."""
    return tuple(redshift_run(size, d, c) for d in dists for c in cells if c != "single" or d == dists[0])


AT_LEAST_HALF_OF_25 = Rule("at_least", 12.5, unit="%")
MP_8K, MP_25K, DP_8K, DP_25K = ("landcover-default-8k", "landcover-default-2.5k", "landcover-dp-8k",
                                "landcover-dp-2.5k")
B200_8K = "landcover-batch200"  # the default scheme at batch 200: Fig 6.6's run
#: Sections 6.3.3 and 6.3.4 compare their schemes with "the baseline's" traffic of Fig 6.6 (default scheme,
#: batch 200) and show "our baseline approach" in Fig 6.13: every scheme run is at batch 200.
BASELINE = B200_8K
SCHEMES = {"default": BASELINE, "Fig 6.7": "landcover-fig6_7", "Fig 6.10": "landcover-fig6_10",
           "Fig 6.15": "landcover-fig6_15", "Fig 6.18": "landcover-fig6_18"}


def _fig_5_4(size: str, dist: str) -> Claim:
    data = "same data" if dist == "same" else "disjoint data"
    return Claim(
        f"fig5_4-{size}-{dist}", "Fig 5.4",
        "leading to a 25% reduction in the time need to achieve stable performance, for both training datasets",
        f"{size.upper()} spectra, {data}: % fewer epochs to the accuracy plateau (median over the workers; "
        "patience 1, min delta 0.001), 3 workers vs 1; also in seconds (epochs x the run's seconds per epoch)",
        "plateau_reduction", {"size": size, "dist": dist, "by": "epochs"}, AT_LEAST_HALF_OF_25,
        _redshift_runs(size, dists=(dist,)),
        unit="% less", also=(("seconds to plateau", {"by": "seconds"}),), draws=f"plateau:{size}",
        rests_on="epochs to the plateau: the figure counts epochs (8 -> 6 is its 25%); seconds are shown beside it "
                 "because an epoch of 3 workers does not last as long as one of 1")


CLAIMS: tuple[Claim, ...] = (
    # ---- 5.3: Fig 5.3 -------------------------------------------------------------------------------------
    Claim("fig5_3-more-workers", "Fig 5.3",
          "in all cases, using multiple working nodes has a positive impact in terms of accuracy, for a given number "
          "of training epochs",
          "mean training accuracy over the epochs until 1 worker's plateau, 2 and 3 workers minus 1 worker, per "
          "data set and distribution",
          "accuracy_gains", {"cases": tuple(f"{s}/{d}/{w}" for s in ("5k", "15k") for d in ("same", "disjoint")
                                            for w in ("2w", "3w"))},
          Rule("all_at_least", 0.0, unit=" points"),
          _redshift_runs("5k", ("1w", "2w", "3w")) + _redshift_runs("15k", ("1w", "2w", "3w")),
          unit=" points", draws="accuracy:5k"),
    Claim("fig5_3-same-2w-like-1w", "Fig 5.3(a)",
          "when same data are used, the performance between 1 and 2 working nodes is similar",
          "5K, same data: |mean training accuracy over the epochs until 1 worker's plateau, 2 workers - 1 worker|",
          "accuracy_gap", {"size": "5k", "dist": "same", "a": "2w", "b": "1w"},
          Rule("at_most", 2.0, 5.0, unit=" points"), _redshift_runs("5k", ("1w", "2w"), ("same",)), unit=" points",
          also=(("15K", {"size": "15k"}),), draws="accuracy:5k"),
    Claim("fig5_3-disjoint-workers-differ", "Fig 5.3(b)",
          "there is a significant difference in terms of accuracy by each of the distributed nodes",
          "5K, 2 workers: the workers' spread of accuracy per epoch with disjoint data / with the same data",
          "spread_ratio", {"key": "accuracy", "num": ("5k/disjoint/2w",), "den": ("5k/same/2w",)},
          Rule("at_least", 2.0, 1.0, unit="x"), _redshift_runs("5k", ("2w",)), unit="x", draws="accuracy:5k"),
    Claim("fig5_3-three-workers", "Fig 5.3",
          "For the case of three computing nodes, there is a clear benefit in both cases of using the same or "
          "different training examples",
          "5K: mean training accuracy over the epochs until 1 worker's plateau, 3 workers minus 1 worker, same and "
          "disjoint data",
          "accuracy_gains", {"cases": ("5k/same/3w", "5k/disjoint/3w")},
          Rule("all_at_least", 1.0, unit=" points"), _redshift_runs("5k"), unit=" points",
          also=(("15K", {"cases": ("15k/same/3w", "15k/disjoint/3w")}),), draws="accuracy:5k"),
    Claim("fig5_3-15k-less-variation", "Fig 5.3(c,d)",
          "the performance variation across different machines is less prominent",
          "the workers' spread of accuracy per epoch (2 and 3 workers, both distributions), 5K / 15K",
          "spread_ratio", {"key": "accuracy", "num": tuple(f"5k/{d}/{w}" for d in ("same", "disjoint")
                                                           for w in ("2w", "3w")),
                           "den": tuple(f"15k/{d}/{w}" for d in ("same", "disjoint") for w in ("2w", "3w"))},
          Rule("at_least", 1.5, 1.0, unit="x"),
          _redshift_runs("5k", ("2w", "3w")) + _redshift_runs("15k", ("2w", "3w")), unit="x", draws="accuracy:15k"),
    Claim("fig5_3-15k-learns-more", "Fig 5.3(c,d)",
          "the larger amount of training samples has a positive effect on the system’s learning capacity",
          "mean training accuracy over the epochs, 15K spectra minus 5K, the sequential CNN and 1 and 3 workers "
          "on the same data", "size_gains", {"cells": ("single", "same/1w", "same/3w")},
          Rule("all_at_least", 0.0, unit=" points"), _redshift_runs("5k", ("single", "1w", "3w"), ("same",))
          + _redshift_runs("15k", ("single", "1w", "3w"), ("same",)), unit=" points", draws="accuracy:15k"),
    Claim("fig5_3-15k-sequential-75", "Fig 5.3(c,d)",
          "The sequential CNN attains over 75% accuracy faster for this set, at three epochs",
          "15K: the epoch at which the sequential CNN's training accuracy first reaches 75%",
          "accuracy_level_epoch", {"size": "15k", "level": 0.75}, Rule("at_most", 3.0, 5.0, unit=" epochs"),
          ("redshift-15k-single",), unit=" epochs", draws="accuracy:15k"),
    Claim("fig5_3-15k-1w-8-epochs", "Fig 5.3(c)",
          "in the one-node cluster, the CNN needs about 8 epochs to reach the same accuracy as the sequential case",
          "15K, 1 worker: the epoch at which its training accuracy reaches 75% (the accuracy the sequential CNN "
          "attains at epoch 3 in the thesis); also the sequential CNN's own epoch-3 accuracy",
          "epochs_to_reach", {"size": "15k", "dist": "same", "workers": "1w", "level": 0.75},
          Rule("near", 2.0, 4.0, unit=" epochs", target=8.0), ("redshift-15k-single", "redshift-15k-same-1w"),
          unit=" epochs", also=(("the sequential CNN's epoch-3 accuracy", {"level": None}),), draws="accuracy:15k",
          rests_on="75%: \"the same accuracy\" is the one the sentence before names; our sequential CNN is at "
                   "98% by epoch 3, where every curve is flat"),
    Claim("fig5_3-15k-3w-4-epochs", "Fig 5.3(c,d)",
          "while for the 3-node cluster the amount of epochs required is reduced to 4",
          "15K: epochs 1 worker needs to reach 75% accuracy / epochs 3 workers need (thesis 8 / 4 = 2); also to "
          "the sequential CNN's epoch-3 accuracy",
          "reach_ratio", {"size": "15k", "dist": "same", "level": 0.75}, Rule("at_least", 1.5, 1.01, unit="x"),
          ("redshift-15k-single", "redshift-15k-same-1w", "redshift-15k-same-3w"), unit="x",
          also=(("disjoint data", {"dist": "disjoint"}), ("the sequential CNN's epoch-3 accuracy", {"level": None})),
          draws="accuracy:15k",
          rests_on="75%, as the claim before: the thesis's level, reached while the curves still climb"),
    # ---- 5.3: Fig 5.4 -------------------------------------------------------------------------------------
    _fig_5_4("5k", "same"), _fig_5_4("5k", "disjoint"), _fig_5_4("15k", "same"), _fig_5_4("15k", "disjoint"),
    Claim("fig5_4-distribution-matters-less", "Fig 5.4",
          "for larger number of computing nodes, the impact of data distribution becomes less important",
          "5K: |epochs to the accuracy plateau (strict criterion), same data - disjoint data| with 2 and with 3 "
          "workers; also |mean accuracy over the epochs| (points), as the conclusions read it",
          "distribution_gap", {"size": "5k"}, Rule("order", subjects=("2w", "3w")), _redshift_runs("5k", ("2w", "3w")),
          unit="", also=(("15K", {"size": "15k"}), ("mean accuracy, points", {"by": "accuracy"}),
                         ("15K mean accuracy, points", {"size": "15k", "by": "accuracy"})),
          draws="plateau:5k",
          rests_on="epochs to the plateau: the sentence closes the paragraph on Fig 5.4, which counts them"),
    # ---- 5.3: Figs 5.5, 5.6 -------------------------------------------------------------------------------
    Claim("fig5_5-disjoint-50", "Fig 5.5",
          "reducing it by 50% when different sets of examples is considered",
          "5K, disjoint data: % fewer epochs to the loss plateau (median over the workers; patience 1, min delta "
          "0.001), "
          "3 workers vs 1", "loss_plateau_reduction", {"size": "5k", "dist": "disjoint"},
          Rule("at_least", 25.0, 0.0, unit="%"), _redshift_runs("5k", dists=("disjoint",)), unit="% less",
          draws="loss:5k"),
    Claim("fig5_5-same-negligible", "Fig 5.5",
          "when each worker sees the same data the impact, although visible, is negligible",
          "5K, same data: % fewer epochs to the loss plateau (median over the workers), 3 workers vs 1",
          "loss_plateau_reduction", {"size": "5k", "dist": "same"}, Rule("at_most", 25.0, 40.0, unit="%"),
          _redshift_runs("5k", dists=("same",)), unit="% less", draws="loss:5k"),
    Claim("fig5_6-same-alike", "Fig 5.6",
          "when the same data is used, the performance between most of the nodes is similar",
          "5K, same data, 2 and 3 workers: the workers' spread of loss per epoch, relative to their mean loss at "
          "epoch 1",
          "worker_spread", {"key": "loss", "cells": ("5k/same/2w", "5k/same/3w")},
          Rule("at_most", 0.10, 0.25), _redshift_runs("5k", ("2w", "3w"), ("same",)), draws="loss:5k"),
    Claim("fig5_6-disjoint-differ", "Fig 5.6",
          "there is a significant difference in terms of loss in the cases of two- and three-nodes cluster",
          "5K, 2 and 3 workers: the workers' spread of loss per epoch with disjoint data / with the same data",
          "spread_ratio", {"key": "loss", "num": ("5k/disjoint/2w", "5k/disjoint/3w"),
                           "den": ("5k/same/2w", "5k/same/3w")},
          Rule("at_least", 2.0, 1.0, unit="x"), _redshift_runs("5k", ("2w", "3w")), unit="x", draws="loss:5k"),
    Claim("fig5_6-one-epoch-later", "Fig 5.6",
          "it drops faster on the sequential CNN, however similar performance is attained one epoch later, "
          "regardless of its size",
          "5K: epochs after the sequential CNN's epoch 3 at which each cluster's mean loss reaches its loss then",
          "loss_lag", {"size": "5k"}, Rule("all_at_most", 1.0, unit=" epochs"),
          _redshift_runs("5k", ("single", "1w", "2w", "3w"), ("same",))
          + _redshift_runs("5k", ("2w", "3w"), ("disjoint",)),
          unit=" epochs", draws="loss:5k"),
    # ---- 5.3: Tables 5.1, 5.2 -----------------------------------------------------------------------------
    Claim("table5_1-fewer-with-nodes", "Table 5.1",
          "Similar behavior can be observed in both cases of early stopping, with the amount of epochs decreasing "
          "as more nodes are added into the cluster",
          "5K: epochs to the accuracy plateau (median over the workers), 1 worker minus 3 workers, for both "
          "distributions and both criteria (thesis: 2, 2, 3, 6)",
          "plateau_fewer", {"size": "5k"}, Rule("all_at_least", 1.0, unit=" epochs"),
          _redshift_runs("5k", ("1w", "2w", "3w")), unit=" epochs", draws="plateau:5k"),
    Claim("table5_2-same-flat", "Table 5.2",
          "after a certain number of nodes the amount of epochs required to achieve a stable performance remains "
          "the same, when the same set of examples is taken into consideration",
          "5K, same data, lenient criterion: epochs to plateau, 2 workers minus 3 workers (thesis 13 - 13)",
          "plateau_difference", {"size": "5k", "dist": "same", "criterion": LENIENT, "a": "2w", "b": "3w"},
          Rule("near", 1.0, 2.0, unit=" epochs", target=0.0), _redshift_runs("5k", ("2w", "3w"), ("same",)),
          unit=" epochs",
          draws="plateau:5k"),
    Claim("table5_2-disjoint-30", "Table 5.2",
          "in the 3 nodes case the results show a 30% reduction in processing time",
          "5K, disjoint data, lenient criterion: % fewer epochs to the plateau (median over the workers), 3 "
          "workers vs 2 "
          "(thesis 15 -> 10: the contrast with the same data's 13 -> 13)",
          "plateau_reduction", {"size": "5k", "dist": "disjoint", "by": "epochs", "criterion": LENIENT,
                                "fewer": "2w"},
          Rule("at_least", 15.0, 0.0, unit="%"), _redshift_runs("5k", ("2w", "3w"), ("disjoint",)), unit="% less",
          also=(("seconds to plateau", {"by": "seconds"}),), draws="plateau:5k"),
    Claim("table5_2-same-vs-sequential", "Table 5.2",
          "TFoS does not perform well compared to non-parallelized CNN when same data are considered, since it "
          "needs 13 epochs to reach a stable performance for the 3-node cluster, while the sequential CNN needs 14",
          "5K, same data, lenient criterion: % fewer epochs to plateau, 3 workers vs the single machine",
          "plateau_reduction", {"size": "5k", "dist": "same", "by": "epochs", "criterion": LENIENT,
                                "fewer": "single", "more": "3w"},
          Rule("at_most", 15.0, 30.0, unit="%"), _redshift_runs("5k", ("single", "3w"), ("same",)), unit="% less",
          draws="plateau:5k"),
    Claim("table5_2-disjoint-vs-sequential", "Table 5.2",
          "the performance of TFoS caps at 10 epochs for the 3-node cluster, much better than the sequential CNN",
          "5K, disjoint data, lenient criterion: % fewer epochs to plateau, 3 workers vs the single machine "
          "(thesis 29%)",
          "plateau_reduction", {"size": "5k", "dist": "disjoint", "by": "epochs", "criterion": LENIENT,
                                "fewer": "single", "more": "3w"},
          Rule("at_least", 14.0, 0.0, unit="%"), ("redshift-5k-single", "redshift-5k-disjoint-3w"),
          unit="% less", draws="plateau:5k"),
    # ---- 6.3.1: Fig 6.4 -----------------------------------------------------------------------------------
    Claim("fig6_4-distributed-like-single", "Fig 6.4",
          "the performance between the two is similar, with the distributed approach achieving slightly better "
          "results",
          "8K patches: the final model's validation accuracy, model parallel minus single machine",
          "final_metric", {"runs": {"distributed": MP_8K, "single": "landcover-single-8k"}, "key": "val_accuracy"},
          Rule("order", subjects=("distributed", "single")), (MP_8K, "landcover-single-8k"), unit="%",
          draws="curves:landcover-default-8k"),
    Claim("fig6_4-distributed-slower", "Fig 6.4",
          "both of which prolong the overall training time",
          "8K patches, 10 epochs: wall seconds of the model-parallel run and of the single machine",
          "wall_time", {"runs": {"distributed": MP_8K, "single": "landcover-single-8k"}},
          Rule("order", subjects=("distributed", "single")), (MP_8K, "landcover-single-8k"), unit=" s",
          draws=f"cpu_box:{MP_8K}"),
    # ---- 6.3.2: Fig 6.5 -----------------------------------------------------------------------------------
    Claim("fig6_5-batch-traffic", "Fig 6.5",
          "for a batch size of 10, network traffic can reach values as high as 120 MB/sec compared to the batch "
          "sizes of 50 and 200, which get values more than 5 times lower",
          "cluster MB/s in at batch 10 / at batch 50 and 200 (steady training window)",
          "batch_traffic", {}, Rule("all_at_least", 2.5, unit="x"),
          ("landcover-batch10", "landcover-batch50", "landcover-batch200"), unit="x", draws="batch_traffic"),
    Claim("fig6_5-larger-batches-faster", "Fig 6.5",
          "high batch sizes can greatly accelerate our experiments, and more specifically their, extremely time "
          "consuming, training phase",
          "seconds per 1,000 training samples at batch 10, 50, 200",
          "training_speed", {"runs": {"batch 10": "landcover-batch10", "batch 50": "landcover-batch50",
                                      "batch 200": "landcover-batch200"}},
          Rule("order", subjects=("batch 10", "batch 50", "batch 200")),
          ("landcover-batch10", "landcover-batch50", "landcover-batch200"), unit=" s", draws="batch_traffic"),
    Claim("fig6_5-drop-over-time", "Fig 6.5",
          "In these cases, we observe a drop of both traffics after some amount of time",
          "batch 10 and 50: cluster MB/s in over the last third of the training traffic / over its first third",
          "traffic_drop", {}, Rule("all_at_most", 0.8, unit="x"), ("landcover-batch10", "landcover-batch50"),
          unit="x", draws="batch_traffic"),
    # ---- 6.3.3: Figs 6.6-6.12 ------------------------------------------------------------------------------
    Claim("fig6_6-traffic-ps-merging", "Fig 6.6",
          "the bulk of traffic is actually gathered between two workers, worker 1 which acts as the PS, and worker "
          "4 which is responsible for the merged part of our multimodal CNN",
          "default scheme, batch 200 (the thesis's for Fig 6.6), 8K: MB/s in + out per node", "node_values",
          {"run": B200_8K, "metric": "traffic"},
          Rule("top", subjects=("ps", "merging")), (B200_8K, MP_8K), unit=" MB/s",
          also=(("batch 50", {"run": MP_8K}),),
          draws=f"traffic:{B200_8K}"),
    Claim("fig6_6-ps-highest-in", "Fig 6.6",
          "It is also natural for the PS to have the highest incoming traffic",
          "default scheme, batch 200 (the thesis's for Fig 6.6), 8K: MB/s in per node", "node_values",
          {"run": B200_8K, "metric": "rx"},
          Rule("top", subjects=("ps",)), (B200_8K, MP_8K), unit=" MB/s",
          also=(("batch 50", {"run": MP_8K}),),
          draws=f"traffic:{B200_8K}"),
    Claim("fig6_6-merging-in", "Fig 6.6",
          "It is natural to expect high incoming network traffic on the worker responsible for the merging, since "
          "it collects data from both worker 2 and worker 3",
          "default scheme, batch 200 (the thesis's for Fig 6.6), 8K: MB/s in per worker", "node_values",
          {"run": B200_8K, "metric": "rx", "who": "workers"},
          Rule("top", subjects=("merging",)), (B200_8K, MP_8K), unit=" MB/s",
          also=(("batch 50", {"run": MP_8K}),),
          draws=f"traffic:{B200_8K}"),
    Claim("fig6_6-merging-highest-out", "Fig 6.6",
          "worker 4 has the highest traffic of every other machine on the cluster",
          "default scheme, batch 200 (the thesis's for Fig 6.6), 8K: MB/s out per node", "node_values",
          {"run": B200_8K, "metric": "tx"},
          Rule("top", subjects=("merging",)), (B200_8K, MP_8K), unit=" MB/s",
          also=(("batch 50", {"run": MP_8K}),),
          draws=f"traffic:{B200_8K}"),
    Claim("fig6_8-merging-out", "Fig 6.8",
          "the outgoing traffic of the merging worker can be as low as 2.5MB/sec compared to the baseline's, "
          "where it reaches about 10MB/sec",
          "the merging worker's MB/s out, default scheme / Fig 6.7 scheme (thesis about 4)",
          "merging_out", {"baseline": BASELINE}, Rule("at_least", 2.0, 1.0, unit="x"), (BASELINE, "landcover-fig6_7"),
          unit="x",
          draws="traffic:landcover-fig6_7"),
    Claim("fig6_8-ps-low", "Fig 6.8",
          "traffic on the PS has also become pretty low, reaching about 2.5MB/sec incoming traffic, as well as "
          "1.5MB/sec outgoing traffic",
          "the PS's MB/s in + out, default scheme / Fig 6.7 scheme", "ratio",
          {"num": BASELINE, "den": "landcover-fig6_7", "metric": "traffic", "who": ("ps",)},
          Rule("at_least", 2.0, 1.25, unit="x"), (BASELINE, "landcover-fig6_7"), unit="x",
          draws="traffic:landcover-fig6_7"),
    Claim("fig6_8-still-ps-merging", "Fig 6.8",
          "traffic follows similar behavior to our initial approach, mostly being gathered between the PS and the "
          "node responsible for the merging",
          "Fig 6.7 scheme: MB/s in + out per node", "node_values", {"run": "landcover-fig6_7", "metric": "traffic"},
          Rule("top", subjects=("ps", "merging")), ("landcover-fig6_7",), unit=" MB/s",
          draws="traffic:landcover-fig6_7"),
    Claim("fig6_9-merging-waits", "Fig 6.9",
          "this alternative scheme greatly increases the CPU wait metric of the merging worker, as it has quite a "
          "few instances that reach values as high as 45%",
          "the merging worker's CPU wait (95th percentile of its samples, 0-100), Fig 6.7 scheme / default scheme "
          "(the default's at least 1%)", "ratio",
          {"num": "landcover-fig6_7", "den": BASELINE, "metric": "wait_peak", "who": ("merging",), "floor": 1.0},
          Rule("at_least", 3.0, 1.5, unit="x"), ("landcover-fig6_7", BASELINE), unit="x",
          draws="wait_box:landcover-fig6_7"),
    Claim("fig6_9-default-faster", "Fig 6.9",
          "with a wait CPU as high as 1.25%, our default model is much faster and more productive, despite the "
          "higher communication overheads",
          "seconds per 1,000 training samples, Fig 6.7 scheme and default scheme",
          "training_speed", {"runs": {"Fig 6.7": "landcover-fig6_7", "default": BASELINE}},
          Rule("order", subjects=("Fig 6.7", "default")), ("landcover-fig6_7", BASELINE), unit=" s",
          draws=f"wait_box:{BASELINE}"),
    Claim("fig6_11-between", "Fig 6.11",
          "The values of both incoming and outgoing traffic are marginally higher than the ones presented in Figure "
          "6.8, but they are also significantly lower than the values of our baseline",
          "cluster MB/s in + out (sum over nodes): default, Fig 6.10, Fig 6.7 schemes", "run_values",
          {"runs": {k: SCHEMES[k] for k in ("default", "Fig 6.10", "Fig 6.7")}, "metric": "traffic",
           "reduce": "sum"},
          Rule("order", subjects=("default", "Fig 6.10", "Fig 6.7")),
          (BASELINE, "landcover-fig6_10", "landcover-fig6_7"), unit=" MB/s", draws="traffic:landcover-fig6_10"),
    Claim("fig6_11-two-workers", "Fig 6.11",
          "Once again, we observe that traffic is gathered mostly between two workers",
          "Fig 6.10 scheme: MB/s in + out per node", "node_values", {"run": "landcover-fig6_10", "metric": "traffic"},
          Rule("top", subjects=("ps", "merging")), ("landcover-fig6_10",), unit=" MB/s",
          draws="traffic:landcover-fig6_10"),
    Claim("fig6_12-merging-wait-low", "Fig 6.12",
          "However, this is true only for one time instance, since there is only one grey dot for these values, "
          "while the rest range from 0% to 1%",
          "Fig 6.10 scheme: the merging worker's median CPU wait (0-100; the mean where samples are not kept)",
          "node_values", {"run": "landcover-fig6_10", "metric": "wait_median", "who": ("merging",)},
          Rule("all_at_most", 1.0, unit="%"), ("landcover-fig6_10",), unit="%", draws="wait_box:landcover-fig6_10"),
    Claim("fig6_12-rest-wait-small", "Fig 6.12",
          "Wait CPU values from the rest of the workers are generally small",
          "Fig 6.10 scheme: the branch workers' median CPU wait (0-100; the mean where samples are not kept)",
          "node_values", {"run": "landcover-fig6_10", "metric": "wait_median", "who": ("rgb", "hsi")},
          Rule("all_at_most", 5.0, unit="%"), ("landcover-fig6_10",), unit="%", draws="wait_box:landcover-fig6_10"),
    # ---- 6.3.4: Figs 6.13-6.20 -----------------------------------------------------------------------------
    Claim("fig6_13-hsi-busiest", "Fig 6.13",
          "worker 3, which is responsible for the HSI branch, is the most heavy duty machine in the cluster",
          "default scheme, batch 200 (the baseline of 6.3.4), 8K: mean CPU % (of the node's share) per node",
          "node_values", {"run": BASELINE, "metric": "cpu"}, Rule("top", subjects=("hsi",)), (BASELINE,), unit="%",
          draws=f"cpu_box:{BASELINE}"),
    Claim("fig6_13-ps-merging-light", "Fig 6.13",
          "the PS and the merging worker 4 don't deploy much CPU",
          "default scheme, batch 200 (the baseline of 6.3.4), 8K: mean CPU % per node", "node_values",
          {"run": BASELINE, "metric": "cpu"},
          Rule("bottom", subjects=("ps", "merging")), (BASELINE,), unit="%", draws=f"cpu_box:{BASELINE}"),
    Claim("fig6_13-ps-most-memory", "Fig 6.13",
          "this time the PS is the most heavy duty worker out of the four",
          "default scheme, batch 200 (the baseline of 6.3.4), 8K: peak memory MB per node (its group; RSS without "
          "one)", "node_values", {"run": BASELINE, "metric": "memory"}, Rule("top", subjects=("ps",)), (BASELINE,),
          unit=" MB", draws=f"memory_box:{BASELINE}"),
    Claim("fig6_13-branches-under-2gb", "Fig 6.13",
          "the memory usage on the machines containing the branches of our CNN tends to be less than 2GB",
          "default scheme, batch 200 (the baseline of 6.3.4), 8K: peak memory MB of the branch workers (the thesis "
          "profile caps a node at 2 GiB)",
          "node_values", {"run": BASELINE, "metric": "memory", "who": ("rgb", "hsi")},
          Rule("all_at_most", 2000.0, unit=" MB"), (BASELINE,), unit=" MB", draws=f"memory_box:{BASELINE}"),
    Claim("fig6_14-fig6_10-under-50", "Fig 6.14(b)",
          "workers 2 and 4 don't utilize even 50% of their available CPU, similar to our baseline case",
          "Fig 6.10 scheme: mean CPU % of the RGB and merging workers", "node_values",
          {"run": "landcover-fig6_10", "metric": "cpu", "who": ("rgb", "merging")},
          Rule("all_at_most", 50.0, unit="%"), ("landcover-fig6_10",), unit="%", draws="cpu_box:landcover-fig6_10"),
    Claim("fig6_14-fig6_10-hsi-load", "Fig 6.14(b)",
          "it puts most of the load on worker 3, which is responsible for the HSI branch",
          "Fig 6.10 scheme: mean CPU % per worker", "node_values",
          {"run": "landcover-fig6_10", "metric": "cpu", "who": "workers"}, Rule("top", subjects=("hsi",)),
          ("landcover-fig6_10",), unit="%", draws="cpu_box:landcover-fig6_10"),
    Claim("fig6_14-fig6_7-65-85", "Fig 6.14(a)",
          "Worker 2 and Worker 4 utilize 65% and 85% of their CPU respectively, with only worker 3 underperforming",
          "Fig 6.7 scheme: mean CPU % of the merging, RGB and HSI workers (thesis 85, 65, below)", "node_values",
          {"run": "landcover-fig6_7", "metric": "cpu", "who": ("merging", "rgb", "hsi")},
          Rule("order", subjects=("merging", "rgb", "hsi")), ("landcover-fig6_7",), unit="%",
          draws="cpu_box:landcover-fig6_7"),
    Claim("fig6_16-scattered", "Fig 6.16",
          "Traffic is not anymore clustered between the PS and the merging worker, even though they still send and "
          "receive the biggest amount of data, but is scattered among all the machines of the cluster",
          "the PS's and the merging worker's share of the cluster's MB/s in + out, default vs Fig 6.15 scheme",
          "run_values", {"runs": {"default": BASELINE, "Fig 6.15": "landcover-fig6_15"}, "metric": "traffic",
                         "reduce": "ps_merging_share"},
          Rule("order", subjects=("default", "Fig 6.15")), (BASELINE, "landcover-fig6_15"),
          draws="traffic:landcover-fig6_15"),
    Claim("fig6_16-more-traffic", "Fig 6.16",
          "This is also reflected in more peaks in both incoming and outgoing traffic , as well as the higher "
          "values of traffic in general",
          "cluster MB/s in + out: Fig 6.15 scheme vs the one before it (Fig 6.10)", "run_values",
          {"runs": {"Fig 6.15": "landcover-fig6_15", "Fig 6.10": "landcover-fig6_10"}, "metric": "traffic",
           "reduce": "sum"},
          Rule("order", subjects=("Fig 6.15", "Fig 6.10")), ("landcover-fig6_15", "landcover-fig6_10"),
          unit=" MB/s", draws="traffic:landcover-fig6_15"),
    Claim("fig6_17-over-50", "Fig 6.17",
          "there is more than 50% healthy CPU utilization in every worker",
          "Fig 6.15 scheme: mean CPU % of every worker", "node_values",
          {"run": "landcover-fig6_15", "metric": "cpu", "who": "workers"},
          Rule("all_at_least", 50.0, unit="%"), ("landcover-fig6_15",), unit="%", draws="cpu_box:landcover-fig6_15"),
    Claim("fig6_17-balanced", "Fig 6.17",
          "The workload is more balanced between the machines of the cluster",
          "the workers' spread of mean CPU % ((max - min) / mean), default vs Fig 6.15 scheme", "run_values",
          {"runs": {"default": BASELINE, "Fig 6.15": "landcover-fig6_15"}, "metric": "cpu", "who": "workers",
           "reduce": "spread"},
          Rule("order", subjects=("default", "Fig 6.15")), (BASELINE, "landcover-fig6_15"),
          draws="cpu_box:landcover-fig6_15"),
    Claim("fig6_17-hsi-shares", "Fig 6.17",
          "its CPU usage caps at around 70% instead of around 80%, which was the case previous architectures",
          "the HSI worker's CPU % (90th percentile of its samples, else its maximum), default vs Fig 6.15 scheme",
          "run_values", {"runs": {"default": BASELINE, "Fig 6.15": "landcover-fig6_15"}, "metric": "cpu_peak",
                         "who": ("hsi",)},
          Rule("order", subjects=("default", "Fig 6.15")), (BASELINE, "landcover-fig6_15"), unit="%",
          draws="cpu_box:landcover-fig6_15"),
    Claim("fig6_17-worker4-wait", "Fig 6.17",
          "Wait CPU on worker 4 has some instances that goes over 10% but most of them are gathered around 5%",
          "Fig 6.15 scheme: the merging worker's median CPU wait (0-100; the mean where samples are not kept)",
          "node_values", {"run": "landcover-fig6_15", "metric": "wait_median", "who": ("merging",)},
          Rule("all_at_most", 10.0, unit="%"), ("landcover-fig6_15",), unit="%", draws="wait_box:landcover-fig6_15"),
    Claim("fig6_19-in-ps-merging", "Fig 6.19",
          "The most of incoming data are delivered on the machines acting as the PS and the merging worker",
          "Fig 6.18 scheme: MB/s in per node", "node_values", {"run": "landcover-fig6_18", "metric": "rx"},
          Rule("top", subjects=("ps", "merging")), ("landcover-fig6_18",), unit=" MB/s",
          draws="traffic:landcover-fig6_18"),
    Claim("fig6_19-out-scattered", "Fig 6.19",
          "It is once again scattered among the machines of our cluster",
          "the PS's and the merging worker's share of the cluster's MB/s out, default vs Fig 6.18 scheme",
          "run_values", {"runs": {"default": BASELINE, "Fig 6.18": "landcover-fig6_18"}, "metric": "tx",
                         "reduce": "ps_merging_share"},
          Rule("order", subjects=("default", "Fig 6.18")), (BASELINE, "landcover-fig6_18"),
          draws="traffic:landcover-fig6_18"),
    Claim("fig6_20-over-55", "Fig 6.20",
          "the load is almost equally shared between workers supervising parts of the CNN, and each machine "
          "achieves more than 55%", "Fig 6.18 scheme: mean CPU % of every worker", "node_values",
          {"run": "landcover-fig6_18", "metric": "cpu", "who": "workers"},
          Rule("all_at_least", 55.0, unit="%"), ("landcover-fig6_18",), unit="%", draws="cpu_box:landcover-fig6_18"),
    Claim("fig6_20-most-balanced", "Fig 6.20",
          "it provides the most optimal cluster utilization out of every model parallelism scheme presented in "
          "this work",
          "per scheme, the workers' spread of mean CPU % ((max - min) / mean); Fig 6.18 should be the lowest",
          "run_values", {"runs": SCHEMES, "metric": "cpu", "who": "workers", "reduce": "spread"},
          Rule("bottom", subjects=("Fig 6.18",)), tuple(SCHEMES.values()), draws="cpu_box:landcover-fig6_18"),
    Claim("fig6_20-rgb-waits-most", "Fig 6.20",
          "This time the worker responsible for the VHS-RGB branch has the instances that attain the highest Wait "
          "CPU values", "Fig 6.18 scheme: CPU wait per worker (95th percentile, else the maximum; 0-100)",
          "node_values", {"run": "landcover-fig6_18", "metric": "wait_peak", "who": "workers"},
          Rule("top", subjects=("rgb",)), ("landcover-fig6_18",), unit="%", draws="wait_box:landcover-fig6_18"),
    Claim("fig6_20-more-traffic", "Fig 6.19",
          "even though this model parallelism scheme causes bigger network traffic than the ones we studied in "
          "section 6.3.3", "cluster MB/s in + out: Fig 6.18 scheme vs the Fig 6.7 and 6.10 schemes", "run_values",
          {"runs": {k: SCHEMES[k] for k in ("Fig 6.18", "Fig 6.7", "Fig 6.10")}, "metric": "traffic",
           "reduce": "sum"},
          Rule("top", subjects=("Fig 6.18",)), ("landcover-fig6_18", "landcover-fig6_7", "landcover-fig6_10"),
          unit=" MB/s", draws="traffic:landcover-fig6_18"),
    Claim("fig6_20-fewer-bottlenecks", "Fig 6.20",
          "it still causes less bottlenecks than our initial proposed architecture",
          "seconds per 1,000 training samples, default scheme and Fig 6.18 scheme",
          "training_speed", {"runs": {"default": BASELINE, "Fig 6.18": "landcover-fig6_18"}},
          Rule("order", subjects=("default", "Fig 6.18")), (BASELINE, "landcover-fig6_18"), unit=" s",
          draws="cpu_box:landcover-fig6_18"),
    # ---- 6.3.5: Figs 6.21-6.28 -----------------------------------------------------------------------------
    Claim("fig6_21-mp-less-cpu", "Figs 6.21, 6.22",
          "for both datasets, Model Parallelism is the less computationally expensive approach",
          "2.5K patches: the workers' mean CPU %, data vs model parallel", "parallel_vs_data",
          {"size": "2.5k", "metric": "cpu"}, Rule("order", subjects=("data parallel", "model parallel")),
          (MP_25K, DP_25K, MP_8K, DP_8K), unit="%", also=(("8K", {"size": "8k"}),), draws=f"cpu_box:{MP_25K}"),
    Claim("fig6_21-ps-cpu-alike", "Figs 6.21, 6.22",
          "In all cases, the Parameter Servers of both approaches have similar CPU consumption",
          "2.5K patches: |the PS's mean CPU %, model / data parallel - 1|", "relative_difference",
          {"a": MP_25K, "b": DP_25K, "metric": "cpu", "who": ("ps",)}, Rule("at_most", 25.0, 50.0, unit="%"),
          (MP_25K, DP_25K, MP_8K, DP_8K), unit="%", also=(("8K", {"a": MP_8K, "b": DP_8K}),),
          draws=f"cpu_box:{DP_25K}"),
    Claim("fig6_23-mp-less-memory", "Figs 6.23, 6.24",
          "once again Model Parallelism is the approach that requires the least amount of resources",
          "2.5K patches: the workers' peak memory MB, data vs model parallel", "parallel_vs_data",
          {"size": "2.5k", "metric": "memory"}, Rule("order", subjects=("data parallel", "model parallel")),
          (MP_25K, DP_25K, MP_8K, DP_8K), unit=" MB", also=(("8K", {"size": "8k"}),),
          draws=f"memory_box:{MP_25K}"),
    Claim("fig6_23-more-patches-more-memory", "Figs 6.23, 6.24",
          "the more image patches we include in our training data the more memory our worker will need to allocate",
          "model parallel: the workers' peak memory MB, 8K vs 2.5K patches", "run_values",
          {"runs": {"8K": MP_8K, "2.5K": MP_25K}, "metric": "memory", "who": "workers"},
          Rule("order", subjects=("8K", "2.5K")), (MP_8K, MP_25K, DP_8K, DP_25K), unit=" MB",
          also=(("data parallel", {"runs": {"8K": DP_8K, "2.5K": DP_25K}}),), draws=f"memory_box:{MP_8K}"),
    Claim("fig6_23-ps-memory-alike", "Figs 6.23, 6.24",
          "Once again, the Parameter Server of both Model and Data Parallelism behave in a similar manner",
          "2.5K patches: |the PS's peak memory, model / data parallel - 1|", "relative_difference",
          {"a": MP_25K, "b": DP_25K, "metric": "memory", "who": ("ps",)}, Rule("at_most", 25.0, 50.0, unit="%"),
          (MP_25K, DP_25K, MP_8K, DP_8K), unit="%", also=(("8K", {"a": MP_8K, "b": DP_8K}),),
          draws=f"memory_box:{DP_25K}"),
    Claim("fig6_25-in-independent-of-size", "Figs 6.25, 6.26",
          "the size of the training set does not affect at all the amount of data each worker receives, and this "
          "is true for both approaches",
          "model parallel: the largest |MB/s in of a node at 8K / at 2.5K - 1| over the nodes", "relative_difference",
          {"a": MP_8K, "b": MP_25K, "metric": "rx"}, Rule("at_most", 25.0, 50.0, unit="%"),
          (MP_8K, MP_25K, DP_8K, DP_25K), unit="%", also=(("data parallel", {"a": DP_8K, "b": DP_25K}),),
          draws=f"traffic:{MP_25K}"),
    Claim("fig6_25-dp-ps-receives", "Figs 6.25, 6.26",
          "As expected for Data Parallelism, the Parameter Server receives a big amount of data",
          "data parallel, 2.5K: MB/s in per node", "node_values", {"run": DP_25K, "metric": "rx"},
          Rule("top", subjects=("ps",)), (DP_25K, DP_8K), unit=" MB/s", also=(("8K", {"run": DP_8K}),),
          draws=f"traffic:{DP_25K}"),
    Claim("fig6_25-dp-workers-alike", "Figs 6.25, 6.26",
          "The rest of the workers have a similar amount of incoming traffic",
          "data parallel, 2.5K: the workers' spread of MB/s in ((max - min) / mean)", "run_values",
          {"runs": {"2.5K": DP_25K}, "metric": "rx", "who": "workers", "reduce": "spread"},
          Rule("all_at_most", 0.25, unit=""), (DP_25K, DP_8K),
          also=(("8K", {"runs": {"8K": DP_8K}}),), draws=f"traffic:{DP_25K}"),
    Claim("fig6_25-mp-favourable", "Figs 6.25, 6.26",
          "one can assume that Model Parallelism is yet again the more favorable approach of the two",
          "2.5K patches: the workers' mean MB/s in, data vs model parallel", "run_values",
          {"runs": {"data parallel": DP_25K, "model parallel": MP_25K}, "metric": "rx", "who": "workers"},
          Rule("order", subjects=("data parallel", "model parallel")), (DP_25K, MP_25K, DP_8K, MP_8K),
          unit=" MB/s", also=(("8K", {"runs": {"data parallel": DP_8K, "model parallel": MP_8K}}),),
          draws=f"traffic:{DP_25K}"),
    Claim("fig6_27-dp-ps-sends", "Figs 6.27, 6.28",
          "Once again, the Parameter Server sends the largest amount of data",
          "data parallel, 2.5K: MB/s out per node", "node_values", {"run": DP_25K, "metric": "tx"},
          Rule("top", subjects=("ps",)), (DP_25K, DP_8K), unit=" MB/s", also=(("8K", {"run": DP_8K}),),
          draws=f"traffic:{DP_25K}"),
    Claim("fig6_27-mp-out-ps-merging", "Figs 6.27, 6.28",
          "For Model Parallelism, most Outgoing traffic is gathered between the PS and the merging Worker",
          "model parallel, 2.5K: MB/s out per node", "node_values", {"run": MP_25K, "metric": "tx"},
          Rule("top", subjects=("ps", "merging")), (MP_25K, MP_8K), unit=" MB/s", also=(("8K", {"run": MP_8K}),),
          draws=f"traffic:{MP_25K}"),
)


def judge(claim: Claim, summaries: dict[str, dict]) -> dict:
    """The claim's verdict on ``summaries``: a dict of the claim's fields and ``ours`` (our number), ``verdict``,
    ``why`` (the numbers behind it, or why it cannot be tested) and ``also`` (the further measures' verdicts)."""
    out = {"id": claim.id, "figure": claim.figure, "words": claim.words, "quantity": claim.quantity,
           "rule": claim.rule.describe(), "runs": list(claim.runs), "draws": claim.draws,
           "rests_on": claim.rests_on}
    out.update(_verdict(claim, claim.params, summaries))
    out["also"] = [{"label": label, **_verdict(claim, {**claim.params, **change}, summaries)}
                   for label, change in claim.also]
    return out


def _verdict(claim: Claim, params: dict, summaries: dict[str, dict]) -> dict:
    try:
        m = MEASURES[claim.measure](summaries, **params)
    except NotTestable as reason:
        return {"ours": "-", "verdict": "not testable here", "why": str(reason), "values": []}
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as err:
        # a run that ended early or a summary without what the measure reads: the page says so, and goes on
        return {"ours": "-", "verdict": "not testable here", "why": f"the runs lack what it reads "
                f"({type(err).__name__}: {err})", "values": []}
    verdicts = [claim.rule.judge(v) for v in m.values]
    why = m.why
    if len(set(verdicts)) > 1:
        why += " (seeds disagree: " + ", ".join(f"{s} {v}" for s, v in zip(m.seeds, verdicts, strict=True)) + ")"
    return {"ours": show(m, claim.unit), "verdict": combine(verdicts), "why": why, "values": m.values}


def _one(v: float, unit: str) -> str:
    if unit == "% less":
        return f"{v:.1f}% less" if v >= 0 else f"{-v:.1f}% more"
    return f"{v:.2f}{unit}" if abs(v) < 10 else f"{v:.1f}{unit}" if abs(v) < 100 else f"{v:.0f}{unit}"


def show(m: Measured, unit: str) -> str:
    """Our number: one value; or the median of the seeds with their range; orderings as ``name value, ...``."""
    first = m.values[0]
    if isinstance(first, dict):
        said = ", ".join(f"{k} {_one(v, unit)}" for k, v in first.items())
        return said + (f" ({m.seeds[0]}; {len(m.values)} seeds)" if len(m.values) > 1 else "")
    if len(m.values) == 1:
        return _one(first, unit)
    lo, hi = sorted((min(m.values), max(m.values)), key=lambda v: -v if unit == "% less" else v)
    return (f"{_one(statistics.median(m.values), unit)} (median of {len(m.values)} seeds, {_one(lo, unit)} to "
            f"{_one(hi, unit)})")


def claims(summaries: dict[str, dict]) -> list[dict]:
    """Every claim of :data:`CLAIMS`, judged on ``summaries``."""
    return [judge(c, summaries) for c in CLAIMS]


def plateau_rows(summaries: dict[str, dict]) -> list[str]:
    """Tables 5.1 / 5.2 side by side as Markdown (seeded repetitions as extra rows)."""
    lines = []
    for criterion, thesis in THESIS_TABLES.items():
        table = "5.1" if "patience=1" in criterion else "5.2"
        lines += [f"### Epochs to stable accuracy, `{criterion}` (thesis Table {table})",
                  "", "| data | cluster | thesis (per worker) | ours (per worker) |", "|---|---|---|---|"]
        for dist in ("same", "disjoint"):
            for size in ("single", "1w", "2w", "3w"):
                cell = "redshift-5k-single" if size == "single" else f"redshift-5k-{dist}-{size}"
                runs = sorted(n for n in summaries if config_and_seed(n)[0] == cell) or [cell]
                want = ", ".join(str(v) for v in thesis[dist][size])
                for name in runs:
                    per = summaries.get(name, {}).get("epochs_to_plateau", {}).get(criterion)
                    ours = "not run" if name not in summaries else ", ".join(
                        "none" if per[w] is None else str(per[w]) for w in sorted(per or {})) or "-"
                    seed = config_and_seed(name)[1]
                    lines.append(f"| {dist} | {size}{f' (seed {seed})' if seed else ''} | {want} | {ours} |")
        lines.append("")
    return lines
