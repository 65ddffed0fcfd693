"""A live bar within a distributed run's epochs, from the workers' heartbeats, on a terminal only.

Workers report ``{"epoch": e, "samples": n}`` with every heartbeat (every 2 s); the driver's
:class:`EpochBar` shows the samples trained in every worker's current epoch against what one epoch feeds all
of them, refreshed twice a second. Where the console is not a terminal (CI logs, a pipe), nothing is drawn:
the one line per finished worker epoch is the progress there. Under spark-submit the driver's stdout is a
pipe through the JVM even when ``ddl run`` prints to a terminal, so ``ddl run`` decides and says so
(``enabled``).
"""

from __future__ import annotations

import sys
import threading
from typing import IO, Protocol


class ProgressSource(Protocol):
    progress: dict[str, dict]


class EpochBar:
    """Use as ``with EpochBar(collector, samples_per_epoch, epochs): ...``.

    Args:
        source: what holds the workers' last reported progress (the run's collector).
        samples_per_epoch: samples one feed epoch gives all workers together.
        epochs: epochs of the run, for the bar's label.
        stream: the console.
        enabled: draw the bar; ``None``: only if ``stream`` is a terminal.
    """

    REFRESH_S = 0.5

    def __init__(self, source: ProgressSource, samples_per_epoch: int, epochs: int, stream: IO[str] | None = None,
                 enabled: bool | None = None) -> None:
        self.source, self.total, self.epochs = source, samples_per_epoch, epochs
        self.stream = stream or sys.stdout
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ddl-epoch-bar", daemon=True)

    def _loop(self) -> None:
        from tqdm import tqdm

        with tqdm(total=self.total, unit="sample", file=self.stream, leave=False, ncols=100) as bar:
            while not self._stop.wait(self.REFRESH_S):
                workers = {n: p for n, p in dict(self.source.progress).items() if n.startswith("worker-")}
                if not workers:
                    continue
                bar.n = min(sum(int(p.get("samples", 0)) for p in workers.values()), self.total)
                epochs = sorted({int(p.get("epoch", 0)) for p in workers.values()})
                bar.set_description(f"epoch {'-'.join(map(str, epochs))}/{self.epochs}", refresh=False)
                bar.refresh()

    def __enter__(self) -> EpochBar:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
