"""``fastnn explain`` opens with the short answer, and marks the mistaken rows as wrong."""

import importlib
import re

import pytest

EX = importlib.import_module("fastnn.explain")  # the module (fastnn.explain is also the function)

CASES = [dict(layers=[2, 4, 3, 1], scaling="deferred"), dict(layers=[3, 4, 3], output="softmax", scaling="absorbed"),
         dict(layers=[2, 3, 1], scaling="sum", m=7)]


@pytest.mark.parametrize("kw", CASES)
def test_short_answer_comes_first_and_agrees_with_the_detail(kw):
    result = EX.explain(**kw)
    L, m = len(result.layers) - 1, result.m
    assert len(result.short_answer) == 3
    for render in (EX.render_text, EX.render_markdown):
        text = render(result)
        top = text.index("Short answer")
        assert top < text.index("1. Forward") and text[:top].count("\n") <= 6  # title and the 2 header lines
        lines = [ln.strip() for ln in text[top:text.index("1. Forward")].splitlines()]
        block = " ".join(" ".join(ln[2:] if ln.startswith("- ") else ln for ln in lines).split())
        for sentence in result.short_answer:
            assert " ".join(sentence.split()) in block
    answer = " ".join(result.short_answer)
    formulas = {q.formula.split(" = ")[0]: q.formula for bl in result.backward for q in bl.quantities}
    if kw["scaling"] == "deferred":
        assert "dW[l] = (1/m)" in answer and f"l = 1..{L}" in answer
        assert all("(1/m)" in formulas[f"dW[{l}]"] for l in range(1, L + 1))
        assert "(1/m)" not in formulas[f"dZ[{L}]"]
    elif kw["scaling"] == "absorbed":
        assert f"dZ[{L}] = (1/m)" in answer
        assert "(1/m)" in formulas[f"dZ[{L}]"]
        assert not any("(1/m)" in formulas[f"dW[{l}]"] for l in range(1, L + 1))
    else:
        assert "no 1/m" in answer
        assert not any("(1/m)" in f for f in formulas.values())
    assert f"m = {m}" in answer or kw["scaling"] == "sum"


def test_every_layer_table_marks_the_mistaken_rows_with_a_cross():
    result = EX.explain([2, 4, 3, 1], m=5)
    rows = result.conventions.every_layer
    assert [r.verdict for r in rows] == ["right", "wrong", "wrong"]
    text = EX.render_text(result)
    table = text[text.index("1/m in every layer (the mistake)"):].splitlines()[2:5]
    markdown = EX.render_markdown(result)
    md_rows = [ln for ln in markdown.splitlines() if re.match(r"\| [123] \| [\u2713\u2717] ", ln)]
    for row, line, md in zip(rows, table, md_rows):
        verdict_mark = EX.CROSS_MARK if row.verdict == "wrong" else EX.CHECK_MARK
        assert f"{verdict_mark} {row.verdict} (rel err" in line, line
        assert f"| {verdict_mark} {row.verdict} (rel err" in md, md
    assert len(md_rows) == 3
