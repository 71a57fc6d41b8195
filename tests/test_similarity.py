"""The similarity family (Li et al. 2019): loss, regulariser, pools, the fit mode and the sim_* kinds."""

import json

import numpy as np
import pytest
import torch

from core.data.synthetic import make_classification, make_neural, world_config
from core.models import build_model
from core.training.config import TrainConfig
from core.training.data import TrainData, as_u8
from core.training.fit import fit
from core.training.similarity import (SimilarityPool, SimilarityRegularizer, pair_cosine, similarity_loss,
                                      similarity_match)


@pytest.fixture(scope="module")
def world():
    cfg = world_config("smoke")
    return make_classification(cfg), make_neural(cfg)[0]


def test_the_loss_is_zero_on_agreement_and_grows_with_mismatch():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(200, generator=g) * 1.6 - 0.8
    noise = torch.randn(200, generator=g)
    assert similarity_loss(target, target).item() == 0.0
    losses = [similarity_loss((target + d * noise).clamp(-0.99, 0.99), target).item() for d in (0.01, 0.05, 0.1, 0.3)]
    assert all(a < b for a, b in zip(losses, losses[1:])) and losses[0] > 0
    # by hand: one pair, atanh(0.5) vs atanh(0)
    assert similarity_loss(torch.tensor([0.5]), torch.tensor([0.0])).item() == pytest.approx(np.arctanh(0.5) ** 2)


def test_features_with_the_targets_geometry_give_zero_loss():
    """Features equal to the (pool-centred) target vectors, seen as 1x1 maps: S_model = S_target."""
    g = torch.Generator().manual_seed(1)
    vectors = torch.randn(12, 5, generator=g) + 3.0
    pool = SimilarityPool.from_targets(torch.zeros(12, 1, 8, 8, dtype=torch.uint8), vectors)
    reg = SimilarityRegularizer({"a": 5, "b": 5})
    feats = {"a": vectors.view(12, 5, 1, 1), "b": 2 * vectors.view(12, 5, 1, 1)}  # same geometry at both layers
    i, j = torch.triu_indices(12, 12, 1)
    s_model = reg.model_similarity(feats, i, j)          # first call: μ = these images' channel means
    s_target = pair_cosine(pool.vectors, i, j)
    assert torch.allclose(s_model, s_target, atol=1e-6)
    assert similarity_loss(s_model, s_target).item() < 1e-10
    # a mismatched geometry is penalised
    other = torch.randn(12, 5, generator=g)
    s_bad = SimilarityRegularizer({"a": 5}).model_similarity({"a": other.view(12, 5, 1, 1)}, i, j)
    assert similarity_loss(s_bad, s_target).item() > 0.05


def test_running_means_follow_momentum_without_gradient():
    reg = SimilarityRegularizer({"a": 2})
    f1 = torch.ones(4, 2, 3, 3, requires_grad=True)
    reg.model_similarity({"a": f1}, torch.tensor([0]), torch.tensor([1]))
    assert torch.equal(reg.mu_0, torch.ones(2)) and not reg.mu_0.requires_grad
    reg.model_similarity({"a": torch.full((4, 2, 3, 3), 3.0)}, torch.tensor([0]), torch.tensor([1]))
    assert torch.allclose(reg.mu_0, torch.full((2,), 0.9 * 1 + 0.1 * 3))


def test_the_gradient_reaches_the_layers_and_gamma(world):
    cls, _ = world
    torch.manual_seed(0)
    model = build_model("vgg11_bn_fc", cls.n_classes, 0, width=1 / 16)
    layers = ["conv2_1", "conv3_1", "conv4_1"]
    reg = SimilarityRegularizer({k: model.core.feature_shape(k, 64)[0] for k in layers})
    x = model.prep(as_u8(cls.images["train"][:16]))
    feats = model.core.forward_intermediates(x, layers)
    i, j = torch.arange(8), torch.arange(8, 16)
    target = torch.linspace(-0.5, 0.5, 8)
    similarity_loss(reg.model_similarity(feats, i, j), target).backward()
    first = model.core.features.conv1_1
    grad = next(p.grad for n, p in first.named_parameters() if n.endswith("weight"))
    assert grad is not None and grad.abs().sum() > 0
    assert reg.gamma.grad is not None and reg.gamma.grad.abs().sum() > 0
    # layers above the deepest regularised one get no gradient from this loss
    top = model.core.features.conv5_1
    assert all(p.grad is None for p in top.parameters())


def test_pools_pixels_and_shuffled_targets(world):
    _, neural = world
    imgs = as_u8(neural.images[:30])
    px = SimilarityPool.pixels(imgs)
    assert px.vectors.shape == (30, 64 * 64) and torch.allclose(px.vectors.mean(0), torch.zeros(64 * 64), atol=1e-5)
    rates = torch.rand(30, 7)
    pool = SimilarityPool.from_targets(imgs, rates)
    sh = pool.shuffled(3)
    # each neuron's values are kept, their assignment to images is not
    assert torch.allclose(sh.vectors.sort(0).values, pool.vectors.sort(0).values)
    assert not torch.allclose(sh.vectors, pool.vectors)
    i, j = pool.sample_pairs(500, torch.Generator().manual_seed(0))
    assert (i != j).all() and i.max() < 30 and j.max() < 30


def test_fit_in_similarity_mode(world):
    cls, neural = world
    torch.manual_seed(0)
    model = build_model("vgg11_bn_fc", cls.n_classes, 0, width=1 / 16)
    x = {s: (as_u8(cls.images[s]), torch.as_tensor(np.array(cls.labels[s]))) for s in ("train", "val")}
    pool = SimilarityPool.from_targets(as_u8(neural.images[:40]), torch.as_tensor(neural.true_rates[:40], dtype=torch.float32))
    cfg = TrainConfig(mode="similarity", model="vgg11_bn_fc", width=1 / 16, batch_size=16, max_epochs=2, patience=5,
                      lr=0.05, augment=False, device="cpu", sim_alpha=10.0)
    res = fit(model, TrainData(cls.n_classes, x, sim_pool=pool), cfg, log=None)
    assert res.status == "ok" and len(res.epochs) == 2
    assert all(np.isfinite(e["loss_similarity"]) and e["loss_similarity"] > 0 for e in res.epochs)
    w = [float(v) for v in res.epochs[-1]["sim_layer_weights"].split(",")]
    assert len(w) == 3 and max(abs(v - 1 / 3) for v in w) > 5e-3, w  # γ was trained (softmax(γ) left 1/3 each)
    with pytest.raises(ValueError, match="pool of at least 2"):
        fit(model, TrainData(cls.n_classes, x), cfg, log=None)


def test_similarity_match_is_one_for_a_model_that_carries_the_targets(world):
    """A model whose every regularised layer is its input: the match of pixel geometry with pixels is 1."""
    _, neural = world

    class Core(torch.nn.Module):
        def forward_intermediates(self, x, names):
            return {n: x.flatten(1)[:, :, None, None] for n in names}  # one channel per pixel

    class Identity(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.core = Core()

        def prep(self, x_u8):
            return x_u8.float() / 255.0

    imgs = as_u8(neural.images[:25])
    assert similarity_match(Identity(), imgs, imgs.flatten(1).float(), ["a", "b"]) == pytest.approx(1.0, abs=1e-5)
    shuffled = imgs.flatten(1).float()[torch.randperm(25, generator=torch.Generator().manual_seed(0))]
    assert similarity_match(Identity(), imgs, shuffled, ["a"]) < 0.5


def test_run_kind_sim_pixel_records_alpha_and_similarity_match(world, tmp_path, smoke_data):
    from core.presets import get_preset
    from core.training.bundles import load_sources
    from core.training.kinds import run_kind, run_id_for, base_config

    preset = get_preset("smoke")
    sources = load_sources(preset, smoke_data, log=None)
    out = run_kind("sim_pixel", preset, "", 0, tmp_path / "m", sources, data_root=smoke_data, log=None,
                   overrides={"device": "cpu", "sim_alpha": 3.0, "max_epochs": 1})
    r = out.run
    assert r["status"] == "ok" and r["alpha"] == 3.0 and r["family"] == "similarity" and r["ratio"] == ""
    assert np.isfinite(r["sim_match"])
    assert json.loads(r["config"])["sim_alpha"] == 3.0
    # alpha is part of the model's identity; the sim_* settings are not part of other kinds' ids
    a = run_id_for("sim_pixel", "smoke", "", 0, base_config("sim_pixel", preset, "1:1", 0, sim_alpha=1.0), sources.info)
    b = run_id_for("sim_pixel", "smoke", "", 0, base_config("sim_pixel", preset, "1:1", 0, sim_alpha=10.0), sources.info)
    c = run_id_for("baseline", "smoke", "", 0, base_config("baseline", preset, "1:1", 0, sim_alpha=1.0), sources.info)
    d = run_id_for("baseline", "smoke", "", 0, base_config("baseline", preset, "1:1", 0), sources.info)
    assert a != b and c == d
    # every classifier is attacked: PGD rows at each epsilon for both norms
    adv = out.adversarial
    assert {(x["attack"], x["norm"]) for x in adv} >= {("pgd", "l2"), ("pgd", "linf")}


def test_the_sweep_plans_the_similarity_family_over_alpha_and_seed(smoke_data):
    import argparse

    from core.presets import get_preset
    from core.training.bundles import load_sources
    from sweeps.cli import resolve_common
    from sweeps.stages import plan

    args = argparse.Namespace(preset="smoke", ratios=None, seeds="0,1", tin_root=None, neural_data=None,
                              gpus_per_trial=0.0, cpus_per_trial=0.0, max_concurrent=0, max_epochs=None, sweep=None,
                              address=None, storage=str(smoke_data / "plan-probe"), data_root=str(smoke_data),
                              device="cpu", set="", num_cpus=2, family="similarity", alphas="1,10")
    spec, _ = resolve_common(args)
    assert sorted(spec.kinds) == ["baseline", "monkey_predictor", "sim_monkey", "sim_pixel", "sim_shuffled"]
    waves = plan(spec, load_sources(get_preset("smoke"), smoke_data, log=None).info)
    w1 = {(t.kind, t.alpha, t.seed) for t in waves[0]}
    w2 = {(t.kind, t.alpha, t.seed) for t in waves[1]}
    assert {("sim_pixel", a, s) for a in (1.0, 10.0) for s in (0, 1)} <= w1
    assert w2 == {(k, a, s) for k in ("sim_monkey", "sim_shuffled") for a in (1.0, 10.0) for s in (0, 1)}
    tasks = [t for w in waves for t in w]
    assert len({t.run_id for t in tasks}) == len(tasks) == 2 + 2 + 3 * 4   # 2 predictors, 2 baselines, 12 sim models
    mp = {t.seed: t.run_id for t in tasks if t.kind == "monkey_predictor"}
    assert all(t.upstream_id == mp[t.seed] for t in tasks if t.kind in ("sim_monkey", "sim_shuffled"))
    assert next(t for t in tasks if t.kind == "sim_monkey" and t.alpha == 10.0).label() == "sim_monkey[α=10, seed 0]"
    for bad, msg in (("1,x", "--alphas: 'x' is not a number"), ("-1", "--alphas: -1")):
        with pytest.raises(Exception, match=msg):
            resolve_common(argparse.Namespace(**{**vars(args), "alphas": bad}))


def test_the_mtl_family_trains_its_upstreams_per_seed_and_each_model_reads_its_own_seed(smoke_data):
    import argparse

    from core.presets import get_preset
    from core.training.bundles import load_sources
    from sweeps.cli import resolve_common
    from sweeps.stages import plan

    args = argparse.Namespace(preset="smoke", ratios="1:2,2:1", seeds="0,1,2", tin_root=None, neural_data=None,
                              gpus_per_trial=0.0, cpus_per_trial=0.0, max_concurrent=0, max_epochs=None, sweep=None,
                              address=None, storage=str(smoke_data / "plan-probe"), data_root=str(smoke_data),
                              device="cpu", set="", num_cpus=2, family="mtl", alphas=None)
    spec, _ = resolve_common(args)
    tasks = [t for w in plan(spec, load_sources(get_preset("smoke"), smoke_data, log=None).info) for t in w]
    by = {(t.kind, t.ratio, t.seed): t for t in tasks}
    oracles = {t.seed: t for t in tasks if t.kind == "oracle"}
    readouts = {t.seed: t for t in tasks if t.kind == "oracle_readout"}
    assert sorted(oracles) == sorted(readouts) == [0, 1, 2]
    assert len({t.run_id for t in oracles.values()}) == 3
    for s in (0, 1, 2):
        assert readouts[s].upstream_id == oracles[s].run_id
        for r in ("1:2", "2:1"):
            assert by[("mtl_oracle", r, s)].upstream_id == readouts[s].run_id
    # one Monkey Predictor per seed, read by the co-trained models of that seed (paired comparisons carry it)
    mp = {t.seed: t for t in tasks if t.kind == "monkey_predictor"}
    assert sorted(mp) == [0, 1, 2] and len({t.run_id for t in mp.values()}) == 3
    assert all(by[(k, r, s)].upstream_id == mp[s].run_id for k in ("mtl_monkey", "mtl_shuffled") for r in ("1:2", "2:1")
               for s in (0, 1, 2))
    # every kind's stage follows its upstream
    assert [sorted({t.kind for t in w}) for w in plan(spec, load_sources(get_preset("smoke"), smoke_data, log=None).info)] == [
        ["baseline", "monkey_predictor", "oracle"], ["mtl_monkey", "mtl_shuffled", "oracle_readout"], ["mtl_oracle"]]


def test_mtl_shuffled_permutes_each_neuron_across_images(world):
    """MTL-Shuffled's targets: for every neuron a permutation of the same responses across images
    (marginals kept), a different permutation per neuron, so the image pairing is destroyed."""
    from core.training.bundles import Sources, mtl_data, predictor_targets, shuffled

    cls, neural = world
    pred = build_model("vgg11_bn_fc", n_classes=0, n_neurons=neural.n_neurons, width=1 / 16, classify=False).eval()
    with torch.no_grad():
        pred.readout.features.normal_()          # distinct, image-dependent outputs per neuron
    src = Sources(cls, neural)
    targets = predictor_targets(src, pred)
    real = mtl_data(src, targets).neural_train.targets
    shuf = mtl_data(src, shuffled(targets, 10_000)).neural_train.targets
    assert shuf.shape == real.shape
    for k in range(real.shape[1]):
        assert torch.equal(torch.sort(shuf[:, k]).values, torch.sort(real[:, k]).values)   # marginal kept
    moved = (shuf != real).float().mean(0)
    assert (moved > 0.9).all()                     # nearly every image gets another image's response
    # image pairing destroyed: per-neuron correlation with the true targets near zero
    r = [np.corrcoef(shuf[:, k], real[:, k])[0, 1] for k in range(real.shape[1])]
    assert abs(float(np.mean(r))) < 0.1
    # and a different permutation per neuron: the population vector of an image is not another image's
    def perm(k):   # image j whose true response neuron k got at image i (responses are distinct)
        return torch.argsort(real[:, k])[torch.argsort(torch.argsort(shuf[:, k]))]
    assert torch.equal(real[perm(0), 0], shuf[:, 0])
    assert (perm(0) != perm(1)).float().mean() > 0.9
    assert torch.equal(mtl_data(src, shuffled(targets, 10_000)).neural_train.targets, shuf)   # seeded
