"""spark-submit entry point for any experiment (the config's ``experiment`` key says which).

    spark-submit --master spark://HOST:7077 jobs/experiment.py CONFIG.yaml [--run-dir DIR]

``ddl run CONFIG`` does the same on the embedded local cluster.
"""

from ddl_commodity.launch.job import main

if __name__ == "__main__":
    raise SystemExit(main())
