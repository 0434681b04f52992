"""The documentation stays true to the repository: links resolve, commands exist.

Checked on README.md and every docs/**/*.md:
- every relative link (Markdown `[text](target)`, images, HTML `src=` / `href=`) names an
  existing file, and a `#fragment` names a heading of the target page (GitHub's slugs);
- every `lst-jax <subcommand> [--flags]` shown (code blocks, indented code, inline code) names
  a subcommand of the CLI's parser (nested ones too: `lst-jax connectivity barrier`), every
  `--flag` shown with it exists in that subparser, and a plain value shown for a flag with
  fixed choices is one of them;
- a flag shown on its own in inline code (`--resample`) exists in some `lst-jax` subcommand
  or in an `experiments/` script, and `python experiments/X.py --flags` shows flags of X.py;
- the README's Python example runs as printed (on the shipped digits model).

The negative tests feed the checkers synthetic pages with a broken link, a bad anchor, an
unknown subcommand and unknown flags, so a checker that silently accepts everything fails.
"""

from __future__ import annotations

import argparse
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


# ------------------------------------------------------------------------------ Markdown
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)


def split_markdown(text: str):
    """(prose, code): prose as (line number, text) with fenced and indented code removed;
    code as (line number, text) lines of fenced blocks and indented (4-space) blocks."""
    prose, code = [], []
    fenced = False
    indented = False
    prev_blank = True
    for i, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            prev_blank = False
            continue
        if fenced:
            code.append((i, line))
            continue
        blank = not line.strip()
        if line.startswith(("    ", "\t")) and not blank and (prev_blank or indented):
            indented = True
            code.append((i, line))
        elif blank:
            prose.append((i, line))      # a blank line may continue an indented block
        else:
            indented = False
            prose.append((i, line))
        # an indented block starts after a blank line or a heading (not inside a paragraph)
        prev_blank = blank or bool(re.match(r"^\s{0,3}#{1,6}\s", line))
    return prose, code


def inline_code(prose):
    """(line number, content) of every inline code span of the prose lines."""
    out = []
    for i, line in prose:
        out += [(i, m.group(2).strip()) for m in _INLINE_CODE.finditer(line)]
    return out


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: rendered text, lower case, punctuation dropped
    (letters, digits, `_`, `-` and spaces kept), spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)     # links -> their text
    text = re.sub(r"<[^>]+>", "", text)                           # HTML tags
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in "_- ")
    return text.replace(" ", "-")


def heading_anchors(text: str) -> set[str]:
    anchors, seen = set(), {}
    prose, _ = split_markdown(text)
    for _, line in prose:
        m = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(\S+)")
_HTML_LINK = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def link_targets(text: str):
    """(line number, target) of every link of a page, outside code."""
    prose, _ = split_markdown(text)
    out = []
    for i, line in prose:
        line = _INLINE_CODE.sub("", line)
        for rx in (_LINK, _REF_LINK, _HTML_LINK):
            out += [(i, m.group(1)) for m in rx.finditer(line)]
    return out


def link_problems(page: Path) -> list[str]:
    """Broken relative links of one page (external and mail links are not followed)."""
    problems = []
    for line, target in link_targets(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):    # http:, https:, mailto:, ...
            continue
        path, _, fragment = target.partition("#")
        dest = page if not path else (page.parent / path)
        where = f"{page.name}:{line}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file {dest}")
            continue
        if fragment and dest.suffix == ".md":
            if fragment.lower() not in heading_anchors(dest.read_text()):
                problems.append(f"{where}: no heading #{fragment} in {dest.name}")
    return problems


# ------------------------------------------------------------------------------ commands
_SEPARATORS = re.compile(r"&&|\|\||;|(?:^|\s)#")
_CONTINUATION = ("[", "--", "(", "|")
_LST_JAX = re.compile(r"(?<![\w.-])(?:[\w./~-]*/)?lst-jax(?![\w-])")
_FLAG = re.compile(r"(?<![\w-])--[A-Za-z0-9][\w-]*")
_PY_SCRIPT = re.compile(r"python3?\s+(experiments/\w+\.py)")


def logical_lines(code):
    """Code lines joined across `\\` continuations and synopsis continuation lines (an
    indented line starting with `[`, `--`, `(` or `|` after a line with a command)."""
    out = []
    joining = False
    for i, line in code:
        text = line.strip()
        if out and (joining or (text.startswith(_CONTINUATION)
                                and ("lst-jax" in out[-1][1] or "experiments/" in out[-1][1]))):
            out[-1] = (out[-1][0], out[-1][1] + " " + text.rstrip("\\"))
        else:
            out.append((i, text.rstrip("\\")))
        joining = text.endswith("\\")
    return out


def shown_commands(text: str):
    """(line number, command text) of everything shown on a page that might be a command:
    logical lines of code blocks and inline code spans."""
    prose, code = split_markdown(text)
    return logical_lines(code) + inline_code(prose)


def lst_jax_invocations(command: str) -> list[list[str]]:
    """The argument tokens after each `lst-jax` of a shell line (split at `&&`, `;`, `||`
    and comments; quotes stripped)."""
    out = []
    for segment in _SEPARATORS.split(command):
        parts = _LST_JAX.split(segment)
        for rest in parts[1:]:
            out.append([t.strip("\"'`") for t in rest.split() if t.strip("\"'`")])
    return out


def _alternatives(token: str) -> list[str]:
    token = token.strip("[](),:.`")
    if token.startswith("{") and token.endswith("}"):
        return token[1:-1].split(",")
    return token.split("|")


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> dict:
    return {s: a for a in parser._actions for s in a.option_strings}


@lru_cache(maxsize=1)
def cli_parser() -> argparse.ArgumentParser:
    from lst_jax.cli import build_parser

    return build_parser()


def all_cli_flags(parser: argparse.ArgumentParser) -> set[str]:
    flags = set(_options(parser))
    for sub in _subparsers(parser).values():
        flags |= all_cli_flags(sub)
    return flags


def invocation_problems(tokens: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """What in `lst-jax <tokens>` does not exist in `parser` (empty: all fine)."""
    problems = []
    path = ["lst-jax"]
    rest = list(tokens)
    targets = [parser]
    while rest and _subparsers(targets[0]):
        word = rest[0]
        if word.startswith("-") or not re.match(r"^[\[{(]?[a-z]", word):
            break                          # a flag, a placeholder (<name>) or prose
        names = [w for w in _alternatives(word) if w]
        subs = _subparsers(targets[0])
        unknown = [n for n in names if n not in subs]
        if unknown:
            problems.append(f"unknown subcommand {' '.join(path)} {'|'.join(unknown)} "
                            f"(has: {', '.join(sorted(subs))})")
            return problems
        targets = [subs[n] for n in names]
        path.append("|".join(names))
        rest = rest[1:]
        if len(targets) > 1:
            break
    for sub in targets:
        opts = _options(sub)
        for j, token in enumerate(rest):
            for flag in _FLAG.findall(token):
                if flag not in opts:
                    problems.append(f"{' '.join(path)} has no flag {flag}")
                    continue
                action = opts[flag]
                if not action.choices or j + 1 >= len(rest) or token != flag.strip():
                    continue
                value = rest[j + 1].strip("[]()")
                if not re.fullmatch(r"[a-z0-9_+]+(\|[a-z0-9_+]+)*", value):
                    continue                # a placeholder (N, A, ...) or nothing
                bad = [v for v in value.split("|") if v not in map(str, action.choices)]
                if bad:
                    problems.append(f"{' '.join(path)} {flag}: {'|'.join(bad)} is not one "
                                    f"of {sorted(map(str, action.choices))}")
    return sorted(set(problems))


def script_flags(script: Path) -> set[str]:
    """The `--flags` an experiments script's argparse defines (read from its source, so that
    nothing is imported)."""
    src = script.read_text()
    return set(re.findall(r"""add_argument\(\s*["'](--[\w-]+)["']""", src)) | {
        f for m in re.finditer(r"""add_argument\(([^)]*)\)""", src)
        for f in re.findall(r"""["'](--[\w-]+)["']""", m.group(1))}


def command_problems(page: Path, parser: argparse.ArgumentParser, root: Path = ROOT):
    """Every shown `lst-jax` command, experiments script call and lone inline flag of a
    page that does not exist."""
    problems = []
    known = None
    prose, _ = split_markdown(page.read_text())
    inline = {(i, t) for i, t in inline_code(prose)}
    for line, command in shown_commands(page.read_text()):
        where = f"{page.name}:{line}: `{command[:70]}`"
        for tokens in lst_jax_invocations(command):
            problems += [f"{where}: {p}" for p in invocation_problems(tokens, parser)]
        for m in _PY_SCRIPT.finditer(command):
            script = root / m.group(1)
            if not script.is_file():
                problems.append(f"{where}: no script {m.group(1)}")
                continue
            flags = script_flags(script)
            tail = command[m.end():].split("&&")[0]
            problems += [f"{where}: {m.group(1)} has no flag {f}"
                         for f in _FLAG.findall(tail) if f not in flags]
        if (line, command) in inline and command.startswith("--") and "lst-jax" not in command:
            if known is None:
                known = all_cli_flags(parser) | {
                    f for s in (root / "experiments").glob("*.py") for f in script_flags(s)}
            problems += [f"{where}: no lst-jax command or experiments script has {f}"
                         for f in _FLAG.findall(command)
                         if f not in known and not f.startswith("--xla_")]
    return problems


# ------------------------------------------------------------------------------ the tests
@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert link_problems(page) == []


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shown_commands_and_flags_exist(page):
    assert command_problems(page, cli_parser()) == []


def test_the_docs_show_commands_at_all():
    """The command check has something to check (and sees nested subcommands)."""
    shown = [tuple(t[:2]) for p in doc_files() for _, c in shown_commands(p.read_text())
             for t in lst_jax_invocations(c) if t]
    assert ("examples",) in {s[:1] for s in shown}
    assert ("connectivity", "barrier") in shown
    assert len(shown) > 50


def test_checkers_report_bad_links_anchors_commands_and_flags(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Its `second` section\n")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "run.py").write_text('p.add_argument("--reps", type=int)\n')
    bad = tmp_path / "README.md"
    bad.write_text(
        "# Title\n\n"
        "[fine](docs/page.md) [fine anchor](docs/page.md#its-second-section) [self](#title)\n"
        "[missing](docs/nope.md) [bad anchor](docs/page.md#no-such-heading)\n"
        "![missing figure](docs/figures/none.png) [web](https://example.org/x.md)\n"
        "<img src=\"docs/missing.png\">\n\n"
        "```bash\n"
        "lst-jax examples --model A --no-such-flag \\\n"
        "    --k 5 --data digits|nowhere\n"
        "lst-jax frobnicate --out DIR\n"
        "python experiments/run.py --reps 3 --speed 2\n"
        "```\n\n"
        "    lst-jax connectivity barrier [--models A B] [--bogus]\n"
        "    lst-jax connectivity teleport\n\n"
        "Inline: `lst-jax full-eval --mesh sideways`, `--not-a-flag-anywhere`, `--quick`.\n"
        "`[not a link](docs/inline-code.md)`\n")
    links = link_problems(bad)
    assert len(links) == 4, links
    assert any("docs/nope.md" in p for p in links)
    assert any("#no-such-heading" in p for p in links)
    assert any("none.png" in p for p in links)
    assert any("missing.png" in p for p in links)
    cmds = command_problems(bad, cli_parser(), root=tmp_path)
    expected = ["--no-such-flag", "nowhere", "frobnicate", "--speed",
                "connectivity barrier has no flag --bogus", "teleport", "sideways",
                "--not-a-flag-anywhere"]
    for e in expected:
        assert any(e in p for p in cmds), (e, cmds)
    assert len(cmds) == len(expected), cmds
    found = [p.rsplit("`: ", 1)[1] for p in cmds]     # the problem, without the command
    assert not any("--quick" in p or "--k" in p or "--reps" in p for p in found), cmds


def test_github_slugs():
    assert github_slug("The algorithm, exactly") == "the-algorithm-exactly"
    assert github_slug("`lst-jax profile`: one report") == "lst-jax-profile-one-report"
    assert github_slug("Spectral importance (I-ASIDE)") == "spectral-importance-i-aside"
    assert github_slug("Devices and hosts (`lst_jax/parallel/`)") == \
        "devices-and-hosts-lst_jaxparallel"
    assert heading_anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def readme_python_example() -> str:
    prose_and_code = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", prose_and_code, flags=re.S)
    assert blocks, "the README has no ```python example"
    return blocks[0]


def test_readme_python_example_runs():
    """The README's library example, exactly as printed, on the shipped digits model."""
    namespace: dict = {}
    exec(compile(readme_python_example(), "README.md:python", "exec"), namespace)
    res, imp, losses = namespace["res"], namespace["imp"], namespace["losses"]
    assert res.images.shape == (8, 32, 32, 3)
    assert res.record.conf_source.shape[1] == 8
    assert imp.distribution.shape == (4,) and 0 < imp.score < 1
    assert losses.shape[0] == 4


def page_python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_own_model_page_python_example_runs():
    """docs/own-model-and-data.md's library example (an own Flax module through LST, I-ASIDE
    and connectivity), exactly as printed."""
    blocks = page_python_blocks(ROOT / "docs" / "own-model-and-data.md")
    assert len(blocks) == 1, "the page's Python example is run here: update this test"
    namespace: dict = {}
    exec(compile(blocks[0], "own-model-and-data.md:python", "exec"), namespace)
    res, imp, losses = namespace["res"], namespace["imp"], namespace["losses"]
    assert res.images.shape == (4, 32, 32, 3)
    assert res.record.conf_source.shape == (20, 4)
    assert imp.distribution.shape == (4,) and 0 <= float(imp.score) <= 1
    assert losses.shape == (2, 50) and namespace["gap"].shape == (2,)
    assert int(namespace["bypassed"].num_vertices[0]) >= 2
