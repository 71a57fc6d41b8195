"""Progress lines: rewritten in place on a terminal, plain lines in a log file; and the sweep's time-left estimate."""

import io

from core.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_plain_lines_not_carriage_returns():
    out = io.StringIO()
    bar = Progress("TIN-TC", 1000, "images", every_s=3600, stream=out)
    for done in range(1, 1001):
        bar.update(done)
    text = out.getvalue()
    assert "\r" not in text
    # nothing in between (the interval is an hour), the end once, on a line of its own
    assert text.splitlines() == [text.splitlines()[0]] and text.startswith("TIN-TC: 1000/1000 images (") and text.endswith(")\n")


def test_a_log_file_gets_a_line_per_interval():
    out = io.StringIO()
    bar = Progress("x", 3, every_s=0.0, stream=out)
    for done in (1, 2, 3):
        bar.update(done)
    lines = out.getvalue().splitlines()
    assert [ln.split(" (")[0] for ln in lines] == ["x: 1/3 items", "x: 2/3 items", "x: 3/3 items"]
    assert "s left" in lines[0] and "s left" not in lines[-1]


def test_a_terminal_gets_one_line_rewritten_and_a_newline_at_the_end():
    out = Terminal()
    bar = Progress("stimuli", 3, "images", every_s=3600, stream=out)
    for done in (1, 2, 3):
        bar.update(done)
    text = out.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("\n")
    assert text.split("\r")[-1].startswith("stimuli: 3/3 images")


def test_the_raylets_harmless_worker_count_warning_is_kept_out_and_its_other_messages_are_not(capsys):
    import ray._private.worker as w

    from sweeps.cli import keep_ray_quiet

    before = w.print_to_stdstream
    try:
        keep_ray_quiet()
        keep_ray_quiet()   # twice: one filter, not two
        harmless = ("WARNING: 8 PYTHON worker processes have been started on node: abc with address: 127.0.0.1. This could "
                    "be a result of using a large number of actors, or due to tasks blocked in ray.get() calls (see "
                    "https://github.com/ray-project/ray/issues/3644 for some discussion of workarounds). This is 4x the "
                    "maximum expected startup concurrency")
        oom = "Task was killed due to the node running low on memory."
        w.print_to_stdstream({"lines": [harmless], "pid": "raylet", "is_err": False}, ignore_prefix=False)
        w.print_to_stdstream({"lines": [harmless, oom], "pid": "raylet", "is_err": False}, ignore_prefix=False)
        out = capsys.readouterr().out
        assert "startup concurrency" not in out and out.count(oom) == 1
    finally:
        w.print_to_stdstream = before
