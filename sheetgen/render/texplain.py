"""Inline TeX (`$…$` in prose) as plain Unicode, for text that no math renderer will see.

Docstrings and notebook code are read as plain text: `$\\sigma(-z) = 1 - \\sigma(z)$` should read
`σ(−z) = 1 − σ(z)` there. This covers the small subset cheat-sheet prose uses (Greek letters,
operators, `\\frac`, `\\sqrt`, accents, `\\text`, sub- and superscripts); anything else keeps its
command name without the backslash. It never raises: text it cannot split is returned unchanged.
"""

from __future__ import annotations

import re
import unicodedata

from ..mathtext import split_inline_math

__all__ = ["prose_to_unicode", "tex_to_unicode"]

_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ϵ", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ", "phi": "ϕ", "varphi": "φ",
    "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ",
    "Pi": "Π", "Sigma": "Σ", "Upsilon": "Υ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
}
_SYMBOLS = {
    "cdot": "·", "times": "×", "div": "÷", "mid": "|", "sum": "Σ", "prod": "Π", "int": "∫", "infty": "∞",
    "partial": "∂", "nabla": "∇", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "ne": "≠", "neq": "≠",
    "approx": "≈", "sim": "∼", "propto": "∝", "equiv": "≡", "in": "∈", "notin": "∉", "subset": "⊂",
    "to": "→", "rightarrow": "→", "leftarrow": "←", "Rightarrow": "⇒", "mapsto": "↦", "pm": "±", "mp": "∓",
    "lVert": "‖", "rVert": "‖", "Vert": "‖", "|": "‖", "lvert": "|", "rvert": "|", "vert": "|",
    "langle": "⟨", "rangle": "⟩", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉",
    "ldots": "…", "dots": "…", "cdots": "⋯", "odot": "⊙", "otimes": "⊗", "oplus": "⊕", "circ": "∘",
    "top": "⊤", "intercal": "⊤", "forall": "∀", "exists": "∃", "emptyset": "∅", "neg": "¬", "land": "∧",
    "lor": "∨", "cup": "∪", "cap": "∩", "ell": "ℓ", "star": "⋆", "ast": "∗", "prime": "′",
    "{": "{", "}": "}", "$": "$", "%": "%", "&": "&", "#": "#", "_": "_",
    ",": " ", ";": " ", ":": " ", "!": "", " ": " ", "quad": "  ", "qquad": "  ",
    "left": "", "right": "", "big": "", "Big": "", "bigg": "", "Bigg": "", "displaystyle": "",
    "limits": "", "nolimits": "",
}
# Operator names: printed as words, separated from a following letter.
_WORDS = {"log", "ln", "exp", "sin", "cos", "tan", "tanh", "max", "min", "arg", "argmax", "argmin", "sup",
          "inf", "lim", "det", "dim", "Pr", "softmax"}
_ACCENTS = {"hat": "\u0302", "widehat": "\u0302", "bar": "\u0304", "overline": "\u0305", "tilde": "\u0303",
            "widetilde": "\u0303", "vec": "\u20d7", "dot": "\u0307", "ddot": "\u0308"}
_TEXT = {"text", "textrm", "textit", "textbf", "mathrm", "mathbf", "mathit", "mathsf", "mathtt", "mathcal",
         "mathbb", "boldsymbol", "bm", "operatorname", "mbox", "emph"}
_SUPER = dict(zip("0123456789+-=()abcdefghijklmnoprstuvwxyzABDEGHIJKLMNOPRTUVWnαβγδεθιφχ",
                  "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᴬᴮᴰᴱᴳᴴᴵᴶᴷᴸᴹᴺᴼᴾᴿᵀᵁⱽᵂⁿᵅᵝᵞᵟᵋᶿᶥᵠᵡ", strict=True))
_SUB = dict(zip("0123456789+-=()aehijklmnoprstuvxβγρφχ", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓᵦᵧᵨᵩᵪ", strict=True))
_SUPER["−"] = "⁻"
_SUPER["⊤"] = "ᵀ"
_SUB["−"] = "₋"
_TOKEN = re.compile(r"\\(?:[A-Za-z]+|.)|\s+|.", re.DOTALL)


class _Parser:
    def __init__(self, tex: str) -> None:
        self.tokens: list[str] = _TOKEN.findall(tex)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def skip_space(self) -> None:
        while (token := self.peek()) is not None and token.isspace():
            self.pos += 1

    def sequence(self, closing: str | None = None) -> str:
        """Tokens up to `closing` (consumed) or the end."""
        out: list[str] = []
        word = False  # the last piece was an operator name: a following letter needs a space
        while (token := self.peek()) is not None:
            if token == closing:
                self.pos += 1
                break
            if token == "}":  # unbalanced: TeX would refuse it; keep going
                self.pos += 1
                continue
            piece, is_word = self.atom()
            if piece[:1].isalnum() and word:
                piece = " " + piece
            if out and is_word and out[-1][-1:].isalnum():
                piece = " " + piece
            out.append(piece)
            word = is_word
            while (script := self.peek()) in ("^", "_"):
                self.pos += 1
                out.append(self.script(self.argument(), superscript=script == "^"))
                word = False
        return "".join(out)

    def argument(self) -> str:
        """One argument of a command or script: a `{group}` or a single token."""
        self.skip_space()
        token = self.peek()
        if token is None:
            return ""
        if token == "{":
            self.pos += 1
            return self.sequence("}")
        piece, _ = self.atom()
        return piece

    def atom(self) -> tuple[str, bool]:
        token = self.take()
        if token == "{":
            return self.sequence("}"), False
        if token.isspace():
            return " ", False
        if token == "-":
            return "−", False
        if token in ("~", "&"):
            return " ", False
        if not token.startswith("\\"):
            return token, False
        name = token[1:]
        if name in _GREEK:
            return _GREEK[name], False
        if name in _SYMBOLS:
            return _SYMBOLS[name], False
        if name in _WORDS:
            return name, True
        if name in _ACCENTS:
            base = self.argument()
            return (base + _ACCENTS[name] if len(base) == 1 else f"{base}{_ACCENTS[name]}"), False
        if name in _TEXT:
            return self.argument(), False
        if name in ("begin", "end"):  # environments (aligned, cases, …): a row break reads as ";"
            self.argument()
            return "", False
        if name == "\\":
            return "; ", False
        if name in ("frac", "dfrac", "tfrac"):
            top, bottom = self.argument(), self.argument()
            return f"{_wrap(top)}/{_wrap(bottom)}", False
        if name == "sqrt":
            return "√" + _wrap(self.argument()), False
        if name.isalpha():
            return name, True
        return name, False

    def script(self, text: str, superscript: bool) -> str:
        table = _SUPER if superscript else _SUB
        text = text.strip()
        if text and all(char in table for char in text):
            return "".join(table[char] for char in text)
        mark = "^" if superscript else "_"
        return f"{mark}{text}" if len(text) == 1 else f"{mark}({text})"


def _wrap(text: str) -> str:
    """Parenthesise a fraction part or square-root argument unless it is one symbol or already wrapped."""
    text = text.strip()
    if len(text) <= 1 or (re.fullmatch(r"√?\w+|\(.*\)", text) and _balanced(text[1:-1])):
        return text
    return f"({text})"


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def tex_to_unicode(tex: str) -> str:
    """One inline TeX formula as readable Unicode text (best effort, never raises)."""
    try:
        text = _Parser(tex).sequence()
    except RecursionError:  # absurdly nested braces: keep the source
        return tex
    # NFC: `\\hat y` is y + U+0302, which composes to one character (ŷ) where Unicode has it.
    return unicodedata.normalize("NFC", " ".join(text.split()).replace(" ;", ";")) if text.strip() else text


def prose_to_unicode(text: str) -> str:
    """Prose with its `$…$` math turned into Unicode and `\\$` into `$`; unchanged if the dollars don't pair."""
    try:
        pieces = split_inline_math(text)
    except ValueError:
        return text
    return "".join(tex_to_unicode(chunk) if is_math else chunk for is_math, chunk in pieces)
