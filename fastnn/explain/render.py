"""The renderers of :func:`fastnn.explain.explain`'s result: one row model, two layouts.

:func:`_blocks` walks the result once and turns it into a list of blocks
(headings, paragraphs, tables of :class:`Cell` rows, worked index sums, the
verdict).  Every text shown is made there, once, with hints for both layouts:
a cell's terminal style and whether Markdown sets it as a code span.
:func:`render_text` and :func:`render_markdown` only lay the blocks out.
"""

import textwrap
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .checks import CHECK_MARK, CROSS_MARK
from ._format import _fmt_err, _num


# ---------------------------------------------------------------------------
# The row model
# ---------------------------------------------------------------------------

@dataclass
class Cell:
    """One table cell: ``text``, its terminal ``style`` (a key of ``_ANSI`` or None)
    and whether Markdown writes it as a ``code`` span."""
    text: str
    style: Optional[str] = None
    code: bool = False


@dataclass
class Group:
    """Rows under one title (``title`` may be empty: no title line)."""
    title: str
    rows: list             # of list of Cell, in the Markdown table's column order


@dataclass
class Table:
    """Groups of rows with the Markdown ``header``.

    The terminal shows the cells ``text_columns`` (indices into a row) as an
    aligned table, each group under its bold title; ``text_below`` lists
    ``(name, index)`` cells it prints under every row instead, and
    ``text_header`` (when given) is a dim header row over each group.  ``align_groups``
    aligns the terminal columns across all groups rather than within each (no header then).
    Markdown writes one table, or, with ``md_split``, one per group under a
    ``###`` title.
    """
    header: list
    groups: list
    text_columns: list
    text_below: list = field(default_factory=list)
    text_header: Optional[list] = None
    align_groups: bool = False
    md_split: bool = False


@dataclass
class Heading:
    """A section title; ``underline``: the terminal underlines it (the numbered
    sections), otherwise it is bold.  Markdown: ``level`` hashes."""
    title: str
    level: int = 2
    underline: bool = True


@dataclass
class Sub:
    """A bold line on the terminal; ``md`` is its Markdown line."""
    text: str
    md: str


@dataclass
class Paragraphs:
    """Paragraphs the terminal wraps at ``width`` after ``indent`` (kept whole when
    ``width`` is None).  Markdown: ``"bullets"``, ``"lines"`` (as they are) or ``"none"``."""
    texts: list
    indent: str = "  "
    width: Optional[int] = 100
    md: str = "bullets"


@dataclass
class Worked:
    """An index sum written out: three lines (the first a formula), its check, and why."""
    lines: list
    check: object
    why: str


@dataclass
class Verdict:
    """How many checks passed."""
    passed: int
    total: int


def _check_cell(check):
    """The cell of a :class:`Check` (empty for None): its summary, green or red."""
    if check is None:
        return Cell("")
    return Cell(check.summary, "ok" if check.passed else "bad")


def _every_layer_cells(row, m):
    """The first four cells (texts) of a row of the "1/m in every layer" table."""
    factor = "n/a (zero gradient)" if np.isnan(row.factor) else _num(row.factor, 6)
    mark = CHECK_MARK if row.verdict == "right" else CROSS_MARK
    return (str(row.layer), f"{mark} {row.verdict} (rel err {_fmt_err(row.rel_err)})", factor, row.expected_text)


# ---------------------------------------------------------------------------
# The result as blocks (the one walk over its sections)
# ---------------------------------------------------------------------------

def _line_row(ln, label_code=False, text_code=True):
    """Cells label, text, shapes, detail, check of a :class:`Line` (Markdown: shapes as code,
    the label and text as the flags say; terminal: the text in the code colour)."""
    return [Cell(ln.label, None, label_code), Cell(ln.text, "code", text_code), Cell(ln.shapes, None, True),
            Cell(ln.detail), _check_cell(ln.check)]


def _forward_blocks(r):
    groups = []
    for step in r.forward:
        kind = "output" if step.layer == len(r.forward) else "hidden"
        groups.append(Group(f"Layer {step.layer} ({kind}: {step.activation})", [
            [Cell(f"{step.layer} ({kind}: {step.activation})"), Cell(step.z_formula, "code", True),
             Cell(step.z_shapes, None, True), Cell(step.broadcast, "dim")],
            [Cell(""), Cell(step.a_formula, "code", True), Cell(step.a_shapes, None, True), Cell("", "dim")]]))
    groups.append(Group("Loss and cost", [_line_row(ln)[:3] + [Cell(ln.detail, "dim")] for ln in r.loss_lines]))
    return [Heading("1. Forward, layer by layer"),
            Table(["Layer", "Formula", "Shapes", "Note"], groups, [1, 2, 3])]


def _backward_blocks(r):
    groups = [Group(bl.title, [[Cell(q.formula, "code", True), Cell(q.shapes, None, True),
                                Cell(q.derivative_of, None, True), Cell(q.one_over_m), _check_cell(q.check)]
                               for q in bl.quantities]) for bl in r.backward]
    return [Heading(f"2. Backward, layer by layer (scaling: {r.scaling})"),
            Paragraphs(r.backward_intro, indent="", md="lines"),
            Table(["Formula", "Shapes", "Derivative of", "Where 1/m enters", "Check"], groups, [0, 1, 4],
                  text_below=[("of", 2), ("1/m", 3)], align_groups=True, md_split=True)]


def _one_example_blocks(r):
    ex = r.one_example
    title = f"One example: column {ex.column}, lower case; m = 1, so no 1/m anywhere"
    why = "Why the transpose: one entry written as its index sum"
    blocks = [Heading("3. One example next to the batch"), Sub(title, title + "."),
              Table(["Formula", "Shapes", "Value"],
                    [Group("", [_line_row(ln)[1:3] + [Cell(ln.detail, None, True)] for ln in ex.per_example])],
                    [0, 1, 2]),
              Sub("The batch", f"The batch: `{ex.batch_rule}`"),
              Paragraphs([ex.batch_rule], md="none"),
              Table(["Formula", "Shapes", "Value", "Check"],
                    [Group("", [_line_row(ln)[1:3] + [Cell(ln.detail, None, True), _check_cell(ln.check)]
                                for ln in ex.batch_lines])], [0, 1, 2, 3]),
              Sub(why, why + ".")]
    for s in ex.index_sums:
        pad = " " * (len(s.entry) + 1)
        blocks.append(Worked([s.index_form, f"{pad}= {s.numbers}",
                              f"{pad}= {_num(s.value, 12)}   (matrix product: {_num(s.matrix_value, 12)})   "],
                             s.check, s.why))
    return blocks


def _conventions_blocks(r):
    cv = r.conventions
    rows = []
    for row in cv.every_layer:
        cells = _every_layer_cells(row, r.m)
        rows.append([Cell(cells[0]), Cell(cells[1], "ok" if row.verdict == "right" else "bad"),
                     Cell(cells[2]), Cell(cells[3]), _check_cell(row.check)])
    sub = "deferred against absorbed, on the same data"
    mistake = "1/m in every layer (the mistake)"
    return [Heading("4. Where the conventions differ"), Sub(sub, sub + ":"),
            Table(["Quantity", "Relation", "Shape", "Measured", "Check"],
                  [Group("", [_line_row(ln) for ln in cv.lines])], [0, 1, 2, 3, 4]),
            Paragraphs(cv.notes),
            Sub(mistake, "### " + mistake),
            Table(["Layer", "dW[l] against numerical dJ/dW[l]", "Too small by", "m^(L-l)",
                   "Too small by = m^(L-l)?"], [Group("", rows)], [0, 1, 2, 3, 4],
                  text_header=["layer", "dW[l] against numerical dJ/dW[l]", "too small by", "m^(L-l)",
                               "too small by = m^(L-l)?"]),
            Paragraphs([cv.every_layer_note], md="lines")]


def _output_blocks(r):
    ol = r.output_layer
    blocks = [Heading("5. The output layer: the course's chain against the fused A - Y"),
              Table(["", "Formula", "Shape", "Note", "Check"],
                    [Group("", [_line_row(ln) for ln in ol.lines])], [0, 1, 2, 3, 4])]
    if ol.saturated:
        title = "A saturated output in float32"
        blocks += [Sub(title, title + ":"),
                   Table(["", "Route", "Shape", "Outcome", "Check"],
                         [Group("", [_line_row(ln, label_code=True, text_code=False) for ln in ol.saturated])],
                         [0, 1, 2, 3, 4])]
    return blocks + [Paragraphs(ol.notes)]


def _blocks(result):
    """The whole result as blocks, in the order both renderers print them."""
    r = result
    checks = r.checks()
    return ([Heading("fastnn explain", level=1, underline=False), Paragraphs(r.header, width=None),
             Heading("Short answer: where the 1/m goes", underline=False), Paragraphs(r.short_answer, width=120)]
            + _forward_blocks(r) + _backward_blocks(r) + _one_example_blocks(r) + _conventions_blocks(r)
            + _output_blocks(r)
            + [Heading("Method and tolerances"), Paragraphs(r.notes),
               Verdict(sum(c.passed for c in checks), len(checks))])


# ---------------------------------------------------------------------------
# Terminal layout
# ---------------------------------------------------------------------------

_ANSI = {"bold": "1", "dim": "2", "ok": "32", "bad": "31", "code": "36", "head": "1;34"}


class _Style:
    """ANSI styling when ``color`` is true, identity otherwise."""

    def __init__(self, color):
        self.color = color

    def __call__(self, text, style):
        if not self.color or not style or not text:
            return text
        return f"\x1b[{_ANSI[style]}m{text}\x1b[0m"


def _table(rows, st, indent="  "):
    """Rows of cells, columns padded to a common width (last non-empty cell unpadded)."""
    ncol = max(len(r) for r in rows)
    rows = [list(r) + [Cell("")] * (ncol - len(r)) for r in rows]
    widths = [max(len(r[c].text) for r in rows) for c in range(ncol)]
    out = []
    for r in rows:
        cells = []
        last = max((c for c in range(ncol) if r[c].text), default=0)
        for c in range(last + 1):
            pad = "" if c == last else " " * (widths[c] - len(r[c].text))
            cells.append(st(r[c].text, r[c].style) + pad)
        out.append((indent + "   ".join(cells)).rstrip())
    return out


def _text_table(t, st):
    """A :class:`Table` on the terminal."""
    def main(row):
        return [row[i] for i in t.text_columns]

    head = [[Cell(h, "dim") for h in t.text_header]] if t.text_header else []
    if t.align_groups:  # one table over every group's rows, cut back into groups below
        lines = iter(_table([main(row) for g in t.groups for row in g.rows], st))
    out = []
    for g in t.groups:
        if g.title:
            out.append(st(g.title, "bold"))
        if not t.align_groups:
            out += _table(head + [main(row) for row in g.rows], st)
            continue
        for row in g.rows:
            out.append(next(lines))
            if t.text_below:
                out += _table([[Cell(name, "dim"), Cell(row[i].text)] for name, i in t.text_below], st,
                              indent="        ")
    return out


def _text_block(b, st):
    """The terminal lines of one block."""
    if isinstance(b, Heading):
        if b.level == 1:
            return [st(b.title, "bold")]
        if not b.underline:
            return ["", st(b.title, "bold")]
        return ["", st(b.title, "head"), st("-" * len(b.title), "head")]
    if isinstance(b, Sub):
        return [st(b.text, "bold")]
    if isinstance(b, Paragraphs):
        if b.width is None:
            return [b.indent + t for t in b.texts]
        return [line for t in b.texts
                for line in textwrap.wrap(t, width=b.width, initial_indent=b.indent, subsequent_indent=b.indent)]
    if isinstance(b, Table):
        return _text_table(b, st)
    if isinstance(b, Worked):
        check = _check_cell(b.check)
        return (["  " + st(b.lines[0], "code")] + ["  " + x for x in b.lines[1:-1]]
                + ["  " + b.lines[-1] + st(check.text, check.style)]
                + textwrap.wrap(b.why, width=100, initial_indent="    ", subsequent_indent="    "))
    ok = b.passed == b.total
    return ["", st(f"{b.passed} of {b.total} checks passed", "ok" if ok else "bad")]


def render_text(result, color=False):
    """The result as a terminal page.

    Parameters
    ----------
    result : ExplainResult
        From :func:`explain`.
    color : bool
        Use ANSI colours (green check marks, red crosses, bold headings).

    Returns
    -------
    str
        Aligned plain text (no escape sequences when ``color`` is false).
    """
    st = _Style(color)
    return "\n".join(line for b in _blocks(result) for line in _text_block(b, st)) + "\n"


# ---------------------------------------------------------------------------
# Markdown layout
# ---------------------------------------------------------------------------

def _md_cell(cell):
    text = f"`{cell.text}`" if cell.code and cell.text else cell.text
    return text.replace("|", "\\|")


def _md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]


def _md_block(b):
    """The Markdown lines of one block (blocks are separated by one empty line)."""
    if isinstance(b, Heading):
        return ["#" * b.level + " " + b.title]
    if isinstance(b, Sub):
        return [b.md]
    if isinstance(b, Paragraphs):
        return {"bullets": [f"- {t}" for t in b.texts], "lines": list(b.texts), "none": []}[b.md]
    if isinstance(b, Table):
        if not b.md_split:
            return _md_table(b.header, [row for g in b.groups for row in g.rows])
        out = []
        for g in b.groups:
            out += ([""] if out else []) + [f"### {g.title}", ""] + _md_table(b.header, g.rows)
        return out
    if isinstance(b, Worked):
        return ["```text"] + b.lines[:-1] + [b.lines[-1] + b.check.summary, "```", "", b.why + "."]
    return [f"**{b.passed} of {b.total} checks passed**"]


def render_markdown(result):
    """The result as Markdown (headings, pipe tables, code spans), for notes and docs.

    Parameters
    ----------
    result : ExplainResult
        From :func:`explain`.

    Returns
    -------
    str
        The same formulas, shapes and checks as :func:`render_text`.
    """
    out = []
    for b in _blocks(result):
        lines = _md_block(b)
        if lines:
            out += ([""] if out else []) + lines
    return "\n".join(out) + "\n"
