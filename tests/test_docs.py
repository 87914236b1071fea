"""The documentation as a reader meets it: its commands parse, its links lead somewhere, the README stays short.

A renamed option or a moved heading breaks these tests before it misleads a reader (STYLE.md, rule 15).
"""

import argparse
import re
import shlex
import sys

import pytest
from conftest import REPO_ROOT

from fcn import cli

README = REPO_ROOT / "README.md"
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
COMMAND_DOCS = [README, REPO_ROOT / "CONTRIBUTING.md", *DOCS, REPO_ROOT / "benchmarks" / "README.md"]
LINKED_DOCS = [*COMMAND_DOCS, *sorted((REPO_ROOT / "data").glob("**/README.md"))]
README_MAX_BYTES = 10_500

# The programs whose command lines are checked, by the first words of a line (an environment assignment such as
# KERAS_BACKEND=jax may come first); the value names the parser that reads the rest.
PROGRAMS = {("fcn",): "fcn", (".venv/bin/fcn",): "fcn", ("python", "-m", "fcn"): "fcn",
            ("python", "benchmarks/accuracy.py"): "accuracy", (".venv/bin/python", "benchmarks/accuracy.py"): "accuracy",
            ("python", "benchmarks/bench_speed.py"): "bench_speed",
            (".venv/bin/python", "benchmarks/bench_speed.py"): "bench_speed"}
FENCE = re.compile(r"^(\s*)```(\S*)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`]*`")
ENVIRONMENT = re.compile(r"[A-Z_][A-Z0-9_]*=\S*")
# What a docs page's first block may start with: a command a person can run from the repository root.
FIRST_WORDS = ("make", "fcn", ".venv/bin/fcn", ".venv/bin/python", ".venv/bin/jupyter")


def _parser(name: str):
    if name == "fcn":
        return _exact(cli.build_parser())
    if str(REPO_ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    module = __import__(name)  # benchmarks/accuracy.py or benchmarks/bench_speed.py: importing runs nothing
    return _exact(module.build_parser())


def _exact(parser):
    """The parser and its subcommands' without argparse's prefix matching, so that an option renamed from
    --run-dir to --run-directory does not still accept the documented --run-dir."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _exact(subparser)
    return parser


def _split_fences(text: str) -> tuple[list[list[str]], list[str]]:
    """Returns the fenced blocks that may hold shell commands (all but python ones) and the lines outside fences."""
    blocks, prose, block, language = [], [], None, ""
    for line in text.splitlines():
        fence = FENCE.match(line)
        if fence and block is None:
            block, language = [], fence.group(2)
        elif fence:
            if language not in ("python", "py", "json"):
                blocks.append(block)
            block = None
        elif block is not None:
            block.append(line)
        else:
            prose.append(line)
    return blocks, prose


def documented_commands(text: str) -> list[tuple[str, list[str], str]]:
    """(parser name, arguments, the line as written) of every command of PROGRAMS in the text's code blocks.

    Fenced blocks give whole lines (continuations joined, comments dropped); tables give the cells that are
    one piece of inline code (the README's table of main commands, its results' commands).
    """
    blocks, prose = _split_fences(text)
    lines = [joined for block in blocks for joined in _join_continuations(block)]
    lines += [cell for line in prose if line.startswith("|") for cell in re.findall(r"\|\s*`([^`]*)`\s*(?=\|)", line)]
    commands = []
    for line in lines:
        words = line.split()
        while words and ENVIRONMENT.fullmatch(words[0]):
            words = words[1:]  # KERAS_BACKEND=jax fcn ...
        for prefix, name in PROGRAMS.items():
            if tuple(words[:len(prefix)]) == prefix:  # only then shell syntax: other lines may be prose
                words = shlex.split(" ".join(words), comments=True)
                commands.append((name, words[len(prefix):], line))
    return commands


def _join_continuations(block: list[str]) -> list[str]:
    lines, pending = [], ""
    for line in block:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            lines.append(pending + line)
            pending = ""
    return lines + ([pending] if pending else [])


def command_errors(text: str) -> list[str]:
    """The documented command lines that their real parser refuses (argparse prints why on stderr)."""
    errors = []
    for name, arguments, line in documented_commands(text):
        try:
            _parser(name).parse_args(arguments)
        except SystemExit:
            errors.append(line)
    return errors


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def heading_anchors(text: str) -> set[str]:
    anchors, seen = set(), {}
    for line in _split_fences(text)[1]:
        if heading := re.match(r"^#{1,6} (.+)$", line):
            anchor = github_anchor(heading.group(1))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            anchors.add(anchor if count == 0 else f"{anchor}-{count}")  # GitHub numbers repeated headings
    return anchors


def broken_links(path) -> list[str]:
    """Relative links of a Markdown file (outside code) whose file or heading does not exist."""
    broken = []
    for line in _split_fences(path.read_text())[1]:
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:: not checked offline
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text()):
                broken.append(f"{target}: no heading with that anchor in {linked.name}")
    return broken


@pytest.mark.parametrize("path", COMMAND_DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_documented_commands_parse(path):
    assert path.is_file(), f"{path} is missing"
    assert command_errors(path.read_text()) == []


def test_the_commands_are_found():
    """The extraction finds the commands a reader sees (an empty list would check nothing)."""
    assert len(documented_commands(README.read_text())) >= 10  # the table of main commands
    for path in DOCS:
        if path.name != "notebooks.md":  # make lab, jupyter
            assert documented_commands(path.read_text()), f"{path.name}: no command found"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_each_docs_page_starts_with_a_command(path):
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    assert lines[0].startswith("# ") and FENCE.match(lines[1]), f"{path.name}: the title, then a command block"
    assert lines[2].split()[0] in FIRST_WORDS, f"{path.name}: the first block starts with {lines[2]!r}"


@pytest.mark.parametrize("path", LINKED_DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_relative_links_lead_to_files_and_headings(path):
    assert broken_links(path) == []


def test_the_readme_is_short_and_links_every_docs_page():
    text = README.read_text()
    assert len(text.encode()) < README_MAX_BYTES, f"README.md is {len(text.encode())} bytes"
    targets = {target.partition("#")[0] for target in LINK.findall(text)}
    assert {f"docs/{page.name}" for page in DOCS} <= targets
    assert {"CONTRIBUTING.md", "benchmarks/README.md"} <= targets
    assert len(DOCS) >= 6


def test_a_renamed_option_or_a_moved_heading_is_caught(tmp_path):
    """The checks above on a deliberately broken page: each fault is reported, and the good lines are not."""
    (tmp_path / "other.md").write_text("# Other page\n\n## A section, with punctuation (`x.py`)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n```bash\n"
        "fcn train --dataset kitti_road --data-dir D \\\n    --run-dir R --epochs 3   # fine\n"
        ".venv/bin/fcn train --dataset kitti_road --data-directory D --run-dir R\n"  # a renamed option
        "fcn evaluate kitti-road --gt-dir G --results-dir R --bev-view\n"  # an option that never existed
        "fcn train --dataset kitti_road --data D --run-dir R\n"  # what argparse would take for --data-dir
        "KERAS_BACKEND=jax fcn predict --model M --input I --output O --format devkit\n"
        ".venv/bin/python benchmarks/accuracy.py --dataset kitti_road --budget 60\n"
        "echo fcn train --nonsense   # not a command of fcn\n```\n\n"
        "| `fcn export --model M --format tflite --output F --quantise int8` | a table cell |\n\n"
        "[fine](other.md#a-section-with-punctuation-xpy), [also fine](#page), [web](https://example.com/x.md)\n"
        "[gone](missing.md), [moved](other.md#no-such-section), [here](#nowhere), `[code](not-a-link.md)`\n")
    text = page.read_text()
    assert [name for name, _, _ in documented_commands(text)] == ["fcn"] * 5 + ["accuracy", "fcn"]
    assert command_errors(text) == [
        ".venv/bin/fcn train --dataset kitti_road --data-directory D --run-dir R",
        "fcn evaluate kitti-road --gt-dir G --results-dir R --bev-view",
        "fcn train --dataset kitti_road --data D --run-dir R",
        ".venv/bin/python benchmarks/accuracy.py --dataset kitti_road --budget 60",
        "fcn export --model M --format tflite --output F --quantise int8"]
    assert broken_links(page) == ["missing.md: no such file",
                                  "other.md#no-such-section: no heading with that anchor in other.md",
                                  "#nowhere: no heading with that anchor in page.md"]


def test_github_anchors():
    assert github_anchor("Speed against this machine's limit (`bench_speed.py`)") == \
        "speed-against-this-machines-limit-bench_speedpy"
    assert github_anchor("fcn — Fully Convolutional Networks") == "fcn--fully-convolutional-networks"
    assert heading_anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}
