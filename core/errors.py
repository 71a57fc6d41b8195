"""User-facing errors: one line that names the file, field or flag and what was expected."""


class UserError(Exception):
    """Bad input from the user. CLIs print `error: <message>` and exit with status 2."""


class DataError(UserError):
    """A data set on disk is missing, malformed or inconsistent."""


class ConfigError(UserError):
    """A configuration or flag value is not acceptable."""


NEEDED = ("ray", "torch", "torchvision", "pyarrow", "polars", "statsmodels", "optuna", "imagecorruptions")


def require_installed(names=NEEDED) -> None:
    """Before a command's imports: name every missing dependency in one line (not a ModuleNotFoundError
    traceback from deep inside an import) and say how to install them."""
    import importlib.util
    import sys

    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        print(f"error: missing dependencies ({', '.join(missing)}): install the project first with "
              "`pip install -e .` in this folder (the README's Install section)", file=sys.stderr)
        raise SystemExit(2)


DEVICES = "auto, cpu, cuda or cuda:N"


def check_device(device: str, on_cluster: bool = False) -> None:
    """--device is auto, cpu, cuda or cuda:N, and a cuda device is one that torch finds. With `on_cluster`
    (--address: the models run on the cluster's nodes, not where this command runs) only the spelling is
    checked here. torch is imported only for a cuda device (about 2 s), so other flag errors stay quick."""
    import re

    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device in ("auto", "cpu") or (m and on_cluster):
        return
    if not m:
        raise ConfigError(f"--device {device!r}: expected {DEVICES}")
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as caught:   # e.g. "The NVIDIA driver on your system is too old"
        warnings.simplefilter("always")
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n == 0:
        why = (str(caught[0].message).strip().splitlines()[0] if caught else
               f"torch {torch.__version__} is built without CUDA" if torch.version.cuda is None else
               f"torch {torch.__version__} finds no NVIDIA driver or no visible GPU")
        raise ConfigError(f"--device {device}: no CUDA GPU ({why}); use --device cpu or auto")
    if m.group(1) and int(m.group(1)) >= n:
        raise ConfigError(f"--device {device}: torch finds {n} GPU(s), cuda:0 to cuda:{n - 1}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a batch scheduler's stop) raised in the main thread: a subclass of KeyboardInterrupt,
    so that whatever handles Ctrl-C (finished work kept, one line) handles it too."""


_SIGTERM_SEEN = []   # Ray's native waits turn any KeyboardInterrupt into a plain one: the signal is noted here


def interruption(e: KeyboardInterrupt) -> tuple[str, int]:
    """How to name what ended a command, and its conventional exit status (128 + the signal's number)."""
    return ("terminated (SIGTERM)", 143) if isinstance(e, Terminated) or _SIGTERM_SEEN else ("interrupted", 130)


def handle_sigterm() -> None:
    """Raise `Terminated` in the main thread on SIGTERM. Called at start and again after `ray.init`, whose
    native handler would otherwise print a C++ stack trace and end the process without clean-up. Only the
    first SIGTERM raises: a second one does not cut the clean-up short (SIGKILL still does)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def on_sigterm(signum, frame):
        _SIGTERM_SEEN.append(signum)
        signal.signal(signal.SIGTERM, lambda *_: None)
        raise Terminated()

    signal.signal(signal.SIGTERM, on_sigterm)


def cli_main(fn):
    """Run `fn()` as a CLI entry point: UserError becomes one stderr line and exit status 2; Ctrl-C and
    SIGTERM one line and 130 or 143."""
    import sys

    handle_sigterm()
    try:
        rc = fn()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as e:
        what, status = interruption(e)
        print(what, file=sys.stderr)
        raise SystemExit(status) from None
    raise SystemExit(rc or 0)


class Parser(__import__("argparse").ArgumentParser):
    """argparse with the project's one-line errors: a bad flag value prints `error: <message> (see PROG
    --help)`, like every other refusal, instead of the multi-line usage block, and exits with status 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
