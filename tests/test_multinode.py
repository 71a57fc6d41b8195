"""Several Ray nodes on this machine (`ray.cluster_utils.Cluster`): a head that takes no training and
two 1-CPU worker nodes. One smoke sweep serves two checks: its trials train on both worker nodes at
once (seen through the state API while they run), and when the node under one of them is removed
mid-fit, that trial is rescheduled and the lake ends complete and duplicate-free."""

import polars as pl
import pytest

from conftest import Watched
from conftest import read_lake as lake

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def node_loss_sweep(tmp_path_factory, smoke_data):
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    storage = tmp_path_factory.mktemp("multinode") / "results"
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {"driver": 1}})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    head, worker_ids = c.head_node.node_id, {n.node_id for n in workers}
    try:
        w = Watched(["sweeps/ratio_grid.py", "--preset", "smoke", "--address", c.address, "--storage", str(storage),
                     "--data-root", str(smoke_data), "--kinds", "baseline", "--seeds", "0,1", "--max-epochs", "3",
                     "--no-report"])

        def training_nodes():
            actors = list_actors(address=c.address, filters=[("state", "=", "ALIVE")], detail=True, raise_on_missing_output=False)
            return {a.node_id for a in actors if a.class_name == "RayTrainWorker"}

        # both trials fitting: an epoch reported by each, and their Train workers alive
        w.wait_for(lambda out: out.count("train epoch 1 ") >= 2)
        nodes_seen = training_nodes()
        victim = next(n for n in workers if n.node_id in nodes_seen)
        c.remove_node(victim, allow_graceful=False)
        c.add_node(num_cpus=1)  # the autoscaler's replacement
        code, out = w.finish()
    finally:
        ray.shutdown()
        c.shutdown()
    return {"code": code, "out": out, "storage": storage, "nodes_seen": nodes_seen,
            "workers": worker_ids, "head": head}


def test_trials_train_on_more_than_one_node(node_loss_sweep):
    seen = node_loss_sweep["nodes_seen"]
    assert len(seen) == 2 and seen <= node_loss_sweep["workers"], seen  # both workers, never the head
    assert "2 CPUs" in node_loss_sweep["out"]  # the head's CPU 0 is not offered to training
    runs = lake(node_loss_sweep["storage"], "runs")
    assert runs["node"].null_count() == 0  # every record says where it was trained


def test_node_removed_mid_sweep_its_trial_is_rescheduled_and_finishes(node_loss_sweep):
    assert node_loss_sweep["code"] == 0, node_loss_sweep["out"][-3000:]
    storage = node_loss_sweep["storage"]
    runs = lake(storage, "runs")
    assert runs.height == 2 and runs["run_id"].n_unique() == 2
    assert (runs["status"] == "ok").all(), runs.select("kind", "status", "error")
    assert (runs["epochs"] == 3).all()
    keys = {"epochs": ["run_id", "phase", "epoch"], "corruption_accuracy": ["run_id", "corruption", "severity"],
            "predictions": ["run_id", "condition", "severity", "image"]}
    for table, cols in keys.items():
        t = lake(storage, table)
        assert t.height and t.select(cols).is_duplicated().sum() == 0, table
    ep = lake(storage, "epochs")
    for rid in runs["run_id"]:
        assert sorted(ep.filter(pl.col("run_id") == rid)["epoch"].to_list()) == [1, 2, 3]
