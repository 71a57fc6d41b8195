"""cluster.yaml: valid for Ray's own autoscaler schema (offline), and safe by construction."""

import copy
import re
import tomllib

import pytest
import yaml

from conftest import ROOT

CLUSTER = ROOT / "cluster.yaml"


def validate(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load(CLUSTER.read_text())


def test_cluster_yaml_passes_rays_schema(cluster):
    validate(cluster)
    assert cluster["provider"]["type"] == "aws"
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "the head must take no training"
    gpu_types = {n: t for n, t in types.items() if t["node_config"]["InstanceType"].startswith(("g", "p"))}
    assert len(gpu_types) >= 2 and all("max_workers" in t and "min_workers" in t for t in gpu_types.values())
    assert any(t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot" for t in gpu_types.values())


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.__setitem__("setup_comands", c.pop("setup_commands")), "'setup_comands' was unexpected"),
    (lambda c: c["available_node_types"]["gpu_1x"].__setitem__("max_worker", c["available_node_types"]["gpu_1x"].pop("max_workers")),
     "'max_worker' was unexpected"),
    (lambda c: c.__setitem__("idle_timeout_minute", 5), "'idle_timeout_minute' was unexpected"),
    (lambda c: c.__setitem__("head_node_type", "no_such_type"), "`head_node_type` must be one of `available_node_types`"),
], ids=["top-level key", "node-type key", "top-level typo", "head type"])
def test_a_mistyped_key_is_caught(cluster, mutate, message):
    bad = copy.deepcopy(cluster)
    mutate(bad)
    with pytest.raises(Exception, match=re.escape(message)):
        validate(bad)


def test_provider_keys_are_known_to_ray(cluster):
    """Ray's schema lets any provider key through (a typo such as `regoin` would pass): check them here."""
    import json
    from pathlib import Path

    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    known = set(schema["properties"]["provider"]["properties"])
    assert set(cluster["provider"]) <= known, set(cluster["provider"]) - known
    bad = copy.deepcopy(cluster)
    bad["provider"]["regoin"] = bad["provider"].pop("region")
    assert not set(bad["provider"]) <= known


def test_setup_installs_the_projects_own_pins_and_keeps_the_cluster_closed(cluster):
    text = CLUSTER.read_text()
    setup = " ; ".join(cluster["setup_commands"])
    # the project from its own pyproject (torch, ray pinned there), never a nightly wheel
    assert "pip install -q -e ~/brainrobust" in setup and "ray-wheels" not in text and ".dev0" not in text
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("ray[") and "==2.60.0" in d for d in deps) and "torch==2.14.1" in deps
    assert cluster["file_mounts"]["/home/ubuntu/brainrobust"] == "."
    # dashboard on loopback (reached by `ray dashboard` forwarding), token auth not switched off
    start = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in text
    assert "RAY_AUTH_MODE" not in setup and "disabled" not in setup
    # no credentials: no access keys, secrets or tokens anywhere in the file
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|aws_access_key_id|SecretAccessKey", text, re.I)
    # the storage bucket is set in exactly one place
    assert len(re.findall(r"s3://", text)) == 1 and "BRAINROBUST_STORAGE=s3://" in setup
