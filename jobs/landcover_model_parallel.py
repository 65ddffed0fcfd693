"""spark-submit entry point: the land-cover model-parallel experiment (thesis chapter 6).

    spark-submit --master spark://HOST:7077 jobs/landcover_model_parallel.py CONFIG.yaml [--run-dir DIR]

``ddl run CONFIG`` does the same on the embedded local cluster.
"""

from ddl_commodity.launch.job import main

if __name__ == "__main__":
    raise SystemExit(main("landcover_model_parallel"))
