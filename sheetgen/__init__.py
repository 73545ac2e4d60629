"""sheetgen: one formulas.yaml → a tested ML cheat sheet (site, one-page PDF, NumPy module, notebooks)."""

from .errors import Problem, SheetError
from .loader import load_sheet, load_sheet_text
from .model import QA, Fact, Formula, Section, Sheet, Snippet, Steps

__all__ = [
    "QA",
    "Fact",
    "Formula",
    "Problem",
    "Section",
    "Sheet",
    "SheetError",
    "Snippet",
    "Steps",
    "load_sheet",
    "load_sheet_text",
]

