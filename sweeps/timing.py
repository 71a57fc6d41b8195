"""How long a sweep takes on CPUs: each model's planned seconds, and the wall time of the whole graph on a
number of slots, as the graph searcher hands the models out (a model starts when a slot is free and its
upstream has finished). `--plan` prints the sum; the progress lines re-plan what is left after every model,
the planned seconds scaled by what the finished models of the same group really took.

Each rate below was measured on the demo preset (docs/benchmarks.md, "Plan and time left"): a model's
planned seconds are its fit FLOPs at the fit rate plus its evaluation FLOPs at the inference rate, on the
trial's threads, plus a fixed cost per model, the three fitted by least squares to the demo's seven models
(`python benchmarks/plan_rates.py --storage results`).
"""

from __future__ import annotations

# least squares over the demo's seven models (the fit and evaluation FLOPs as --plan counts them against
# runs.wall_seconds, one thread per model, two at a time on an idle 2-core CPU; every model within 23%)
FIT_GFLOPS = 66.8                # fit's whole epochs (training, the BatchNorm pass, validation, checkpoints)
EVAL_GFLOPS = 24.3               # evaluation: TIN-TC, spectral sensitivity, attacks
MODEL_SECONDS = 11.3             # per model beyond its FLOPs: loading data, writing the lake, Tune's trial start
RAY_START_SECONDS = 8.0          # ray.init and the dashboard
TINTC_CORE_SECONDS = 0.25        # the 70 TIN-TC conditions of one test image (METHOD's figure, built in parallel)
BANK_CORE_SECONDS = 0.0036       # one corruption of the Oracle's training bank
REPORT_SECONDS = 25.0            # the analysis and report at the end


def model_seconds(fit_flops: float, eval_flops: float, threads: int) -> float:
    """Planned seconds of one model on `threads` CPU threads."""
    return (fit_flops / (FIT_GFLOPS * 1e9) + eval_flops / (EVAL_GFLOPS * 1e9)) / max(1, threads) + MODEL_SECONDS


def simulate(order: list[str], seconds: dict[str, float], upstream: dict[str, str], slots: int,
             running: dict[str, float] | None = None) -> float:
    """Seconds until every model of `order` (run ids, in the searcher's order) has finished on `slots`
    slots, `running` (run id -> seconds it still needs) already on some of them. A model starts when a
    slot is free and its upstream, if that is still to finish here, has finished; the searcher takes the
    first such model in order."""
    running = dict(running or {})
    pending = [r for r in order if r not in running]
    unfinished = set(pending) | set(running)
    now = 0.0
    while pending or running:
        while len(running) < max(1, slots):
            ready = next((r for r in pending if upstream.get(r) not in unfinished), None)
            if ready is None:
                break
            pending.remove(ready)
            running[ready] = seconds.get(ready, 0.0)
        if not running:   # nothing can start: an upstream outside this run (it will fail them): done
            break
        r, dt = min(running.items(), key=lambda kv: kv[1])
        now += dt
        running = {k: v - dt for k, v in running.items() if k != r}
        unfinished.discard(r)
    return now


def preparation_seconds(n_test: int | None, bank_corruptions: int, cores: int) -> float:
    """The driver's work before the first model: TIN-TC (None: cached) and the Oracles' banks, in parallel."""
    tintc = (n_test or 0) * TINTC_CORE_SECONDS
    return (tintc + bank_corruptions * BANK_CORE_SECONDS) / max(1, cores)
