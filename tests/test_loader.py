"""The loader: valid input becomes a frozen model; each kind of bad input gets one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from sheetgen.cli import main
from sheetgen.errors import SheetError
from sheetgen.loader import load_sheet_text
from sheetgen.model import Formula

VALID = """\
sheet:
  title: Test sheet
sections:
  - id: math
    title: Math
    entries:
      - kind: formula
        id: double
        name: Double
        latex: '2x'
        meaning: Twice the input.
        source: Arithmetic
        implementation: |
          def double(x):
              return 2 * x
        examples: |
          >>> double(2)
          4
      - kind: fact
        id: note
        name: Note
        text: Some text.
      - kind: qa
        id: question
        question: Why?
        answer: ['Because']
"""

MESSAGE = re.compile(r"^(?P<file>\S+?):(?P<line>\d+)(:(?P<col>\d+))?( \[(?P<id>[^\]]+)\])? .+ — .+$")


def problem_lines(text: str) -> list[str]:
    with pytest.raises(SheetError) as caught:
        load_sheet_text(text, "formulas.yaml")
    return str(caught.value).splitlines()


def one_problem(text: str) -> re.Match[str]:
    lines = problem_lines(text)
    assert len(lines) == 1, lines
    match = MESSAGE.match(lines[0])
    assert match, lines[0]
    return match


def test_valid_sheet_loads_into_a_frozen_model() -> None:
    sheet = load_sheet_text(VALID)
    formula = sheet.formula("double")
    assert isinstance(formula, Formula)
    assert formula.latex == "2x"
    assert sheet.line_of("double") == 7
    assert sheet.line_of("double", "examples") == 17  # the first line of the block scalar's text
    with pytest.raises(pydantic.ValidationError):
        formula.name = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "line", "entry_id", "needle"),
    [
        ("        meaning:", "        meening:", 11, "double", "unknown key 'meening' — did you mean 'meaning'?"),
        ("        source: Arithmetic\n", "        source: Arithmetic\n        name: Again\n", 13, "double",
         "duplicate key 'name' (first at line 9)"),
        ("        latex: '2x'", '        latex: "\\frac{1}{2}x"', 10, "double", "form feed"),
        ("        latex: '2x'", '        latex: "\\beta"', 10, "double", "backspace"),
        ("        text: Some text.", "        text: no", 22, "note", "quote it: 'no'"),
        ("        answer: ['Because']", "        answer: Because", 26, "question", "expected a list"),
        ("        name: Note\n", "", 19, "note", "required key is missing"),
        ("        id: note", "        id: Note", 20, "Note", "'Note' is not a valid id"),
        ("        id: note", "        id: double", 20, "double", "duplicate entry id 'double'"),
        ("        id: note", "        id: con", 20, "con", "reserved name"),
        ("        id: note", "        id: ../x", 20, "../x", "not a valid id"),
        ("      - kind: fact", "      - kind: fakt", 19, "note", "unknown kind 'fakt'"),
        ("        text: Some text.", "        text: !!python/object/apply:os.system ['true']", 22, "note",
         "is not allowed (tags are never executed)"),
        ("        text: Some text.", "        text: <script>alert(1)</script>", 22, "note", "HTML markup"),
        ("        text: Some text.", "        text: see file:///etc/passwd", 22, "note", "contains a link"),
        ("        text: Some text.", "        text: 'a\u202eb'", 22, "note", "bidi control U+202E"),
        ("              return 2 * x", "              return 2 *", 15, "double", "Python syntax error"),
        ("          def double(x):", "          def triple(x):", 14, "double", "defines 'triple'"),
        ("          >>> double(2)\n          4", "          >>> double(2)\n          5", 17, "double",
         "expected '5' but got '4'"),
        ("  title: Test sheet", "  title: Test sheet\n  title: Again", 3, None, "duplicate key 'title'"),
        ("        latex: '2x'", r"        latex: '\href{https://example.com}{2x}'", 10, "double", r"uses \href"),
        ("        text: Some text.", r"        text: 'See $\def\a{\a\a}\a$.'", 22, "note",
         r"defines a macro with \def"),
        ("        id: note", "        id: Double", 20, "Double", "'double' is already the id at line 8"),
        ("        id: note", "        id: Notes", 20, "Notes", "ids are lowercase — write 'notes'"),
        ("    title: Math", "    title: 'Math", 5, "math", "the quote opened here is not closed"),
        ("    title: Math", "    title: [Math", 5, "math", "the [ opened here is never closed"),
        ("        id: note", "        id: con", 20, "con", "reserved name"),
    ],
)
def test_bad_input_gets_one_located_message(old: str, new: str, line: int, entry_id: str | None,
                                            needle: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert old in VALID
    source = tmp_path / "formulas.yaml"
    source.write_text(VALID.replace(old, new, 1), encoding="utf-8")
    assert main(["check", "-f", str(source)]) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    match = MESSAGE.match(err)
    assert match, err
    assert match["file"] == str(source)
    assert int(match["line"]) == line, err
    assert match["id"] == entry_id, err
    assert needle in err


def test_tab_indentation_is_named_with_the_enclosing_id() -> None:
    match = one_problem(VALID.replace("    title: Math", "\ttitle: Math"))
    assert (match["line"], match["id"]) == ("5", "math")
    assert "tab character in indentation" in match.group(0)
    match = one_problem(VALID.replace("        name: Note", "\tname: Note"))
    assert (match["line"], match["id"]) == ("21", "note")


def test_two_formulas_defining_one_function_name_the_other_entry() -> None:
    second = VALID.replace("      - kind: fact\n", """\
      - kind: formula
        id: triple
        name: Triple
        latex: '3x'
        meaning: Three times the input.
        source: Arithmetic
        implementation: |
          def double(x):
              return 3 * x
        examples: |
          >>> triple(1)
          3
      - kind: fact
""", 1)
    match = one_problem(second)
    assert (match["line"], match["id"]) == ("26", "triple")
    assert "defines 'double', which the entry 'double' (line 7) already defines" in match.group(0)


def test_an_id_problem_is_not_repeated_as_a_function_name_problem() -> None:
    for ident, needle in (("con", "reserved name"), ("note", "duplicate entry id 'note'")):
        text = VALID.replace("        id: double", f"        id: {ident}")
        assert needle in one_problem(text).group(0)


def test_yaml_syntax_error_has_line_and_column() -> None:
    match = one_problem(VALID.replace("    title: Math", "    title: [Math"))
    assert "YAML syntax error" in match.group(0)


def test_alias_bomb_is_refused_before_expansion() -> None:
    bomb = "a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
        for i in range(8)
    )
    [line] = problem_lines(bomb)  # one message, however many aliases
    assert "anchors and aliases" in line and "(9 in this file; the first is here)" in line


@pytest.mark.parametrize(("text", "needle"), [("", "the file is empty"),
                                               ("- a\n- b\n", "the top level must be a mapping"),
                                               ("just text\n", "the top level must be a mapping")])
def test_empty_or_wrong_top_level(text: str, needle: str) -> None:
    assert needle in one_problem(text).group(0)


def test_oversized_file_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "formulas.yaml"
    source.write_text(VALID + "#" * (1024 * 1024), encoding="utf-8")
    assert main(["check", "-f", str(source)]) == 1
    assert "the limit is 1,048,576" in capsys.readouterr().err


def test_overlong_field_names_the_limit() -> None:
    match = one_problem(VALID.replace("Twice the input.", "x" * 500))
    assert "the limit is 400" in match.group(0)
    assert match["id"] == "double"


def test_implementation_imports_are_refused() -> None:
    text = VALID.replace("              return 2 * x", "              import os\n              return 2 * x")
    assert "imports are not allowed" in one_problem(text).group(0)


def test_snippet_must_name_an_existing_formula() -> None:
    text = VALID + "      - kind: snippet\n        id: code\n        name: Code\n        function: doubel\n"
    match = one_problem(text)
    assert "did you mean 'double'?" in match.group(0)
    assert match["id"] == "code"


def test_missing_file_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-f", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err


def test_reused_anchor_is_refused_like_any_anchor() -> None:
    # Found by the fuzzer: ruamel only warns about a reused anchor (a warning is not our message).
    lines = problem_lines("&a sheet:\n&a sheet:\n  title: x\n")
    assert lines and all("anchors and aliases" in line or "duplicate key" in line for line in lines)
