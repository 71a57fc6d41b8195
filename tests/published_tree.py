"""A published-layout Tiny-ImageNet-C tree made from a Tiny-ImageNet tree of the tests (conftest.make_tin_tree)."""

from pathlib import Path

import numpy as np
from PIL import Image

from core.data import tiny_imagenet
from core.data.corruptions import CONDITIONS, condition_seed


def make_published_tree(tin: Path, root: Path, seed: int = 7) -> Path:
    """ROOT/<corruption>/<severity>/<wnid>/<file>.JPEG for every val image of `tin` and every condition of the
    project: the colour image corrupted by `imagecorruptions` (as the published set was made), saved as an RGB
    JPEG. A glass_blur folder (in the published set, not read by the project) holds an unreadable file."""
    from imagecorruptions import corrupt

    listing = tiny_imagenet.scan(tin)
    for i, (p, k) in enumerate(listing["val"]):
        with Image.open(p) as im:
            rgb = np.asarray(im.convert("RGB"))
        for c, s in CONDITIONS:
            seed_i = condition_seed(seed, i, c, s)
            np.random.seed(seed_i)
            out = corrupt(rgb, corruption_name=c, severity=s, **({"seed": seed_i} if c == "impulse_noise" else {}))
            d = root / c / str(s) / listing["wnids"][k]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(out, dtype=np.uint8)).save(d / p.name, "JPEG", quality=85)
    glass = root / "glass_blur" / "1" / listing["wnids"][0]
    glass.mkdir(parents=True)
    (glass / "val_0.JPEG").write_bytes(b"not read")
    return root
