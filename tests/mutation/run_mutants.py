"""Mutation check for the statistics: plant each known error in the code, run the tests that guard
it, put the code back. Every mutant must make at least one test fail (exit 1 otherwise).

    python tests/mutation/run_mutants.py          # about 6 minutes on 2 cores

Not collected by pytest (it edits source files while it runs, then restores them).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOOT, REG = "analysis/bootstrap.py", "analysis/regression.py"
TESTS = ["tests/test_analysis.py", "tests/test_calibration.py"]
# name -> (file, original text, mutated text)
MUTANTS = {
    "bootstrap resamples seeds only (no image resampling)":
        (BOOT, "rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot) / n", "np.full((n_boot, n), 1.0 / n)"),
    "bootstrap resamples images only (no seed resampling)":
        (BOOT, "rng.integers(0, k, size=(n_boot, k))", "np.tile(np.arange(k), (n_boot, 1))"),
    "bootstrap unpaired (each model draws its own images)":
        (BOOT, 'a_c = np.einsum("rcn,bn,ck->brk", cor.corrupt, w, avg, optimize=True)',
         'wr = np.concatenate([w[None, :1].repeat(cor.corrupt.shape[0], 1), (rng.multinomial(n, np.full(n, 1.0 / n), '
         'size=(n_boot, cor.corrupt.shape[0])) / n)], 0).astype(np.float32); '
         'a_c = np.einsum("rcn,brn,ck->brk", cor.corrupt, wr, avg, optimize=True)'),
    "regression without an intercept":
        (REG, 'formula = f"robustness ~ clean_accuracy + {neural}"', 'formula = f"robustness ~ clean_accuracy + {neural} - 1"'),
    "regression with the two factors' labels swapped":
        (REG, 'd = _check(models, ["robustness", "clean_accuracy", neural], 3, label).to_pandas()',
         'd = _check(models, ["robustness", "clean_accuracy", neural], 3, label).to_pandas().rename('
         'columns={"clean_accuracy": neural, neural: "clean_accuracy"})'),
    "regression reports standardised coefficients as raw ones":
        (REG, '"coef": float(fit.params[term])', '"coef": float(std_fit.params[term])'),
}


def main() -> int:
    survived = []
    for name, (rel, before, after) in MUTANTS.items():
        path = ROOT / rel
        orig = path.read_text()
        if orig.count(before) != 1:
            print(f"== {name}: the text to mutate is not in {rel} (once): update this script")
            return 2
        try:
            path.write_text(orig.replace(before, after))
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
                               cwd=ROOT, capture_output=True, text=True)
        finally:
            path.write_text(orig)
        failed = [line for line in r.stdout.splitlines() if line.startswith("FAILED")]
        print(f"== mutant: {name}: {r.stdout.strip().splitlines()[-1]}", flush=True)
        for line in failed:
            print("     " + line.split(" - ")[0])
        if not failed:
            survived.append(name)
    print("every mutant was caught" if not survived else f"SURVIVED: {'; '.join(survived)}")
    return 1 if survived else 0


def _stop(signum, frame):   # SIGTERM/SIGHUP (a timeout, a closed terminal): unwind, so `finally` restores the file
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    sys.exit(main())
