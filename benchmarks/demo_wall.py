"""A whole demo sweep against the in-process sum of the same fits.

Both sides train the same models (the preset's stage graph, the same run ids) on the same data, one
torch thread per model:
  in-process  `core.training.kinds.run_kind` for each model, one after another, in stage order,
              each reading its upstream from the previous ones' folders: training, evaluation on
              TIN-TC, the attacks. The sum of these walls is what the fits themselves cost.
  Ray         `sweeps/ratio_grid.py --preset P --no-report --quiet` called as a function
              (`resolve_common` + `run_sweep`), timed from the call to the summary: `ray.init`, data
              preparation (cached), one Tune run over the graph with up to --max-concurrent models at a
              time, the lake records and the summary. The report is left out (the in-process side
              writes none).
The shared inputs (synthetic world, TIN-TC, the Oracles' corruption banks) are built once, untimed,
before both. One repeat per side: a demo graph is minutes of work, so read the ratio as good to about
±10% on this shared machine.

    python benchmarks/demo_wall.py                  # the demo preset: about 15 minutes on 2 cores
    python benchmarks/demo_wall.py --preset smoke   # about 2 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout

from core.data.corruptions import ensure_tintc  # noqa: E402
from core.presets import get_preset  # noqa: E402
from core.training.bundles import load_sources, oracle_bank  # noqa: E402
from core.training.graph import CLASSIFIERS  # noqa: E402
from core.training.kinds import run_kind, tintc_source  # noqa: E402
from sweeps import ratio_grid  # noqa: E402
from sweeps.cli import resolve_common  # noqa: E402
from sweeps.runner import run_sweep  # noqa: E402
from sweeps.stages import plan, task_overrides  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="demo", help="training preset (default demo)")
    p.add_argument("--max-concurrent", type=int, default=0, help="models the sweep trains at once (default: as the "
                                                                    "resources allow, like the main job)")
    args = p.parse_args()
    preset = get_preset(args.preset)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        data_root = d / "data"
        argv = ["--preset", args.preset, "--storage", str(d / "ray-side"), "--data-root", str(data_root), "--device", "cpu",
                "--no-report", "--quiet", "--max-concurrent", str(args.max_concurrent)]
        spec, ray_kwargs = resolve_common(ratio_grid.parser().parse_args(argv), kinds="all")

        # shared inputs, untimed, where both sides look for them
        sources = load_sources(preset, data_root, log=None)
        images, folder = tintc_source(preset, sources, data_root)
        tintc = ensure_tintc(images, folder, seed=0, log=None, progress=False)
        for s in spec.seeds:
            oracle_bank(sources, data_root, s, preset.oracle_variants, None)
        tasks = [t for w in plan(spec, sources.info) for t in w]
        print(f"preset {args.preset}: {len(tasks)} models ({', '.join(t.label() for t in tasks)})")

        took = []
        out = d / "in-process"
        for t in tasks:
            t0 = time.perf_counter()
            upstream = out / t.upstream_id if t.upstream_id else None
            res = run_kind(t.kind, preset, t.ratio, t.seed, out / t.run_id, sources, upstream, data_root,
                           tintc=tintc if t.kind in CLASSIFIERS else None, log=None,
                           overrides={**task_overrides(spec, t.kind, t.alpha), "threads": 1, "device": "cpu"})
            if res.run["run_id"] != t.run_id:
                sys.exit(f"{t.label()}: trained run id {res.run['run_id']}, planned {t.run_id}")
            took.append(time.perf_counter() - t0)
            print(f"  in-process {t.label():36s} {took[-1]:6.1f}s  ({res.run['status']})")
        total = sum(took)

        t0 = time.perf_counter()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = run_sweep(spec, ray_kwargs, ratio_grid.parser().parse_args(argv))
        wall = time.perf_counter() - t0
        # the sweep's own closing line: its wall time and how its first estimate of the time left fared
        print(next((ln.strip() for ln in buf.getvalue().splitlines() if " finished in " in ln), "(no summary line)"))
        if code != 0:
            sys.exit(f"the sweep exited with {code}")
        print(f"in-process sum of the {len(tasks)} fits: {total:.1f}s")
        print(f"the sweep (ray.init, data preparation, the Tune run, lake, summary; no report): {wall:.1f}s")
        print(f"  ratio sweep / in-process sum: {wall / total:.2f}")


if __name__ == "__main__":
    main()
