"""A local cluster whose ports, chosen free, are taken before Spark binds them: Spark takes the next ones, and
the cluster follows them from its daemons' logs (a real master and worker)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ddl_commodity.cluster import local

pytestmark = pytest.mark.cluster


def test_ports_taken_before_spark_binds_them_are_followed(tmp_path: Path, monkeypatch) -> None:
    taken = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    rpc, ui, worker_ui = (s.getsockname()[1] for s in taken)
    queue = [rpc, ui, worker_ui]  # the order the cluster asks: master RPC, master UI, worker UI
    real = local.free_port
    monkeypatch.setattr(local, "free_port", lambda host: queue.pop(0) if queue else real(host))
    cluster = local.LocalStandaloneCluster(workers=1, state_dir=tmp_path / ".cluster", startup_timeout_s=60)
    try:
        state = cluster.start()
        assert rpc not in (int(state.master_url.rsplit(":", 1)[1]), int(state.master_ui.rsplit(":", 1)[1]))
        assert state.master_ui != f"http://127.0.0.1:{ui}" and state.nodes[1]["webui_port"] != worker_ui
        status = local.master_status(state)
        assert local.alive_worker_count(status) == 1
        (worker,) = status["workers"]
        assert worker["webuiaddress"].endswith(f":{state.nodes[1]['webui_port']}"), worker
        assert local.read_state(tmp_path / ".cluster").master_url == state.master_url  # recorded for `down`
    finally:
        cluster.stop()
        for s in taken:
            s.close()
