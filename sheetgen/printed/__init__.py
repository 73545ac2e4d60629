"""The printed-formula check (issue 8): each formula's LaTeX, evaluated with NumPy, against its code."""

from __future__ import annotations

from .check import MIN_SAMPLES, PrintedReport, check_formula, check_printed

__all__ = ["MIN_SAMPLES", "PrintedReport", "check_formula", "check_printed"]
