import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "2")


def run_cli(*args, cwd=ROOT, timeout=600, env=None):
    """Run `python *args` as a real subprocess; returns CompletedProcess with text output."""
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=e)


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel")
GREY_PHOTOS = ("camera", "moon", "brick", "grass", "gravel", "coins", "clock", "cell")


def photo_crop(rng, name: str, size: int, grey: bool = False) -> np.ndarray:
    """A random crop of a photograph that scikit-image ships (no download), resized to size × size."""
    import skimage.data

    im = Image.fromarray(getattr(skimage.data, name)())
    side = int(rng.integers(min(im.size) // 3, min(im.size) + 1))
    x, y = int(rng.integers(0, im.size[0] - side + 1)), int(rng.integers(0, im.size[1] - side + 1))
    im = im.crop((x, y, x + side, y + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(im.convert("L" if grey else "RGB"))


def make_tin_tree(root: Path, n_classes=3, per_class=10, n_val=6, seed=0, photos=False) -> Path:
    """A tiny Tiny-ImageNet tree with real JPEGs in RGB, L and CMYK modes. With `photos`, class k's
    images are crops of photograph k (scikit-image's), not noise."""
    rng = np.random.default_rng(seed)

    def image(k):
        return photo_crop(rng, PHOTOS[k % len(PHOTOS)], 64) if photos else rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    wnids = [f"n{1000 + k:08d}" for k in range(n_classes)]
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tthing {k}, other\n" for k, w in enumerate(wnids)))
    modes = ["RGB", "L", "CMYK"]
    for k, w in enumerate(wnids):
        d = root / "train" / w / "images"
        d.mkdir(parents=True)
        for i in range(per_class):
            im = Image.fromarray(image(k), "RGB")
            mode = modes[i % 3]
            im = im.convert(mode)
            im.save(d / f"{w}_{i}.JPEG", "JPEG", quality=95)
    (root / "val" / "images").mkdir(parents=True)
    lines = []
    for i in range(n_val):
        Image.fromarray(image(i % n_classes)).convert(modes[i % 3]).save(root / "val" / "images" / f"val_{i}.JPEG", "JPEG")
        lines.append(f"val_{i}.JPEG\t{wnids[i % n_classes]}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root


def make_pickle_sessions(folder: Path, seed=0, three_d=True, photos=False) -> Path:
    """Two sessions in the authors' layout: one 3-D (neurons, bins, trials), one 2-D (trials, neurons).
    With `photos`, the stimuli are grey crops of photographs."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir()
    for i in range(1, 31):
        np.save(folder / "images" / f"{i}.npy", photo_crop(rng, GREY_PHOTOS[i % len(GREY_PHOTOS)], 80, grey=True)
                if photos else rng.integers(0, 256, (80, 80), dtype=np.uint8))
    # session 1: 5 neurons, train ids 1..20, test ids 21..24 x 3 repeats
    te1 = np.repeat(np.arange(21, 25), 3)
    s1 = {
        "subject_id": 7, "session_id": 101,
        "training_image_ids": np.arange(1, 21), "testing_image_ids": te1,
        "training_responses": rng.poisson(2, (5, 4, 20)).astype(float) if three_d else rng.poisson(2, (20, 5)).astype(float),
        "testing_responses": rng.poisson(2, (5, 4, len(te1))).astype(float) if three_d else rng.poisson(2, (len(te1), 5)).astype(float),
    }
    # session 2: 3 neurons, shares test images 21..22 with session 1 (4 repeats), own test 25..26 (2 repeats)
    te2 = np.concatenate([np.repeat([21, 22], 4), np.repeat([25, 26], 2)])
    s2 = {
        "subject_id": 7, "session_id": 102,
        "training_image_ids": np.arange(5, 15).reshape(-1, 1), "testing_image_ids": te2,
        "training_responses": rng.poisson(3, (10, 3)).astype(float),
        "testing_responses": rng.poisson(3, (len(te2), 3)).astype(float),
    }
    for s in (s1, s2):
        with open(folder / f"session_{s['session_id']}.pkl", "wb") as f:
            pickle.dump(s, f)
    return folder


@pytest.fixture
def tin_tree(tmp_path):
    return make_tin_tree(tmp_path / "tiny-imagenet-200")


@pytest.fixture
def pickle_sessions(tmp_path):
    return make_pickle_sessions(tmp_path / "sessions")


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory):
    """One --data-root shared by the sweep tests: the smoke world and its TIN-TC are built by the
    first sweep that needs them and reused (read-only) by the others."""
    return tmp_path_factory.mktemp("smoke-data")


class Watched:
    """A sweep subprocess whose output is read while it runs (non-blocking, from the raw pipe)."""

    def __init__(self, args, env=None, cwd=ROOT):
        import codecs

        e = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=e, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.chunks = []

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if not data:
                return
            self.chunks.append(self.decoder.decode(data))

    @property
    def out(self) -> str:
        self._drain()
        return "".join(self.chunks)

    def wait_for(self, predicate, timeout=400, poll=0.5) -> str:
        import time

        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.out
            if predicate(text):
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"the sweep ended (exit {self.proc.returncode}) before the awaited moment:\n{text[-3000:]}")
            time.sleep(poll)
        self.proc.kill()
        raise AssertionError(f"timed out waiting; output so far:\n{self.out[-3000:]}")

    def finish(self, timeout=600) -> tuple[int, str]:
        import time

        deadline = time.time() + timeout
        while self.proc.poll() is None and time.time() < deadline:
            self._drain()
            time.sleep(0.5)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._drain()
        return self.proc.returncode, "".join(self.chunks)


def sweep_args(storage, data_root, *extra):
    return ["sweeps/ratio_grid.py", "--preset", "smoke", "--storage", str(storage), "--data-root", str(data_root),
            "--ratios", "1:2", "--seeds", "0", "--num-cpus", "2", *extra]


def session_alive(sid: int) -> bool:
    """Whether any process of session `sid` (the killed driver's, started with start_new_session) runs."""
    import psutil

    for q in psutil.process_iter():
        try:
            if os.getsid(q.pid) == sid and q.status() != psutil.STATUS_ZOMBIE:
                return True
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            pass
    return False


def read_lake(storage: Path, table: str):
    """One table of STORAGE/lake as a polars DataFrame (empty when nothing is written yet)."""
    import polars as pl

    if not list((storage / "lake" / table).rglob("*.parquet")):
        return pl.DataFrame()
    return pl.scan_parquet(str(storage / "lake" / table / "**" / "*.parquet"), hive_partitioning=True).collect()


def pytest_collection_modifyitems(config, items):
    """BRAINROBUST_REVERSE_TESTS=1 runs the suite in reverse order: a check that no test relies on
    what an earlier one wrote."""
    if os.environ.get("BRAINROBUST_REVERSE_TESTS") == "1":
        items.reverse()
