import math

import numpy as np
import pytest
import torch

from core.data.synthetic import make_classification, make_neural, world_config
from core.errors import ConfigError
from core.models import build_model
from core.training.config import TrainConfig
from core.training.fit import fit
from core.training.cycler import neural_batches_before, parse_ratio, schedule
from core.training.data import NeuralBatchSource, TrainData, as_u8
from core.training.losses import UncertaintyWeighting, consistency_loss, poisson_loss


@pytest.fixture(scope="module")
def world():
    cfg = world_config("smoke")
    return make_classification(cfg), make_neural(cfg)[0]


def cls_data(cls, n=None):
    sl = slice(None, n)
    x = {s: (as_u8(cls.images[s][sl]), torch.as_tensor(np.array(cls.labels[s][sl]))) for s in ("train", "val")}
    return TrainData(cls.n_classes, x)


def mtl_data(cls, n_neurons=6, n=None, targets=None):
    d = cls_data(cls, n)
    x, _ = d.cls["train"]
    t = targets if targets is not None else torch.rand(len(x), n_neurons) * 3
    d.neural_train = NeuralBatchSource(x, torch.arange(len(x)), t, torch.ones(t.shape, dtype=torch.bool))
    return d


def small_model(cls, n_neurons=0, classify=True):
    torch.manual_seed(0)
    m = build_model("vgg11_bn_fc", cls.n_classes, n_neurons, width=1 / 16, classify=classify)
    return m


CFG = dict(model="vgg11_bn_fc", width=1 / 16, batch_size=16, max_epochs=2, patience=1, device="cpu")


def test_ratio_parsing_and_schedule():
    assert parse_ratio("1:15") == (1, 15) and parse_ratio("5:1") == (5, 1)
    for bad in ("1-2", "0:1", "a:b", "1:1:1", "-1:2"):
        with pytest.raises(ConfigError, match="expected 'n:c' with positive integers"):
            parse_ratio(bad)
    # 5:1 -> five neural batches before every classification batch
    assert schedule(3, "5:1") == [["neural"] * 5 + ["classification"]] * 3
    # 1:1 -> alternating
    assert schedule(4, "1:1") == [["neural", "classification"]] * 4
    # 1:15 -> one neural batch at the start of each group of 15 classification batches
    s = schedule(32, "1:15")
    assert [i for i, step in enumerate(s) if "neural" in step] == [0, 15, 30]
    assert all(step[-1] == "classification" and step.count("classification") == 1 for step in s)
    # n neural per c classification batches in general
    assert sum(neural_batches_before(i, 2, 3) for i in range(30)) == 20


@pytest.mark.parametrize("neural_bn, batch_statistics", [("batch", True), ("running", False)])
def test_neural_batches_of_other_images_are_normalised_with_the_running_statistics(world, neural_bn, batch_statistics):
    """Where the neural images are not drawn like the classification images (MTL-True on the recording's degraded
    stimuli: data.neural_bn "running"), a co-training fit runs their batches through BatchNorm in eval mode, on the
    classification's running statistics, which evaluation uses too; by default (the authors' choice) in training
    mode, on each batch's own statistics. The setting survives the move to the fit's device."""
    cls, _ = world
    data = mtl_data(cls, n=64)   # 4 steps of 16 images; 1:1, one neural batch before each
    data.neural_bn = neural_bn
    assert data.to("cpu").neural_bn == neural_bn
    model = small_model(cls, n_neurons=6)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    modes, cls_modes = [], []
    model.readout.register_forward_pre_hook(lambda m, a: modes.append({b.training for b in bns}))
    model.core.head.register_forward_pre_hook(lambda m, a: cls_modes.append({b.training for b in bns}))
    fit(model, data, TrainConfig(mode="mtl", ratio="1:1", **{**CFG, "max_epochs": 1}), log=None)
    assert len(modes) >= 4 and modes[:4] == [{batch_statistics}] * 4   # the 4 training batches; then evaluation
    assert len(cls_modes) >= 4 and cls_modes[:4] == [{True}] * 4       # classification batches: batch statistics


def test_the_batchnorm_pass_builds_no_autograd_graph(world):
    """The BatchNorm statistics pass before every evaluation runs without gradients (no graph over its images)."""
    from core.training.recipe import recompute_batchnorm

    cls, _ = world
    model = small_model(cls)
    grad = []
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.register_forward_hook(lambda m, a, out: grad.append((torch.is_grad_enabled(), out.requires_grad)))
    x, _ = cls_data(cls, 32).cls["train"]
    recompute_batchnorm(model, x, 16, lambda u8, g: model.prep(u8), amp=False)
    assert grad == [(False, False)] * 2


@pytest.mark.parametrize("ratio, neural_per_epoch", [("1:15", 1), ("1:1", 8), ("5:1", 40)])
def test_fit_steps_follow_the_ratio(world, ratio, neural_per_epoch):
    cls, _ = world
    data = mtl_data(cls, n=128)  # 128 images / batch 16 = 8 optimizer steps per epoch
    model = small_model(cls, n_neurons=6)
    res = fit(model, data, TrainConfig(mode="mtl", ratio=ratio, **{**CFG, "max_epochs": 1}), log=None)
    row = res.epochs[0]
    assert row["optimizer_steps"] == 8 and row["classification_batches"] == 8
    assert row["neural_batches"] == neural_per_epoch
    assert math.isfinite(row["log_var_classification"]) and math.isfinite(row["log_var_neural"])


def test_parameters_change_after_a_step(world):
    cls, _ = world
    model = small_model(cls)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = fit(model, cls_data(cls, 32), TrainConfig(mode="classification", **{**CFG, "max_epochs": 1}), log=None)
    assert res.status == "ok"
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert any("conv1_1.conv.weight" in k for k in changed) and any("fc8.weight" in k for k in changed)


def test_frozen_layers_do_not_change(world):
    cls, _ = world
    model = small_model(cls)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(model, cls_data(cls, 32), TrainConfig(mode="classification", freeze_through="conv3_1", **{**CFG, "max_epochs": 1}), log=None)
    after = model.state_dict()
    frozen = [k for k in before if k.startswith("core.features.conv1") or k.startswith("core.features.conv2")
              or k.startswith("core.features.conv3_1")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # BN statistics included
    assert not torch.equal(before["core.head.fc8.weight"], after["core.head.fc8.weight"])


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("mode", ["mtl", "neural"])
def test_resume_equals_uninterrupted(world, tmp_path, mode, device):
    """Exact on the CPU; on a GPU (bf16 autocast, cuDNN's non-deterministic kernels) the resumed fit
    must restore every state (the CUDA RNG included) and land as close to the uninterrupted fit as a
    second uninterrupted fit does (the GPU's own run-to-run noise, measured in the test)."""
    cls, neural = world
    if mode == "mtl":
        data, classify, K = mtl_data(cls, n=96), True, 6
        cfg = TrainConfig(mode="mtl", ratio="2:1", **{**CFG, "max_epochs": 4, "patience": 0, "lr_factor": 0.5,
                                                      "device": device})
    else:
        K = neural.n_neurons
        src = NeuralBatchSource(as_u8(neural.images), torch.as_tensor(np.array(neural.train_image_index)),
                                torch.as_tensor(np.array(neural.train_responses)), torch.as_tensor(np.array(neural.train_mask)))
        data, classify = TrainData(0, None, src.subset(np.arange(0, 200)), src.subset(np.arange(200, 256))), False
        cfg = TrainConfig(mode="neural", optimizer="adam", lr=1e-2, **{**CFG, "max_epochs": 4, "patience": 0,
                                                                       "device": device})

    if device == "cuda":  # fewer non-deterministic kernels (grid_sample's backward stays one)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    full = small_model(cls, K, classify)
    r_full = fit(full, data, cfg, checkpoint_dir=tmp_path / "a", log=None)
    assert any(r["n_reductions"] > 0 for r in r_full.epochs), "the test should cover an LR reduction"

    part = small_model(cls, K, classify)
    with pytest.raises(KeyboardInterrupt):
        fit(part, data, cfg, checkpoint_dir=tmp_path / "b", log=None, fail_at_epoch=2)
    resumed = small_model(cls, K, classify)  # a fresh process would build a fresh model
    torch.manual_seed(12345)  # disturb the global RNG: the checkpoint must restore it
    said = []   # (epoch, trained now): the epochs before the kill are said again (no checkpoint), the rest trained
    r_res = fit(resumed, data, cfg, checkpoint_dir=tmp_path / "b", log=None,
                report=lambda row, ckpt: said.append((row["epoch"], ckpt is not None)))
    # it went on after epoch 2 rather than training again from scratch (which would land on the same numbers)
    assert r_res.resumed_after_epoch == 2 and said == [(1, False), (2, False), (3, True), (4, True)], said

    keys = ["lr", "val_accuracy", "val_correlation", "loss_classification", "loss_neural", "n_reductions"]
    assert len(r_res.epochs) == len(r_full.epochs) == 4
    if device == "cuda":
        # the GPU's own noise, measured: a second uninterrupted fit. A correct resume lands as close to the
        # first fit as the second one does (3x margin, per metric over the epochs: one sample of the noise
        # per entry would be too thin a yardstick); a wrong one (a lost RNG, optimizer or scheduler state,
        # a restart from scratch) lands much further away
        again = small_model(cls, K, classify)
        r_again = fit(again, data, cfg, checkpoint_dir=tmp_path / "c", log=None)
        torch.backends.cudnn.deterministic = False
        a, b, c = (np.array([[r[k] for k in keys] for r in rr.epochs], dtype=float) for rr in (r_res, r_full, r_again))
        print("resumed, uninterrupted, again (lr, val_accuracy, val_correlation, losses, reductions):", a, b, c, sep="\n")
        assert np.abs(a[:, 5] - b[:, 5]).max() <= max(1, np.abs(c[:, 5] - b[:, 5]).max()), (a, b, c)
        noise = np.nan_to_num(np.abs(c[:, 1:5] - b[:, 1:5]), nan=0.0).max(axis=0)
        gap = np.nan_to_num(np.abs(a[:, 1:5] - b[:, 1:5]), nan=0.0).max(axis=0)
        assert (gap <= 3 * noise + 2e-3).all(), (gap, noise, a, b, c)
        return
    np.testing.assert_array_equal(np.array([[r[k] for k in keys] for r in r_res.epochs], dtype=float),
                                  np.array([[r[k] for k in keys] for r in r_full.epochs], dtype=float))
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


QUIET = dict(schedule="cosine", warmup=0.1, select="final", neural_grad="mean", bn_images=64)


def test_resume_with_the_quiet_recipe_and_a_checkpoint_every_second_epoch(world, tmp_path):
    """The short presets' recipe (cosine schedules on two optimizers, final weights, the BatchNorm pass) with a
    checkpoint every 2 epochs: killed after epoch 3, the fit resumes from epoch 2's checkpoint, trains epochs 3
    and 4 again and ends exactly where an uninterrupted fit does (a lost scheduler state would end elsewhere:
    the learning rate follows the step count)."""
    cls, _ = world
    data = mtl_data(cls, n=96)
    cfg = TrainConfig(mode="mtl", ratio="2:1", readout_lr=1e-2, checkpoint_every=2,
                      **{**CFG, "max_epochs": 4, **QUIET})
    full = small_model(cls, 6)
    r_full = fit(full, data, cfg, checkpoint_dir=tmp_path / "a", log=None)
    assert r_full.epochs[-1]["lr"] == pytest.approx(0.0, abs=1e-12)         # annealed to zero by the last step
    part = small_model(cls, 6)
    with pytest.raises(KeyboardInterrupt):
        fit(part, data, cfg, checkpoint_dir=tmp_path / "b", log=None, fail_at_epoch=3)
    resumed = small_model(cls, 6)
    torch.manual_seed(999)
    r_res = fit(resumed, data, cfg, checkpoint_dir=tmp_path / "b", log=None)
    assert r_res.resumed_after_epoch == 2
    keys = ["lr", "val_accuracy", "loss_classification", "loss_neural"]
    np.testing.assert_array_equal(np.array([[r[k] for k in keys] for r in r_res.epochs], dtype=float),
                                  np.array([[r[k] for k in keys] for r in r_full.epochs], dtype=float))
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("mode", ["mtl", "oracle_pretrain"])
def test_the_host_and_device_data_paths_give_the_same_fit(world, mode, device):
    """Data held on the model's device (batches drawn there) or in host memory (each batch copied): the
    same batches, the same augmentation, the same weights, bit for bit on the CPU; each fit says where it
    held its data (a fit that ignored data_placement fails here). On a GPU (bf16 autocast, kernels that
    are not bit-reproducible) the two paths must differ by no more than two device-path fits differ from
    each other (measured here), times 3, plus 1e-3."""
    if device == "cuda":
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    cls, _ = world
    data = mtl_data(cls, n=64)
    extra = {}
    if mode == "oracle_pretrain":
        x = data.cls["train"][0]
        data = TrainData(cls.n_classes, data.cls, corrupted=torch.stack([255 - x, x // 2]))
        extra = {"augment": True}
    models = {}
    for placement in ("device", "host") + (("device_again",) if device == "cuda" else ()):
        m = small_model(cls, 6 if mode == "mtl" else 0)
        where = placement.split("_")[0]
        r = fit(m, data, TrainConfig(mode=mode, ratio="2:1", data_placement=where,
                                     **{**CFG, **QUIET, **extra, "device": device}), log=None)
        assert r.data_on_device == (where == "device"), placement
        models[placement] = {k: v.detach().float().cpu() for k, v in m.state_dict().items()}
    for k, v in models["device"].items():
        if device == "cpu":
            assert torch.equal(v, models["host"][k]), k
        else:
            floor = float((v - models["device_again"][k]).abs().max())
            assert float((v - models["host"][k]).abs().max()) <= 3 * floor + 1e-3, k


def test_divergence_is_a_status(world):
    cls, _ = world
    model = small_model(cls, n_neurons=4)
    t = torch.rand(64, 4)
    t[5, 2] = float("nan")  # a forced NaN in the neural targets
    res = fit(model, mtl_data(cls, n=64, targets=t), TrainConfig(mode="mtl", ratio="1:1", **CFG), log=None)
    assert res.status == "diverged" and res.diverged_epoch == 1 and "non-finite neural loss" in res.error
    model = small_model(cls)
    res = fit(model, cls_data(cls, 64), TrainConfig(mode="classification", **{**CFG, "lr": 1e12}), log=None)
    assert res.status == "diverged" and res.diverged_epoch == 1 and "non-finite classification loss" in res.error, res.error


def test_losses():
    rate, y = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 3.0]])
    assert poisson_loss(rate, y).item() == pytest.approx(1 + 2 - 3 * math.log(2))
    assert poisson_loss(rate, y, torch.tensor([[True, False]])).item() == pytest.approx(1.0)
    w = UncertaintyWeighting()
    with torch.no_grad():
        w.log_var_cls.fill_(math.log(2))
        w.log_var_neural.fill_(math.log(4))
    assert w.classification(torch.tensor(3.0)).item() == pytest.approx(1.5 + 0.5 * math.log(2))
    assert w.neural(torch.tensor(8.0)).item() == pytest.approx(0.5 * 8 / 4 + 0.5 * math.log(4))
    # the short presets: plain CE (the Baseline's weight), only the neural weight learned
    fixed = UncertaintyWeighting(learn_cls=False)
    assert fixed.classification(torch.tensor(3.0)).item() == 3.0 and not fixed.log_var_cls.requires_grad
    assert fixed.neural(torch.tensor(8.0)).item() == pytest.approx(0.5 * 8)
    # the Oracle's consistency: 1 - cosine of the flattened maps, averaged over images
    a = torch.ones(3, 2, 2, 2)
    b = torch.ones(3, 2, 2, 2)
    b[1] *= 5.0                      # same direction, other scale: still consistent
    b[2, 0] = -1.0                   # half the entries flipped: cosine 0
    assert consistency_loss(a, b).item() == pytest.approx((0 + 0 + 1) / 3)
    # a collapsed layer (all zeros) is not consistent: the loss cannot be minimised by collapsing
    z = torch.zeros(3, 2, 2, 2)
    assert consistency_loss(z, z).item() == pytest.approx(1.0)
    assert consistency_loss(-a, a).item() == pytest.approx(2.0)


def test_config_refuses_typos():
    from core.config import from_dict

    with pytest.raises(ConfigError, match="unknown key 'lrr'"):
        from_dict(TrainConfig, {"lrr": 0.1})
    with pytest.raises(ConfigError, match="lr='x'; expected float"):
        from_dict(TrainConfig, {"lr": "x"})
    with pytest.raises(ConfigError, match="mode 'foo'"):
        TrainConfig(mode="foo")


class _Seen(Exception):
    """Raised by the probe below once the first layer has seen its input: where evaluation put it."""


@pytest.mark.parametrize("device", ["meta", pytest.param("cuda", marks=CUDA)])
def test_evaluation_runs_on_the_device_the_model_is_on_not_a_hard_coded_cpu(device):
    """`run_kind` evaluates where the model trained (the GPU of a GPU trial). Every evaluation entry point
    takes its device from the model: on a CPU-only machine the model is moved to torch's meta device (no
    data, any computation on it is shape-only), and the first convolution must see its input there; a
    hard-coded CPU would hand it a CPU tensor. With a GPU, the results equal the CPU's too."""
    from core.evaluate import alive_fraction, classification_records, neural_test_metrics
    from core.models.mtl import build_model
    from types import SimpleNamespace

    torch.manual_seed(0)
    model = build_model("vgg11_bn_fc", n_classes=3, n_neurons=4, width=1 / 16, image_size=32, dropout=0.0).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    tintc = {("gaussian_noise", 1): images[::-1].copy()}
    neural = SimpleNamespace(images=images, test_image_index=np.arange(6), test_responses=rng.random((6, 2, 4)),
                             test_mask=np.ones((6, 2, 4), bool), true_rates=None)   # (images, repeats, neurons)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    calls = {
        "classification_records": lambda m: classification_records(m, images, labels, tintc),
        "neural_test_metrics": lambda m: neural_test_metrics(m, neural),
        "alive_fraction": lambda m: alive_fraction(m, images),
    }
    if device == "meta":
        model.to("meta")
        seen = []

        def probe(module, args):
            seen.append(args[0].device.type)
            raise _Seen

        handle = conv.register_forward_pre_hook(probe)
        for name, call in calls.items():
            with pytest.raises(_Seen):
                call(model)
            assert seen[-1] == "meta", (name, seen)
        handle.remove()
    else:
        on_cpu = {name: call(model) for name, call in calls.items()}
        model.to("cuda")
        on_gpu = {name: call(model) for name, call in calls.items()}
        assert on_gpu["classification_records"][1] == on_cpu["classification_records"][1]   # logit margins >> bf16's error
        assert on_gpu["alive_fraction"] == pytest.approx(on_cpu["alive_fraction"])
        for k, v in on_cpu["neural_test_metrics"].items():   # bf16 autocast on the GPU: close, not equal
            assert on_gpu["neural_test_metrics"][k] == pytest.approx(v, abs=0.05), (k, on_gpu["neural_test_metrics"], on_cpu)
