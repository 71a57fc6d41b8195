"""python -m core.data: write the synthetic world, check real data, convert recordings.

  synth    write the synthetic world (classification + simulated V1) in canonical form
  check    validate a Tiny ImageNet tree or a canonical data set and print a summary
  convert  convert the authors' per-session pickles into the pickle-free neural format
  tin      decode a Tiny ImageNet tree once into the canonical (memory-mapped) cache
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from core.errors import ConfigError, cli_main


def _slice(text: str) -> slice:
    try:
        a, b = text.split(":")
        return slice(int(a) if a else None, int(b) if b else None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected START:STOP time-bin indices, e.g. 4:16") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("synth", help="write the synthetic world")
    s.add_argument("--preset", default="demo", help="world size: smoke, demo, study, tin_like (default demo)")
    s.add_argument("--out", required=True, type=Path, help="output folder (gets classification/ and neural/)")
    s.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    s.add_argument("--n-classes", type=int, help="override the preset's number of classes")
    s.add_argument("--n-neurons", type=int, help="override the preset's number of neurons")
    s.add_argument("--overwrite", action="store_true", help="replace an existing world at --out")

    c = sub.add_parser("check", help="validate a data set and print a summary")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--tin-root", type=Path, help="a tiny-imagenet-200 folder (every image is decoded)")
    g.add_argument("--neural-data", type=Path, help="a neural data set in the project's format")
    g.add_argument("--data", type=Path, help="a classification data set in the project's format")

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
        if args.tin_root:
            from core.data import tiny_imagenet

            ds = tiny_imagenet.build(args.tin_root, verbose=True)
            print(f"{args.tin_root}: Tiny ImageNet OK: {ds.summary()}")
        elif args.neural_data:
            from core.data.canonical import NeuralSet

            print(f"{args.neural_data}: OK: {NeuralSet.load(args.neural_data).summary()}")
        else:
            from core.data.canonical import ClassificationSet

            print(f"{args.data}: OK: {ClassificationSet.load(args.data).summary()}")
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
    return 0


if __name__ == "__main__":
    cli_main(main)
