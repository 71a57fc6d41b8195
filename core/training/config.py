"""The training configuration of one model (frozen; unknown keys raise)."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError
from core.training.cycler import parse_ratio

# How a model is trained. The paper's six model kinds (Table 1) are built from these in
# core.training.kinds: baseline=classification, monkey_predictor=neural, oracle=oracle_pretrain then
# classification on a frozen core, oracle readout=neural on a frozen core, mtl_*=mtl.
# similarity = classification + α·representational-similarity loss (Li et al. 2019; sim_* kinds).
MODES = ("classification", "neural", "oracle_pretrain", "mtl", "similarity")


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "classification"
    model: str = "vgg19_bn_fc"
    width: float = 1.0                  # channel multiplier (1.0 = the paper's VGG-19)
    dropout: float = 0.5
    readout_layer: str = "conv3_1"
    ratio: str = "1:1"                  # neural:classification batches (mode mtl)
    optimizer: str = "auto"             # auto: Adam for mode neural, SGD otherwise
    lr: float = 0.1
    momentum: float = 0.75
    weight_decay: float = 5e-4
    batch_size: int = 128
    max_epochs: int = 400
    patience: int = 5                   # epochs without improvement before an LR reduction
    lr_factor: float = 0.3
    threshold: float = 1e-4
    max_reductions: int = 5             # stop after this many LR reductions (schedule plateau)
    schedule: str = "plateau"           # plateau: the authors' ReduceLROnPlateau; cosine: warm-up, then a cosine
                                        # to zero at max_epochs (core.training.recipe)
    warmup: float = 0.0                 # schedule cosine: share of the fit's optimizer steps spent warming up linearly
    select: str = "best"                # the weights a fit leaves: best (validation) or final
    neural_grad: str = "sum"            # mode mtl, ratio above 1:1: the step's neural batches add up (sum, the
                                        # authors) or share one batch's weight (mean)
    data_placement: str = "auto"        # device: the data on the model's device, batches drawn there; host: in host
                                        # memory, each batch copied; auto: the device unless it takes over half a GPU
    checkpoint_every: int = 1           # epochs between checkpoints (and always after the last epoch)
    compile: bool = False               # torch.compile the core on a CUDA device (how a fit runs, not which model it is)
    bn_images: int = 0                  # BatchNorm statistics recomputed over this many training images before
                                        # every evaluation (0: the running statistics of training, as the authors)
    readout_gamma: float = 0.5          # L1 on readout features (mode neural)
    learn_cls_weight: bool = True       # mode mtl: learn the classification loss weight too (the authors);
                                        # False: plain CE, only the neural weight learned (core/presets.py)
    readout_lr: float = 0.0             # mode mtl: > 0 trains the readout with its own Adam at this lr
                                        # (0: the readout shares the SGD of the rest, as the authors); see core/presets.py
    init_mu_range: float = 0.3
    init_sigma_range: float = 0.6
    augment: bool = True
    input_lowpass: float = 0.0          # a Gaussian low-pass (half amplitude at this many cycles per pixel) in front
                                        # of the model, at training and at every evaluation; 0: off
    consistency_weight: float = 1.0     # mode oracle_pretrain
    freeze_through: str = ""            # freeze core layers up to and including this one (e.g. conv3_1)
    sim_alpha: float = 10.0             # mode similarity: weight α of the similarity loss
    sim_pairs: int = 16                 # image pairs from the regularisation pool per classification batch
    sim_layers: str = "conv2_1,conv3_1,conv4_1"   # layers whose similarities are mixed by softmax(γ)
    sim_source: str = "predicted"       # sim_monkey targets: the Monkey Predictor's responses, or "true" rates
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    amp: bool = True                    # bf16 autocast on CUDA (ignored on CPU)
    threads: int = 0                    # torch intra-op threads on CPU (0: leave as is)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"mode {self.mode!r}; expected one of {', '.join(MODES)}")
        parse_ratio(self.ratio)
        if self.optimizer not in ("auto", "sgd", "adam"):
            raise ConfigError(f"optimizer {self.optimizer!r}; expected auto, sgd or adam")
        for k in ("lr", "width", "batch_size", "max_epochs"):
            if getattr(self, k) <= 0:
                raise ConfigError(f"{k}={getattr(self, k)}; expected > 0")
        if self.sim_alpha < 0 or self.sim_pairs < 1:
            raise ConfigError(f"sim_alpha={self.sim_alpha}, sim_pairs={self.sim_pairs}; expected alpha >= 0, pairs >= 1")
        for k, allowed in (("schedule", ("plateau", "cosine")), ("select", ("best", "final")),
                           ("neural_grad", ("sum", "mean")), ("data_placement", ("auto", "device", "host"))):
            if getattr(self, k) not in allowed:
                raise ConfigError(f"{k}={getattr(self, k)!r}; expected {' or '.join(allowed)}")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every={self.checkpoint_every}; expected >= 1")
        if not 0 <= self.input_lowpass <= 0.5:
            raise ConfigError(f"input_lowpass={self.input_lowpass}; expected a cut-off in cycles per pixel up to 0.5 (0: off)")
        if not 0 <= self.warmup < 1 or self.bn_images < 0:
            raise ConfigError(f"warmup={self.warmup}, bn_images={self.bn_images}; expected 0 <= warmup < 1 and "
                              "bn_images >= 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum={self.momentum}; expected 0 <= momentum < 1")

    @property
    def sim_layer_list(self) -> list[str]:
        """`sim_layers` as a list of layer names."""
        return [s.strip() for s in self.sim_layers.split(",") if s.strip()]

    @property
    def resolved_optimizer(self) -> str:
        return ("adam" if self.mode == "neural" else "sgd") if self.optimizer == "auto" else self.optimizer
