"""`sheetgen build`: outputs are replaced only when every stage passed, and builds are reproducible.

One good build is made first (cold caches); each test then breaks a stage — bad YAML, a failing
doctest, bad LaTeX, a sheet too long for one page, a failing notebook, a failing strict site build,
a kill in the middle — and checks every previous output is byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sheetgen import build as build_module
from sheetgen.cli import main
from sheetgen.errors import SheetError
from tests.conftest import ROOT
from tests.sitehelpers import seed_caches
from tests.test_pdf import tripled

pytestmark = pytest.mark.slow

SHIPPED = (ROOT / "formulas.yaml").read_text(encoding="utf-8")
EPOCH = "1700000000"


def tree_hashes(*folders: Path) -> dict[str, str]:
    """Every output file (caches excluded) by path relative to its folder's parent."""
    hashes = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and ".cache" not in path.parts:
                hashes[str(path.relative_to(folder.parent))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.yaml = root / "formulas.yaml"
        self.build = root / "build"
        self.site = root / "site"
        self.preview = root / "preview.png"

    def args(self, yaml: Path | None = None) -> list[str]:
        return ["build", "-f", str(yaml or self.yaml), "--build-dir", str(self.build), "--site-dir",
                str(self.site), "-c", str(ROOT / "mkdocs.yml"), "--preview", str(self.preview)]

    def outputs(self) -> dict[str, str]:
        return {**tree_hashes(self.build, self.site), "preview.png": _digest(self.preview)}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    workspace = Workspace(tmp_path_factory.mktemp("built"))
    workspace.yaml.write_text(SHIPPED, encoding="utf-8")
    seed_caches(workspace.build)  # warm: test_a_cold_build_gives_the_bytes_of_a_cached_one makes a cold one
    assert main(workspace.args()) == 0
    yield workspace
    if previous is None:
        os.environ.pop("SOURCE_DATE_EPOCH", None)
    else:
        os.environ["SOURCE_DATE_EPOCH"] = previous


def test_build_writes_every_output(built: Workspace) -> None:
    outputs = built.outputs()
    for name in ("build/formulas.py", "build/cheatsheet.pdf", "build/notebooks/math.ipynb",
                 "site/index.html", "site/downloads/cheatsheet.pdf", "preview.png"):
        assert name in outputs, name
    # The site offers exactly the PDF and module the build wrote.
    assert outputs["site/downloads/cheatsheet.pdf"] == outputs["build/cheatsheet.pdf"]
    assert outputs["site/downloads/formulas.py"] == outputs["build/formulas.py"]


def test_a_cold_build_gives_the_bytes_of_a_cached_one(built: Workspace, tmp_path: Path) -> None:
    # `built` started from another build's caches; this one from none, in another folder.
    again = Workspace(tmp_path)  # fresh folder: no caches shared with the first build
    again.yaml.write_text(SHIPPED, encoding="utf-8")
    assert main(again.args()) == 0
    first, second = built.outputs(), again.outputs()
    assert sorted(first) == sorted(second)
    differing = [name for name in first if first[name] != second[name]]
    assert not differing, f"not reproducible: {differing}"


def _broken(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


BAD_INPUTS = {
    "yaml syntax": _broken(SHIPPED, "    title: Math essentials", "    title: [Math essentials"),
    "failing doctest": _broken(SHIPPED, "          32.0\n", "          33.0\n"),
    "bad latex": _broken(SHIPPED, r"a \cdot b = \sum_i", r"a \cdot b = \frac{1}{"),
    "three times too long": tripled(SHIPPED),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_leaves_outputs_untouched(case: str, built: Workspace, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    before = built.outputs()
    bad = tmp_path / "formulas.yaml"
    bad.write_text(BAD_INPUTS[case], encoding="utf-8")
    assert main(built.args(bad)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(bad) in err
    assert built.outputs() == before


def test_three_times_the_content_reports_the_overflow(built: Workspace, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "formulas.yaml"
    bad.write_text(BAD_INPUTS["three times too long"], encoding="utf-8")
    assert main(built.args(bad)) == 1
    err = capsys.readouterr().err
    assert "print: false" in err and "--tags" in err


@pytest.mark.parametrize("stage", ["notebooks", "site"])
def test_failure_in_a_late_stage_leaves_outputs_untouched(stage: str, built: Workspace, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    changed = tmp_path / "formulas.yaml"  # a valid edit, so that a finished build would change outputs
    changed.write_text(SHIPPED.replace("Every formula typeset", "Each formula typeset"), encoding="utf-8")
    before = built.outputs()

    def fail(*args: object, **kwargs: object) -> None:
        raise SheetError.single(str(changed), 1, f"{stage} failed (simulated)", "nothing to fix")

    if stage == "notebooks":
        monkeypatch.setattr("sheetgen.pipeline.execute_notebooks", fail)
    else:
        monkeypatch.setattr("sheetgen.sitebuild.build_into", fail)
    assert main(built.args(changed)) == 1
    assert built.outputs() == before
    assert not list(built.root.glob(".site*")), "a staging folder was left behind"
    assert not (built.build / ".staging").exists()


def test_a_strict_site_failure_leaves_outputs_untouched(built: Workspace, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\n[broken](no-such-page.md)\n", encoding="utf-8")
    config = tmp_path / "mkdocs.yml"
    config.write_text((ROOT / "mkdocs.yml").read_text(encoding="utf-8") + f"\ndocs_dir: {docs}\n",
                      encoding="utf-8")
    changed = tmp_path / "formulas.yaml"
    changed.write_text(SHIPPED.replace("Every formula typeset", "Each formula typeset"), encoding="utf-8")
    before = built.outputs()
    args = built.args(changed)
    args[args.index("-c") + 1] = str(config)
    assert main(args) == 1
    assert "no-such-page.md" in capsys.readouterr().err
    assert built.outputs() == before


def test_killed_build_leaves_outputs_untouched(built: Workspace, tmp_path: Path) -> None:
    changed = tmp_path / "formulas.yaml"
    changed.write_text(SHIPPED.replace("Every formula typeset", "Every formula, typeset"), encoding="utf-8")
    before = built.outputs()
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
    with subprocess.Popen([sys.executable, "-m", "sheetgen", *built.args(changed)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        for line in process.stdout:  # kill it once the PDF is made, before anything is moved into place
            if line.startswith("pdf (core):") or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert built.outputs() == before


def test_build_pdf_cache_skips_rendering(built: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from sheetgen.katex import KatexRenderer

    def no_render(*args: object, **kwargs: object) -> None:
        raise AssertionError("render_pdf called for an unchanged sheet")

    monkeypatch.setattr("sheetgen.pdf.make.render_pdf", no_render)
    result = build_module.build_pdf(SHIPPED, str(built.yaml), renderer=KatexRenderer(None),
                                    cache_dir=built.build / ".cache")
    assert result.cached
    assert result.pdf == (built.build / "cheatsheet.pdf").read_bytes()


def test_leftovers_of_a_killed_build_are_removed_by_the_next_one(built: Workspace) -> None:
    staged_site = built.root / ".site.staging-999999-abc"  # a killed build's site, never published
    (staged_site / "assets").mkdir(parents=True)
    staged_files = built.build / ".staging" / "999999-abc"
    staged_files.mkdir(parents=True)
    kernel_tmp = built.build / ".cache" / "tmp" / "999999"  # temp folders of a dead process (pid 999999)
    kernel_tmp.mkdir(parents=True)
    before = built.outputs()
    assert main(built.args()) == 0
    assert built.outputs() == before
    assert not staged_site.exists() and not staged_files.exists() and not kernel_tmp.exists()
    assert sorted(p.name for p in built.build.iterdir() if p.name.startswith(".")) == [".cache"]


# --- every path that publishes checks first (issue 8, hole 2) ---------------------------------------


FAILING_DOCTEST = _broken(SHIPPED, "          32.0\n", "          33.0\n")


@pytest.mark.parametrize("command", ["code", "pdf", "notebooks", "site"])
def test_every_publishing_command_refuses_a_failing_doctest(command: str, built: Workspace, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "formulas.yaml"
    bad.write_text(FAILING_DOCTEST, encoding="utf-8")
    before = built.outputs()
    cache = ["--cache-dir", str(built.build / ".cache")]
    argv = {
        "code": ["code", "-f", str(bad), "-o", str(built.build / "formulas.py"), *cache],
        "pdf": ["pdf", "-f", str(bad), "-o", str(built.build / "cheatsheet.pdf"), *cache],
        "notebooks": ["notebooks", "-f", str(bad), "-o", str(built.build / "notebooks"), *cache],
        "site": ["site", "-f", str(bad), "-c", str(ROOT / "mkdocs.yml"), "-d", str(built.site)],
    }[command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    line = FAILING_DOCTEST.splitlines().index("          33.0")  # 1-based: the `>>>` line above the output
    assert f"{bad}:{line} [dot_product] examples:" in err and "33.0" in err and "Traceback" not in err
    assert built.outputs() == before


def test_plain_mkdocs_build_refuses_a_failing_doctest(built: Workspace, tmp_path: Path) -> None:
    bad = tmp_path / "formulas.yaml"
    bad.write_text(FAILING_DOCTEST, encoding="utf-8")
    env = {**os.environ, "SHEETGEN_YAML": str(bad), "SHEETGEN_BUILD_DIR": str(built.build)}
    before = built.outputs()
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                             "-d", str(built.site)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "[dot_product] examples:" in result.stderr
    assert built.outputs() == before


def test_any_valid_mkdocs_yml_works_env_tags_and_python_names(built: Workspace, tmp_path: Path) -> None:
    """sheetgen never re-parses mkdocs.yml: MkDocs' own tags (`!ENV`, Material's emoji setting) work."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^site_name:.*$", "site_name: !ENV [SHEETGEN_TEST_SITE_NAME, 'sheetgen']", text)
    text = text.replace("markdown_extensions:\n", textwrap.dedent("""\
        markdown_extensions:
          - pymdownx.emoji:
              emoji_index: !!python/name:material.extensions.emoji.twemoji
              emoji_generator: !!python/name:material.extensions.emoji.to_svg
        """), 1)
    config = tmp_path / "mkdocs.yml"
    config.write_text(text.replace("docs_dir: docs", f"docs_dir: {ROOT / 'docs'}", 1), encoding="utf-8")
    args = built.args()
    args[args.index("-c") + 1] = str(config)
    assert main(args) == 0
