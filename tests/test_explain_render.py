"""fastnn.explain's row model: one walk over the result feeds both renderers."""

import importlib

import pytest

EX = importlib.import_module("fastnn.explain")  # the module (fastnn.explain is also the function)
R = importlib.import_module("fastnn.explain.render")


def _cells(result, terminal=False):
    """Texts of the table cells (terminal: only those the terminal layout shows)."""
    out = []
    for b in R._blocks(result):
        if isinstance(b, R.Table):
            shown = b.text_columns + [i for _, i in b.text_below] if terminal else None
            out += [c.text for g in b.groups for row in g.rows
                    for i, c in enumerate(row) if c.text and (shown is None or i in shown)]
    return out


@pytest.mark.parametrize("kw", [dict(layers=[2, 3, 2], hidden="tanh", output="softmax", m=3, l2=0.1),
                                dict(layers=[3, 4, 1], hidden="relu", output="sigmoid", m=2, scaling="sum"),
                                dict(layers=[2, 2], hidden="tanh", output="identity", m=1, scaling="absorbed")])
def test_every_table_cell_reaches_both_renderers(kw):
    result = EX.explain(**kw)
    text, md = EX.render_text(result), EX.render_markdown(result)
    for c in _cells(result, terminal=True):
        assert c in text, c
    cells = _cells(result)
    assert len(cells) > 40
    for c in cells:
        assert c.replace("|", "\\|") in md, c


def test_every_check_is_a_cell_or_a_worked_sum():
    result = EX.explain([2, 3, 2], m=3)
    blocks = R._blocks(result)
    cells = _cells(result)
    worked = [b.check.summary for b in blocks if isinstance(b, R.Worked)]
    for check in result.checks():
        assert check.summary in cells + worked
    assert sum(cells.count(s) for s in {c.summary for c in result.checks()}) + len(worked) == len(result.checks())
