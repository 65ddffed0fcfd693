"""Per-node traffic attribution reads TF roles from the run's cluster_info.json."""

from __future__ import annotations

import json
from pathlib import Path

from ddl_commodity.cluster.netns import record_run_traffic, tfos_roles
from ddl_commodity.runs import read_cluster_info, record_cluster_info

# Shaped like TFoS's ``TFCluster.cluster_info`` entries, with the extra keys TFoS also keeps.
CLUSTER_INFO = [
    {"executor_id": 1, "host": "10.77.0.12", "job_name": "worker", "task_index": 1, "port": 40001,
     "tb_pid": 0, "tb_port": 0, "addr": "/tmp/x", "authkey": b"k"},
    {"executor_id": 0, "host": "10.77.0.13", "job_name": "ps", "task_index": 0, "port": 40000,
     "tb_pid": 0, "tb_port": 0, "addr": ("10.77.0.13", 1), "authkey": b"k"},
    {"executor_id": 2, "host": "10.77.0.14", "job_name": "worker", "task_index": 0, "port": 40002,
     "tb_pid": 0, "tb_port": 0, "addr": "/tmp/y", "authkey": b"k"},
]


def test_cluster_info_round_trip_keeps_only_plain_fields(tmp_path: Path) -> None:
    record_cluster_info(tmp_path, CLUSTER_INFO)
    doc = json.loads((tmp_path / "cluster_info.json").read_text())
    assert [n["job_name"] for n in doc["nodes"]] == ["worker", "ps", "worker"]
    assert set(doc["nodes"][0]) == {"job_name", "task_index", "host", "port", "executor_id"}
    assert read_cluster_info(tmp_path)[1]["host"] == "10.77.0.13"


def test_roles_by_address_and_traffic_attribution(tmp_path: Path) -> None:
    assert tfos_roles(tmp_path) == {}  # a run that never reserved its cluster
    record_cluster_info(tmp_path, [*CLUSTER_INFO, dict(CLUSTER_INFO[0], task_index=2, port=40003)])
    assert tfos_roles(tmp_path) == {"10.77.0.12": ["worker-1", "worker-2"], "10.77.0.13": ["ps-0"],
                                    "10.77.0.14": ["worker-0"]}
    nodes = [{"name": "node0", "address": "10.77.0.10", "namespace": "ns0", "roles": ["driver"]},
             {"name": "node3", "address": "10.77.0.13", "namespace": "ns3"}]
    path = record_run_traffic(tmp_path, nodes, before={"node0": (10, 20), "node3": (0, 0)},
                              after={"node0": (110, 1020), "node3": (5000, 7000)})
    doc = json.loads(path.read_text())["nodes"]
    assert doc["node0"] == {"namespace": "ns0", "address": "10.77.0.10", "interface": "eth0",
                            "roles": ["driver"], "rx_bytes": 100, "tx_bytes": 1000}
    assert doc["node3"]["roles"] == ["ps-0"] and doc["node3"]["tx_bytes"] == 7000
