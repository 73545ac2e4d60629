"""The Anki deck, opened as Anki opens it: a zip holding a SQLite collection (`collection.anki2`).

Expected counts, tags and texts come from the YAML read with PyYAML (not from sheetgen's model).
"""

from __future__ import annotations

import html
import io
import json
import re
import sqlite3
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import genanki  # type: ignore[import-untyped]
import pytest
import yaml

from sheetgen.loader import load_sheet_text
from sheetgen.model import Sheet
from sheetgen.render.anki import render_deck
from tests.conftest import ROOT, needs_katex

YAML_TEXT = (ROOT / "formulas.yaml").read_text(encoding="utf-8")
RAW = yaml.safe_load(YAML_TEXT)
DRILLED = ("formula", "fact", "qa")


@dataclass(frozen=True)
class Note:
    guid: str
    model: str
    fields: dict[str, str]
    tags: list[str]
    deck: str
    mod: int


def open_deck(data: bytes, tmp_path: Path) -> tuple[list[Note], dict[str, Any]]:
    """The notes (with their card's deck) and the `col` row, read with sqlite3 from the zip."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["collection.anki2", "media"]
        assert json.loads(archive.read("media")) == {}
        tmp_path.mkdir(parents=True, exist_ok=True)
        path = tmp_path / "collection.anki2"
        path.write_bytes(archive.read("collection.anki2"))
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (models_json, decks_json), = connection.execute("SELECT models, decks FROM col").fetchall()
        models = {int(k): v for k, v in json.loads(models_json).items()}
        decks = {int(k): v["name"] for k, v in json.loads(decks_json).items()}
        notes = []
        for guid, mid, flds, tags, mod, did in connection.execute(
                "SELECT n.guid, n.mid, n.flds, n.tags, n.mod, c.did FROM notes n JOIN cards c ON c.nid = n.id "
                "ORDER BY n.id"):
            names = [f["name"] for f in models[mid]["flds"]]
            notes.append(Note(guid, models[mid]["name"], dict(zip(names, flds.split("\x1f"), strict=True)),
                              tags.split(), decks[did], mod))
        (cards,), = connection.execute("SELECT count(*) FROM cards").fetchall()
        assert cards == len(notes)  # one card per note
    finally:
        connection.close()
    return notes, {"models": models, "decks": decks}


def raw_entries() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(section, entry) for section in RAW["sections"] for entry in section["entries"]
            if entry["kind"] in DRILLED]


@pytest.fixture(scope="module")
def deck_bytes() -> bytes:
    return render_deck(load_sheet_text(YAML_TEXT), timestamp=0)


def test_one_note_per_formula_question_and_fact(deck_bytes: bytes, tmp_path: Path) -> None:
    notes, col = open_deck(deck_bytes, tmp_path)
    expected = raw_entries()
    kinds = [e["kind"] for _, e in expected]
    assert len(notes) == kinds.count("formula") + kinds.count("qa") + kinds.count("fact") == len(expected)
    assert kinds.count("formula") >= 100 and kinds.count("qa") >= 5 and kinds.count("fact") >= 10
    title = RAW["sheet"]["title"]
    # GUIDs: unique, and those of the entry ids (what makes a re-import update the same notes).
    assert len({n.guid for n in notes}) == len(notes)
    assert [n.guid for n in notes] == [genanki.guid_for("sheetgen", e["id"]) for _, e in expected]
    for note, (section, entry) in zip(notes, expected, strict=True):
        assert note.deck == f"{title}::{section['title']}"
        assert note.tags == sorted({*entry.get("tags", []), section["id"]})
        assert note.model == {"formula": "sheetgen formula", "fact": "sheetgen fact", "qa": "sheetgen question"}[
            entry["kind"]]
    # The parent deck exists besides the subdecks (and genanki's "Default").
    assert set(col["decks"].values()) == {"Default", title} | {f"{title}::{s['title']}" for s, _ in expected}


def test_fields_hold_the_entry_with_ankis_math_delimiters(deck_bytes: bytes, tmp_path: Path) -> None:
    notes, _ = open_deck(deck_bytes, tmp_path)
    by_guid = {n.guid: n for n in notes}
    for section, entry in raw_entries():
        note = by_guid[genanki.guid_for("sheetgen", entry["id"])]
        for name, value in note.fields.items():
            # No TeX left between dollars: every piece of math is \( \) or \[ \] (the sheet has no \$).
            assert "$" not in value, (entry["id"], name, value)
        assert note.fields["Section"] == html.escape(section["title"], quote=False)
        if entry["kind"] == "formula":
            assert html.unescape(note.fields["Formula"]) == "\\[" + entry["latex"] + "\\]"
            assert html.unescape(note.fields["Plain"]) == entry.get("plain", "")
            code = note.fields["Code"]
            assert code.startswith('<pre class="sg-code"><code>def ' + entry["id"] + "(")
            assert html.unescape(code[len('<pre class="sg-code"><code>'):-len("</code></pre>")]) \
                == entry["implementation"].strip("\n")
            assert _no_math(note.fields["Name"]) == entry["name"].replace("$", "")
        elif entry["kind"] == "fact":
            assert note.fields["Formula"] == ("" if not entry.get("latex") else
                                              "\\[" + html.escape(entry["latex"], quote=False) + "\\]")
        else:
            answers = re.findall(r"<li>(.*?)</li>", note.fields["Answer"])
            assert len(answers) == len(entry["answer"])
            assert html.unescape(_no_math(note.fields["Question"])) == entry["question"].replace("$", "")


def _no_math(field: str) -> str:
    """The field with Anki's inline delimiters dropped (so it compares with the YAML minus its dollars)."""
    return field.replace("\\(", "").replace("\\)", "")


def test_inline_math_in_prose_becomes_mathjax(tmp_path: Path) -> None:
    # A hand-written expectation: $…$ in a meaning becomes \(…\), and `<` in TeX is escaped for HTML.
    text = YAML_TEXT.replace(
        "meaning: Sum of elementwise products; large when the vectors point the same way.",
        "meaning: 'Sum of $a_i b_i$; positive when $\\theta < 90^\\circ$.'")
    notes, _ = open_deck(render_deck(load_sheet_text(text), timestamp=0), tmp_path)
    dot = next(n for n in notes if n.guid == genanki.guid_for("sheetgen", "dot_product"))
    assert dot.fields["Meaning"] == "Sum of \\(a_i b_i\\); positive when \\(\\theta &lt; 90^\\circ\\)."


def test_html_in_the_yaml_is_escaped(tmp_path: Path) -> None:
    # What the loader lets through: comparison signs, ampersands and quotes in prose.
    text = YAML_TEXT.replace(
        "meaning: Sum of elementwise products; large when the vectors point the same way.",
        "meaning: 'a < b & c > d, \"quoted\"'")
    notes, _ = open_deck(render_deck(load_sheet_text(text), timestamp=0), tmp_path / "a")
    dot = next(n for n in notes if n.guid == genanki.guid_for("sheetgen", "dot_product"))
    assert dot.fields["Meaning"] == 'a &lt; b &amp; c &gt; d, "quoted"'
    # What the loader refuses (markup in prose) is escaped all the same: the renderer does not rely on it.
    data = yaml.safe_load(YAML_TEXT)
    hostile = "<img src=x onerror=alert(1)> & <b>bold</b>"
    entry = next(e for s in data["sections"] for e in s["entries"] if e["id"] == "dot_product")
    entry["meaning"] = entry["name"] = entry["source"] = entry["plain"] = hostile
    question = next(e for s in data["sections"] for e in s["entries"] if e["id"] == "bias_vs_variance")
    question["question"], question["answer"] = hostile, [hostile]
    notes, _ = open_deck(render_deck(Sheet.model_validate_json(json.dumps(data)), timestamp=0), tmp_path / "b")
    escaped = "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"
    dot = next(n for n in notes if n.guid == genanki.guid_for("sheetgen", "dot_product"))
    assert dot.fields["Meaning"] == dot.fields["Name"] == dot.fields["Source"] == dot.fields["Plain"] == escaped
    question_note = next(n for n in notes if n.guid == genanki.guid_for("sheetgen", "bias_vs_variance"))
    assert question_note.fields["Question"] == escaped
    assert question_note.fields["Answer"] == f"<ul><li>{escaped}</li></ul>"
    for note in notes:  # no field anywhere carries a tag the YAML wrote
        assert "<img" not in "".join(note.fields.values()) and "<b>" not in "".join(note.fields.values())


def test_an_edit_keeps_guids_and_counts(tmp_path: Path) -> None:
    before, _ = open_deck(render_deck(load_sheet_text(YAML_TEXT), timestamp=1700000000), tmp_path / "a")
    old = "meaning: Sum of elementwise products; large when the vectors point the same way."
    assert YAML_TEXT.count(old) == 1
    edited = YAML_TEXT.replace(old, "meaning: Sum of elementwise products (edited).")
    after, _ = open_deck(render_deck(load_sheet_text(edited), timestamp=1700000600), tmp_path / "b")  # next commit
    assert [n.guid for n in before] == [n.guid for n in after]
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a.fields != b.fields]
    assert len(changed) == 1
    a, b = changed[0]
    assert a.guid == genanki.guid_for("sheetgen", "dot_product")
    assert {k for k in a.fields if a.fields[k] != b.fields[k]} == {"Meaning"}
    assert b.fields["Meaning"] == "Sum of elementwise products (edited)."
    # Anki updates an existing note only from a newer one: the mod time is the build's SOURCE_DATE_EPOCH.
    assert a.mod == 1700000000 and b.mod == 1700000600


def test_bytes_are_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000600")  # the renderer never reads the environment
    sheet = load_sheet_text(YAML_TEXT)
    first = render_deck(sheet, timestamp=1700000000)
    assert render_deck(load_sheet_text(YAML_TEXT), timestamp=1700000000) == first
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    unset = render_deck(sheet, timestamp=0)
    assert unset == render_deck(sheet, timestamp=0) and unset != first  # the time is in the notes, never the clock


@pytest.mark.parametrize(("value", "expected"), [("1700000000", 1700000000), (" 42 ", 42), ("", 0), ("soon", 0),
                                                 ("-5", 0), (None, 0)])
def test_the_build_date_comes_from_source_date_epoch(monkeypatch: pytest.MonkeyPatch, value: str | None,
                                                     expected: int) -> None:
    from sheetgen.outputs import source_date_epoch

    if value is None:
        monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    else:
        monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    assert source_date_epoch() == expected


def test_model_and_deck_ids_are_fixed(deck_bytes: bytes, tmp_path: Path) -> None:
    _, col = open_deck(deck_bytes, tmp_path)
    # Written out so that a change to how they are derived fails here: changing them would make every
    # user's next import a new note type and new decks.
    names = {mid: m["name"] for mid, m in col["models"].items() if m["name"].startswith("sheetgen")}
    from sheetgen.render.anki import deck_id, stable_id

    assert names == {stable_id("sheetgen/anki/model/formula/v1"): "sheetgen formula",
                     stable_id("sheetgen/anki/model/fact/v1"): "sheetgen fact",
                     stable_id("sheetgen/anki/model/qa/v1"): "sheetgen question"}
    assert stable_id("sheetgen/anki/model/formula/v1") == _sha_id("sheetgen/anki/model/formula/v1")
    assert deck_id("math") == _sha_id("sheetgen/anki/deck/math")
    assert col["decks"][deck_id("math")] == f"{RAW['sheet']['title']}::Math essentials"


def _sha_id(key: str) -> int:
    import hashlib

    return 2**30 + int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 2**30



@pytest.mark.slow
@needs_katex
def test_sheetgen_anki_writes_the_deck_after_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sheetgen.cli import main
    from tests.test_pipeline import SMALL

    source = tmp_path / "formulas.yaml"
    source.write_text(SMALL, encoding="utf-8")
    out = tmp_path / "out" / "deck.apkg"
    argv = ["anki", "-f", str(source), "-o", str(out), "--cache-dir", str(tmp_path / "build" / ".cache")]
    assert main(argv) == 0
    notes, _ = open_deck(out.read_bytes(), tmp_path / "open")
    assert [n.fields.get("Name") for n in notes] == ["Twice", "A fact"]
    assert notes[0].fields["Meaning"] == "Doubles \\(x\\)."
    assert f"{out}: 2 notes" in capsys.readouterr().out
    # A failing doctest: nothing is written, the problem is located.
    source.write_text(SMALL.replace("          4\n", "          5\n"), encoding="utf-8")
    out.unlink()
    assert main(argv) == 1
    assert not out.exists()
    assert "[twice] examples" in capsys.readouterr().err


def test_ankis_own_importer_updates_instead_of_duplicating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Anki's importer (the `anki` package, Anki's own Rust backend): a newer deck with one edit updates the
    same notes, keeps their count, and changes the edited field; re-importing the older deck changes nothing."""
    collection_module = pytest.importorskip("anki.collection")
    from anki.import_export_pb2 import ImportAnkiPackageUpdateCondition

    old = "meaning: Sum of elementwise products; large when the vectors point the same way."
    paths = []
    for epoch, text in (("1700000000", YAML_TEXT), ("1700000600", YAML_TEXT.replace(old, "meaning: Edited."))):
        paths.append(tmp_path / f"deck-{epoch}.apkg")
        paths[-1].write_bytes(render_deck(load_sheet_text(text), timestamp=int(epoch)))
    first, second = paths
    (tmp_path / "user").mkdir()
    col = collection_module.Collection(str(tmp_path / "user" / "collection.anki2"))
    try:
        if_newer = ImportAnkiPackageUpdateCondition.IMPORT_ANKI_PACKAGE_UPDATE_CONDITION_IF_NEWER  # Anki's default

        def import_(path: Path) -> Any:
            options = collection_module.ImportAnkiPackageOptions(
                with_scheduling=False, with_deck_configs=False, update_notes=if_newer, update_notetypes=if_newer)
            request = collection_module.ImportAnkiPackageRequest(package_path=str(path), options=options)
            return col.import_anki_package(request).log

        expected = len(raw_entries())
        log = import_(first)
        assert len(log.new) == expected and not log.conflicting and not log.missing_notetype
        assert col.note_count() == col.card_count() == expected
        dot = col.find_notes('"deck:ML Interview Cheat Sheet::Math essentials" "Name:Dot product"')
        assert len(dot) == 1
        log = import_(second)
        assert not log.new and len(log.updated) == expected and col.note_count() == expected
        assert col.get_note(dot[0])["Meaning"] == "Edited."
        assert col.find_notes('"Name:Dot product"') == dot  # the same note, not a new one
        log = import_(first)  # an older deck: Anki keeps the newer text
        assert not log.new and not log.updated and col.get_note(dot[0])["Meaning"] == "Edited."
        names = {d.name for d in col.decks.all_names_and_ids()}
        assert "ML Interview Cheat Sheet::Transformers" in names
    finally:
        col.close()
