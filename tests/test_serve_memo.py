"""Under `serve`, a rebuild redoes only what changed: an unchanged page is neither converted again
(Markdown, or mkdocs-jupyter's notebook → HTML) nor indexed again for search, and what is replayed is
byte for byte what a conversion makes. Counted, not timed (speed is `make bench`'s)."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sheetgen.sitebuild import load_site_config
from tests.conftest import ROOT, needs_katex
from tests.test_pipeline import SMALL

pytestmark = [needs_katex]

SERVE_URL = "http://127.0.0.1:8000/"


class Session:
    """What `mkdocs serve` does: one plugin instance, the config loaded again for every rebuild."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import mkdocs_jupyter.convert

        self.yaml = root / "formulas.yaml"
        self.build_dir = root / "build"
        self.site = Path(tempfile.mkdtemp(prefix="mkdocs_", dir=root))
        self.conversions: Counter[str] = Counter()
        convert = mkdocs_jupyter.convert.nb2html

        def counted(path: str, **kwargs: Any) -> str:
            self.conversions[Path(path).name] += 1
            return str(convert(path, **kwargs))

        monkeypatch.setattr(mkdocs_jupyter.convert, "nb2html", counted)
        config = self.config()
        config.plugins.on_startup(command="serve", dirty=False)
        self.plugin = config.plugins["sheetgen"]

    def config(self) -> Any:
        config = load_site_config(ROOT / "mkdocs.yml", self.site, yaml_path=self.yaml, build_dir=self.build_dir,
                                  plugin_options={"execute": False})
        # Without mkdocs-jupyter's own disk cache: every conversion that is not replayed shows up here.
        config.plugins["mkdocs-jupyter"].config["cache"] = False
        config.site_url = SERVE_URL
        return config

    def rebuild(self) -> dict[str, bytes]:
        from mkdocs.commands.build import build

        build(self.config(), serve_url=SERVE_URL)
        self.plugin.preview.wait()
        return {p.relative_to(self.site).as_posix(): p.read_bytes() for p in sorted(self.site.rglob("*"))
                if p.is_file()}


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    monkeypatch.setenv("NO_MKDOCS_2_WARNING", "1")
    (tmp_path / "formulas.yaml").write_text(SMALL, encoding="utf-8")
    session = Session(tmp_path, monkeypatch)
    yield session
    session.plugin.on_shutdown()  # as `mkdocs serve` ends: the background workers stop


def test_unchanged_pages_and_notebooks_are_not_converted_again(session: Session) -> None:
    first = session.rebuild()
    memo = session.plugin.memo
    assert session.conversions == {"basics.ipynb": 1}
    pages = memo["render"].misses
    assert pages >= 3 and memo["render"].hits == 0  # home, errata, the section, its notebook
    templates = memo["templates"].misses
    assert templates >= 10 and memo["templates"].hits == 0  # Material's templates, compiled once

    again = session.rebuild()
    assert session.conversions == {"basics.ipynb": 1}, "an unchanged notebook was converted again"
    assert memo["render"].misses == pages and memo["render"].hits == pages
    assert memo["search"].hits > 0 and memo["notebook"].hits == 1
    # MkDocs makes a new Jinja environment per build: its templates come compiled from the memo.
    assert memo["templates"].misses == templates and memo["templates"].hits == templates
    # What is replayed is what a conversion makes: every page, the search index, the sitemap.
    assert again.keys() == first.keys()
    assert [path for path in first if again[path] != first[path]] == []

    # An edit: the page that shows it is converted again, and the notebook once its new version is ready.
    session.yaml.write_text(SMALL.replace("Doubles", "Multiplies by two"), encoding="utf-8")
    edited = session.rebuild()
    assert "Multiplies by two" in edited["sections/basics/index.html"].decode("utf-8")
    edited = session.rebuild()  # what the trigger of the finished background work starts
    assert session.conversions == {"basics.ipynb": 2}
    assert "Multiplies by two" in edited["notebooks/basics/index.html"].decode("utf-8")
    assert "Multiplies by two" in edited["search/search_index.json"].decode("utf-8")


def test_a_build_after_a_serve_in_the_same_process_is_a_plain_build(session: Session, tmp_path: Path) -> None:
    """MkDocs keeps one plugin instance per process; `build_site` must not inherit serve mode (its
    background workers, its last good pages) from an earlier `serve`."""
    from sheetgen.sitebuild import build_site

    session.rebuild()
    assert session.plugin._serving and session.plugin.preview is not None
    served_module = (session.build_dir / "formulas.py").read_bytes()
    session.yaml.write_text(SMALL.replace("Doubles", "Twice"), encoding="utf-8")
    # Without PDFs and notebooks the home page's download links dangle: not strict.
    built = build_site(ROOT / "mkdocs.yml", tmp_path / "plain-site", strict=False, yaml_path=session.yaml,
                       build_dir=tmp_path / "plain-build", plugin_options={"notebooks": False, "pdf": False})
    assert built.generated is not None and not session.plugin._serving and session.plugin.preview is None
    assert "Twice" in (tmp_path / "plain-site" / "sections" / "basics" / "index.html").read_text(encoding="utf-8")
    assert (session.build_dir / "formulas.py").read_bytes() == served_module  # no serve worker ran
