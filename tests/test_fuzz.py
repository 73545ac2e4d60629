"""Fuzzing the loader: any document gives a Sheet or the project's own located error, nothing else.

`make test` runs 500 examples; `make fuzz` runs 10,000 (SHEETGEN_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sheetgen.errors import SheetError
from sheetgen.loader import load_sheet_text
from tests.conftest import ROOT
from tests.test_loader import VALID

EXAMPLES = int(os.environ.get("SHEETGEN_FUZZ_EXAMPLES", "500"))
LOCATED = re.compile(r"^fuzz\.yaml:\d+(:\d+)?( \[[^\]]+\])? .+ — .+$")


def _excerpt(text: str) -> str:
    """The shipped sheet cut to the smallest section holding each kind of entry.

    The whole file is 3,000+ lines and composing it takes 0.25 s or more, so fuzzing it whole spent a
    minute in ruamel; the excerpt has the same constructs at a fraction of the size. Snippets are pointed
    at a formula the excerpt keeps, so that the excerpt itself is a valid sheet (asserted below).
    """
    starts = [m.start() for m in re.finditer(r"^  - id: ", text, re.MULTILINE)]
    sections = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    keep: set[int] = set()
    for kind in ("formula", "fact", "qa", "steps", "snippet"):
        holding = [i for i, section in enumerate(sections) if f"\n      - kind: {kind}\n" in section]
        if holding:
            keep.add(min(holding, key=lambda i: len(sections[i])))
    body = "".join(sections[i] for i in sorted(keep))
    formula = re.search(r"^      - kind: formula\n        id: (\w+)$", body, re.MULTILINE)
    assert formula, "no formula in the excerpt: choose it differently"
    body = re.sub(r"^(        function: )\w+$", rf"\g<1>{formula[1]}", body, flags=re.MULTILINE)
    return text[: starts[0]] + body


SHIPPED = _excerpt((ROOT / "formulas.yaml").read_text(encoding="utf-8"))
# Pieces that YAML and our checks treat specially, so mutations hit interesting paths often.
TOKENS = ["\t", ": ", "- ", "&a ", "*a", "!!python/object:os.system ", "<<: ", '"\\f"', "'", '"', "[", "{",
          "}", "]", "no", "~", "null", "1e999", "0x1F", "\u202e", "\x00", "\n", "  ", "#", "|", ">", "%", "@",
          "kind: fact", "id: x", "javascript:", "$\\frac{", "def ", ">>> ",
          # issue 9: tagged scalars that are not what the tag says, numbers YAML only thinks are numbers,
          # nesting deep enough to overflow a recursive composer, and < that is or is not a tag
          "!!int abc", "!!float x", "!!bool maybe", "0x_", "9" * 5000, "[" * 3000, "- " * 50, "a < b", "<b>"]


def _check(text: str) -> None:
    try:
        sheet = load_sheet_text(text, "fuzz.yaml")
    except SheetError as err:
        assert err.problems, "SheetError without problems"
        for line in str(err).splitlines():
            assert LOCATED.match(line), line
        assert all(problem.line >= 0 for problem in err.problems)
    else:
        assert sheet.sections


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from([VALID, SHIPPED]))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace_line", "duplicate_line"]))
        if action == "insert":
            piece = draw(st.one_of(st.sampled_from(TOKENS), st.text(max_size=5)))
            text = text[:position] + piece + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 20)):]
        else:
            lines = text.splitlines(keepends=True) or [""]
            index = draw(st.integers(0, len(lines) - 1))
            if action == "duplicate_line":
                lines.insert(index, lines[index])
            else:
                lines[index] = draw(st.sampled_from(TOKENS)) + "\n"
            text = "".join(lines)
    return text


yaml_scalars = st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.none(), st.floats())
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def test_the_excerpt_is_a_valid_sheet_with_every_kind() -> None:
    sheet = load_sheet_text(SHIPPED, "excerpt.yaml")
    assert {type(entry).__name__ for entry in sheet.entries()} >= {"Formula", "Fact", "Steps", "QA", "Snippet"}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_documents_give_a_sheet_or_a_located_error(text: str) -> None:
    _check(text)


@settings(max_examples=max(EXAMPLES // 5, 50), deadline=None)
@given(yaml_values)
def test_arbitrary_yaml_values_give_a_sheet_or_a_located_error(value: object) -> None:
    import json

    # JSON is YAML: this feeds well-formed documents of any shape to the validator.
    _check(json.dumps(value))
