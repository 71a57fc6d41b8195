"""Several Ray nodes on this machine (`ray.cluster_utils.Cluster`): a head that takes no training and
two 1-CPU worker nodes. One smoke sweep serves two checks: its trials train on both worker nodes at
once (seen through the state API while they run), and when the node under one of them is removed
mid-fit, that trial is rescheduled on another node, resumes from its checkpoint, and the lake ends
complete and duplicate-free. The trials pause after epoch 1 at a fault-injection point and say on
which node, so the node removed is known to hold a running fit (no race with printed lines)."""

import json
import os

import polars as pl
import pytest

from conftest import Watched
from conftest import read_lake as lake
from sweeps.stages import PAUSE_ENV

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def node_loss_sweep(tmp_path_factory, smoke_data):
    import ray
    from ray.cluster_utils import Cluster

    tmp = tmp_path_factory.mktemp("multinode")
    storage, pause = tmp / "results", tmp / "pause"
    pause.mkdir()
    # every trial holds still once epoch 1 is checkpointed (sweeps.stages PAUSE_ENV) and says on which
    # node: the nodes are started by this process, so their workers inherit the variable from here
    old = os.environ.get(PAUSE_ENV)
    os.environ[PAUSE_ENV] = f"1:{pause}"
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {"driver": 1}})
    try:
        workers = [c.add_node(num_cpus=1) for _ in range(2)]
        c.wait_for_nodes()
        head, worker_ids = c.head_node.node_id, {n.node_id for n in workers}
        w = Watched(["sweeps/ratio_grid.py", "--preset", "smoke", "--address", c.address, "--storage", str(storage),
                     "--data-root", str(smoke_data), "--kinds", "baseline", "--seeds", "0,1", "--max-epochs", "3",
                     "--no-report"])
        # both trials inside their fits at once, each paused after epoch 1 on its node
        w.wait_for(lambda out: len(list(pause.glob("*.json"))) >= 2)
        paused = {m.stem: json.loads(m.read_text()) for m in pause.glob("*.json")}
        victim_run, victim = sorted(paused.items())[0]
        node = next(n for n in workers if n.node_id == victim["node"])
        c.remove_node(node, allow_graceful=False)       # the node dies under a running trial
        for run_id in paused:                           # the other trial goes on where it is; the victim's
            if run_id != victim_run:                    # worker never gets the go (it would race its own death
                (pause / f"{run_id}.go").touch()        # into epoch 2); its restarted worker does not pause again
        added = {c.add_node(num_cpus=1).node_id}  # the autoscaler's replacement
        code, out = w.finish()
    finally:
        ray.shutdown()
        c.shutdown()
        if old is None:
            os.environ.pop(PAUSE_ENV, None)
        else:
            os.environ[PAUSE_ENV] = old
    return {"code": code, "out": out, "storage": storage, "paused": paused, "victim_run": victim_run,
            "victim_node": victim["node"], "workers": worker_ids, "added": added, "head": head}


def node_of(record: str) -> str:
    return record.split("/", 1)[1]   # runs.node is "<host>/<first 12 hex of the Ray node id>"


def test_trials_train_on_more_than_one_node(node_loss_sweep):
    paused = node_loss_sweep["paused"]
    # two trials fitting at the same time, on the two worker nodes, never on the head
    assert {p["node"] for p in paused.values()} == node_loss_sweep["workers"], paused
    runs = lake(node_loss_sweep["storage"], "runs")
    # every record says where it was trained: a worker node, never the head
    assert {node_of(n) for n in runs["node"]} <= {w[:12] for w in node_loss_sweep["workers"]} | {
        n[:12] for n in node_loss_sweep["added"]}, runs["node"]


def test_node_removed_mid_sweep_its_trial_is_rescheduled_and_finishes(node_loss_sweep):
    assert node_loss_sweep["code"] == 0, node_loss_sweep["out"][-3000:]
    storage = node_loss_sweep["storage"]
    runs = lake(storage, "runs")
    assert runs.height == 2 and runs["run_id"].n_unique() == 2
    assert (runs["status"] == "ok").all(), runs.select("kind", "status", "error")
    assert (runs["epochs"] == 3).all()
    # the trial on the removed node was retried on another node, from its epoch-1 checkpoint
    victim = runs.filter(pl.col("run_id") == node_loss_sweep["victim_run"]).row(0, named=True)
    assert node_of(victim["node"]) != node_loss_sweep["victim_node"][:12], victim["node"]
    assert node_of(victim["node"]) != node_loss_sweep["head"][:12]
    assert victim["resumed"] == "train:1", victim["resumed"]
    keys = {"epochs": ["run_id", "phase", "epoch"], "corruption_accuracy": ["run_id", "corruption", "severity"],
            "predictions": ["run_id", "condition", "severity", "image"]}
    for table, cols in keys.items():
        t = lake(storage, table)
        assert t.height and t.select(cols).is_duplicated().sum() == 0, table
    ep = lake(storage, "epochs")
    for rid in runs["run_id"]:
        assert sorted(ep.filter(pl.col("run_id") == rid)["epoch"].to_list()) == [1, 2, 3]
