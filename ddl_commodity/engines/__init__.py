"""Training engines: single machine, data parallel (Spark input + the staleness-weighted PS), model parallel
(TensorFlow input + a split scheme). They take an :class:`~ddl_commodity.experiments.api.Experiment` and its
config and know no experiment by name; :func:`ddl_commodity.engines.run.run_experiment` picks one."""
