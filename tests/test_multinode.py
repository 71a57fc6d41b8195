"""Several Ray nodes on this machine (`ray.cluster_utils.Cluster`): the grid spreads over them, and a
node removed mid-sweep does not lose its trials."""

import polars as pl
import pytest

from conftest import read_lake as lake
from conftest import Watched

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    # a head that takes no training (as in cluster.yaml) and two 1-CPU worker nodes
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {"driver": 1}})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    try:
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()


def sweep(c, storage, data_root, *extra) -> Watched:
    return Watched(["sweeps/ratio_grid.py", "--preset", "smoke", "--address", c.address, "--storage", str(storage),
                    "--data-root", str(data_root), "--no-report", *extra])


def test_grid_runs_across_nodes(cluster, tmp_path, smoke_data):
    c, _ = cluster
    storage = tmp_path / "results"
    p = sweep(c, storage, smoke_data, "--kinds", "baseline", "--seeds", "0,1")
    code, out = p.finish()
    assert code == 0, out[-3000:]
    assert "0 CPUs" not in out and "2 CPUs" in out  # the head's CPU 0 is not counted for training
    runs = lake(storage, "runs")
    assert runs.height == 2 and (runs["status"] == "ok").all(), runs.select("kind", "status", "error")
    nodes = set(runs["node"].to_list())
    assert len(nodes) == 2, nodes  # both worker nodes trained, the head none


def test_node_removed_mid_sweep_its_trials_are_rescheduled(cluster, tmp_path, smoke_data):
    c, workers = cluster
    storage = tmp_path / "results"
    p = sweep(c, storage, smoke_data, "--kinds", "baseline", "--seeds", "0,1", "--max-epochs", "4")
    # wait until both trials are fitting (an epoch checkpoint exists for each), then kill one node
    p.wait_for(lambda _: len(list((storage / "work").rglob("checkpoint.pt"))) >= 2 if (storage / "work").exists() else False)
    c.remove_node(workers[1], allow_graceful=False)
    c.add_node(num_cpus=1)  # the autoscaler's replacement
    code, out = p.finish()
    assert code == 0, out[-3000:]
    runs = lake(storage, "runs")
    assert runs.height == 2 and runs["run_id"].n_unique() == 2
    assert (runs["status"] == "ok").all(), runs.select("kind", "status", "error")
    assert (runs["epochs"] == 4).all()
    for table in ("epochs", "corruption_accuracy", "predictions"):
        t = lake(storage, table)
        keys = {"epochs": ["run_id", "phase", "epoch"], "corruption_accuracy": ["run_id", "corruption", "severity"],
                "predictions": ["run_id", "condition", "severity", "image"]}[table]
        assert t.select(keys).is_duplicated().sum() == 0, table
    ep = lake(storage, "epochs")
    assert sorted(ep.filter(pl.col("run_id") == runs["run_id"][0])["epoch"].to_list()) == [1, 2, 3, 4]
