"""Mutation check: plant each known error in the code, run the tests that guard it, put the code back.
Every mutant must make at least one of its tests fail (exit 1 otherwise).

    python tests/mutation/run_mutants.py                 # every mutant, each against its own tests
    python tests/mutation/run_mutants.py --list          # the mutants and the tests that guard them
    python tests/mutation/run_mutants.py --only resume   # the mutants whose name contains "resume"
    python tests/mutation/run_mutants.py --real          # first run each mutant's tests on the real code

A mutant is one or more text replacements (each text must be in its file exactly once) and the test
files or test ids that guard it; only those run, with -x, so the whole check stays short. The tests
run in a subprocess that writes no bytecode, so no stale .pyc of a mutant outlives it.

Not collected by pytest (it edits source files while it runs, then restores them).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOOT, REG = "analysis/bootstrap.py", "analysis/regression.py"
FIT, RUNNER, SAL, STAGES = "core/training/fit.py", "sweeps/runner.py", "analysis/saliency.py", "sweeps/stages.py"
LAKE, IO, COMPARE = "core/results/lake.py", "core/io.py", "core/evaluate/tintc_compare.py"
STATS = ["tests/test_analysis.py", "tests/test_calibration.py"]
PREC = "analysis/precision.py"
PREC_TESTS = ["tests/test_precision.py", "tests/test_calibration.py"]
CAL = "analysis/calibration.py"
RISE_TEST = "tests/test_explain.py::test_the_rise_is_each_kind_against_itself_in_the_null_world_seed_by_seed"
SEEDS_FOR_TEST = "        if _half_width(a, c, n, 0.5 + level / 2) + _half_width(a, c, n, power) <= effect:"   # the line of precision.seeds_for its mutants edit
NEEDED = "tests/test_precision.py::test_seeds_needed_is_the_first_count_whose_detectable_effect_reaches_the_estimate"
SPREAD = "tests/test_reconstruct.py::test_the_start_spread_counts_only_converged_starts_and_needs_two"
ATOMIC = "tests/test_corruptions.py::test_a_write_that_fails_at_the_rename_leaves_the_old_file_and_nothing_else"


@dataclass(frozen=True)
class Mutant:
    edits: tuple[tuple[str, str, str], ...]   # (file, original text, mutated text)
    tests: tuple[str, ...]                    # test files or ids (file::name) that must fail on it
    timeout: int = 1500                       # seconds for its tests; past it the mutant counts as caught (a hang)


def mutant(edits, *tests, timeout=1500) -> Mutant:
    return Mutant(tuple(edits) if isinstance(edits, list) else (edits,), tests, timeout)


MUTANTS = {
    # the statistics
    "paired intervals without the image term (no image resampling)": mutant(
        (PREC, "w = image_weights(len(cor.images), n_boot, np.random.default_rng(seed)).astype(np.float32)",
         "w = np.full((n_boot + 1, len(cor.images)), 1.0 / len(cor.images), np.float32)"), *PREC_TESTS),
    "paired intervals without the seed term (images only)": mutant(
        (PREC, "    seed_var = float(x[0].var(ddof=1)) if k > 1 else 0.0", "    seed_var = 0.0"), *PREC_TESTS),
    "unpaired images (each model draws its own test images)": mutant(
        (PREC, 'self.a_c = np.einsum("rcn,bn,ck->brk", cor.corrupt, w, avg, optimize=True).astype(np.float64)',
         'wr = np.concatenate([w[None, :1].repeat(cor.corrupt.shape[0], 1), (np.random.default_rng(seed + 1).multinomial('
         'len(cor.images), np.full(len(cor.images), 1.0 / len(cor.images)), size=(n_boot, cor.corrupt.shape[0])) / '
         'len(cor.images))], 0).astype(np.float32); '
         'self.a_c = np.einsum("rcn,brn,ck->brk", cor.corrupt, wr, avg, optimize=True).astype(np.float64)'), *PREC_TESTS),
    "intervals twice as wide as they should be": mutant(
        (PREC, '"low": est - half,\n            "high": est + half,', '"low": est - 2 * half,\n            "high": est + 2 * half,'),
        *PREC_TESTS),
    "the normal quantile for the seed term (t with k-1 degrees of freedom ignored)": mutant(
        (PREC, "    tq = float(special.stdtrit(k - 1, q)) if k > 1 else 0.0", "    tq = float(special.ndtri(q)) if k > 1 else 0.0"),
        *PREC_TESTS),
    "the seed variance with ddof 0 (a missing k/(k-1))": mutant(
        (PREC, "    seed_var = float(x[0].var(ddof=1)) if k > 1 else 0.0", "    seed_var = float(x[0].var(ddof=0)) if k > 1 else 0.0"),
        *PREC_TESTS),
    "an interrupted driver that reads the local Ray's processes once (no wait for those still ending)": mutant(
        ("sweeps/cli.py", "    deadline = time.monotonic() + settle\n", "    deadline = time.monotonic()\n"),
        "tests/test_cli.py::test_an_interrupted_driver_waits_for_ray_processes_that_are_still_ending"),
    "seeds needed one too many": mutant((PREC, "            return float(n)\n", "            return float(n + 1)\n"), NEEDED),
    "seeds needed one too few": mutant((PREC, "            return float(n)\n", "            return float(n - 1)\n"), NEEDED),
    "seeds needed for the interval alone (50% power)": mutant(
        (PREC, SEEDS_FOR_TEST,
         "        if _half_width(a, c, n, 0.5 + level / 2) <= effect:"), NEEDED),
    "seeds needed with the normal quantile for the seed term": mutant(
        (PREC, SEEDS_FOR_TEST,
         "        if math.sqrt(a + c) * 2.8 <= effect:"), NEEDED),
    "seeds needed at 95% whatever the level asked for": mutant(
        (PREC, SEEDS_FOR_TEST,
         "        if _half_width(a, c, n, 0.975) + _half_width(a, c, n, power) <= effect:"), NEEDED),
    "a calibration that plans more seeds for a gain it has already shown": mutant(
        (CAL, 'and place(r) == "covers" and r["estimate"] > 100:', 'and r["estimate"] > 100:'), RISE_TEST),
    "a calibration that plans a fall as if it were a gain": mutant(
        (CAL, 'and place(r) == "covers" and r["estimate"] > 100:', 'and place(r) == "covers":'), RISE_TEST),
    "a finding that drops the planning figure its table carries": mutant(
        (CAL, '**({"seeds_needed": r["detect_seeds_needed"]} if "detect_seeds_needed" in r else {})}', "}"),
        "tests/test_explain.py::test_the_calibration_verdict_needs_no_false_discovery_a_found_rising_benefit_and_a_flat_shuffled_control"),
    "a seed-paired contrast that plans with the seeds of one world alone": mutant(
        (CAL, '"seeds_needed": seeds_needed(d, level)}', '"seeds_needed": seeds_needed(pick(b[kind]), level)}'), RISE_TEST),
    "ratios pooled as if they were seeds": mutant(
        (PREC, "                    d = np.mean([p.log_ratio([v[1][v[0].index(x)] for x in seeds], [v[2][v[0].index(x)] for x in seeds], sel)\n"
               "                                 for v in per_setting.values()], axis=0)",
         "                    d = np.concatenate([p.log_ratio([v[1][v[0].index(x)] for x in seeds], [v[2][v[0].index(x)] for x in seeds], sel)\n"
         "                                 for v in per_setting.values()], axis=1)"),
        *PREC_TESTS),
    "a percentile interval called BCa": mutant((BOOT, 'method="BCa"', 'method="percentile"'), "tests/test_analysis.py"),
    "a basic interval called BCa": mutant((BOOT, 'method="BCa"', 'method="basic"'), "tests/test_analysis.py"),
    "regression without an intercept": mutant(
        (REG, 'formula = f"robustness ~ clean_accuracy + {neural}"', 'formula = f"robustness ~ clean_accuracy + {neural} - 1"'),
        *STATS),
    "regression with the two factors' labels swapped": mutant(
        (REG, 'd = _check(models, ["robustness", "clean_accuracy", neural], 3, label).to_pandas()',
         'd = _check(models, ["robustness", "clean_accuracy", neural], 3, label).to_pandas().rename('
         'columns={"clean_accuracy": neural, neural: "clean_accuracy"})'), *STATS),
    "regression reports standardised coefficients as raw ones": mutant(
        (REG, '"coef": float(fit.params[term])', '"coef": float(std_fit.params[term])'), *STATS),

    # a fit resumed from its checkpoint
    "a fit that records a resume but restores nothing and retrains from scratch": mutant(
        (FIT, "    resumed_after = None\n    if ckpt_path is not None and ckpt_path.is_file():",
         "    resumed_after = (torch.load(ckpt_path, weights_only=False)['state']['epoch']\n"
         "                     if ckpt_path is not None and ckpt_path.is_file() else None)\n    if False:"),
        "tests/test_training.py::test_resume_equals_uninterrupted[mtl-cpu]"),
    "a resume that restores the epoch count but not the weights": mutant(
        (FIT, '        model.load_state_dict(ck["model"])\n', ""),
        "tests/test_training.py::test_resume_equals_uninterrupted[mtl-cpu]"),

    # a sweep's faults
    "a fit's deterministic error recorded, then raised to Ray as well (which retries the fit)": mutant(
        (STAGES, "        write_failed(spec, task, error)\n", "        write_failed(spec, task, error)\n        raise\n"),
        "tests/test_faults.py::test_a_deterministic_error_is_recorded_with_its_cause_not_retried_and_the_sweep_exits_non_zero"),

    "a re-run after a killed driver trains an interrupted fit again from scratch (each run its own work folder)": mutant(
        (RUNNER, '/ "work" / task.run_id) if local else None', '/ "work" / uuid.uuid4().hex / task.run_id) if local else None'),
        "tests/test_sweeps.py::test_killed_driver_then_resume_completes_only_the_missing_work"),
    "the reconstruction's check runs a tenth of the steps asked (and records the number asked)": mutant(
        ("analysis/reconstruct.py", "check_steps=check_n, starts=n_starts)", "check_steps=check_n // 10, starts=n_starts)"),
        "tests/test_sweeps.py::test_reconstruction_from_the_sweeps_models_adds_a_report_section"),
    "a local Ray whose dashboard listens on every interface": mutant(
        ("sweeps/cli.py", 'include_dashboard=True, dashboard_host="127.0.0.1"', 'include_dashboard=True, dashboard_host="0.0.0.0"'),
        "tests/test_s3_dashboard.py::test_a_local_ray_listens_on_loopback_only"),

    "--plan counts an architecture's FLOPs again for every model (no cache)": mutant(
        ("sweeps/plan.py", "        if arch not in by_arch:\n", "        if True:\n"),
        "tests/test_sweeps.py::test_plan_of_the_paper_preset_needs_no_data_and_is_quick"),
    "a fit that does not check its classification loss for NaN/inf": mutant(
        (FIT, '("similarity", "similarity"), ("cls", "classification"),', '("similarity", "similarity"),'),
        "tests/test_training.py::test_divergence_is_a_status"),

    "a fit that keeps its data on the device whatever data_placement says": mutant(
        (FIT, "    on_device = data_on_device(data, dev, cfg.data_placement)\n", "    on_device = True\n"),
        "tests/test_training.py::test_the_host_and_device_data_paths_give_the_same_fit"),

    # the planted world
    "a report without its world line (the planted strength unsaid)": mutant(
        ("analysis/html.py", "<b>World:</b> {html.escape(world)}</p>\" if world else", "<b>World:</b> {html.escape(world)}</p>\" if False else"),
        "tests/test_sweeps.py::test_planted_worlds_run_one_sweep_each_and_every_report_states_its_planted_strength"),
    "a degraded recording that degrades every stimulus, whatever its share": mutant(
        ("core/data/planted.py", "    for i in np.flatnonzero(rng.random(len(out)) < share):\n",
         "    for i in np.flatnonzero(rng.random(len(out)) < 2):\n"),
        "tests/test_planted.py::test_a_planted_worlds_recording_is_shown_degraded_and_its_shape_units_see_through_it"),
    "a world folder of another world's settings used in place of this one": mutant(
        ("core/training/bundles.py", "        _check_world(world, cfg.source())\n", ""),
        "tests/test_planted.py::test_a_world_folder_written_for_another_world_is_refused_and_kept"),
    "a degraded recording that never blurs": mutant(
        ("core/data/planted.py", "        if blur:\n", "        if False:\n"),
        "tests/test_planted.py::test_a_planted_worlds_recording_is_shown_degraded_and_its_shape_units_see_through_it"),
    "MTL-True on the classification images' noise-free rates again, not the recording's": mutant(
        ("core/training/recipes/mtl.py", "    return _train(job, recording_data(job.sources))\n",
         "    import torch\n\n    from core.training.bundles import mtl_data\n\n    return _train(job, mtl_data(job.sources, {s: torch.from_numpy("
         "job.sources.neural.arrays[f'cls_true_rates_{s}']) for s in ('train', 'val')}))\n"),
        "tests/test_planted.py::test_mtl_true_co_trains_on_the_recordings_stimuli_with_their_noise_free_rates"),
    "MTL-True on the recording's spikes instead of its noise-free rates": mutant(
        ("core/training/bundles.py", "    tr, va = neural_sources(sources.neural, truth=True)\n", "    tr, va = neural_sources(sources.neural)\n"),
        "tests/test_planted.py::test_mtl_true_co_trains_on_the_recordings_stimuli_with_their_noise_free_rates"),
    "MTL-True's degraded neural batches normalised on their own statistics again": mutant(
        ("core/training/bundles.py", "cls_tensors(sources.cls), tr, va, neural_bn=RECORDING_NEURAL_BN)", "cls_tensors(sources.cls), tr, va)"),
        "tests/test_planted.py::test_mtl_true_co_trains_on_the_recordings_stimuli_with_their_noise_free_rates"),
    "a fit that ignores neural_bn": mutant(
        (FIT, "if mode == \"mtl\" and data.neural_bn == \"running\" else []", "if False else []"),
        "tests/test_training.py::test_neural_batches_of_other_images_are_normalised_with_the_running_statistics"),
    "a fit that leaves BatchNorm in eval mode after a neural batch (classification batches never update it)": mutant(
        (FIT, "            for m in running_bn:\n                m.train()\n", "            pass\n"),
        "tests/test_training.py::test_neural_batches_of_other_images_are_normalised_with_the_running_statistics"),
    "a BatchNorm pass that builds an autograd graph": mutant(
        ("core/training/recipe.py", "@torch.no_grad()\ndef recompute_batchnorm(", "def recompute_batchnorm("),
        "tests/test_training.py::test_the_batchnorm_pass_builds_no_autograd_graph"),
    "a move to the device that drops neural_bn": mutant(
        ("core/training/data.py", "            self.neural_bn,\n        )", "        )"),
        "tests/test_training.py::test_neural_batches_of_other_images_are_normalised_with_the_running_statistics"),
    "a harm in the null world counted as a false discovery (the two-sided check)": mutant(
        ("analysis/calibration.py", "for k, r in have.items() if place(r) == \"above\"]", "for k, r in have.items() if place(r) in (\"above\", \"below\")]"),
        "tests/test_explain.py::test_the_calibration_verdict_needs_no_false_discovery_a_found_rising_benefit_and_a_flat_shuffled_control"),
    "an interval that is not finite read as a pass": mutant(
        ("analysis/calibration.py", "        return \"unknown\"\n", "        return \"covers\"\n"),
        "tests/test_explain.py::test_the_calibration_verdict_needs_no_false_discovery_a_found_rising_benefit_and_a_flat_shuffled_control"),
    "the rise read the wrong way round (the null against the strongest world)": mutant(
        ("analysis/calibration.py", "d = pick(b[kind]) - pick(a[kind])", "d = pick(a[kind]) - pick(b[kind])"),
        "tests/test_explain.py::test_the_rise_is_each_kind_against_itself_in_the_null_world_seed_by_seed"),
    "the rise read without its pairing (the strongest world's scores against the Baseline alone)": mutant(
        ("analysis/calibration.py", "d = pick(b[kind]) - pick(a[kind])", "d = pick(b[kind])"),
        "tests/test_explain.py::test_the_rise_is_each_kind_against_itself_in_the_null_world_seed_by_seed"),
    "a calibration that names the healthy models as the ones a world's report leaves out": mutant(
        ("analysis/calibration.py", "bad = model_health(runs, preds).filter(~pl.col(\"healthy\"))",
         "bad = model_health(runs, preds).filter(pl.col(\"healthy\"))"),
        "tests/test_controls.py::test_model_health_names_each_problem"),
    "a FEVe <= 0 stated without the readout's correlation with the neurons": mutant(
        ("analysis/controls.py", "if r_avg is not None and r_avg == r_avg:", "if False:"),
        "tests/test_controls.py::test_model_health_names_each_problem"),
    "a robustness table whose blank p column the report never explains": mutant(
        ("analysis/report_html.py", "; p is \"\n                     \"the two-sided p-value", ". \"\n                     \"The two-sided p-value"),
        "tests/test_analysis.py::test_partial_lake_reports_what_is_missing_and_what_can_be_computed"),
    "a spectral figure promising error bars for one model per kind": mutant(
        ("analysis/figures.py", "several = d.height and int(d[\"n\"].max()) > 1", "several = True"),
        "tests/test_spectral.py::test_the_spectral_figure_promises_error_bars_only_where_a_kind_has_several_models"),
    "a plan of several planted worlds without their summed wall time": mutant(
        ("sweeps/plan.py", "if len(walls) > 1 and None not in walls:", "if False:"),
        "tests/test_cli.py::test_plan_writes_nothing"),
    "a planted world's plan headed as the default world": mutant(
        ("sweeps/plan.py", "+ (f\", planted at {spec.planted:g}\" if spec.planted is not None else \"\")", ""),
        "tests/test_cli.py::test_plan_writes_nothing"),
    "the presets' help silent on the planted worlds and a preset's own kinds": mutant(
        ("sweeps/plan.py", "        if p.planted:\n", "        if False:\n"),
        "tests/test_cli.py::test_every_help_names_what_the_default_preset_trains_and_where_the_output_lands"),
    "a rise passed on the strongest world against the null alone, its steps not shown": mutant(
        ("analysis/calibration.py", "(\"pass\" if all(w == \"above\" for w in where) else \"unclear\")",
         "(\"pass\" if where[0] == \"above\" else \"unclear\")"),
        "tests/test_explain.py::test_the_rise_is_each_kind_against_itself_in_the_null_world_seed_by_seed"),
    "a step between neighbouring worlds shown to fall passed": mutant(
        ("analysis/calibration.py", "state = \"fail\" if \"below\" in where else", "state = \"fail\" if where[0] == \"below\" else"),
        "tests/test_explain.py::test_the_rise_is_each_kind_against_itself_in_the_null_world_seed_by_seed"),
    "the rise judged without its contrast with the null (the steps alone)": mutant(
        ("analysis/calibration.py", "return [(0.0, values[-1])] + (list(zip(values, values[1:])) if len(values) > 2 else [])",
         "return list(zip(values, values[1:])) if len(values) > 2 else [(0.0, values[-1])]"),
        "tests/test_explain.py::test_the_rise_is_each_kind_against_itself_in_the_null_world_seed_by_seed"),
    "the steps between neighbouring worlds left out (only the strongest world against the null)": mutant(
        ("analysis/calibration.py", "return [(0.0, values[-1])] + (list(zip(values, values[1:])) if len(values) > 2 else [])",
         "return [(0.0, values[-1])]"),
        "tests/test_explain.py::test_the_rise_is_each_kind_against_itself_in_the_null_world_seed_by_seed"),
    "the finding read on the Bonferroni interval though the nominal one is there": mutant(
        ("analysis/calibration.py", "if r and r.get(\"detect_low\") is not None:", "if False:"),
        "tests/test_explain.py::test_the_calibration_verdict_needs_no_false_discovery_a_found_rising_benefit_and_a_flat_shuffled_control"),
    "a planted benefit whose interval includes 100 scored as found": mutant(
        ("analysis/calibration.py", "for p, r in planted if place(r) in (\"covers\", \"unknown\")]", "for p, r in planted if False]"),
        "tests/test_explain.py::test_the_calibration_verdict_needs_no_false_discovery_a_found_rising_benefit_and_a_flat_shuffled_control"),

    # the explanations
    "a low-pass Baseline whose filter is left out at test time (trained on low-passed images, tested unfiltered)": mutant(
        ("core/models/mtl.py", "        if self.input_lowpass:\n", "        if self.input_lowpass and self.training:\n"),
        "tests/test_spectral.py::test_a_baseline_that_low_passes_its_input_is_more_robust_to_noise_and_less_to_high_pass"),

    "spectral records with the filters' names swapped": mutant(
        ("core/evaluate/spectral.py", 'rows.append({"filter": kind, "cutoff"', 'rows.append({"filter": {"low": "high", "high": "low"}[kind], "cutoff"'),
        "tests/test_spectral.py::test_a_baseline_that_low_passes_its_input_is_more_robust_to_noise_and_less_to_high_pass"),
    "a statistics-matched surrogate that shuffles each neuron on its own (MTL-Shuffled again)": mutant(
        ("core/training/bundles.py", "    return {s: t[torch.randperm(len(t), generator=g)] for s, t in targets.items()}\n",
         "    return shuffled(targets, seed)\n"),
        "tests/test_training_cli.py::test_the_surrogate_keeps_the_populations_statistics_and_the_shuffle_breaks_its_covariance"),
    "'does not separate' judged against the gain's estimate, not its lower end, and without the gain shown": mutant(
        ("analysis/explain.py", 'gain is not None and gain["low"] > 100 and row["mde"] < gain["low"] - 100\n            and row["high"] < gain["low"]',
         'gain is not None and row["mde"] < gain["estimate"] - 100\n            and row["high"] < gain["estimate"]'),
        "tests/test_explain.py::test_the_simpler_explanations_beat_do_not_separate_or_stay_undecided"),
    "a control the run does not train judged anyway (the explanation preset's verdict amber for no Oracle)": mutant(
        ("analysis/controls.py", "        if kind not in trained:\n", "        if False:\n"),
        "tests/test_controls.py::test_a_control_the_run_does_not_train_is_not_run_and_one_that_crashed_is_unclear"),
    "a crashed Oracle taken as not run (only the finished models' kinds count)": mutant(
        ("analysis/controls.py", "trained = set(recorded) if recorded is not None else set(", "trained = set("),
        "tests/test_controls.py::test_a_control_the_run_does_not_train_is_not_run_and_one_that_crashed_is_unclear"),
    "the report expects the family's kinds whatever the preset (the explain run's Oracle called missing)": mutant(
        ("analysis/report.py", "    own = _preset_kinds(runs)\n", "    own = ()\n"),
        "tests/test_analysis.py::test_a_preset_with_kinds_of_its_own_expects_those_and_not_the_familys"),
    "a control the sweep was meant to train but recorded nothing for taken as not run (a green verdict)": mutant(
        ("analysis/report.py", "recorded=set(runs[\"kind\"].to_list()) | set(expected))", "recorded=set(runs[\"kind\"].to_list()))"),
        "tests/test_analysis.py::test_partial_lake_reports_what_is_missing_and_what_can_be_computed"),
    "the training CLI offers a kind list of its own that forgot a registered kind": mutant(
        ("core/training/__main__.py", 'choices=registry.names(),', 'choices=[k for k in registry.names() if k != "mtl_surrogate"],'),
        "tests/test_registry.py"),

    # saliency
    "a content-blind saliency map that only prefers the centre": mutant(
        (SAL, "s = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(f)))) ** 2", "s = np.ones_like(x)"),
        "tests/test_reconstruct.py::test_builtin_saliency_finds_the_synthetic_objects"),
    "the start spread over every start, converged or not": mutant(
        (SAL, "v = np.where(converged, np.asarray(values, dtype=np.float64), np.nan)", "v = np.asarray(values, dtype=np.float64)"),
        SPREAD),
    "a start spread of 0 where only one start converged": mutant(
        (SAL, "spread = np.where(np.isfinite(v).sum(axis=0) >= 2, hi - lo, np.nan)", "spread = np.where(np.isfinite(v).sum(axis=0) >= 1, hi - lo, np.nan)"),
        SPREAD),
    "the start range over the starts' mean instead of their median": mutant(
        (SAL, "med = np.array([[np.median(c[np.isfinite(c)])", "med = np.array([[np.mean(c[np.isfinite(c)])"),
        SPREAD),

    # atomic writes
    "a lake writer that leaves its temporary file behind when the rename fails": mutant(
        (LAKE, "                fs.delete_file(tmp)\n", "                pass\n"), ATOMIC),
    "a lake writer that writes its file in place (no temporary file, no rename)": mutant(
        (LAKE, "pq.write_table(t, tmp, filesystem=fs)\n            os.replace(tmp, path)", "pq.write_table(t, path, filesystem=fs)"),
        ATOMIC),
    "the atomic file writer leaves its temporary file behind when the rename fails": mutant(
        (IO, "        with contextlib.suppress(FileNotFoundError):\n            tmp.unlink()\n", "        pass\n"), ATOMIC),

    # compare-tintc
    "compare-tintc's generated column scored on the published set again": mutant(
        (COMPARE, '(("published", published), ("generated", generated))', '(("published", published), ("generated", published))'),
        "tests/test_published_tintc.py::test_compare_tintc_prints_the_table"),
    "compare-tintc generates its corruptions with another seed than the sweep's": mutant(
        (COMPARE, 'f"tintc-val-{key}-n{len(clean)}", seed=0,', 'f"tintc-val-{key}-n{len(clean)}", seed=1,'),
        "tests/test_published_tintc.py::test_compare_tintc_prints_the_table"),
    "a model's TIN-TC cache found without its test images' hash (another set's corruptions)": mutant(
        ("core/data/corruptions.py", "pattern.parent.glob(pattern.name)", 'pattern.parent.glob("tintc-*")'),
        "tests/test_corruptions.py::test_a_models_test_sets_are_its_own_images_and_their_cache"),

    # dependency-driven scheduling
    "a model whose upstream crashed without a record waits for that record forever": mutant([
        (RUNNER, 'self.done[t.run_id] = "failed"   # crashed past its retries: recorded after the run', "pass"),
        (RUNNER, "return any(t.run_id == run_id for t in self.pending) or any(t.run_id == run_id for t in self.active.values())",
         "return (any(t.run_id == run_id for t in self.pending) or any(t.run_id == run_id for t in self.active.values())\n"
         "                    or run_id not in self.done)"),
    ], "tests/test_scheduling.py"),
    "a restored searcher keeps its running models under ids of its own, not Tune's trial ids": mutant(
        (RUNNER, 'self.active = {i: by_id[r] for i, r in state["active"].items() if r in by_id}',
         'self.active = {f"restored-{r}": by_id[r] for r in state["active"].values() if r in by_id}'),
        "tests/test_scheduling.py"),
    "a restored searcher forgets the models that were running": mutant(
        (RUNNER, 'self.active = {i: by_id[r] for i, r in state["active"].items() if r in by_id}', "self.active = {}"),
        "tests/test_scheduling.py"),
    "the time left scales the classifiers by the Monkey Predictors' factor before a classifier has finished": mutant(
        (RUNNER, "                if weights and prior is not None:\n                    return prior\n", ""),
        "tests/test_scheduling.py::test_the_time_left_scales_the_plan_by_what_each_groups_finished_models_took"),
}


def plant(m: Mutant) -> dict[Path, str]:
    """Apply the mutant's edits (all checked before any file is written); returns each touched file's
    original text, to restore."""
    texts: dict[Path, str] = {}
    for rel, before, after in m.edits:
        path = ROOT / rel
        text = texts[path] if path in texts else path.read_text()
        if text.count(before) != 1:
            raise LookupError(f"the text to mutate is not in {rel} (once): update this script")
        texts[path] = text.replace(before, after)
    originals = {path: path.read_text() for path in texts}
    for path, text in texts.items():
        path.write_text(text)
    return originals


def run_tests(tests, timeout: int) -> tuple[int | None, str]:
    """pytest on `tests` in its own process group (Ray processes a test starts die with it on a timeout)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return None, out
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        raise


def last_line(out: str) -> str:
    lines = out.strip().splitlines()
    return lines[-1] if lines else "(no output)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="plant each known mutant and run the tests that guard it")
    ap.add_argument("--only", action="append", default=[], metavar="TEXT", help="only the mutants whose name contains TEXT")
    ap.add_argument("--list", action="store_true", help="list the mutants and their tests; plant nothing")
    ap.add_argument("--real", action="store_true", help="run each mutant's tests on the real code first (they must pass)")
    args = ap.parse_args(argv)
    chosen = {k: m for k, m in MUTANTS.items() if not args.only or any(s in k for s in args.only)}
    if not chosen:
        print(f"no mutant matches {args.only}")
        return 2
    if args.list:
        for name, m in chosen.items():
            print(f"{name}\n    {' '.join(m.tests)}")
        return 0
    survived, t_all = [], time.perf_counter()
    for name, m in chosen.items():
        if args.real:
            t0 = time.perf_counter()
            code, out = run_tests(m.tests, m.timeout)
            print(f"== real code, tests of: {name}: {last_line(out)} ({time.perf_counter() - t0:.0f} s)", flush=True)
            if code != 0:
                print(out[-3000:])
                return 2
        t0 = time.perf_counter()
        try:
            originals = plant(m)
        except LookupError as e:
            print(f"== {name}: {e}")
            return 2
        try:
            code, out = run_tests(m.tests, m.timeout)
        finally:
            for path, text in originals.items():
                path.write_text(text)
        took = time.perf_counter() - t0
        if code is None:
            print(f"== mutant: {name}: CAUGHT (its tests ran past {m.timeout} s) ({took:.0f} s)", flush=True)
            continue
        if code not in (0, 1):   # 2-5: interrupted, internal error, usage error, nothing collected
            print(f"== mutant: {name}: its tests did not run (pytest exit {code}): {last_line(out)}\n{out[-3000:]}")
            return 2
        print(f"== mutant: {name}: {'caught' if code == 1 else 'SURVIVED'}: {last_line(out)} ({took:.0f} s)", flush=True)
        for line in out.splitlines():
            if line.startswith(("FAILED", "ERROR")):
                print("     " + line.split(" - ")[0])
        if code == 0:
            survived.append(name)
    print(f"{len(chosen)} mutants in {time.perf_counter() - t_all:.0f} s: "
          + ("every mutant was caught" if not survived else f"SURVIVED: {'; '.join(survived)}"))
    return 1 if survived else 0


def _stop(signum, frame):   # SIGTERM/SIGHUP (a timeout, a closed terminal): unwind, so `finally` restores the files
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    sys.exit(main())
