"""Adversarial robustness with Foolbox: PGD accuracy against epsilon, HopSkipJump's minimal L2."""

import numpy as np
import pytest
import torch

from core.data.synthetic import make_classification, world_config
from core.evaluate.adversarial import adversarial_records, minimal_l2, pgd_accuracy
from core.models import build_model
from core.training.config import TrainConfig
from core.training.data import TrainData, as_u8, pixel_stats
from core.training.fit import fit
from core.training.inference import predict_logits


@pytest.fixture(scope="module")
def trained():
    """A small VGG trained on 3 classes of the synthetic world (above chance, not one class for all)."""
    cls = make_classification(world_config("demo", n_classes=3, train_per_class=300, val_per_class=30, test_per_class=20))
    torch.manual_seed(0)
    m = build_model("vgg11_bn_fc", cls.n_classes, 0, width=1 / 16)
    m.set_pixel_stats(*pixel_stats(cls.images["train"]))
    x = {s: (as_u8(cls.images[s]), torch.as_tensor(np.array(cls.labels[s]))) for s in ("train", "val")}
    cfg = TrainConfig(mode="classification", model="vgg11_bn_fc", width=1 / 16, batch_size=32, max_epochs=10,
                      patience=10, lr=0.05, augment=False, device="cpu")
    fit(m, TrainData(cls.n_classes, x), cfg, log=None)
    xt, yt = np.asarray(cls.images["test"]), np.asarray(cls.labels["test"])
    pred = predict_logits(m, as_u8(xt)).argmax(1).numpy()
    clean = float((pred == yt).mean())
    assert clean > 0.38 and len(np.unique(pred)) == 3, (clean, np.bincount(pred))
    return m, xt, yt, pred, clean


@pytest.mark.parametrize("norm, eps", [("l2", (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)),
                                       ("linf", (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255))])
def test_pgd_accuracy_starts_at_clean_accuracy_and_falls_with_epsilon(trained, norm, eps):
    m, x, y, pred, clean = trained
    cum = pgd_accuracy(m, x, y, norm, eps, steps=4)
    raw_ok = pgd_accuracy(m, x, y, norm, eps, steps=4, cumulative=False)
    assert (cum[0] == (pred == y)).all()                              # ε = 0: exactly the clean predictions, per image
    assert (cum == np.logical_and.accumulate(raw_ok, axis=0)).all()   # robust at ε only if robust at every ε' <= ε
    acc = cum.mean(1)
    assert acc[-1] <= 0.5 * clean, acc
    # each epsilon's own attack (no accumulation) falls too: the attack, not the bookkeeping, lowers it
    raw = raw_ok.mean(1)
    assert raw[0] == pytest.approx(clean) and raw[-1] <= 0.5 * raw[0] and raw[len(raw) // 2] < raw[0], raw


def test_hopskipjump_moves_closer_than_its_starting_image(trained):
    m, x, y, pred, _ = trained
    ok = np.flatnonzero(pred == y)[:4]
    d = minimal_l2(m, x[ok], y[ok], x, pred, steps=3)
    assert np.isfinite(d).all() and (d > 0).all()
    flat = x.reshape(len(x), -1).astype(float) / 255
    start = np.array([np.sqrt(((flat[pred != y[i]] - flat[i]) ** 2).sum(1)).min() for i in ok])  # its starting image
    # the attack moved: well inside the distance of its start (an attack that never moved returns the start)
    assert (d < 0.8 * start).all(), d / start


def test_records_for_the_lake(trained):
    m, x, y, _, clean = trained
    rows = adversarial_records(m, x, y, n_images=len(y), n_decision=2, steps=2, decision_steps=2)
    pgd = [r for r in rows if r["attack"] == "pgd"]
    assert {r["norm"] for r in pgd} == {"l2", "linf"} and len(pgd) == 10
    assert all(r["accuracy"] == pytest.approx(clean) for r in pgd if r["epsilon"] == 0)
    (dec,) = [r for r in rows if r["attack"] == "hop_skip_jump"]
    assert dec["n_images"] == 2 and dec["accuracy"] == 0.0 and 0 < dec["median_l2"] < np.inf, dec  # every run found one
