"""Experiments: what is trained (config schema, data, model, blocks), never how. See :mod:`.api` for the
interface, :mod:`.registry` for lookup by name or dotted path; the thesis's two are :mod:`.redshift` and
:mod:`.landcover`."""
