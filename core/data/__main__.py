"""python -m core.data: write the synthetic world, check real data, convert recordings.

  synth          write the synthetic world (classification + simulated V1) in canonical form
  check          validate a run's inputs (Tiny ImageNet, recordings, a data set, the published
                 Tiny-ImageNet-C; one or several at once) and print a summary of each
  convert        convert the authors' per-session pickles into the pickle-free neural format
  tin            decode a Tiny ImageNet tree once into the canonical (memory-mapped) cache
  compare-tintc  one model's accuracy on the published Tiny-ImageNet-C JPEGs against the
                 corruptions generated here, per corruption and severity
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from core.errors import DEVICES, ConfigError, Parser, check_device, cli_main


def _slice(text: str) -> slice:
    try:
        a, b = text.split(":")
        return slice(int(a) if a else None, int(b) if b else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected START:STOP time-bin indices, e.g. 4:16") from None


def parser() -> argparse.ArgumentParser:
    from core.data.synthetic import WORLD_PRESETS

    p = Parser(prog="python -m core.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("synth", help="write the synthetic world")
    w = WORLD_PRESETS["demo"]
    s.add_argument("--preset", default="demo", help=f"world size: {', '.join(WORLD_PRESETS)} (default demo: {w.n_classes} "
                   f"classes x {w.train_per_class}/{w.val_per_class}/{w.test_per_class} train/val/test images of "
                   f"{w.image_size}x{w.image_size}, {w.n_neurons} neurons, {w.neural_train_images} training trials)")
    s.add_argument("--out", required=True, type=Path, help="output folder (gets classification/ and neural/)")
    s.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    s.add_argument("--n-classes", type=int, help="override the preset's number of classes")
    s.add_argument("--n-neurons", type=int, help="override the preset's number of neurons")
    s.add_argument("--overwrite", action="store_true", help="replace an existing world at --out")

    c = sub.add_parser("check", help="validate a run's inputs (any combination) and print a summary of each",
                       description="Validate the inputs of a run and print a summary of each. With one input its first "
                                   "problem stops the check (one `error:` line); with several, every problem is listed "
                                   "on its own `problem: ...` line. Exit status 2 if there is any problem, else 0.")
    c.add_argument("--tin-root", type=Path, help="a tiny-imagenet-200 folder (every image is decoded; JPEG modes counted)")
    c.add_argument("--neural-data", type=Path, help="a neural data set in the project's format (neurons per session, repeats)")
    c.add_argument("--data", type=Path, help="a classification data set in the project's format")
    c.add_argument("--tintc-root", type=Path, help="the published Tiny-ImageNet-C folder (<corruption>/<severity>/<wnid>/"
                                                   "<file>.JPEG; needs --tin-root): every condition's copy of every TIN val "
                                                   "image is looked up in its class folder and decoded")

    v = sub.add_parser("convert", help="convert the authors' session pickles (needs --trust-pickle)")
    v.add_argument("--neural-pickles", required=True, type=Path, help="folder of per-session *.pkl files")
    v.add_argument("--images", type=Path, help="folder of <image_id>.npy stimuli (default: PICKLES/images)")
    v.add_argument("--out", required=True, type=Path, help="output folder for the converted data set")
    v.add_argument("--trust-pickle", action="store_true", help="allow unpickling (pickle can execute code: only for files you trust)")
    v.add_argument("--time-bins", type=_slice, help="START:STOP bins to sum for 3-D responses (default: all)")
    v.add_argument("--image-id-offset", type=int, default=0, help="subtract from image ids (default 0)")
    v.add_argument("--crop", type=int, default=0, help="pixels cropped from each side before resizing (default 0)")
    v.add_argument("--overwrite", action="store_true")

    t = sub.add_parser("tin", help="decode Tiny ImageNet into the canonical cache")
    t.add_argument("--tin-root", required=True, type=Path)
    t.add_argument("--cache", required=True, type=Path, help="cache folder")
    t.add_argument("--seed", type=int, default=0, help="seed of the 10%% train/val split (default 0)")

    m = sub.add_parser("compare-tintc", help="a model's accuracy: published Tiny-ImageNet-C against generated corruptions",
                       description="Evaluate one trained classifier on the published Tiny-ImageNet-C JPEGs and on the "
                                   "corruptions this project generates of the same test images; print accuracy per "
                                   "corruption x severity, per corruption and overall, and which set is harder.")
    m.add_argument("--model", required=True, type=Path, help="a model folder with model.pt (a sweep's STORAGE/models/<run id> "
                                                             "or the --out of `python -m core.training`)")
    m.add_argument("--tin-root", required=True, type=Path, help="the tiny-imagenet-200 folder the model's test images come from")
    m.add_argument("--tintc-root", required=True, type=Path, help="the published Tiny-ImageNet-C folder "
                                                                  "(<corruption>/<severity>/<wnid>/<file>.JPEG)")
    m.add_argument("--images", type=int, help="the first N Tiny ImageNet val (test) images (default 500, or all if there "
                                              "are fewer; 0: all)")
    m.add_argument("--data-root", type=Path, default=Path("data"),
                   help="where both TIN-TC caches are written and reused (default ./data)")
    m.add_argument("--device", default="auto", help=f"{DEVICES} (default auto: a GPU where torch finds one)")
    m.add_argument("--workers", type=int, default=0, help="processes for decoding and corrupting (default: all cores)")
    m.add_argument("--threads", type=int, default=0, help="torch CPU threads for the model (default: torch's choice; 1 avoids "
                                                          "threads waiting on each other on a busy machine)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "synth":
        from core.data.synthetic import world_config, write_world

        over = {k: v for k, v in (("n_classes", args.n_classes), ("n_neurons", args.n_neurons)) if v is not None}
        cfg = world_config(args.preset, seed=args.seed, **over)
        if args.out.exists() and not args.overwrite and any(args.out.iterdir()):
            raise ConfigError(f"--out {args.out}: exists and is not empty; pass --overwrite to replace it")
        t = time.perf_counter()
        m = write_world(cfg, args.out, overwrite=args.overwrite)
        dt = time.perf_counter() - t
        n_img = sum(m["classification"]["sizes"].values()) + m["neural"]["sizes"]["pool_images"]
        print(f"wrote {args.out}: {cfg.n_classes} classes {m['classification']['sizes']}, "
              f"{cfg.n_neurons} neurons, {m['neural']['sizes']} in {dt:.1f}s ({n_img / dt:.0f} images/s)")
    elif args.cmd == "check":
        from core.data import check

        return check.main(args)
    elif args.cmd == "convert":
        from core.data import recordings

        if args.out.exists() and not args.overwrite:
            raise ConfigError(f"--out {args.out}: exists; pass --overwrite to replace it")
        ns = recordings.convert(args.neural_pickles, args.images, args.trust_pickle, args.time_bins,
                                args.image_id_offset, args.crop)
        ns.save(args.out, {"type": "pickle_sessions", "folder": str(args.neural_pickles.resolve()),
                           "time_bins": str(args.time_bins), "image_id_offset": args.image_id_offset,
                           "crop": args.crop}, overwrite=args.overwrite, extra=ns.manifest)
        print(f"wrote {args.out}: {ns.summary()}")
    elif args.cmd == "tin":
        from core.data import tiny_imagenet

        ds = tiny_imagenet.load_or_build(args.tin_root, args.cache, args.seed)
        print(f"{ds.path}: {ds.summary()}")
    elif args.cmd == "compare-tintc":
        check_device(args.device)
        from core.evaluate.tintc_compare import compare, format_table   # torch: only for this command

        res = compare(args.model, args.tin_root, args.tintc_root, args.images, args.data_root, args.device,
                      args.workers or None, threads=args.threads)
        print(format_table(res, str(args.model)))
    return 0


if __name__ == "__main__":
    cli_main(main)
