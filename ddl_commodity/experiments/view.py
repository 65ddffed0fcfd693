"""How an experiment's runs are shown, as opposed to what is trained (:mod:`ddl_commodity.experiments.api`).

An :class:`ExperimentView` says which held-out score the curves, progress lines and ``ddl compare`` plot, adds
lines to the summary ``ddl run`` prints and to ``ddl report``, and resizes the experiment's thesis configs for
``ddl reproduce --scale``. An experiment names its view with ``view = MyView``; a user's experiment needs none
(:func:`ddl_commodity.experiments.registry.view_of` gives it the generic one). Nothing here loads TensorFlow:
the driver and the report commands use views.
"""

from __future__ import annotations

from typing import ClassVar


class ExperimentView:
    """The generic presentation: the validation accuracy panel and no extra lines or resizing."""

    #: The per-epoch record key and axis label of the validation panel of ``curves.png`` (and of the
    #: progress lines and ``ddl compare``).
    validation_curve: ClassVar[tuple[str, str]] = ("val_accuracy", "validation accuracy")

    def console_lines(self, summary: dict) -> list[str]:
        """Extra lines of the summary ``ddl run`` prints at the end, from ``summary.json``'s content (none)."""
        return []

    def report_lines(self, summary: dict) -> list[str]:
        """Extra Markdown lines of ``ddl report`` for a run, from ``summary.json``'s content (none)."""
        return []

    def at_scale(self, raw: dict, scale: str) -> dict:
        """The raw config resized for ``ddl reproduce --scale <scale>`` (``smoke``: seconds, ``small``: minutes,
        ``thesis``: the thesis's sizes; see :mod:`ddl_commodity.reproduce.runsets`). Unchanged by default."""
        return raw


class LossView(ExperimentView):
    """For a model that does not classify (a regression head): no accuracy to show, so the validation loss."""

    validation_curve = ("val_loss", "validation loss")
