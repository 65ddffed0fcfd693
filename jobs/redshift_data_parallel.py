"""spark-submit entry point: the redshift data-parallel experiment (thesis chapter 5).

    spark-submit --master spark://HOST:7077 jobs/redshift_data_parallel.py CONFIG.yaml [--run-dir DIR]

``ddl run CONFIG`` does the same on the embedded local cluster.
"""

from ddl_commodity.launch.job import main

if __name__ == "__main__":
    raise SystemExit(main("redshift_data_parallel"))
