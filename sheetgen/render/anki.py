"""The Anki deck: one note per formula, rapid-fire question and fact, as an .apkg (genanki).

A pure function of the sheet: `render_deck(sheet, timestamp=…)` returns the bytes, the same bytes
for the same YAML and timestamp (the build passes SOURCE_DATE_EPOCH). Identity is stable, so
re-importing an edited deck updates the cards (keeping the review history) instead of adding
duplicates:

- deck ids and note-type (model) ids are constants, derived from fixed strings by `stable_id`;
  a note type whose fields or templates change incompatibly gets a new string (`…/v2`);
- a note's GUID is `genanki.guid_for("sheetgen", entry_id)`: renaming an entry id makes a new note.

Anki imports an existing note's new content only when the note is newer ("Update notes: if newer",
Anki's default): notes carry SOURCE_DATE_EPOCH as their modification time, which `make` sets to the
last commit's time. Without it the time is 0 and Anki keeps the old cards unless the import option
is "Always".

Every text from the YAML is HTML-escaped (cards render HTML); inline `$…$` math becomes Anki's
MathJax `\\(…\\)`, display formulas `\\[…\\]`.
"""

from __future__ import annotations

import hashlib
import html
import io
import itertools
import json
import sqlite3
import zipfile
from collections.abc import Iterable
from typing import Any

import genanki  # type: ignore[import-untyped]

from ..mathtext import split_inline_math
from ..model import QA, Fact, Formula, Section, Sheet
from .code import function_source

__all__ = ["DECK_ID_NAMESPACE", "MODEL_NAMES", "deck_id", "note_count", "note_guid", "render_deck", "stable_id",
           "tex_html"]

DECK_ID_NAMESPACE = "sheetgen/anki/deck/"
"""Deck ids: `stable_id(DECK_ID_NAMESPACE + section_id)`, the parent deck `stable_id(DECK_ID_NAMESPACE)`."""
_MODEL_KEYS = {"formula": "sheetgen/anki/model/formula/v1", "fact": "sheetgen/anki/model/fact/v1",
               "qa": "sheetgen/anki/model/qa/v1"}
MODEL_NAMES = {"formula": "sheetgen formula", "fact": "sheetgen fact", "qa": "sheetgen question"}
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# Note and card ids only need to be unique inside the package (Anki matches notes by GUID and gives
# new ids where they clash); Anki shows a card id as its "added" date, so they start at the build time.
_FIXED_ID_START_MS = 1_600_000_000_000  # 2020-09-13, when SOURCE_DATE_EPOCH is unset or 0

_CSS = """\
.card { font-family: system-ui, sans-serif; font-size: 18px; text-align: left; line-height: 1.45;
        color: #1b1b1b; background: #ffffff; }
.card.nightMode, .nightMode .card { color: #e6e6e6; background: #1e1e1e; }
.sg-name { font-weight: 600; font-size: 1.15em; }
.sg-meaning, .sg-plain, .sg-source, .sg-kind { margin-top: 0.5em; }
.sg-kind, .sg-source { font-size: 0.8em; opacity: 0.75; }
.sg-plain { font-family: ui-monospace, monospace; }
pre.sg-code { font-size: 0.75em; overflow-x: auto; padding: 0.6em; border-radius: 4px;
              background: rgba(127, 127, 127, 0.12); }
"""


def stable_id(key: str) -> int:
    """A fixed id for a fixed string: 31 bits from its SHA-256, in [2**30, 2**31) like genanki's."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return (1 << 30) + int.from_bytes(digest[:4], "big") % (1 << 30)


def deck_id(section_id: str | None = None) -> int:
    """The parent deck (`None`) or a section's subdeck."""
    return stable_id(DECK_ID_NAMESPACE + (section_id or ""))


def note_guid(entry_id: str) -> str:
    """The note's GUID: the entry id's, so an edited entry updates its note."""
    return str(genanki.guid_for("sheetgen", entry_id))


def tex_html(tex: str, display: bool) -> str:
    """TeX in Anki's MathJax delimiters, HTML-escaped (MathJax reads the decoded text)."""
    opening, closing = (r"\[", r"\]") if display else (r"\(", r"\)")
    return f"{opening}{html.escape(tex, quote=False)}{closing}"


def _prose(text: str) -> str:
    """Text with inline `$…$` math: escaped, the math in `\\(…\\)`. The loader has checked the dollars."""
    try:
        pieces = split_inline_math(text)
    except ValueError:
        pieces = [(False, text)]
    return "".join(tex_html(chunk, False) if is_math else html.escape(chunk, quote=False) for is_math, chunk in pieces)


def _items(texts: Iterable[str]) -> str:
    body = "".join(f"<li>{_prose(t)}</li>" for t in texts)
    return f"<ul>{body}</ul>" if body else ""


def _code(code: str) -> str:
    return f'<pre class="sg-code"><code>{html.escape(code.strip(chr(10)), quote=False)}</code></pre>'


def _template(front: str, back: str) -> dict[str, str]:
    return {"name": "Card 1", "qfmt": front, "afmt": '{{FrontSide}}<hr id="answer">' + back}


def _models() -> dict[str, Any]:
    formula = genanki.Model(
        stable_id(_MODEL_KEYS["formula"]), MODEL_NAMES["formula"],
        fields=[{"name": n} for n in ("Name", "Meaning", "Formula", "Plain", "Source", "Conventions", "Code",
                                      "Section")],
        templates=[_template(
            '<div class="sg-kind">{{Section}}</div><div class="sg-name">{{Name}}</div>'
            '<div class="sg-meaning">{{Meaning}}</div>',
            '<div class="sg-formula">{{Formula}}</div>{{#Plain}}<div class="sg-plain">{{Plain}}</div>{{/Plain}}'
            '<div class="sg-source">{{Source}}</div>{{Conventions}}{{Code}}')],
        css=_CSS)
    fact = genanki.Model(
        stable_id(_MODEL_KEYS["fact"]), MODEL_NAMES["fact"],
        fields=[{"name": n} for n in ("Name", "Text", "Formula", "Section")],
        templates=[_template('<div class="sg-kind">{{Section}}</div><div class="sg-name">{{Name}}</div>',
                             '<div class="sg-meaning">{{Text}}</div>'
                             '{{#Formula}}<div class="sg-formula">{{Formula}}</div>{{/Formula}}')],
        css=_CSS)
    qa = genanki.Model(
        stable_id(_MODEL_KEYS["qa"]), MODEL_NAMES["qa"],
        fields=[{"name": n} for n in ("Question", "Answer", "Section")],
        templates=[_template('<div class="sg-kind">{{Section}}</div><div class="sg-name">{{Question}}</div>',
                             "{{Answer}}")],
        css=_CSS)
    return {"formula": formula, "fact": fact, "qa": qa}


def _note(models: dict[str, Any], section: Section, entry: object) -> Any | None:
    tags = sorted({*getattr(entry, "tags", ()), section.id})
    where = html.escape(section.title, quote=False)
    if isinstance(entry, Formula):
        fields = [_prose(entry.name), _prose(entry.meaning), tex_html(entry.latex, True),
                  html.escape(entry.plain, quote=False), _prose(entry.source), _items(entry.conventions),
                  _code(function_source(entry, with_docstring=False)), where]
        model = models["formula"]
    elif isinstance(entry, Fact):
        fields = [_prose(entry.name), _prose(entry.text), tex_html(entry.latex, True) if entry.latex else "", where]
        model = models["fact"]
    elif isinstance(entry, QA):
        fields = [_prose(entry.question), _items(entry.answer), where]
        model = models["qa"]
    else:  # steps and snippets are for reading, not drilling
        return None
    return genanki.Note(model=model, fields=fields, tags=tags, guid=note_guid(entry.id))


def note_count(sheet: Sheet) -> int:
    """Notes in the deck: one per formula, fact and rapid-fire question."""
    return sum(isinstance(e, Formula | Fact | QA) for e in sheet.entries())


def render_deck(sheet: Sheet, *, timestamp: int) -> bytes:
    """The .apkg: a parent deck named after the sheet, a subdeck per section with its notes.

    `timestamp` (seconds since the epoch; the build's SOURCE_DATE_EPOCH, see
    `outputs.source_date_epoch`) is every note's modification time; 0 gives fixed ids and times."""
    models = _models()
    title = sheet.sheet.title.replace("::", ":")
    decks = [genanki.Deck(deck_id(None), title, description=html.escape(sheet.sheet.subtitle, quote=False))]
    for section in sheet.sections:
        notes = [n for n in (_note(models, section, e) for e in section.entries) if n is not None]
        if not notes:
            continue
        deck = genanki.Deck(deck_id(section.id), f"{title}::{section.title.replace('::', ':')}")
        for note in notes:
            deck.add_note(note)
        decks.append(deck)
    return _package(decks, timestamp)


def _package(decks: list[Any], timestamp: int) -> bytes:
    """What `genanki.Package.write_to_file` writes, without its clock and file dates: the collection
    is built in memory (serialized, the same bytes for the same inserts), the zip has fixed dates."""
    ids = itertools.count(timestamp * 1000 if timestamp > 0 else _FIXED_ID_START_MS)
    connection = sqlite3.connect(":memory:")
    try:
        cursor = connection.cursor()
        genanki.Package(decks).write_to_db(cursor, timestamp, ids)
        connection.commit()
        collection = connection.serialize()
    finally:
        connection.close()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (("collection.anki2", collection), ("media", json.dumps({}).encode())):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()
