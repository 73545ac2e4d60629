"""The typed, frozen model of a cheat sheet: what every renderer receives.

The YAML schema *is* this module: `sheetgen schema` exports it as JSON Schema, so editors can
complete and check keys while someone edits formulas.yaml by hand.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

ID_PATTERN = r"^[a-z][a-z0-9_]*$"

Id = Annotated[
    str,
    Field(
        pattern=ID_PATTERN,
        max_length=40,
        description="Stable identifier: lowercase letters, digits, underscores; starts with a letter.",
    ),
]
ShortText = Annotated[str, Field(min_length=1, max_length=120)]
Prose = Annotated[
    str,
    Field(
        min_length=1,
        max_length=400,
        description="Plain text; inline math goes between single dollars, e.g. $\\sqrt{d_k}$.",
    ),
]
Latex = Annotated[
    str,
    Field(
        min_length=1,
        max_length=600,
        description="LaTeX rendered by KaTeX. Write it in single quotes or a block scalar, never double quotes.",
    ),
]
Code = Annotated[str, Field(min_length=1, max_length=6000)]
Edition = Literal["core", "full"]
"""The PDFs: `core` is the one-page sheet, `full` every printed entry on at most two pages."""
EDITIONS: tuple[Edition, ...] = ("core", "full")
Tags = Annotated[
    tuple[Annotated[str, Field(pattern=ID_PATTERN, max_length=40)], ...],
    Field(description="Free-form labels; `sheetgen pdf --tags` keeps entries with any of them."),
]


class Strict(BaseModel):
    """Base: frozen, unknown keys are errors, no silent type coercion."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)


class PrintSettings(Strict):
    """How the one-page PDF is laid out. The CLI can override `paper`."""

    paper: Literal["a4", "letter"] = Field("a4", description="Paper size.")
    orientation: Literal["landscape", "portrait"] = Field("landscape", description="Page orientation.")
    columns: int = Field(4, ge=1, le=8, description="Number of text columns.")
    margin_mm: float = Field(6.0, ge=0, le=40, description="Page margin on every side, in millimetres.")
    font_min_pt: float = Field(
        6.5, ge=5, le=20, description="Smallest body font size the fitter may use, in points."
    )
    font_max_pt: float = Field(
        9.0, ge=5, le=24, description="Largest body font size the fitter may use, in points."
    )
    subset_font_max_pt: float = Field(
        16.0, ge=5, le=36,
        description="Largest body size for a `--tags` subset sheet, which may also use fewer columns to fill its page.",
    )
    color: Literal["color", "mono"] = Field(
        "color", description="`mono` prints in black and greys only."
    )

    @model_validator(mode="after")
    def _font_range(self) -> PrintSettings:
        if self.font_min_pt > self.font_max_pt:
            raise ValueError(f"font_min_pt ({self.font_min_pt:g}) is larger than font_max_pt ({self.font_max_pt:g}); "
                             "the smallest size must not exceed the largest")
        return self


class SheetInfo(Strict):
    """Sheet-wide settings."""

    title: ShortText = Field(description="Title printed on the sheet and the site.")
    subtitle: str = Field("", max_length=200, description="One line under the title.")
    author: str = Field("", max_length=120, description="PDF author metadata.")
    url: str = Field(
        "", max_length=200, pattern=r"^(https?://\S+)?$",
        description="Where the site is hosted: printed in the PDF's footer with a QR code; the site's `site_url`.",
    )
    repo_url: str = Field(
        "", max_length=200, pattern=r"^(https?://\S+)?$",
        description="The source repository (for the site's repository and 'edit this entry' links).",
    )
    print_settings: PrintSettings = Field(
        default_factory=PrintSettings, alias="print", description="PDF layout settings."
    )


class EntryBase(Strict):
    id: Id
    tags: Tags = ()
    print_edition: Literal["core", "full", True, False] = Field(
        "core", alias="print",
        description="Which PDF prints the entry: `core` (default) the one-page sheet and the full sheet, "
        "`full` only the full (two-page) sheet, `false` neither (site only). `true` is read as `core`.",
    )

    @property
    def print_on_sheet(self) -> bool:
        """Printed in some edition (`print` is not false)."""
        return self.print_edition is not False

    def in_edition(self, edition: Edition) -> bool:
        """Whether the `edition` PDF prints this entry: the full sheet holds the core one."""
        if self.print_edition is False:
            return False
        return edition == "full" or self.print_edition in ("core", True)


class PrintedCheck(Strict):
    """How the printed `latex` is evaluated and compared with the implementation (README: Printed-formula check).

    Every formula is checked by default; this block only names what the automatic rules cannot.
    """

    symbols: dict[Annotated[str, Field(min_length=1, max_length=200)],
                  Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=dict,
        description="TeX symbol as written in latex → argument name, returned name, `result`, or a small "
                    "expression over them (numbers, operators, indexing, np.<function>, lambda), e.g. "
                    "{'\\nabla_\\theta L': grad, d: d_model}.",
    )
    returns: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=40)], ...] = Field(
        (), description="Names of the parts of a returned tuple, in order, e.g. [theta, m, v]."
    )
    calls: str | None = Field(
        None, min_length=1, max_length=300,
        description="Which doctest calls the printed form describes: an expression over the arguments, "
                    "e.g. 'x.ndim == 1 and mask is None'.",
    )
    unchecked: dict[Annotated[str, Field(min_length=1, max_length=300)], Prose] = Field(
        default_factory=dict,
        description="Printed sides or statements that are not evaluated (exact LaTeX) → the reason.",
    )
    skip: str | None = Field(
        None, min_length=10, max_length=400,
        description="Opt out of the printed-formula check; the written reason is printed by `sheetgen check`.",
    )


class Figure(Strict):
    """A plot drawn at build time by the tested functions (README: Figures)."""

    code: Annotated[str, Field(min_length=1, max_length=3000)] = Field(
        description="A few lines of Python that draw on the current matplotlib figure. In scope: every "
                    "function of the generated module, np and plt. Runs in the doctests' sandbox.",
    )
    caption: str = Field(
        min_length=1, max_length=200, pattern=r"^[^$]*$",
        description="One line under the figure, also its alt text: plain text (no $math$).",
    )


class SeedError(Strict):
    """What the seed cheat sheet printed wrong for this formula: shown on the site's errata page, and
    guarded by tests in tests/test_seed_errata.py that fail on the wrong form."""

    problem: Prose = Field(description="What was wrong, as prose (inline `$math$` allowed).")
    printed: Latex | None = Field(None, description="The seed's formula as it was printed (TeX), if that was wrong.")
    code: Code | None = Field(None, description="The seed's code, when that is where the error was.")
    tests: tuple[Annotated[str, Field(pattern=r"^test_[a-z0-9_]+$", max_length=80)], ...] = Field(
        min_length=1, description="Names of the tests in tests/test_seed_errata.py that fail on the seed's form."
    )

    @model_validator(mode="after")
    def _something_wrong(self) -> SeedError:
        if self.printed is None and self.code is None:
            raise ValueError("give the seed's wrong form: `printed:` (TeX) or `code:`")
        return self


class Formula(EntryBase):
    """A formula with its LaTeX, meaning, source and a tested NumPy implementation."""

    kind: Literal["formula"]
    name: ShortText = Field(description="Display name, e.g. 'Cosine similarity'.")
    latex: Latex
    plain: str = Field(
        "", max_length=600, description="Plain-text (Unicode) form for the module docstring."
    )
    meaning: Prose = Field(description="One line: what the formula says.")
    source: ShortText = Field(description="Paper or book, and section, that states it.")
    conventions: tuple[Prose, ...] = Field(
        (), description="How frameworks differ (PyTorch, TensorFlow, scikit-learn...)."
    )
    implementation: Code = Field(
        description="A Python function named like the id, NumPy only (np is imported)."
    )
    examples: Code = Field(description="Doctest examples (>>> lines with expected output).")
    check: PrintedCheck | None = Field(
        None, description="Optional: how the printed latex is checked against the implementation."
    )
    figure: Figure | None = Field(None, description="Optional: a plot drawn by the module's functions.")
    seed_error: SeedError | None = Field(
        None, description="Optional: what the seed sheet printed wrong here (the site's errata page)."
    )


class Fact(EntryBase):
    """A short statement, e.g. 'Dropout: zero p% of activations during training'."""

    kind: Literal["fact"]
    name: ShortText
    text: Prose
    latex: Latex | None = Field(None, description="Optional display formula.")
    figure: Figure | None = Field(None, description="Optional: a plot drawn by the module's functions.")


class QA(EntryBase):
    """A rapid-fire question with answer bullets."""

    kind: Literal["qa"]
    question: ShortText
    answer: tuple[Prose, ...] = Field(min_length=1)


class Step(Strict):
    title: ShortText
    minutes: int = Field(ge=1, le=120)
    points: tuple[Prose, ...] = Field(min_length=1)


class Steps(EntryBase):
    """A timed procedure, e.g. the ML system-design interview framework."""

    kind: Literal["steps"]
    name: ShortText
    steps: tuple[Step, ...] = Field(min_length=1)


class Snippet(EntryBase):
    """Code on the sheet that is a formula's tested implementation, printed verbatim."""

    kind: Literal["snippet"]
    name: ShortText
    function: Id = Field(description="Id of the formula whose implementation is shown.")


Entry = Annotated[Formula | Fact | QA | Steps | Snippet, Field(discriminator="kind")]
ENTRY_KINDS: Mapping[str, type[EntryBase]] = {
    "formula": Formula,
    "fact": Fact,
    "qa": QA,
    "steps": Steps,
    "snippet": Snippet,
}


class Section(Strict):
    id: Id
    title: ShortText
    entries: tuple[Entry, ...] = Field(min_length=1)


class Sheet(Strict):
    """The whole cheat sheet. Built only by `sheetgen.loader.load_sheet`."""

    sheet: SheetInfo
    sections: tuple[Section, ...] = Field(min_length=1)

    # Where each entry and field came from (e.g. "softmax.latex" -> (line, col)), for messages
    # that send the user back to the right YAML line. Not part of the YAML schema.
    _source_path: str = PrivateAttr(default="formulas.yaml")
    _locations: Mapping[str, tuple[int, int]] = PrivateAttr(default_factory=dict)

    @property
    def source_path(self) -> str:
        return self._source_path

    def entries(self) -> Iterator[EntryBase]:
        for section in self.sections:
            yield from section.entries

    def formulas(self) -> list[Formula]:
        return [e for e in self.entries() if isinstance(e, Formula)]

    def formula(self, formula_id: str) -> Formula:
        for formula in self.formulas():
            if formula.id == formula_id:
                return formula
        raise KeyError(formula_id)

    def line_of(self, entry_id: str, field: str | None = None) -> int:
        """1-based YAML line of an entry, or of one of its fields (falls back to the entry)."""
        key = f"{entry_id}.{field}" if field else entry_id
        line, _ = self._locations.get(key) or self._locations.get(entry_id) or (0, 0)
        return line

    def where(self, entry_id: str, field: str | None = None) -> str:
        """`formulas.yaml:LINE [id]`: the prefix of every message about an entry."""
        return f"{self._source_path}:{self.line_of(entry_id, field)} [{entry_id}]"
