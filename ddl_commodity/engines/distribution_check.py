"""Do the workers' index digests prove the configured data distribution? (DESIGN: never pass silently.)"""

from __future__ import annotations

import numpy as np

from ddl_commodity.config import RunConfig
from ddl_commodity.experiments.api import Dataset


def check_distribution(
    cfg: RunConfig, data: Dataset, curves: dict[str, list[dict]],
    live_per_epoch: dict[int, int] | None = None, losses: list[dict] | None = None,
) -> dict:
    """Do the workers' index digests prove the configured data distribution? (DESIGN: never pass silently.)

    Every worker epoch's digest must equal the digest of the rows its shard should hold: the whole training
    set for ``same``; for ``disjoint`` the seeded 1/L shard, L being the workers fed that epoch (M, or fewer
    after a tolerated loss: ``live_per_epoch``). Each feed epoch must have gone to L distinct workers (Spark
    may hand two partitions to one executor) and, for ``disjoint``, used every shard once. In an epoch during
    which a worker was lost (``losses``), a live worker may have re-run the dead one's partition, and a shard
    the dead worker took with it is reported under ``lost_shards`` rather than as a problem.
    """
    from ddl_commodity.data.rdd import index_digest

    live_per_epoch, losses = live_per_epoch or {}, losses or []
    m = cfg.training.workers
    expected_by_count: dict[int, dict[int, str]] = {}

    def expected(count: int) -> dict[int, str]:
        if count not in expected_by_count:
            if cfg.training.data_distribution == "same":
                expected_by_count[count] = dict.fromkeys(range(count), index_digest(data.train_index))
            else:
                shards = data.shards(count, cfg.seed)
                expected_by_count[count] = {k: index_digest(np.flatnonzero(shards == k)) for k in range(count)}
        return expected_by_count[count]

    records = [r for name, recs in curves.items() if name != "single" for r in recs]
    problems = [
        f"{r['worker']} epoch {r['epoch']}: indices do not match shard {r['shard']} ({r['index_count']} seen)"
        for r in records if expected(live_per_epoch.get(r["feed_epoch"], m)).get(r["shard"]) != r["index_digest"]
    ]
    by_epoch: dict[int, list[dict]] = {}
    for r in records:
        by_epoch.setdefault(r["feed_epoch"], []).append(r)
    lost_shards = []
    for e, recs in sorted(by_epoch.items()):
        count = live_per_epoch.get(e, m)
        workers, shards = sorted(r["worker"] for r in recs), sorted(r["shard"] for r in recs)
        # A loss is detected up to one feed epoch late (the next epoch's partition for it blocks until then).
        lost_here = [x["worker"] for x in losses if x.get("feed_epoch") in (e, e + 1) and x["worker"] not in workers]
        if lost_here:
            missing = sorted(set(range(count)) - set(shards))
            if len(set(shards)) != len(shards) or not set(shards) <= set(range(count)):
                problems.append(f"feed epoch {e}: shards {shards} instead of each of {count} shards at most once")
            if missing:
                lost_shards.append({"feed_epoch": e, "shards": missing, "lost_workers": lost_here})
            continue
        if len(set(workers)) != count or len(recs) != count:
            problems.append(f"feed epoch {e} went to workers {workers}, not one partition to each of {count}")
        if cfg.training.data_distribution == "disjoint" and shards != list(range(count)):
            problems.append(f"feed epoch {e}: shards {shards} instead of each shard once")
    out = {"mode": cfg.training.data_distribution, "consistent": not problems, "problems": problems}
    if losses:
        out["lost_shards"] = lost_shards
    return out
