"""The loader: valid input becomes a frozen model; each kind of bad input gets one clear line."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pydantic
import pytest

from sheetgen.cli import main
from sheetgen.errors import SheetError
from sheetgen.loader import load_sheet_text, read_source
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
        # issue 9: values YAML types wrongly, and unknown keys whatever they hold
        ("        latex: '2x'", "        latex: !!int abc", 10, "double", "'abc' is not a whole number"),
        ("        latex: '2x'", "        latex: !!float abc", 10, "double", "'abc' is not a number"),
        ("        latex: '2x'", "        latex: 0x_", 10, "double", "'0x_' looks like a whole number"),
        ("        id: note", "        id: note\n        print: !!bool maybe", 21, "note", "'maybe' is not a boolean"),
        ("        id: note", "        id: note\n        print: !!bool yes", 21, "note", "'yes' is not a boolean"),
        ("        id: note", "        id: note\n        tags: [Linear-Algebra]", 21, "note",
         "'Linear-Algebra' is not a valid tag"),
        ("  title: Test sheet", "  title: Test sheet\n  extra_css: https://example.com/x.css", 3, None,
         "unknown key 'extra_css'"),
        ("        text: Some text.", "        text: Some text.\n        colour: '<b>'", 23, "note",
         "unknown key 'colour'"),
        ("  title: Test sheet", "  title: Test sheet\n  print:\n    margin_mm: .nan", 4, None,
         "'.nan' is not a finite number"),
        ("  title: Test sheet", "  title: Test sheet\n  print:\n    font_max_pt: 1e999", 4, None,
         "'1e999' is not a finite number"),
        ("        name: Note", "        name:", 21, "note", "write the text after the colon"),
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


def test_less_than_in_prose_is_text_but_tags_are_refused() -> None:
    for prose in ("$a < b$ and n < m", "x <= y, a<-b, n<2, 1 < 2"):
        sheet = load_sheet_text(VALID.replace("Twice the input.", f"'{prose}'"))
        formula = sheet.formula("double")
        assert isinstance(formula, Formula) and formula.meaning == prose
    for markup in ("<b>bold</b>", "a</b", "<!-- c -->", "<?php", "$a<b$"):
        match = one_problem(VALID.replace("Twice the input.", f"'{markup}'"))
        assert "HTML markup" in match.group(0) and match["line"] == "11", match.group(0)


def test_a_huge_integer_is_refused_without_parsing_it() -> None:
    # Python refuses int() of more than 4,300 digits with a ValueError; we refuse before, with the line.
    match = one_problem(VALID.replace("        latex: '2x'", "        latex: " + "9" * 5000))
    assert (match["line"], match["id"]) == ("10", "double")
    assert "a number of 5,000 characters" in match.group(0)


def test_nesting_3000_deep_is_one_located_line_not_a_recursion_error() -> None:
    deep = "[" * 3000 + "]" * 3000
    match = one_problem(VALID.replace("        latex: '2x'", "        latex: " + deep))
    assert (match["line"], match["id"]) == ("10", "double")
    # The entry's mapping is level 5 (document, sections, section, entries, entry): bracket 36 is level 41.
    assert match["col"] == str(len("        latex: ") + 36)
    # Block style, by indentation: 1,200 levels (700 KB) overflow the composer's recursion instead.
    match = one_problem("".join(" " * i + "k:\n" for i in range(1200)))
    assert (match["line"], match["col"]) == ("41", "41") and "nested more than 40 levels" in match.group(0)


def test_moderate_nesting_that_the_composer_survives_is_refused_by_the_builder() -> None:
    deep = "[" * 60 + "]" * 60  # 60 levels: ruamel composes it, the builder stops at 40
    match = one_problem(VALID.replace("        latex: '2x'", "        latex: " + deep))
    assert "nested more than 40 levels" in match.group(0) and match["line"] == "10"


def test_a_typo_in_a_step_is_one_line_with_did_you_mean() -> None:
    # Before: "minutes: required key is missing" and "unknown key 'minutse'" with the entry's keys.
    text = VALID + """\
      - kind: steps
        id: plan
        name: Plan
        steps:
          - title: Clarify
            minutse: 5
            points: ['Goal?']
"""
    match = one_problem(text)
    assert (match["line"], match["id"]) == ("32", "plan")
    assert "unknown key 'minutse' — did you mean 'minutes'? allowed keys: title, minutes, points" in match.group(0)


@pytest.mark.parametrize("kind", ["folder", "symlink to a folder", "fifo", "dev/zero", "missing", "unreadable"])
def test_the_file_itself_gets_one_line_without_reading_it(kind: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "formulas.yaml"
    needle = {"folder": "is a folder", "symlink to a folder": "is a folder", "fifo": "is a named pipe (FIFO)",
              "dev/zero": "is a device", "missing": "it does not exist", "unreadable": "Permission denied"}[kind]
    if kind == "folder":
        source.mkdir()
    elif kind == "symlink to a folder":
        (tmp_path / "dir").mkdir()
        source.symlink_to(tmp_path / "dir")
    elif kind == "fifo":
        os.mkfifo(source)  # opening it for reading would block until a writer comes: it must not be opened
    elif kind == "dev/zero":
        source.symlink_to("/dev/zero")  # reading it would never end
    elif kind == "unreadable":
        source.write_text(VALID, encoding="utf-8")
        source.chmod(0)
        if os.geteuid() == 0:  # root reads it anyway: give the answer the kernel gives everyone else
            real_open = os.open

            def refuse(path: object, *args: object, **kwargs: object) -> int:
                if str(path) == str(source):
                    raise PermissionError(errno.EACCES, "Permission denied", str(path))
                return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

            monkeypatch.setattr(os, "open", refuse)
    assert main(["check", "-f", str(source)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"{source}: ") and needle in err and " — " in err, err


def test_a_file_larger_than_its_stat_size_is_read_only_up_to_the_cap(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # stat may say small while there is more (a file still being written; /proc files say 0):
    # the read itself stops one byte past the cap.
    source = tmp_path / "formulas.yaml"
    source.write_text(VALID + "#" * (2 * 1024 * 1024), encoding="utf-8")
    real_stat, real_fstat, real_read = os.stat, os.fstat, os.read

    def small(info: os.stat_result) -> os.stat_result:
        return os.stat_result((*info[:6], 100, *info[7:]))

    monkeypatch.setattr(os, "stat", lambda path, *a, **k: small(real_stat(path, *a, **k)))
    monkeypatch.setattr(os, "fstat", lambda fd: small(real_fstat(fd)))
    asked: list[int] = []
    monkeypatch.setattr(os, "read", lambda fd, n: asked.append(n) or real_read(fd, n))
    with pytest.raises(SheetError, match="the file is more than 1,048,576 bytes"):
        read_source(source)
    assert 0 < sum(asked) <= 1024 * 1024 + 1


@pytest.mark.parametrize(("source", "want", "got", "hint"), [
    ("softmax(x)[0]", "0.0", "np.float64(0.0)", "wrap the call: >>> float(softmax(x)[0])"),
    ("count(x)", "3", "np.int64(3)", ">>> int(count(x))"),
    ("is_ok(x)", "True", "np.True_", ">>> bool(is_ok(x))"),
    ("f(x)", "0.33...", "np.float64(0.3333333333333333)", ">>> float(f(x))"),  # ELLIPSIS, as doctests run
    ("f(x)", "0.5", "np.float64(0.0)", None),  # the number is wrong too: float() would not fix it
    ("f(x)", "0.0", "0.5", None),
    ("f(x)", "array([1.])", "array([1., 2.])", None),
])
def test_float_hint_only_when_the_value_is_right_but_a_numpy_scalar(source: str, want: str, got: str,
                                                                    hint: str | None) -> None:
    from sheetgen.errors import float_hint

    found = float_hint(source, want, got)
    assert (found is None) == (hint is None), found
    if hint is not None:
        assert found is not None and hint in found and got in found


@pytest.mark.parametrize(("error", "path", "needle"), [
    (OSError(errno.ENOSPC, "No space left on device"), "build/formulas.py", "free some disk space"),
    (OSError(errno.EROFS, "Read-only file system", "site/index.html"), None, "writable file system"),
    (PermissionError(errno.EACCES, "Permission denied", "build/x"), None, "permissions"),
])
def test_os_problem_names_the_path_the_cause_and_a_fix(error: OSError, path: str | None, needle: str) -> None:
    from sheetgen.errors import os_problem

    line = str(os_problem(error, path=path))
    shown = path or error.filename
    assert line.startswith(f"{shown}: {error.strerror} — ") and needle in line, line


def test_an_unexpected_exception_is_one_line_naming_a_bug(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import sheetgen.cli as cli

    def broken(args: object) -> int:
        """Stands for any bug in a command."""
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(cli.COMMANDS, "check", (broken, cli.COMMANDS["check"][1]))
    monkeypatch.delenv("SHEETGEN_DEBUG", raising=False)
    assert main(["check", "-f", "formulas.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error (ZeroDivisionError: division by zero)" in err and "SHEETGEN_DEBUG=1" in err
    monkeypatch.setenv("SHEETGEN_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["check", "-f", "formulas.yaml"])


def test_an_output_that_cannot_be_written_is_named_and_left_as_it_was(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from sheetgen import outputs

    target = tmp_path / "formulas.py"
    target.write_text("old\n", encoding="utf-8")

    class Full:
        def __init__(self, fd: int, mode: str) -> None:
            os.close(fd)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")  # as os.write reports it: no file name

    monkeypatch.setattr(outputs.os, "fdopen", Full)
    with pytest.raises(OSError) as caught:
        outputs.write_atomic(target, "new\n")
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["formulas.py"]  # no temporary file left


def test_a_huge_id_is_named_not_printed() -> None:
    line = problem_lines(VALID.replace("        id: note", "        id: N" + "o" * 5000))[0]
    assert len(line) < 300 and "5001 characters; the limit is" in line


@pytest.mark.parametrize("command", ["site", "build", "serve"])
def test_a_fifo_as_mkdocs_yml_is_refused_before_mkdocs_opens_it(command: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "mkdocs.yml"
    os.mkfifo(config)  # MkDocs would block opening it, waiting for a writer
    assert main([command, "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert err == f"{config}: is a named pipe (FIFO); sheetgen reads only regular files — save it to a file and " \
                  "pass that file with -c PATH\n"
