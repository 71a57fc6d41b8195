"""`fit`: the multi-task training loop, in plain PyTorch.

One epoch is one pass over the classification set (or, for a neural-only model, over the neural
training trials). Optimizer steps follow the ratio cycler. The learning rate follows the config's
schedule (core.training.recipe): `plateau` (the authors': it drops on a validation plateau and the best
weights are restored at every drop; training stops after `max_reductions` drops or `max_epochs`) or
`cosine` (warm-up, then a cosine to zero at `max_epochs`, every optimizer on it). `select` says which
weights the fit leaves in the model: the best validation epoch's or the final ones. BatchNorm
statistics are recomputed the same way before every validation whose weights may be kept (every epoch
when the best is selected; the last one with final weights). The whole state
(model, optimizers, schedulers, best weights, history, every random stream) is checkpointed after
each epoch, so a resumed fit ends with exactly the metrics of an uninterrupted one on the CPU. A
non-finite loss ends the fit with status "diverged" instead of raising.
"""

from __future__ import annotations


import copy
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from core.io import atomic_file
from core.models.mtl import MultiTaskModel
from core.training.augment import augment
from core.training.config import TrainConfig
from core.training.cycler import schedule
from core.training.data import NeuralStream, TrainData
from core.training.inference import accuracy, neural_val, resolve_device
from core.training.losses import UncertaintyWeighting, consistency_loss, masked_mse, poisson_loss
from core.training.recipe import Streams, batchnorms, bn_subset, recompute_batchnorm, step_schedulers
from core.training.similarity import pair_cosine, similarity_loss

CHECKPOINT = "checkpoint.pt"


@dataclass
class FitResult:
    status: str                                  # ok | diverged
    epochs: list[dict] = field(default_factory=list)
    best_metric: float = float("nan")
    stop_reason: str = ""
    diverged_epoch: int | None = None
    error: str = ""
    train_seconds: float = 0.0
    images_per_s: float = 0.0
    device: str = "cpu"
    resumed_after_epoch: int | None = None       # the checkpoint's epoch, when the fit resumed from one
    selected_metric: float = float("nan")        # the validation metric of the weights the fit leaves (select)
    final_metric: float = float("nan")           # ... of the last epoch's weights
    data_on_device: bool = False                 # whether the fit held its data on the device (data_placement)


class _Diverged(Exception):
    pass


def data_on_device(data: TrainData, dev: torch.device, placement: str) -> bool:
    """Where a fit keeps its data: `device` or `host`, or `auto`, the device unless the data would take more
    than half of a GPU's free memory."""
    if placement != "auto" or dev.type != "cuda":
        return placement != "host"
    free, _ = torch.cuda.mem_get_info(dev)
    return data.nbytes() < 0.5 * free


def _frozen_modules(model: MultiTaskModel, through: str) -> list[torch.nn.Module]:
    if not through:
        return []
    names = model.core.layer_names
    if through not in names:
        raise KeyError(f"freeze_through {through!r} is not a layer of this model")
    return [m for n, m in model.core.features.named_children() if names.index(n) <= names.index(through)]


def set_train_mode(model: MultiTaskModel, frozen: list[torch.nn.Module]) -> None:
    model.train()
    for m in frozen:
        m.eval()  # frozen layers keep their BatchNorm statistics


def _atomic_torch_save(obj, path: Path) -> None:
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def fit(model: MultiTaskModel, data: TrainData, cfg: TrainConfig, report: Callable | None = None,
        checkpoint_dir: str | os.PathLike | None = None, log: Callable | None = print,
        fail_at_epoch: int | None = None) -> FitResult:
    """Train `model` on `data` per `cfg`; returns a FitResult and leaves the best weights in `model`.

    `report(row, checkpoint_path)` is called after every epoch (the sweeps forward it to Ray).
    `fail_at_epoch` raises after that epoch's checkpoint (used by the tests to simulate a kill).
    """
    dev = resolve_device(cfg.device)
    if cfg.threads and dev.type == "cpu":
        torch.set_num_threads(cfg.threads)
    use_amp = cfg.amp and dev.type == "cuda"
    streams = Streams(cfg.seed, dev)   # one generator per source of randomness (core.training.recipe)
    torch.manual_seed(streams.global_seed)
    gen, aug_gen = streams["batches"], streams["augment"]

    model.to(dev)
    # channels_last on every device: 1.4x faster training and 1.6-1.8x faster inference than NCHW on 2 CPU
    # cores (oneDNN's kernels; the demo's VGG-11 at width 1/8), and what CUDA's tensor cores want
    model.to(memory_format=torch.channels_last)
    if dev.type == "cuda":
        if cfg.compile:
            model.core.compile()   # its forward (the classification path); in place, the weights stay the module's
    # the data on the device (airbench style: batches drawn there, no host copies per step) where it fits;
    # else it stays in host memory and each batch is copied over. `take` serves both.
    on_device = data_on_device(data, dev, cfg.data_placement)
    data = data.to(dev) if on_device else data

    def take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return t[idx.to(t.device)].to(dev, non_blocking=True)

    frozen = _frozen_modules(model, cfg.freeze_through)
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)

    mode = cfg.mode
    weighting = UncertaintyWeighting(cfg.learn_cls_weight).to(dev) if mode == "mtl" else None
    simreg = None
    if mode == "similarity":
        from core.training.similarity import SimilarityRegularizer

        if data.sim_pool is None or len(data.sim_pool) < 2:
            raise ValueError("mode similarity needs a pool of at least 2 regularisation images (TrainData.sim_pool)")
        size = data.image_size
        simreg = SimilarityRegularizer({k: model.core.feature_shape(k, size)[0] for k in cfg.sim_layer_list}).to(dev)
    # the loss's own trainable parts (uncertainty weights or γ) are saved and restored with the model
    aux = weighting if weighting is not None else simreg
    own_readout = mode == "mtl" and cfg.readout_lr > 0 and model.readout is not None
    skip = {id(p) for p in model.readout.parameters()} if own_readout else set()
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in skip]
    groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    if aux is not None:
        groups.append({"params": [p for p in aux.parameters() if p.requires_grad], "weight_decay": 0.0})
    if cfg.resolved_optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=cfg.lr)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    # the readout's own Adam (cfg.readout_lr): K independent per-neuron regressions each get 1/K of
    # the mean-over-neurons MSE gradient, which plain SGD cannot fit in a short run (core/presets.py)
    optimizers = [opt] + ([torch.optim.Adam(model.readout.parameters(), lr=cfg.readout_lr, weight_decay=cfg.weight_decay)]
                          if own_readout else [])
    plateau = cfg.schedule == "plateau"
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=cfg.lr_factor,
                                                       patience=cfg.patience, threshold=cfg.threshold) if plateau else None

    has_cls = mode in ("classification", "oracle_pretrain", "mtl", "similarity")
    has_neural = mode in ("neural", "mtl")
    if has_cls and (data.cls is None or not model.has_classifier):
        raise ValueError(f"mode {mode} needs classification data and a model with a classification head")
    if has_neural and (data.neural_train is None or model.readout is None):
        raise ValueError(f"mode {mode} needs neural targets and a model with a readout")
    if mode == "oracle_pretrain" and data.corrupted is None:
        raise ValueError("mode oracle_pretrain needs a bank of corrupted variants of the training images (TrainData.corrupted)")

    stream = NeuralStream(len(data.neural_train), cfg.batch_size, streams["neural"]) if has_neural else None
    variant_order = None
    if mode == "oracle_pretrain":   # (N, V): image i's variant in epoch e is variant_order[i, (e-1) % V]
        n_img, n_var = data.corrupted.shape[1], data.corrupted.shape[0]
        variant_order = torch.argsort(torch.rand(n_img, n_var, generator=streams["variants"]), dim=1)
    if model.readout is not None:
        model.readout.generator = streams["readout"]   # its sampled read positions
    n_train = len(data.cls["train"][1]) if has_cls else len(data.neural_train)
    B = min(cfg.batch_size, n_train)
    n_steps = max(1, n_train // B)
    plan = schedule(n_steps, cfg.ratio) if mode == "mtl" else None
    cosine = step_schedulers(optimizers, n_steps * cfg.max_epochs, round(cfg.warmup * n_steps * cfg.max_epochs)) if not plateau else []
    # the BatchNorm pass before every evaluation: a fixed subset of this fit's training images; only the
    # layers this fit trains (a frozen layer keeps the statistics of the fit that trained it)
    if has_cls:
        bn_x, bn_cls = data.cls["train"][0], True
    else:
        src = data.neural_train
        bn_x, bn_cls = src.images[torch.unique(src.index)], False
    bn_x = bn_x[bn_subset(len(bn_x), cfg.bn_images).to(bn_x.device)] if cfg.bn_images > 0 else None
    frozen_ids = {id(m) for f in frozen for m in f.modules()}

    def evaluate_mode(last: bool):
        """Before a validation: the BatchNorm pass where the weights validated may be the ones kept (every
        epoch when the best epoch is selected or a plateau restores it; the last epoch with final weights,
        whose earlier validations only show progress, on the running statistics)."""
        if bn_x is not None and (keep_best or last):
            recompute_batchnorm(model, bn_x, max(B, 256), lambda x, g: prep(x.to(dev), bn_cls, g), use_amp, skip=frozen_ids)
        model.eval()

    state = {"epoch": 0, "history": [], "best_metric": -math.inf, "best_state": None, "n_reductions": 0,
             "train_seconds": 0.0, "images": 0, "final_metric": float("nan")}
    keep_best = plateau or cfg.select == "best"
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    resumed_after = None
    if ckpt_path is not None and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=dev, weights_only=False)
        model.load_state_dict(ck["model"])
        saved = ck["optimizer"] if isinstance(ck["optimizer"], list) else [ck["optimizer"]]
        if len(saved) != len(optimizers):
            raise ValueError(f"{ckpt_path}: holds {len(saved)} optimizer state(s), this fit has {len(optimizers)} "
                             "(written with another readout_lr?)")
        for o, st in zip(optimizers, saved):
            o.load_state_dict(st)
        for sc, st in zip([sched] if plateau else cosine, ck["scheduler"]):
            sc.load_state_dict(st)
        if aux is not None:
            aux.load_state_dict(ck["weighting"])
        if stream is not None:
            stream.load(ck["stream"])
        streams.load(ck["streams"])
        torch.set_rng_state(ck["torch_rng"].cpu())
        if dev.type == "cuda" and ck.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"].cpu(), dev)
        state = ck["state"]
        resumed_after = state["epoch"]
        if log:
            log(f"resumed from {ckpt_path} after epoch {state['epoch']}")
        if report is not None:
            # a report made just before a crash can be lost with the worker: say the finished epochs again
            # (without a checkpoint); the sweep's progress printer drops the lines it has already shown
            for row in state["history"]:
                report(row, None)
    elif has_neural:
        # readout bias init: mean response of the first training batch
        m = data.neural_train.mask[:B].float()
        model.readout.initialize_bias((data.neural_train.targets[:B] * m).sum(0) / m.sum(0).clamp_min(1))

    def prep(x_u8, aug: bool, gen=None):
        """uint8 images -> the model's input: a classification batch (aug) with the augmentation, a neural
        batch as it is (a model's own input filter, if any, is in `model.prep`)."""
        if aug and cfg.augment:
            x = model.prep(None, augment(x_u8.float() / 255.0, gen or aug_gen))
        else:
            x = model.prep(x_u8)
        return x.contiguous(memory_format=torch.channels_last)

    # Loss sums stay on the device and are read (and checked for NaN/inf) once per epoch: a
    # per-step .item() would stall the GPU's queue at every step.
    def check(sums, epoch):
        for key, what in (("neural", "neural"), ("similarity", "similarity"), ("cls", "classification"),
                          ("consistency", "consistency")):
            v = float(sums[key])
            if not math.isfinite(v):
                raise _Diverged(f"non-finite {what} loss ({v}) in epoch {epoch}")
            sums[key] = v

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp)

    # neural images unlike the classification images (data.neural_bn "running"): their batches are normalised
    # with the classification's running statistics, the ones evaluation uses, and leave them unchanged
    running_bn = batchnorms(model, frozen_ids) if mode == "mtl" and data.neural_bn == "running" else []

    def neural_step(epoch, sums, share=1.0):
        idx = stream.next()
        src = data.neural_train
        x = prep(take(src.images, src.index[idx.to(src.index.device)]), aug=False)
        target, mask = take(src.targets, idx), take(src.mask, idx)
        for m in running_bn:
            m.eval()
        try:
            with autocast():
                rate = model.predict_neural(x).float()
        finally:
            for m in running_bn:
                m.train()
        if mode == "neural":
            loss = poisson_loss(rate, target, mask) + model.readout.regularizer()
            sums["neural"] += loss.detach()
        else:
            mse = masked_mse(rate, target, mask)
            loss = share * weighting.neural(mse)
            sums["neural"] += mse.detach() + 0.0 * loss.detach()  # NaN in the weighting shows too
        loss.backward()
        return len(idx)

    def cls_step(epoch, idx, sums):
        x_u8, y_all = data.cls["train"]
        y = take(y_all, idx)
        if mode == "oracle_pretrain":
            # every image of the batch twice: clean, and a corrupted variant (1:1 clean:corrupted),
            # both under the same geometric augmentation; CE on both, and the cosine consistency of
            # the two conv3_1 maps of each image. Each image walks through its V variants (each an
            # independent corruption x severity draw) in its own random order, one per epoch: with
            # V >= the epochs no variant is used twice, as if every use drew afresh
            bank = data.corrupted                                           # (V, N, 1, H, W)
            i = idx.to(bank.device)
            v = variant_order[idx.cpu(), (epoch - 1) % len(bank)].to(bank.device)
            pair = torch.cat([take(x_u8, idx), bank[v, i].to(dev, non_blocking=True)], 1).float() / 255.0  # (B, 2, H, W)
            pair = augment(pair, aug_gen) if cfg.augment else pair
            xc, xk = model.prep(None, pair[:, :1]), model.prep(None, pair[:, 1:])
            x_all = torch.cat([xc, xk])
            x_all = x_all.contiguous(memory_format=torch.channels_last)
            with autocast():
                f = model.features(x_all)                                   # (2B, C, H', W')
                logits = model.core.forward_from(f, model.readout_layer).float()
            ce = F.cross_entropy(logits, torch.cat([y, y]))
            cons = consistency_loss(f[:len(idx)].float(), f[len(idx):].float())
            loss = ce + cfg.consistency_weight * cons
            sums["consistency"] += cons.detach()
            sums["cls"] += ce.detach() + 0.0 * loss.detach()
            n = 2 * len(idx)
        else:
            with autocast():
                logits = model(prep(take(x_u8, idx), aug=True)).float()
            ce = F.cross_entropy(logits, y)
            loss = weighting.classification(ce) if weighting is not None else ce
            n = len(idx)
            if simreg is not None:
                pool = data.sim_pool
                i, j = pool.sample_pairs(cfg.sim_pairs, streams["similarity"])
                both = torch.cat([i, j])
                with autocast():
                    feats = model.core.forward_intermediates(prep(take(pool.images, both), aug=False), simreg.layers)
                k = len(i)
                pair = torch.arange(k, device=dev)
                s_model = simreg.model_similarity(feats, pair, pair + k)
                s_target = pair_cosine(take(pool.vectors, both), pair, pair + k)
                sim = similarity_loss(s_model, s_target)
                loss = loss + cfg.sim_alpha * sim
                sums["similarity"] += sim.detach()
                n += 2 * k
            sums["cls"] += ce.detach() + 0.0 * loss.detach()
        loss.backward()
        return n

    status, diverged_epoch, error, stop_reason = "ok", None, "", "max_epochs"
    if state["n_reductions"] >= cfg.max_reductions:   # resumed from a fit that had already stopped
        stop_reason = "lr_reductions"
    try:
        while state["epoch"] < cfg.max_epochs and state["n_reductions"] < cfg.max_reductions:
            epoch = state["epoch"] + 1
            set_train_mode(model, frozen)
            sums = {k: torch.zeros((), device=dev) for k in ("cls", "neural", "consistency", "similarity")}
            n_img, n_cls, n_neu = 0, 0, 0
            t0 = time.perf_counter()
            perm = torch.randperm(n_train, generator=gen) if has_cls else None
            for s in range(n_steps):
                for o in optimizers:
                    o.zero_grad(set_to_none=True)
                if mode == "neural":
                    n_img += neural_step(epoch, sums)
                    n_neu += 1
                else:
                    group = plan[s] if plan else ["classification"]
                    # neural_grad "mean": the step's neural batches share one batch's weight, so that a ratio
                    # above 1:1 does not act as a larger learning rate on the shared layers
                    share = 1.0 / max(1, group.count("neural")) if cfg.neural_grad == "mean" else 1.0
                    for kind in group:
                        if kind == "neural":
                            n_img += neural_step(epoch, sums, share)
                            n_neu += 1
                        else:
                            n_img += cls_step(epoch, perm[s * B:(s + 1) * B], sums)
                            n_cls += 1
                for o in optimizers:
                    o.step()
                for sc in cosine:
                    sc.step()
            check(sums, epoch)  # reads the sums: also waits for the GPU's queued work
            dt = time.perf_counter() - t0
            evaluate_mode(last=epoch >= cfg.max_epochs)

            row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_seconds": dt,
                   "optimizer_steps": n_steps, "classification_batches": n_cls, "neural_batches": n_neu,
                   "images_per_s": n_img / dt if dt > 0 else float("nan"),
                   "loss_classification": sums["cls"] / max(n_cls, 1) if has_cls else float("nan"),
                   "loss_neural": sums["neural"] / max(n_neu, 1) if has_neural else float("nan"),
                   "loss_consistency": sums["consistency"] / max(n_cls, 1) if mode == "oracle_pretrain" else float("nan"),
                   "loss_similarity": sums["similarity"] / max(n_cls, 1) if simreg is not None else float("nan"),
                   "sim_layer_weights": ",".join(f"{w:.4f}" for w in simreg.weights().tolist()) if simreg is not None else "",
                   "log_var_classification": weighting.log_var_cls.item() if weighting is not None else float("nan"),
                   "log_var_neural": weighting.log_var_neural.item() if weighting is not None else float("nan"),
                   "val_accuracy": accuracy(model, *data.cls["val"], use_amp) if has_cls else float("nan"),
                   "val_correlation": neural_val(model, data.neural_val, use_amp) if (has_neural and data.neural_val is not None) else float("nan")}
            metric = row["val_accuracy"] if has_cls else row["val_correlation"]
            if not math.isfinite(metric):
                raise _Diverged(f"non-finite validation metric in epoch {epoch}")
            state["final_metric"] = metric
            if metric > state["best_metric"]:
                state["best_metric"] = metric
                if keep_best:   # a copy of the weights per improvement: only where they will be restored
                    state["best_state"] = copy.deepcopy(model.state_dict())
                    if aux is not None:
                        state["best_weighting"] = copy.deepcopy(aux.state_dict())
            lr_before = opt.param_groups[0]["lr"]
            if plateau:
                sched.step(metric)
            if plateau and opt.param_groups[0]["lr"] < lr_before:
                state["n_reductions"] += 1
                for o in optimizers[1:]:          # the readout's own Adam follows the schedule
                    for g in o.param_groups:
                        g["lr"] *= cfg.lr_factor
                model.load_state_dict(state["best_state"])
                if aux is not None:
                    aux.load_state_dict(state["best_weighting"])
            row["n_reductions"] = state["n_reductions"]
            state["history"].append(row)
            state["epoch"] = epoch
            state["train_seconds"] += dt
            state["images"] += n_img
            last = epoch >= cfg.max_epochs or state["n_reductions"] >= cfg.max_reductions
            saved = ckpt_path is not None and (epoch % cfg.checkpoint_every == 0 or last)
            if saved:
                ckpt_path.parent.mkdir(parents=True, exist_ok=True)
                _atomic_torch_save({
                    "model": model.state_dict(), "optimizer": [o.state_dict() for o in optimizers],
                    "scheduler": [sc.state_dict() for sc in ([sched] if plateau else cosine)],
                    "weighting": aux.state_dict() if aux is not None else None,
                    "stream": stream.state() if stream is not None else None,
                    "streams": streams.state(), "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                    "state": state, "config": cfg.__dict__,
                }, ckpt_path)
            if log:
                from core.progress import number   # "-" where a value does not apply (no classifier, no readout)

                log(f"epoch {epoch:3d}  lr {row['lr']:.3g}  val_acc {number(row['val_accuracy'])}  "
                    f"val_corr {number(row['val_correlation'])}  {row['images_per_s']:.0f} img/s")
            if report is not None:
                report(row, ckpt_path if saved else None)
            if fail_at_epoch is not None and epoch == fail_at_epoch:
                raise KeyboardInterrupt(f"simulated kill after epoch {epoch}")
            if state["n_reductions"] >= cfg.max_reductions:
                stop_reason = "lr_reductions"
                break
    except _Diverged as e:
        status, error = "diverged", str(e)
        diverged_epoch = state["epoch"] + 1
        stop_reason = "diverged"
    # every path leaves BatchNorm statistics recomputed: the last validation did it, and best weights were
    # copied after theirs
    if cfg.select == "best" and state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    selected = state["best_metric"] if cfg.select == "best" else state["final_metric"]
    return FitResult(status, state["history"], state["best_metric"], stop_reason, diverged_epoch, error,
                     state["train_seconds"], state["images"] / max(state["train_seconds"], 1e-9), str(dev),
                     resumed_after, selected, state["final_metric"], on_device)
