"""The documentation says what the code does: the reference pages are the code's, every `ddl` command the README
and the pages show parses, every path they name exists, and no page carries a date or an issue number.

The site itself (built with ``mkdocs build --strict`` and opened in a browser) is tested in test_docs_site.py.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ddl_commodity.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
#: Written by `ddl report --publish`: its dated run list is the record of how the published report was made.
PUBLISHED = DOCS / "reproduction"
REFERENCE_SCRIPT = REPO / "scripts" / "docs_reference.py"


def hand_written_pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if PUBLISHED not in p.parents)


def code_blocks(text: str, languages: tuple[str, ...] = ("bash", "sh", "shell", "console", "")) -> list[str]:
    """The fenced code blocks of a Markdown text in one of ``languages`` ("" for a block without one)."""
    blocks = re.findall(r"^( *)```(\w*)[^\n]*\n(.*?)^\1```", text, re.S | re.M)
    return [body for _, lang, body in blocks if lang in languages]


def ddl_commands(text: str) -> list[str]:
    """Every ``ddl ...`` command line of the shell code blocks, comments and pipes, ``;``, ``&&`` dropped."""
    commands = []
    for block in code_blocks(text):
        for line in block.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            for part in re.split(r"&&|;|\|", line):
                part = part.strip()
                if part.startswith("ddl ") or part == "ddl":
                    commands.append(part)
    return commands


def _subcommand_path(words: list[str]) -> list[str]:
    """The longest prefix of ``words`` that names (sub)commands of the parser."""
    parser, path = build_parser(), []
    for word in words:
        subs = {n: p for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)
                for n, p in a.choices.items()}
        if word not in subs:
            break
        parser, path = subs[word], [*path, word]
    return path


def parse_problem(command: str) -> str | None:
    """``None`` if ``command`` parses with the ``ddl`` parser, else why not."""
    words = shlex.split(command)[1:]
    try:
        build_parser().parse_args(words)
    except SystemExit as exit_:
        if exit_.code != 0:
            return f"{command!r} does not parse (argparse exit {exit_.code})"
    return None


def test_reference_pages_are_generated_from_the_current_code(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REFERENCE_SCRIPT), "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    generated = sorted(p.name for p in tmp_path.glob("*.md"))
    assert generated == ["cli.md", "configuration.md"], generated
    stale = [name for name in generated
             if not (DOCS / "reference" / name).is_file()
             or (DOCS / "reference" / name).read_text() != (tmp_path / name).read_text()]
    assert not stale, (f"docs/reference/{', '.join(stale)} differ from the code: run "
                       f"`.venv/bin/python scripts/docs_reference.py` and commit the result")


def test_the_references_cover_every_command_and_key() -> None:
    """Not vacuous: every subcommand has a section, every option of `ddl run` a row, every shared key a row."""
    cli = (DOCS / "reference" / "cli.md").read_text()
    for path in (["data", "redshift"], ["data", "houston"], ["cluster", "up"], ["cluster", "fault"], ["run"],
                 ["plan"], ["report"], ["compare"], ["reproduce"]):
        assert f"`ddl {' '.join(path)}`" in cli, path
    for option in ("--resume RUN_DIR", "--master MASTER", "--run-id RUN_ID", "--progress", "--no-progress"):
        assert f"`{option}`" in cli, option
    config = (DOCS / "reference" / "configuration.md").read_text()
    for key in ("ps.s", "ps.staleness", "training.data_distribution", "cluster.heartbeat_timeout_s",
                "early_stopping[].patience", "faults.kind"):
        assert f"| `{key}` |" in config, key
    assert "`constant`, `inverse`, `exponential`" in config  # allowed values a validator enforces
    assert "eq. 5.1" in config and "Tables 5.1, 5.2" in config  # the thesis figures the models serve


def test_the_reference_script_reports_stale_pages(tmp_path: Path) -> None:
    (tmp_path / "cli.md").write_text("# stale\n")
    proc = subprocess.run([sys.executable, str(REFERENCE_SCRIPT), "--check", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert "stale:" in proc.stderr and "cli.md" in proc.stderr and "configuration.md" in proc.stderr
    assert "scripts/docs_reference.py" in proc.stderr


def test_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; at most 150 (move the detail into docs/)"


@pytest.mark.parametrize("source", ["README.md", "docs"])
def test_every_ddl_command_shown_parses(source: str) -> None:
    files = [README] if source == "README.md" else [*hand_written_pages(), PUBLISHED / "report.md"]
    commands = [(f, c) for f in files for c in ddl_commands(f.read_text())]
    assert source != "README.md" or len(commands) >= 5, commands
    problems = [f"{f.relative_to(REPO)}: {p}" for f, c in commands if (p := parse_problem(c))]
    assert not problems, "\n".join(problems)


def test_every_ddl_command_named_in_readme_text_exists() -> None:
    """`ddl cluster fault NODE ACTION` in a table: its subcommand path exists and its --help works."""
    text = README.read_text()
    named = {m.strip() for m in re.findall(r"`(ddl [^`]+)`", text)}
    assert len(named) >= 10, named
    for command in sorted(named):
        words = [w for w in shlex.split(command.replace("/", " "))[1:]]
        path = _subcommand_path(words)
        assert path, f"README names {command!r}: no such ddl command"
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([*path, "--help"])
        assert exit_.value.code == 0, command


def test_readme_lists_every_command_the_parser_has() -> None:
    text = README.read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict)).choices
    missing = [name for name in commands if f"`ddl {name}" not in text]
    assert not missing, f"README's command table lacks: {missing}"


#: Paths inside the compose cluster's master container (docker/configs/ mounted as configs/docker/).
INSIDE_CONTAINER = ("configs/docker/",)
PATH = re.compile(r"(?<![\w./-])((?:configs|examples|scripts|docker|jobs|benchmarks|docs|tests|ddl_commodity)"
                  r"/[\w./*-]*)")


def named_paths(text: str) -> set[str]:
    """Repository paths a text names (a Markdown link's target is the site's business: mkdocs checks it)."""
    out = set()
    for found in PATH.findall(re.sub(r"\]\([^)]*\)", "]", text)):
        path = found.rstrip(".,:;)")
        if "<" in path or "*" in path or path.startswith(INSIDE_CONTAINER) or path.endswith("/.."):
            continue
        out.add(path)
    return out


@pytest.mark.parametrize("source", ["README.md", "docs"])
def test_every_path_named_exists(source: str) -> None:
    files = [README] if source == "README.md" else hand_written_pages()
    named = {(f, p) for f in files for p in named_paths(f.read_text())}
    assert source != "README.md" or any(p.startswith("configs/") for _, p in named), named
    missing = sorted(f"{f.relative_to(REPO)}: {p}" for f, p in named if not (REPO / p).exists())
    assert not missing, "\n".join(missing)


def test_every_relative_link_of_readme_resolves() -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if not re.match(r"^[a-z]+:", link)]
    assert local, "README links into the docs"
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, missing


DATE = re.compile(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b|\b20\d\d[01]\d[0-3]\d\b"
                  r"|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? (?:[0-3]?\d, )?(?:19|20)\d\d\b")
ISSUE = re.compile(r"\bissues? #?\d+|(?<![\w&(/.#])#\d+(?![\w-])|\bPR #?\d+", re.I)


@pytest.mark.parametrize("pattern", [DATE, ISSUE], ids=["dates", "issue numbers"])
def test_no_dates_or_issue_numbers(pattern: re.Pattern) -> None:
    """User docs state current facts: history goes to CHANGELOG.md, measurements to benchmarks/results/."""
    found = [f"{f.relative_to(REPO)}:{i}: {line.strip()}" for f in [README, *hand_written_pages()]
             for i, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)


def test_the_date_and_issue_patterns_see_what_they_are_for() -> None:
    for text in ("on 2026-11-30 it took", "run 20261128-135458", "in November 2026", "Nov 30, 2026"):
        assert DATE.search(text), text
    for text in ("done (issue 12)", "see #12 for", "issues 5 and 6"):
        assert ISSUE.search(text), text
    for text in ("[feeding](benchmarks.md#1-feeding)", "(#key-ps)", "&#123;", "Fig 6.3(b)", "eq. 5.1", "25x25"):
        assert not ISSUE.search(text) and not DATE.search(text), text


def _layers_in_test_layering() -> list[tuple[str, ...]]:
    tree = ast.parse((REPO / "tests" / "unit" / "test_layering.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "LAYERS" for t in targets):
                return [tuple(layer) for layer in ast.literal_eval(node.value)]
    raise AssertionError("tests/unit/test_layering.py has no LAYERS")


def test_the_development_page_shows_the_enforced_layers() -> None:
    text = (DOCS / "development.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", text, re.M)
    shown = [tuple(re.findall(r"`(\w+)`", packages)) for _, packages in rows]
    assert [int(n) for n, _ in rows] == list(range(1, len(rows) + 1)), rows
    assert shown == _layers_in_test_layering(), "docs/development.md's layer table differs from test_layering.LAYERS"


def _hooks():
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Config:
    config_file_path = str(REPO / "mkdocs.yml")


def test_benchmark_tables_are_read_from_the_results() -> None:
    hooks = _hooks()
    page = "# B\n\n<!-- bench:feeding -->\n\n<!-- bench:env:feeding -->\n\ntext <!-- bench:feeding --> inline stays\n"
    out = hooks.on_page_markdown(page, None, _Config(), None)
    doc = json.loads((REPO / "benchmarks" / "results" / "feeding.json").read_text())
    assert f"**{doc['ratio_spark_bundles_to_in_memory']:.3f}**" in out
    assert "| (a) TFoS Spark input, bundles (ours) |" in out
    assert "text <!-- bench:feeding --> inline stays" in out
    assert not DATE.search(out), "no dates from the result files"
    for name in hooks.TABLES:  # every table renders from the committed results
        assert "|---|" in hooks.on_page_markdown(f"<!-- bench:{name} -->", None, _Config(), None), name


def test_an_unknown_benchmark_placeholder_fails_the_build() -> None:
    hooks = _hooks()
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match="unknown placeholder"):
        hooks.on_page_markdown("<!-- bench:nonesuch -->", None, _Config(), None)


def test_every_benchmark_placeholder_in_the_pages_is_known() -> None:
    hooks = _hooks()
    used = {m for p in hand_written_pages() for m in re.findall(r"^<!-- bench:([\w:.-]+) -->$", p.read_text(), re.M)}
    assert {u for u in used if not u.startswith("env:")} == set(hooks.TABLES)
