"""Experiments: what is trained (config schema, data, model, blocks, loss and metrics), never how. See :mod:`.api`
for the interface, :mod:`.view` for how an experiment's runs are shown, :mod:`.registry` for lookup by name or
dotted path; the thesis's two are :mod:`.redshift` and :mod:`.landcover`."""
