"""Load formulas.yaml into a validated `Sheet`, or raise `SheetError` with YAML line numbers.

We compose the YAML into nodes ourselves (ruamel, safe composer) and build plain values from
them, so that every value keeps its line, and so that nothing YAML could do on its own —
python tags, aliases, merge keys, duplicate keys, YAML 1.1 booleans — reaches the model.
"""

from __future__ import annotations

import ast
import difflib
import doctest
import errno
import keyword
import math
import os
import re
import stat
import unicodedata
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError, YAMLWarning
from ruamel.yaml.events import MappingEndEvent, MappingStartEvent, SequenceEndEvent, SequenceStartEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import Problem, SheetError, os_problem
from .model import ENTRY_KINDS, ID_PATTERN, Formula, Sheet, Snippet
from .model import Strict as StrictModel

MAX_FILE_BYTES = 1024 * 1024
_TAG = "tag:yaml.org,2002:"
_YAML11_BOOLEANS = {"yes", "no", "on", "off", "y", "n"}
_CONTROL_ESCAPES = {
    "\f": ("a form feed", "\\f", "\\frac"),
    "\b": ("a backspace", "\\b", "\\beta"),
    "\t": ("a tab", "\\t", "\\theta"),
    "\r": ("a carriage return", "\\r", "\\right"),
    "\a": ("a bell", "\\a", "\\alpha"),
    "\v": ("a vertical tab", "\\v", "\\vec"),
    "\x00": ("a NUL", "\\0", ""),
}
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_LINK = re.compile(r"(?i)\b(?:file:|javascript:|vbscript:|data:[a-z]+/|https?://)")
_RAW_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# What an HTML parser reads as markup: `<` directly followed by a letter, `/letter`, `!` or `?`.
# `a < b`, `n<2`, `<=` and `<-` are text to it, and stay allowed.
_HTML_TAG = re.compile(r"<(?:/?[a-zA-Z]|[!?])")
# TeX that links, embeds or defines macros: KaTeX refuses it too, but only when math is typeset;
# refusing it here makes `check` and every build fail at once, with the line and a fix.
_TEX_REFUSED = re.compile(r"\\(?P<command>href|url|includegraphics|html(?:Class|Id|Style|Data)|"
                          r"def|gdef|edef|xdef|let|futurelet|global|(?:re)?newcommand|providecommand)(?![a-zA-Z])")
_TEX_LINKS = {"href": "makes a link", "url": "makes a link", "includegraphics": "loads an image"}
# Fields holding code, where a backslash is Python's, not TeX's.
_CODE_FIELDS = {"implementation", "examples", "code"}  # `code`: a figure's
_URL_FIELDS = {"url", "repo_url"}  # sheet: block only (entries forbid unknown keys); the model allows http(s) only
# Fields that are prose: shown as text on the site and the sheet, so no markup in them.
_PROSE_FIELDS = {"title", "subtitle", "author", "name", "meaning", "source", "conventions", "text",
                 "question", "answer", "points", "caption"}
# Ids become file names on the site and function names in the module.
RESERVED_IDS = (
    {"con", "prn", "aux", "nul", "index", "errata", "notebooks", "assets", "downloads", "np", "search"}
    | {f"com{i}" for i in range(10)}
    | {f"lpt{i}" for i in range(10)}
    | set(keyword.kwlist)
    | set(keyword.softkwlist)
)

Path_ = tuple[str | int, ...]
MAX_NUMBER_CHARS = 100
"""No setting needs more; Python itself refuses to parse integers over 4,300 digits."""
MAX_DEPTH = 40
"""Lists and mappings nested deeper than this are refused; a sheet nests about 10 deep (sections → entries
→ steps → points), and YAML's composer recurses per level (3,000 levels overflow Python's stack)."""
_TOO_DEEP = f"lists and mappings are nested more than {MAX_DEPTH} levels deep here"
_TOO_DEEP_FIX = "a sheet nests lists and mappings only a few levels deep: check the brackets and indentation"
_NUMERIC_START = re.compile(r"^[-+]?(?:\d|\.\d|\.inf|\.nan)", re.IGNORECASE)


def _looks_numeric(text: str) -> bool:
    """Text YAML's own resolver would tag as a number (it starts like one)."""
    return bool(_NUMERIC_START.match(text))


class _Builder:
    """Turns composed YAML nodes into plain values (dicts, tuples, scalars), keeping locations."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.nodes: dict[Path_, Node] = {}
        self.key_nodes: dict[Path_, Node] = {}
        self.problems: list[tuple[Path_, Problem]] = []
        self.about_values: set[int] = set()
        """Indexes in `problems` of those about a value's content (text, numbers): under an unknown
        key, the key is reported instead. Tags, anchors and nesting are reported wherever they are."""
        self._seen: set[int] = set()
        self._at: Path_ = ()
        self.anchors = 0

    def fail(self, node: Node, problem: str, fix: str, field: str | None = None) -> None:
        mark = node.start_mark
        self.problems.append((self._at, Problem(self.path, mark.line + 1, problem, fix, mark.column + 1,
                                                None, field)))

    def refuse(self, node: Node, problem: str, fix: str, field: str | None = None) -> None:
        self.about_values.add(len(self.problems))
        self.fail(node, problem, fix, field)

    def forbid_tag(self, node: Node, tag: str, field: str | None) -> None:
        shown = "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag
        self.fail(node, f"the tag {shown!r} is not allowed (tags are never executed)",
                  "remove the tag and write plain text", field)

    def build(self, node: Node, at: Path_ = ()) -> Any:
        self.nodes[at] = node
        self._at = at
        field = next((str(p) for p in reversed(at) if isinstance(p, str)), None)
        if len(at) >= MAX_DEPTH:
            self.fail(node, _TOO_DEEP, _TOO_DEEP_FIX, field)
            return None
        if id(node) in self._seen or node.anchor:
            # One message for all of them: an alias bomb has hundreds, and the fix is the same.
            self.anchors += 1
            if self.anchors == 1:
                self.fail(node, "anchors and aliases (&name, *name) are not supported",
                          "write the value out in full", field)
            return None
        self._seen.add(id(node))
        tag = node.tag if isinstance(node.tag, str) else str(node.tag)
        if isinstance(node, MappingNode):
            return self._mapping(node, at, tag, field)
        if isinstance(node, SequenceNode):
            if tag != _TAG + "seq":
                self.forbid_tag(node, tag, field)
            return tuple(self.build(item, (*at, i)) for i, item in enumerate(node.value))
        assert isinstance(node, ScalarNode)
        return self._scalar(node, tag, field)

    def _mapping(self, node: MappingNode, at: Path_, tag: str, field: str | None) -> dict[str, Any]:
        if tag != _TAG + "map":
            self.forbid_tag(node, tag, field)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            self._at = at
            if not isinstance(key_node, ScalarNode) or key_node.tag == _TAG + "merge":
                self.fail(key_node, "only plain text keys are allowed (no merge keys or complex keys)",
                          "write each key as a plain word", field)
                continue
            key = str(key_node.value)
            if key in result:
                first = self.key_nodes[(*at, key)].start_mark.line + 1
                self.fail(key_node, f"duplicate key {key!r} (first at line {first})",
                          "remove one of them; YAML would silently keep only the last", key)
                continue
            self.key_nodes[(*at, key)] = key_node
            result[key] = self.build(value_node, (*at, key))
        return result

    def _scalar(self, node: ScalarNode, tag: str, field: str | None) -> Any:
        text: str = node.value
        kind = tag.removeprefix(_TAG)
        if kind in ("str", "timestamp"):
            if node.style is None and text.lower() in _YAML11_BOOLEANS:
                self.refuse(node, f"{text!r} is read as a boolean by YAML 1.1 tools and as text by others",
                            f"quote it: '{text}'", field)
            self._check_text(node, text, field)
            return text
        if kind == "null":
            return None
        if kind == "bool":
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
            # Only `!!bool` reaches here with other text: YAML 1.2 has no "maybe", and no "yes"/"on".
            self.refuse(node, f"{text!r} is not a boolean (it is tagged !!bool)",
                        "write true or false, without the tag", field)
            return None
        if kind == "int":
            return self._number(node, text, field, whole=True)
        if kind == "float":
            return self._number(node, text, field, whole=False)
        self.forbid_tag(node, tag, field)
        return None

    def _number(self, node: ScalarNode, text: str, field: str | None, whole: bool) -> int | float | None:
        """A YAML int or float. YAML's resolver also tags text like `0x_` as int: that is refused here."""
        digits = text.replace("_", "")
        if len(digits) > MAX_NUMBER_CHARS:
            # Python refuses to parse ints over 4,300 digits, and no setting of the sheet needs one.
            self.refuse(node, f"a number of {len(digits):,} characters is far too long",
                        "write a number of the size this setting needs (see the README for its range)", field)
            return None
        try:
            if whole:
                try:
                    return int(digits, 0)
                except ValueError:
                    return int(digits)  # 012: YAML 1.2 reads decimal 12, Python's base 0 refuses it
            number = float(digits.lower().replace(".inf", "inf").replace(".nan", "nan"))
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
            # No setting takes infinity or NaN (for NaN, pydantic would say "should be <= 40", misleadingly).
            self.refuse(node, f"{text!r} is not a finite number", "write a number such as 6 or 0.5", field)
            return None
        what = "a whole number" if whole else "a number"
        if _looks_numeric(text):  # YAML's resolver took it for a number (`0x_`, `1e`): a typo, or text
            problem = f"{text!r} looks like {what} to YAML but is not one"
            fix = "write a number (e.g. 5 or 0.5), or quote it if it is text"
        else:  # only an explicit tag makes other text a number: `!!int abc`
            problem = f"{text!r} is not {what} (it is tagged !!{'int' if whole else 'float'})"
            fix = "remove the tag and write a number, or quoted text"
        self.refuse(node, problem, fix, field)
        return None

    def _check_text(self, node: ScalarNode, text: str, field: str | None) -> None:
        for char in text:
            if char in _BIDI:
                self.refuse(node, f"contains the invisible bidi control U+{ord(char):04X}, "
                            "which can make text display differently from what it is",
                            "delete it (retype the line if you cannot see it)", field)
                return
            if char == "\n":
                continue
            if char in _CONTROL_ESCAPES:
                what, escape, example = _CONTROL_ESCAPES[char]
                hint = f" ({example} becomes {what} + '{example[2:]}')" if example else ""
                self.refuse(node, f"contains {what}: a double-quoted {escape!r} was read as an escape{hint}",
                            "write LaTeX and code in single quotes or a block scalar (|), never double quotes",
                            field)
                return
            if unicodedata.category(char) == "Cc":
                self.refuse(node, f"contains the control character U+{ord(char):04X}", "delete it", field)
                return
        tex = _TEX_REFUSED.search(text) if field not in _CODE_FIELDS else None
        if tex:
            command = tex["command"]
            if command in _TEX_LINKS or command.startswith("html"):
                what = _TEX_LINKS.get(command, "adds raw HTML")
                instead = ("name the source as text in `source:`" if what == "makes a link"
                           else "the sheet prints math only")
                self.refuse(node, f"uses \\{command}, which {what}; the sheet never links, loads or embeds anything",
                            f"remove \\{command}{{…}}; {instead}", field)
            else:
                self.refuse(node, f"defines a macro with \\{command}; macros are not supported",
                            "write the math out in full (\\operatorname{name} names an operator)", field)
            return
        link = _LINK.search(text) if field not in _URL_FIELDS else None
        if link:
            fix = ("cite the source as text (authors, title, year, section)" if field == "source"
                   else "remove it; name sources as text in `source:` (authors, title, year, section)")
            self.refuse(node, f"contains a link ({link.group(0)!r}); the sheet never fetches or links anything",
                        fix, field)
        elif field in _PROSE_FIELDS and (tag := _HTML_TAG.search(text)):
            shown = text[tag.start(): tag.start() + 12].split()[0] if text[tag.start():].split() else "<"
            self.refuse(node, f"contains HTML markup ({shown!r}); prose is shown as plain text",
                        "remove the tag; a less-than sign needs a space after it (a < b)", field)


def _compose(text: str, path: str) -> Node:
    yaml = YAML(typ="safe", pure=True)
    # ruamel's scanner is quadratic in bracket depth (3,000 `[` take 12 s) and its composer recursive:
    # where brackets alone could nest too deep, find the place with the parser first, which stops there.
    if _bracket_depth(text) > MAX_DEPTH and (deep := _too_deep(text, path)) is not None:
        raise SheetError([deep])
    try:
        with warnings.catch_warnings():
            # e.g. ReusedAnchorWarning: anchors are refused, with their line, when nodes are built.
            warnings.simplefilter("ignore", YAMLWarning)
            node = yaml.compose(text)
    except MarkedYAMLError as err:
        raise SheetError([_syntax_problem(err, text, path)]) from None
    except RecursionError:  # block-style nesting (indentation) deep enough for Python's stack
        raise SheetError([_too_deep(text, path) or Problem(path, 1, _TOO_DEEP, _TOO_DEEP_FIX)]) from None
    except YAMLError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SheetError.single(path, 1, f"YAML error: {first_line}", "fix the YAML syntax") from None
    if node is None:
        raise SheetError.single(path, 1, "the file is empty",
                                "start from the example entry in the README (sheet: … sections: …)")
    composed: Node = node
    return composed


def _bracket_depth(text: str) -> int:
    """How deep `[` and `{` nest in `text`, quotes and comments ignored: an upper bound, cheaply."""
    depth = deepest = 0
    for char in re.sub(r"[^\[\]{}]+", "", text):
        depth = depth + 1 if char in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def _too_deep(text: str, path: str) -> Problem | None:
    """Where nesting first goes past MAX_DEPTH (None if it does not): YAML's parser is not recursive,
    and stops reading there."""
    depth = 0
    try:
        for event in YAML(typ="safe", pure=True).parse(text):
            if isinstance(event, (SequenceStartEvent, MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    line, column = event.start_mark.line + 1, event.start_mark.column + 1
                    return Problem(path, line, _TOO_DEEP, _TOO_DEEP_FIX, column, _enclosing_id(text, line))
            elif isinstance(event, (SequenceEndEvent, MappingEndEvent)):
                depth -= 1
    except YAMLError:
        pass  # a syntax error before any deep nesting: composing reports it, with its line
    return None


def _syntax_problem(err: MarkedYAMLError, text: str, path: str) -> Problem:
    """Where the mistake most likely is: an unclosed bracket or quote is reported where it opens."""
    problem_mark, context_mark = err.problem_mark, err.context_mark
    problem = (err.problem or err.context or "invalid YAML").strip()
    context = err.context or ""
    fix = "check indentation and quoting on this line or the one above"
    mark = problem_mark or context_mark
    if "unknown escape" in problem:
        fix = "write LaTeX and code in single quotes or a block scalar (|), never double quotes"
    opened = context_mark is not None and problem_mark is not None and context_mark.line != problem_mark.line
    if opened and context.startswith("while parsing a flow"):
        assert context_mark is not None and problem_mark is not None
        bracket = "[" if "sequence" in context else "{"
        problem = f"the {bracket} opened here is never closed (at line {problem_mark.line + 1}: {problem})"
        fix = f"close it with {']' if bracket == '[' else '}'}, or quote the whole value if the {bracket} is text"
        mark = context_mark
    elif opened and "quoted scalar" in context:
        assert context_mark is not None and problem_mark is not None
        problem = (f"the quoted text that starts here runs on to line {problem_mark.line + 1}, "
                   f"where YAML stops: {problem}")
        fix = ("close the quote on this line (a ' inside single quotes is written '')" if "single" in context
               else "close the quote on this line; LaTeX and code go in single quotes (in double quotes a "
                    "backslash starts an escape)")
        mark = context_mark
    elif problem_mark is not None and "found '<scalar>'" in problem:
        fix = "check the quotes on this line (a ' inside single quotes is written '') and the indentation"
        # `key: 'text` without its closing quote swallows the lines below up to the next quote,
        # and YAML only stops there: point at the line that opened the quote.
        opener = _unclosed_quote_above(text, problem_mark.line + 1)
        if opener is not None:
            line, column = opener
            problem = (f"the quote opened here is not closed on this line, so YAML read on to line "
                       f"{problem_mark.line + 1} ({problem})")
            fix = "close the quote (a ' inside single quotes is written '')"
            return Problem(path, line, f"YAML syntax error: {problem}", fix, column, _enclosing_id(text, line))
    line = mark.line + 1 if mark else 1
    return Problem(path, line, f"YAML syntax error: {problem}", fix, (mark.column + 1) if mark else None,
                   _enclosing_id(text, line))


_QUOTED_VALUE = re.compile(r"^\s*(?:- +)?(?:[\w-]+: +)?(?P<quote>['\"])(?P<rest>.*)$")


def _unclosed_quote_above(text: str, line: int, window: int = 50) -> tuple[int, int] | None:
    """(line, column) of the nearest line above `line` whose value opens a quote it does not close."""
    lines = text.split("\n")
    for number in range(line - 1, max(line - 1 - window, 0), -1):
        match = _QUOTED_VALUE.match(lines[number - 1])
        if match is None:
            continue
        rest = match["rest"].rstrip()
        # '' is a quote inside single quotes; \" is one inside double quotes
        unescaped = rest.replace("''", "") if match["quote"] == "'" else re.sub(r"\\.", "", rest)
        if match["quote"] not in unescaped:
            return number, match.start("quote") + 1
    return None


_ITEM_START = re.compile(r"^(?P<indent> *)(?P<dash>- +)(?:id: *(?P<id>[^\s#]+))?")
_ID_LINE = re.compile(r"^(?P<indent> *)id: *(?P<id>[^\s#]+)")


def _enclosing_id(text: str, line: int) -> str | None:
    """For text YAML cannot parse: the id of the innermost list item (entry or section) around `line`.

    A guess from indentation alone, good enough to name the entry in an error message.
    """
    lines = text.split("\n")
    items: list[tuple[int, int, str | None]] = []  # (indent of the "-", indent of its keys, id)
    for row in lines[: max(line - 1, 0)]:
        stripped = row.lstrip(" ")
        if not stripped or stripped.startswith("#") or stripped.startswith("\t"):
            continue
        indent = len(row) - len(stripped)
        while items and items[-1][0] >= indent:
            items.pop()
        item = _ITEM_START.match(row)
        if item:
            items.append((indent, indent + len(item["dash"]), item["id"]))
            continue
        key = _ID_LINE.match(row)
        if key and items and items[-1][1] == len(key["indent"]) and items[-1][2] is None:
            items[-1] = (items[-1][0], items[-1][1], key["id"])
    if items and items[-1][2] is None:  # the entry's `id:` comes after the bad line
        dash, keys, _ = items[-1]
        for row in lines[line - 1:]:
            stripped = row.lstrip(" ")
            if stripped and not stripped.startswith("#") and len(row) - len(stripped) <= dash:
                break
            key = _ID_LINE.match(row)
            if key and len(key["indent"]) == keys:
                items[-1] = (dash, keys, key["id"])
                break
    return next((ident for _, _, ident in reversed(items) if ident), None)


def _check_characters(text: str, path: str) -> None:
    """Tabs in indentation and raw control characters, found before YAML gives vaguer errors."""
    control = _RAW_CONTROL.search(text)
    if control:
        before = text[: control.start()]
        where = before.count("\n") + 1
        raise SheetError.single(path, where,
                                f"the file contains the control character U+{ord(control.group()):04X}",
                                "delete it (it is invisible in most editors)",
                                column=control.start() - before.rfind("\n"), entry_id=_enclosing_id(text, where))
    for number, line in enumerate(text.split("\n"), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            raise SheetError.single(path, number, "tab character in indentation; YAML indents with spaces only",
                                    "replace the tab with spaces", column=indent.index("\t") + 1,
                                    entry_id=_enclosing_id(text, number))


def parse_yaml(text: str, path: str = "formulas.yaml") -> tuple[dict[str, Any], _Builder]:
    """Safe-compose `text` into plain values plus the node of every value."""
    _check_characters(text, path)
    node = _compose(text, path)
    if not isinstance(node, MappingNode):
        raise SheetError.single(path, node.start_mark.line + 1,
                                f"the top level must be a mapping with `sheet:` and `sections:`, "
                                f"not a {type(node).__name__.removesuffix('Node').lower()}",
                                "start from the example entry in the README")
    builder = _Builder(path)
    data = builder.build(node)
    if builder.anchors > 1:
        index = next(i for i, (_, p) in enumerate(builder.problems) if p.problem.startswith("anchors and aliases"))
        at, first = builder.problems[index]
        builder.problems[index] = (at, replace(first, problem=f"{first.problem} ({builder.anchors} in this "
                                               "file; the first is here)"))
    if builder.problems:
        raise SheetError(_problems_of(builder, data))
    return data, builder


def _problems_of(builder: _Builder, data: Any) -> list[Problem]:
    """The builder's problems, except that a value under an unknown key is reported as that key:
    `extra_css: https://…` is an unknown key, whatever its value contains."""
    problems: dict[Path_, Problem] = {}
    for index, (at, problem) in enumerate(builder.problems):
        unknown = _unknown_key_along(at, data) if index in builder.about_values else None
        if unknown is None:
            problems[(*at, len(problems))] = replace(problem, entry_id=_entry_id(data, at))
        elif unknown not in problems:
            problems[unknown] = _unknown_key_problem(builder, data, unknown)
    return list(problems.values())


def _unknown_key_problem(builder: _Builder, data: Any, at: Path_) -> Problem:
    *parent, key = at
    loc: list[Any] = []
    value = data
    for part in parent:  # the pydantic-style location of the mapping, union members included
        value = value[part]
        loc.append(part)
        kind = value.get("kind") if isinstance(value, dict) and isinstance(part, int) else None
        if isinstance(kind, str) and kind in ENTRY_KINDS and not _walk_models(tuple(loc))[1]:
            loc.append(kind)
    problem, fix = _unknown_key_message(str(key), _model_at(tuple(loc)))
    node = builder.key_nodes[at]
    field = str(key)
    return Problem(builder.path, node.start_mark.line + 1, problem, fix, node.start_mark.column + 1,
                   _entry_id(data, at), field)


def _unknown_key_message(key: str, model: type[StrictModel]) -> tuple[str, str]:
    keys = _keys_of(model)
    close = difflib.get_close_matches(key, keys, 1, 0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r}", f"{hint}allowed keys: {', '.join(keys)}"


def read_source(path: Path) -> str:
    """Read formulas.yaml: a regular file of at most MAX_FILE_BYTES, in UTF-8, or a `SheetError`.

    The file is checked before it is opened (a FIFO would block the open, /dev/zero never ends),
    opened without blocking, checked again on the open descriptor (the path may have been swapped
    in between) and read up to the cap, never further.
    """
    name = str(path)
    try:
        info = os.stat(path)
    except OSError as err:
        raise SheetError([_read_problem(name, err)]) from None
    _check_regular(name, info)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise SheetError([_read_problem(name, err)]) from None
    try:
        _check_regular(name, os.fstat(fd))
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise SheetError([_read_problem(name, err)]) from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > MAX_FILE_BYTES:  # grew since stat, or a file whose size stat does not know (/proc)
        _check_size(name, len(raw), exact=False)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SheetError.single(name, line, "the file is not valid UTF-8", "save it as UTF-8") from None


def check_input_file(path: Path, option: str, example: str) -> None:
    """`SheetError` unless `path` is a regular file within the size cap (not opened: a FIFO would block).

    For inputs that other code reads (mkdocs.yml, read by MkDocs): refused here before they are opened.
    `option` and `example` name the command-line option in the fix (`-c`, `mkdocs.yml`).
    """
    try:
        info = os.stat(path)
    except OSError as err:
        raise SheetError([_read_problem(str(path), err)]) from None
    _check_regular(str(path), info, option, example)


def _read_problem(name: str, err: OSError) -> Problem:
    if err.errno in (errno.EACCES, errno.EPERM):
        return Problem(name, 0, f"cannot read the file: {err.strerror}",
                       f"make it readable (chmod u+r {name}) or pass another file with -f PATH")
    if err.errno == errno.ENOENT:
        return Problem(name, 0, "cannot read the file: it does not exist",
                       "check the path (-f PATH; the default is formulas.yaml in the current folder)")
    return replace(os_problem(err, "read the file", name), fix="check the path (-f PATH)")


def _check_regular(name: str, info: os.stat_result, option: str = "-f", example: str = "formulas.yaml") -> None:
    if stat.S_ISDIR(info.st_mode):
        raise SheetError.single(name, 0, "is a folder, not a file",
                                f"pass the file itself with {option} (e.g. {option} {example}), not its folder")
    if not stat.S_ISREG(info.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode)
                else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
        raise SheetError.single(name, 0, f"is {kind}; sheetgen reads only regular files",
                                f"save it to a file and pass that file with {option} PATH")
    _check_size(name, info.st_size)


def _check_size(name: str, size: int, exact: bool = True) -> None:
    if size > MAX_FILE_BYTES:
        amount = f"{size:,} bytes" if exact else f"more than {MAX_FILE_BYTES:,} bytes"
        raise SheetError.single(name, 1, f"the file is {amount}; the limit is {MAX_FILE_BYTES:,}",
                                "split out or remove entries; a one-page sheet never needs this much")


def load_sheet(path: Path | str = "formulas.yaml") -> Sheet:
    """Load, validate and check a sheet file. Raises `SheetError` on any problem."""
    path = Path(path)
    return load_sheet_text(read_source(path), str(path))


def load_sheet_text(text: str, path: str = "formulas.yaml") -> Sheet:
    data, builder = parse_yaml(text, path)
    try:
        sheet = Sheet.model_validate(data)
    except ValidationError as err:
        raise SheetError(_explain(err, data, builder)) from None
    locations = _locations(sheet, builder)
    sheet._source_path = path
    sheet._locations = locations
    problems = _semantic_problems(sheet, builder, locations)
    if problems:
        raise SheetError(problems)
    return sheet


# --- mapping validation errors back to YAML lines ------------------------------------------


def _entry_path(loc: tuple[Any, ...]) -> Path_ | None:
    if len(loc) >= 4 and loc[0] == "sections" and loc[2] == "entries" and isinstance(loc[3], int):
        return tuple(loc[:4])
    return None


def _entry_id(data: Any, loc: tuple[Any, ...]) -> str | None:
    entry_at = _entry_path(loc)
    if entry_at is None:
        if len(loc) >= 2 and loc[0] == "sections" and isinstance(loc[1], int):
            entry_at = tuple(loc[:2])
        else:
            return None
    value = data
    for part in entry_at:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    ident = value.get("id") if isinstance(value, dict) else None
    return ident if isinstance(ident, str) else None


def _yaml_path(loc: tuple[Any, ...], data: Any) -> Path_:
    """Drop pydantic's union-tag steps (e.g. 'formula') that do not exist in the YAML."""
    path: list[str | int] = []
    value = data
    tag_skipped = False
    for part in loc:
        after_index = bool(path) and isinstance(path[-1], int)
        if after_index and not tag_skipped and isinstance(value, dict) and value.get("kind") == part:
            tag_skipped = True  # the union tag right after an entry's index (`steps` is also a steps entry's key)
            continue
        tag_skipped = False
        in_mapping = isinstance(value, dict) and part in value
        in_list = isinstance(value, tuple) and isinstance(part, int) and part < len(value)
        if in_mapping or in_list:
            value = value[part]
        elif isinstance(value, dict) and part in ENTRY_KINDS:
            continue
        else:
            path.append(part)
            break
        path.append(part)
    return tuple(path)


def _models_in(annotation: Any) -> list[type[StrictModel]]:
    """The models a field's annotation holds (`tuple[Section, ...]`, a union of entry kinds, ...)."""
    found: list[type[StrictModel]] = []
    stack = [annotation]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and issubclass(item, StrictModel):
            found.append(item)
        else:
            stack.extend(get_args(item))
    return found


def _field_info(model: type[StrictModel], key: str) -> FieldInfo | None:
    return next((info for name, info in model.model_fields.items() if key in (name, info.alias)), None)


def _kind_of(model: type[StrictModel]) -> str | None:
    """The `kind:` value that selects `model` in a union (pydantic puts it in error locations)."""
    kind = model.model_fields.get("kind")
    values = get_args(kind.annotation) if kind is not None else ()
    return str(values[0]) if values else None


def _walk_models(loc: tuple[Any, ...]) -> tuple[type[StrictModel], bool]:
    """The model whose keys are at `loc` (a pydantic location, union tags included), and whether
    `loc` ends exactly at a model (False: it went on into a leaf value such as text)."""
    model: type[StrictModel] = Sheet
    union: list[type[StrictModel]] = []
    for part in loc:
        if isinstance(part, int):
            continue
        if union:
            chosen = next((m for m in union if _kind_of(m) == part), None)
            union = []
            if chosen is not None:
                model = chosen
                continue
        info = _field_info(model, str(part))
        models = _models_in(info.annotation) if info is not None else []
        if len(models) == 1:
            model = models[0]
        elif models:
            union = models
        else:
            return model, False
    return model, not union


def _model_at(loc: tuple[Any, ...]) -> type[StrictModel]:
    return _walk_models(loc)[0]


def _unknown_key_along(at: Path_, data: Any) -> Path_ | None:
    """The YAML path of the first unknown key on the way to `at`, if there is one."""
    loc: list[Any] = []
    value = data
    for i, part in enumerate(at):
        if isinstance(part, str):
            model, exact = _walk_models(tuple(loc))
            if not exact or not isinstance(value, dict):
                return None
            if _field_info(model, part) is None:
                return at[: i + 1]
            value = value.get(part)
            loc.append(part)
        else:
            if not isinstance(value, tuple) or part >= len(value):
                return None
            value = value[part]
            loc.append(part)
            kind = value.get("kind") if isinstance(value, dict) else None
            if isinstance(kind, str) and kind in ENTRY_KINDS and _walk_models(tuple(loc))[1] is False:
                loc.append(kind)  # as pydantic names the union member
    return None


def _keys_of(model: type[StrictModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    return f"the text {str(value)[:30]!r}"


def _ids(data: Any) -> dict[str, Path_]:
    """Every section and entry id in the plain data, with its YAML path (first occurrence wins)."""
    found: dict[str, Path_] = {}
    sections = data.get("sections") if isinstance(data, dict) else None
    for s, section in enumerate(sections if isinstance(sections, tuple) else ()):
        if not isinstance(section, dict):
            continue
        items: list[tuple[Path_, Any]] = [(("sections", s), section)]
        entries = section.get("entries")
        items += [(("sections", s, "entries", e), entry)
                  for e, entry in enumerate(entries if isinstance(entries, tuple) else ())]
        for at, item in items:
            ident = item.get("id") if isinstance(item, dict) else None
            if isinstance(ident, str):
                found.setdefault(ident, at)
    return found


def _shown(text: str) -> str:
    """`text` quoted for a message, cut at 60 characters: a 5,000-character id is named, not printed."""
    return repr(text) if len(text) <= 60 else repr(text[:57]) + "…"


def _as_id(text: str) -> str:
    """`text` made into a valid id, or "" (for a suggestion in a message)."""
    candidate = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return candidate if re.fullmatch(ID_PATTERN, candidate) else ""


def _bad_id(value: Any, field: str | None, data: Any, builder: _Builder) -> tuple[str, str]:
    """What is wrong with an id that does not match ID_PATTERN, and how to fix it."""
    text = str(value)
    if field == "tags":
        return (f"{_shown(text)} is not a valid tag: a tag is lowercase letters, digits and underscores, "
                "starting with a letter", f"write e.g. {_as_id(text) or 'optimizer'!r}")
    rule = "use lowercase letters, digits and underscores, starting with a letter (e.g. cosine_similarity)"
    lower = text.lower()
    if re.fullmatch(ID_PATTERN, lower):
        other = _ids(data).get(lower) if field == "id" else None
        node = builder.nodes.get((*other, "id")) if other is not None else None
        if node is not None:
            return (f"{_shown(text)} is not a valid id: ids are lowercase, and {_shown(lower)} is already the id "
                    f"at line {node.start_mark.line + 1} (they would clash as file names on macOS and Windows)",
                    "rename it; ids must differ in more than case")
        return f"{_shown(text)} is not a valid id: ids are lowercase", f"write {_shown(lower)}"
    if any(c in text for c in "/\\") or text.startswith("."):
        return f"{_shown(text)} is not a valid id: ids become file and function names, never paths", rule
    return f"{_shown(text)} is not a valid id", rule


def _explain(err: ValidationError, data: Any, builder: _Builder) -> list[Problem]:
    problems = []
    errors = err.errors()
    nested = {tuple(e["loc"][:i]) for e in errors for i in range(len(e["loc"]))}
    close_keys: dict[tuple[Any, ...], list[str]] = {}  # unknown key → the allowed key it is a typo of
    typo_targets: dict[str, set[tuple[Any, ...]]] = {}
    for e in errors:
        if e["type"] == "extra_forbidden":
            loc = tuple(e["loc"])
            close_keys[loc] = difflib.get_close_matches(str(loc[-1]), _keys_of(_model_at(loc[:-1])), 1, 0.6)
            for target in close_keys[loc]:
                typo_targets.setdefault(target, set()).add(loc[:-1])
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "too_short" and loc in nested:
            continue  # a container "emptied" by its failing items: the item errors say it all
        if error["type"] == "missing" and loc[:-1] in typo_targets.get(str(loc[-1]), set()):
            continue  # reported once, as "unknown key 'meening' — did you mean 'meaning'?"
        kind = error["type"]
        yaml_at = _yaml_path(loc, data)
        field = next((str(p) for p in reversed(loc) if isinstance(p, str) and p not in ENTRY_KINDS), None)
        node = builder.key_nodes.get(yaml_at) or builder.nodes.get(yaml_at)
        parent = yaml_at
        while node is None and parent:
            parent = parent[:-1]
            node = builder.nodes.get(parent)
        mark = (node or builder.nodes[()]).start_mark
        value = error.get("input")
        ctx = error.get("ctx") or {}
        if kind == "extra_forbidden":
            problem, fix = _unknown_key_message(str(loc[-1]), _model_at(loc[:-1]))
        elif kind == "missing":
            problem = "required key is missing"
            description = _model_at(loc[:-1]).model_fields.get(str(loc[-1]))
            hint = f" ({description.description})" if description and description.description else ""
            fix = f"add `{loc[-1]}: …`{hint}"
        elif kind == "string_type":
            problem = f"expected text, got {_describe(value)}"
            fix = (f"quote it: '{str(value).lower() if isinstance(value, bool) else value}'" if value is not None
                   else "write the text after the colon, or remove the key if it is optional")
        elif kind in ("tuple_type", "list_type"):
            problem = f"expected a list, got {_describe(value)}"
            fix = "write one item per line, each starting with '- '"
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            problem = f"expected a mapping of keys, got {_describe(value)}"
            fix = "write `key: value` lines indented under it"
        elif kind == "string_pattern_mismatch" and field in _URL_FIELDS:
            problem, fix = f"{value!r} is not a web address", "write the full address, e.g. https://example.org/sheet/"
        elif kind == "string_pattern_mismatch":
            problem, fix = _bad_id(value, field, data, builder)
        elif kind == "string_too_long":
            problem = f"is {len(value)} characters; the limit is {ctx.get('max_length')}"
            fix = "shorten it; the sheet is one page"
        elif kind in ("string_too_short", "too_short"):
            problem = "must not be empty"
            fix = "fill it in, or remove the key if it is optional"
        elif kind == "literal_error":
            problem = f"{value!r} is not allowed"
            # YAML spelling of Python's booleans (`print:` allows core, full, true, false)
            fix = "use one of " + re.sub(r"\b(True|False)\b", lambda m: m.group().lower(), str(ctx.get("expected")))
        elif kind == "union_tag_invalid":
            problem = f"unknown kind {ctx.get('tag')!r}"
            fix = f"use one of {', '.join(ENTRY_KINDS)}"
        elif kind == "union_tag_not_found":
            problem = "entry has no `kind`"
            fix = f"add `kind:` with one of {', '.join(ENTRY_KINDS)}"
        elif kind in ("int_type", "float_type", "bool_type"):
            wanted = {"int_type": "a whole number", "float_type": "a number", "bool_type": "true or false"}[kind]
            problem = f"expected {wanted}, got {_describe(value)}"
            fix = "write it without quotes" if isinstance(value, str) else f"write {wanted}"
        else:
            problem = error["msg"][0].lower() + error["msg"][1:]
            fix = "see the JSON schema (sheetgen schema) or the README for this key"
        problems.append(Problem(builder.path, mark.line + 1, problem, fix, mark.column + 1,
                                _entry_id(data, loc), field))
    return problems


# --- checks across entries --------------------------------------------------------------------


def _content_line(node: Node) -> int:
    """1-based line where a scalar's text starts (block scalars start on the line after `|`)."""
    return int(node.start_mark.line) + 1 + (1 if getattr(node, "style", None) in ("|", ">") else 0)


def _locations(sheet: Sheet, builder: _Builder) -> dict[str, tuple[int, int]]:
    keys_of: dict[Path_, list[tuple[str, Node]]] = {}  # mapping path → its (key, key node), in YAML order
    for (*prefix, key), key_node in builder.key_nodes.items():
        keys_of.setdefault(tuple(prefix), []).append((str(key), key_node))
    found: dict[str, tuple[int, int]] = {}
    for s, section in enumerate(sheet.sections):
        node = builder.nodes[("sections", s)]
        found[section.id] = (node.start_mark.line + 1, node.start_mark.column + 1)
        for e, entry in enumerate(section.entries):
            at: Path_ = ("sections", s, "entries", e)
            node = builder.nodes[at]
            found[entry.id] = (node.start_mark.line + 1, node.start_mark.column + 1)
            for key, key_node in keys_of.get(at, ()):
                value_node = builder.nodes[(*at, key)]
                found[f"{entry.id}.{key}"] = (_content_line(value_node), key_node.start_mark.column + 1)
                for sub, sub_node in keys_of.get((*at, key), ()) if key == "figure" else ():
                    value_node = builder.nodes[(*at, key, sub)]
                    found[f"{entry.id}.{key}.{sub}"] = (_content_line(value_node), sub_node.start_mark.column + 1)
    return found


def _semantic_problems(sheet: Sheet, builder: _Builder, locations: Mapping[str, tuple[int, int]]) -> list[Problem]:
    problems: list[Problem] = []
    path = builder.path

    def report(ident: str, field: str | None, problem: str, fix: str, line: int | None = None) -> None:
        key = f"{ident}.{field}" if field else ident
        found_line, column = locations.get(key) or locations.get(ident, (0, 0))
        problems.append(Problem(path, line or found_line, problem, fix, None if line else column, ident, field))

    first_seen: dict[str, str] = {}
    reported: set[str] = set()  # ids already reported: checks that depend on the id would only repeat it
    for section in sheet.sections:
        for ident, what in [(section.id, "section")] + [(e.id, "entry") for e in section.entries]:
            if ident in RESERVED_IDS:
                report(ident, "id", f"{ident!r} is a reserved name (file names, Python keywords, site pages)",
                       f"rename it, e.g. {ident}_1")
                reported.add(ident)
            key = f"{what}:{ident}"
            if key in first_seen:
                first = locations_first(builder, sheet, ident)
                report(ident, "id", f"duplicate {what} id {ident!r} (first at line {first})",
                       "ids must be unique; rename one")
                reported.add(ident)
            first_seen[key] = ident

    formula_ids = {f.id for f in sheet.formulas()}
    for entry in sheet.entries():
        if isinstance(entry, Snippet) and entry.function not in formula_ids:
            close = difflib.get_close_matches(entry.function, sorted(formula_ids), n=1)
            report(entry.id, "function", f"refers to {entry.function!r}, which is not a formula id",
                   f"did you mean {close[0]!r}?" if close else "use the id of a formula entry")
        if isinstance(entry, Formula):
            problems.extend(_implementation_problems(entry, path, locations, formula_ids,
                                                     check_name=entry.id not in reported))
        figure = getattr(entry, "figure", None)
        if figure is not None:
            try:
                ast.parse(figure.code)
            except SyntaxError as err:
                line = locations.get(f"{entry.id}.figure.code", (0, 0))[0]
                problems.append(Problem(path, line + (err.lineno or 1) - 1 if line else 0,
                                        f"code: Python syntax error: {err.msg}",
                                        "fix the figure code (a few lines that draw with plt)", None, entry.id,
                                        "figure"))
    return problems


def locations_first(builder: _Builder, sheet: Sheet, ident: str) -> int:
    """Line of the first entry or section carrying `ident`."""
    for s, section in enumerate(sheet.sections):
        if section.id == ident:
            return int(builder.nodes[("sections", s)].start_mark.line) + 1
        for e, entry in enumerate(section.entries):
            if entry.id == ident:
                return int(builder.nodes[("sections", s, "entries", e)].start_mark.line) + 1
    return 0


def _implementation_problems(formula: Formula, path: str, locations: Mapping[str, tuple[int, int]],
                             formula_ids: set[str], check_name: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    code_line = locations.get(f"{formula.id}.implementation", (0, 0))[0]
    examples_line = locations.get(f"{formula.id}.examples", (0, 0))[0]

    def report(line: int, field: str, problem: str, fix: str) -> None:
        problems.append(Problem(path, line, problem, fix, None, formula.id, field))

    try:
        tree = ast.parse(formula.implementation)
    except SyntaxError as err:
        report(code_line + (err.lineno or 1) - 1, "implementation",
               f"Python syntax error: {err.msg}", "fix the code; it is pasted into the module as written")
        return problems
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(tree.body) != 1 or len(functions) != 1:
        report(code_line, "implementation", "must be exactly one `def` and nothing else",
               f"write `def {formula.id}(...):` with the body indented under it; numpy is imported as np")
        return problems
    function = functions[0]
    if function.name != formula.id and check_name:
        if function.name in formula_ids:
            other = locations.get(function.name, (0, 0))[0]
            problem = (f"defines {function.name!r}, which the entry {function.name!r} (line {other}) already "
                       "defines; two entries cannot define one function")
        else:
            problem = f"defines {function.name!r} but the entry id is {formula.id!r}"
        report(code_line + function.lineno - 1, "implementation", problem,
               f"name the function {formula.id!r}; one formula entry defines one function")
    if function.decorator_list:
        report(code_line, "implementation", "decorators are not supported", "remove the decorator")
    body_start = function.body[0]
    if body_start.lineno == function.lineno:
        report(code_line + function.lineno - 1, "implementation",
               "the body is on the same line as `def`", "put the body on its own indented lines")
    if isinstance(body_start, ast.Expr) and isinstance(body_start.value, ast.Constant) \
            and isinstance(body_start.value.value, str):
        report(code_line + body_start.lineno - 1, "implementation",
               "has its own docstring; sheetgen writes the docstring from the entry",
               "delete it; put examples under `examples:` and the meaning under `meaning:`")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            report(code_line + node.lineno - 1, "implementation",
                   "imports are not allowed; the module imports only NumPy (as np)",
                   "use np.* instead")
    text = formula.examples
    if '"""' in text or text.rstrip().endswith("\\"):
        report(examples_line, "examples", 'must not contain """ or end with a backslash (it goes into a docstring)',
               "use single quotes in examples")
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except ValueError as err:
        report(examples_line, "examples", f"is not valid doctest text: {err}",
               "each example is `>>> code` followed by the expected output, same indentation")
    else:
        if not examples:
            report(examples_line, "examples", "has no doctest example",
                   "add lines like `>>> f(1.0)` followed by the expected output")
    return problems
