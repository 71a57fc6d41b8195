"""The documentation against the code: relative links that resolve, README commands whose programs and flags
exist, a README that stays short, and the pages that must follow the code (the main job's flags, CI's test
command). Each program's --help runs once (cached), so the file takes seconds."""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 200

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FLAG = re.compile(r"--[A-Za-z0-9][A-Za-z0-9-]*")


def prose(text: str) -> str:
    """The page without its fenced blocks and inline code, where a bracket is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: link targets and formatting dropped, lower case, everything but
    letters, digits, spaces, '-' and '_' removed, spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset[str]:
    """Every heading anchor of a Markdown page, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return frozenset(out)


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text(encoding="utf-8")))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]   # http:, https:, mailto: ... are not checked


def link_problem(page: Path, target: str) -> str | None:
    """Why a relative link from `page` does not resolve, or None."""
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    try:
        dest.relative_to(ROOT)
    except ValueError:
        return f"{target}: leaves the repository"
    if not dest.exists():
        return f"{target}: no such file ({dest.relative_to(ROOT)})"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{target}: no heading in {dest.relative_to(ROOT)} has the anchor #{anchor}"
    return None


def fenced_commands(page: Path) -> list[str]:
    """Every line of a fenced block that starts with `python `, continuation lines joined."""
    out = []
    for block in FENCE.findall(page.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("python "):
                out.append(line)
    return out


def program_and_flags(command: str) -> tuple[tuple[str, ...], list[str]]:
    """('-m', 'core.data', 'check') or ('sweeps/ratio_grid.py',) and the --flags the command passes. Bare words
    right after the program (before any flag) are subcommands: their --help is the one that lists the flags."""
    words = shlex.split(command, comments=True)[1:]
    if words[0] == "-m":
        program, rest = words[:2], words[2:]
    else:
        program, rest = words[:1], words[1:]
    while rest and re.fullmatch(r"[a-z][a-z0-9-]*", rest[0]):
        program.append(rest.pop(0))
    flags = [w.split("=", 1)[0] for w in rest if FLAG.fullmatch(w.split("=", 1)[0])]
    return tuple(program), flags


@functools.lru_cache(maxsize=None)
def help_text(program: tuple[str, ...]) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, *program, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"`python {' '.join(program)} --help` failed ({r.returncode}): {r.stderr[-800:]}"
    return r.stdout


def has_flag(help_: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_) is not None


def test_every_relative_link_in_the_readme_and_docs_resolves():
    """Mutants caught: a link to a page or image that is not there (`docs/usage.md` renamed, an image
    deleted), an anchor that no heading makes (`## Main job` reworded while `benchmarks.md#main-job` points at
    it), a link that climbs out of the repository."""
    problems = [f"{p.relative_to(ROOT)}: {why}" for p in PAGES for t in relative_links(p) if (why := link_problem(p, t))]
    assert sum(len(relative_links(p)) for p in PAGES) > 20, "the link pattern found almost no links"
    assert not problems, "\n".join(problems)


def test_every_python_command_in_the_readme_parses():
    """Mutants caught: a README command whose program is gone or renamed (`python sweeps/grid.py`), a flag the
    program does not take (`--fake-flag`, or a flag renamed in the code), a `python -c` one-liner that is
    not valid Python."""
    commands = fenced_commands(README)
    assert any(c.startswith("python sweeps/ratio_grid.py") for c in commands), "the main job's command is gone"
    problems = []
    for command in commands:
        words = shlex.split(command)
        if words[1] == "-c":
            try:
                compile(words[2], "README.md", "exec")
            except SyntaxError as e:
                problems.append(f"{command}: {e}")
            continue
        program, flags = program_and_flags(command)
        help_ = help_text(program)
        problems += [f"{command}: `python {' '.join(program)} --help` has no {f}" for f in flags if not has_flag(help_, f)]
    assert not problems, "\n".join(problems)


def test_the_readme_stays_short():
    """Mutant caught: a README that grows back into a notebook, 200 lines or more."""
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n < MAX_README_LINES, f"README.md has {n} lines; keep it under {MAX_README_LINES} and move detail to docs/"


def test_the_readme_test_command_is_the_one_ci_runs():
    """Mutant caught: the README's test command and `.ci/run`'s drifting apart (either edited alone)."""
    readme = [ln for b in FENCE.findall(README.read_text(encoding="utf-8")) for ln in b.splitlines()
              if "python -m pytest -q" in ln and "pip install" in ln]
    assert len(readme) == 1, f"expected one full test command in the README, found {readme}"
    assert readme[0] in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines(), \
        f"the README's test command is not a line of .ci/run: {readme[0]}"


def test_the_usage_page_names_every_flag_of_the_main_job():
    """Mutant caught: a flag added to (or renamed in) `python sweeps/ratio_grid.py` without a word about it in
    docs/usage.md, or a flag dropped from the page."""
    usage = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    flags = sorted(set(FLAG.findall(help_text(("sweeps/ratio_grid.py",)))) - {"--help"})
    assert len(flags) > 20, flags
    missing = [f for f in flags if not has_flag(usage, f)]
    assert not missing, f"docs/usage.md does not mention {', '.join(missing)}"
