import warnings

import numpy as np
import pytest
import torch

from core.measures import correlation, correlation_to_average, feve, fev, variance_components
from core.models import GaussianReadout, build_model, create_model, list_models, positive_rate
from core.errors import ConfigError


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, n_classes=7, in_chans=1, width=1 / 16)
    x = torch.randn(3, 1, 64, 64)
    logits = model(x)
    assert logits.shape == (3, 7)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # named intermediate features: conv3_1 after its BN and ReLU
    f = model.forward_intermediates(x, ["conv3_1"])["conv3_1"]
    assert f.shape == (3, *model.feature_shape("conv3_1", 64)) and (f >= 0).all()
    with pytest.raises(KeyError, match="unknown layer 'conv9_9'"):
        model.forward_intermediates(x, ["conv9_9"])


def test_vgg19_layout_matches_the_paper():
    m = create_model("vgg19_bn_fc", n_classes=200, width=1.0)
    convs = [n for n in m.layer_names if n.startswith("conv")]
    assert len(convs) == 16 and m.feature_shape("conv3_1", 64) == (256, 16, 16)
    assert [m.head.fc6.in_channels, m.head.fc6.out_channels, m.head.fc7.out_channels, m.head.fc8.out_channels] == [512, 4096, 4096, 200]
    assert m.head.fc6.kernel_size == (1, 1) and m.head.drop6.p == 0.5
    with pytest.raises(ConfigError, match="unknown model 'resnet'"):
        create_model("resnet")


def test_truncated_core_for_the_monkey_predictor():
    m = build_model("vgg19_bn_fc", 0, 5, width=1 / 8, classify=False)
    assert m.core.layer_names[-1] == "conv3_1" and m.core.head is None
    r = m.predict_neural(torch.randn(2, 1, 64, 64))
    assert r.shape == (2, 5) and (r > 0).all()


def _np_readout(in_shape, K):
    from neuralpredictors.layers.readouts import Gaussian2d

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Gaussian2d(in_shape, K, bias=True, init_mu_range=0.3, init_sigma_range=0.6)  # noqa: E501


@pytest.mark.parametrize("sample", [False, True])
def test_readout_equals_neuralpredictors(sample):
    torch.manual_seed(0)
    in_shape, K = (8, 16, 16), 11
    ours = GaussianReadout(in_shape, K, init_mu_range=0.3, init_sigma_range=0.6, gamma=0.5)
    ref = _np_readout(in_shape, K)
    mean = torch.rand(K) * 3
    ours.reset_parameters(mean)
    ref.initialize(mean_activity=mean.clone())
    # same initialisation rules: positions in range, features 1/C, bias = mean activity
    assert ours.mu.abs().max() <= 0.3 and ref.mu.abs().max() <= 0.3 and (ours.sigma >= 0).all() and ours.sigma.max() <= 0.6
    torch.testing.assert_close(ours.features, ref.features)
    torch.testing.assert_close(ours.bias, ref.bias)
    # same parameters -> same outputs
    with torch.no_grad():
        ref.mu.copy_(ours.mu)
        ref.sigma.copy_(ours.sigma)
        ours.features.normal_()
        ref.features.copy_(ours.features)
    x = torch.randn(4, *in_shape)
    torch.manual_seed(5)
    a = ours(x, sample=sample)
    torch.manual_seed(5)
    b = ref(x, sample=sample)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ours.regularizer(), ref.feature_l1(reduction="sum") * 0.5)
    # training mode samples positions, eval uses the mean
    ours.train()
    assert not torch.allclose(ours(x), ours(x))
    ours.eval()
    torch.testing.assert_close(ours(x), ours(x))
    assert torch.allclose(positive_rate(torch.tensor([-5.0, 0.0, 1.0, 3.0])),
                          torch.tensor([np.exp(-6.0), np.exp(-1.0), 1.0, 3.0], dtype=torch.float32))


def test_measures_equal_neuralpredictors_and_hand_values():
    from neuralpredictors.measures import np_functions as npf

    rng = np.random.default_rng(0)
    rates = rng.uniform(1, 6, (12, 9))
    resp = rng.poisson(np.broadcast_to(rates[:, None], (12, 7, 9))).astype(float)
    pred = rates + rng.normal(0, 0.5, rates.shape)
    np.testing.assert_allclose(fev(resp), npf.explainable_var(resp, eps=0), rtol=1e-10)
    np.testing.assert_allclose(feve(resp, pred), npf.fev(resp, np.broadcast_to(pred[:, None], resp.shape)), rtol=1e-10)
    np.testing.assert_allclose(correlation(resp.mean(1), pred), npf.corr(resp.mean(1), pred, axis=0), atol=1e-6)
    np.testing.assert_allclose(correlation_to_average(resp, pred), npf.corr(resp.mean(1), pred, axis=0), atol=1e-6)
    # hand-computed example: one neuron, 2 images x 2 repeats
    r = np.array([[[1.0], [3.0]], [[4.0], [6.0]]])
    total, noise = variance_components(r)
    assert total[0] == pytest.approx(np.var([1, 3, 4, 6], ddof=1))
    assert noise[0] == pytest.approx(2.0)
    assert fev(r)[0] == pytest.approx((total[0] - 2.0) / total[0])
    p = np.array([[2.0], [5.0]])  # the repeat means: error = noise only -> FEVe 1
    assert feve(r, p)[0] == pytest.approx(1 - ((1 + 1 + 1 + 1) / 4 - 2.0) / (total[0] - 2.0))
    # a mask ignores missing repeats: padding with junk changes nothing
    padded = np.concatenate([r, np.full((2, 1, 1), 99.0)], axis=1)
    mask = np.ones_like(padded, bool)
    mask[:, 2] = False
    assert fev(padded, mask)[0] == pytest.approx(fev(r)[0])


def test_masked_feve_equals_a_per_neuron_hand_computation():
    """Two sessions that recorded different neurons on different images with different repeat counts:
    the masked FEV and FEVe equal, per neuron, the formulas applied by hand to that neuron's own trials."""
    rng = np.random.default_rng(3)
    M, R, K = 6, 4, 3
    resp = rng.poisson(3.0, (M, R, K)).astype(float)
    mask = np.zeros((M, R, K), bool)
    reps = {0: [2, 3, 4, 2, 0, 0], 1: [0, 0, 3, 2, 4, 3], 2: [4, 1, 2, 3, 2, 2]}   # repeats per image, per neuron
    for k, counts in reps.items():
        for i, n in enumerate(counts):
            mask[i, :n, k] = True
    junk = resp.copy()
    junk[~mask] = 1e6                        # what a mask hides must not matter
    pred = rng.uniform(1, 5, (M, K))
    got_fev, got_feve = fev(junk, mask), feve(junk, pred, mask)
    for k, counts in reps.items():
        trials = [(i, resp[i, j, k]) for i, n in enumerate(counts) for j in range(n)]
        values = np.array([v for _, v in trials])
        total = values.var(ddof=1)
        per_image = [resp[i, :n, k] for i, n in enumerate(counts) if n >= 2]
        noise = np.mean([x.var(ddof=1) for x in per_image])
        err = np.mean([(v - pred[i, k]) ** 2 for i, v in trials])
        assert got_fev[k] == pytest.approx((total - noise) / total, rel=1e-12), k
        if total > noise:
            assert got_feve[k] == pytest.approx(1 - (err - noise) / (total - noise), rel=1e-12), k
        else:   # no explainable variance: FEVe undefined (NaN), not a number that drags the mean
            assert np.isnan(got_feve[k]), k
    assert np.isnan(got_feve).tolist() == [False, False, True]   # this draw has one such neuron
    # and the population FEVe leaves it out and says how many neurons are in the mean
    from core.measures import neural_metrics

    m = neural_metrics(junk, pred, mask)
    assert m["feve_neurons"] == 2 and m["feve"] == pytest.approx(np.mean(got_feve[:2]), rel=1e-12)
