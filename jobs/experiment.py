"""spark-submit entry point for any experiment (the config's ``experiment`` key says which).

    spark-submit --master spark://HOST:7077 jobs/experiment.py CONFIG.yaml [--run-dir DIR]

``ddl run CONFIG`` runs the same in its own process; ``ddl run CONFIG --spark-submit`` through this file.
"""

from ddl_commodity.launch.job import main

if __name__ == "__main__":
    raise SystemExit(main())
