"""Tests of ``fastnn explain``: every mark is a real numerical comparison.

The thresholds behind the marks are fastnn.explain's TOL_* constants (derived
in that module's docstring); these tests only check that the marks follow the
numbers, that planted bugs in the kernels flip exactly the affected marks, and
that the two renderings and the CLI carry the same content.
"""

import importlib
import itertools
import re
import sys

import numpy as np
import pytest

import fastnn
from fastnn import cli
from fastnn.activations import HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS
from fastnn.backends import numpy_backend
from fastnn.network import SCALINGS

import naive
from conftest import FD_STEP, GRADCHECK_TOL, assert_close, tol

# ``fastnn.explain`` is the function; the module is reached through importlib.
EX = importlib.import_module("fastnn.explain")
CHECK, CROSS = EX.CHECK_MARK, EX.CROSS_MARK
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SHAPE = re.compile(r"\(([0-9, ]*)\)")


def _section(text, start, end):
    i = text.index(start)
    j = text.index(end, i) if end else len(text)
    return text[i:j]


def _backward_line(text, formula):
    """The line of section 2 that starts with ``formula`` (the quantity's headline)."""
    sec = _section(text, "2. Backward", "3. One example")
    lines = [ln for ln in sec.splitlines() if ln.strip().startswith(formula)]
    assert len(lines) == 1, (formula, lines)
    return lines[0]


def _marks(text, formula):
    line = _backward_line(text, formula)
    return (CHECK in line, CROSS in line)


def _verdicts(result):
    """Marks the "1/m in every layer" rows carry besides the checks: (right rows, wrong rows)."""
    rows = result.conventions.every_layer
    return sum(r.verdict == "right" for r in rows), sum(r.verdict == "wrong" for r in rows)


def _quantities(result):
    return [q for bl in result.backward for q in bl.quantities]


def _tuples(text):
    return [tuple(int(v) for v in g.replace(" ", "").split(",") if v) for g in SHAPE.findall(text)]


# --------------------------------------------------------------------------
# Every activation x output x scaling: runs, and every check passes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("output", OUTPUT_ACTIVATIONS)
@pytest.mark.parametrize("hidden", HIDDEN_ACTIVATIONS)
def test_every_combination_passes(hidden, output, scaling):
    result = fastnn.explain([2, 3, 2], hidden=hidden, output=output, m=3, scaling=scaling, seed=1)
    failed = [(c.against, c.rel_err) for c in result.checks() if not c.passed]
    assert not failed
    text = EX.render_text(result)
    right, wrong = _verdicts(result)
    assert text.count(CROSS) == wrong
    assert text.count(CHECK) == len(result.checks()) + right
    assert len(result.backward) == 2 and all(len(bl.quantities) == 4 for bl in result.backward)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_deeper_net_with_l2_passes(scaling):
    result = fastnn.explain([3, 4, 3, 2], hidden="sigmoid", output="softmax", m=4, scaling=scaling,
                            seed=2, l2=0.7)
    assert result.all_passed, [c.against for c in result.checks() if not c.passed]


@pytest.mark.parametrize("layers,m", [([3, 1], 4), ([2, 2, 1], 1)])
def test_single_layer_and_single_example(layers, m):
    result = fastnn.explain(layers, hidden="tanh", output="sigmoid", m=m)
    assert result.all_passed
    assert len(result.conventions.every_layer) == len(layers) - 1


def _norm_rel(a, b):
    return float(np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b)))


@pytest.mark.parametrize("scaling", SCALINGS)
def test_checks_compare_against_finite_differences(scaling):
    """explain's dW/db values and their numerical twins against an independent
    reference: central differences of tests/naive.py's per-example objective,
    computed here, and naive's per-example gradients.  A wrong step, a one-sided
    difference or a wrong objective in explain's checker fails the first; a wrong
    analytic value that its own checker missed fails the second."""
    result = fastnn.explain([2, 4, 1], m=5, scaling=scaling, l2=0.3)
    params = {f"{v}{st.layer}": getattr(st, v).astype(np.float64).copy()
              for st in result.forward for v in ("W", "b")}
    X, Y = result.X, result.Y
    _, grads = naive.gradients(params, X, Y, result.hidden, result.output, scaling, result.l2)

    def objective():
        return naive.objective(params, X, Y, result.hidden, result.output, scaling, result.l2)

    checked = 0
    for q in _quantities(result):
        key = q.name.replace("[", "").replace("]", "")        # "dW[2]" -> "dW2"
        if key[:2] not in ("dW", "db"):
            continue
        fd = naive.central_differences(params[key[1:]], objective, FD_STEP)
        assert q.numerical.shape == q.value.shape == fd.shape
        assert _norm_rel(q.numerical, fd) <= GRADCHECK_TOL, f"{q.name}: explain's numerical"
        assert _norm_rel(q.value, grads[key]) <= GRADCHECK_TOL, f"{q.name}: explain's value"
        assert q.check.passed and "central differences" in q.check.against
        checked += 1
    assert checked == 4


def test_deferred_dz_is_m_times_dJ_dz():
    m = 5
    result = fastnn.explain([2, 4, 1], m=m, scaling="deferred")
    for q in _quantities(result):
        if q.name.startswith(("dZ", "dA")):
            assert q.derivative_of.startswith("m * dJ/")
            assert q.check.against.startswith("m * ")
    absorbed = fastnn.explain([2, 4, 1], m=m, scaling="absorbed")
    params = {f"{v}{st.layer}": getattr(st, v) for st in result.forward for v in ("W", "b")}
    _, mags = naive.gradient_magnitudes(params, result.X, result.Y, result.hidden, result.output,
                                        "deferred", result.l2)
    for qd, qa in zip(_quantities(result), _quantities(absorbed)):
        ratio = m if qd.name.startswith(("dZ", "dA")) else 1
        key = qd.name.replace("[", "").replace("]", "")
        # dW, db: their entries' sum of |terms|; dZ, dA (no cancelling sums over examples):
        # bounded by the array's largest entry.
        mag = mags[key] if key in mags else np.full(qd.value.shape, np.abs(qd.value).max())
        assert_close(qd.value, ratio * qa.value, np.float64, m, magnitude=mag, err_msg=qd.name)


def test_check_marks_follow_the_numbers():
    assert EX.Check("x", 5e-7, EX.TOL_FD).passed
    assert not EX.Check("x", 2e-6, EX.TOL_FD).passed
    assert not EX.Check("x", float("nan"), EX.TOL_FD).passed
    # A tiny derivative: relatively off, but below the resolution of the differences.
    tiny = EX.Check("x", 2e-6, EX.TOL_FD, abs_err=1e-12, floor=1e-9)
    assert tiny.passed and tiny.at_resolution and tiny.summary.endswith("(at FD resolution)")
    assert not EX.Check("x", 0.5, EX.TOL_FD, abs_err=1e-3, floor=1e-9).passed
    assert not EX.Check("x", 2e-12, EX.TOL_EXACT).passed  # no floor for exact comparisons
    assert EX.Check("x", 0.0, EX.TOL_EXACT).summary == f"{CHECK} 0"


def test_relu_data_are_redrawn_away_from_the_kink():
    # Seed 18's first draw puts a hidden Z within 1e-5 of 0 (a central difference across the kink).
    result = fastnn.explain([5, 1, 4, 2], hidden="leaky_relu", output="softmax", scaling="absorbed", m=8,
                            seed=18, l2=0.5)
    assert result.all_passed
    zmin = min(np.abs(step.Z).min() for step in result.forward[:-1])
    assert zmin >= EX.KINK_MARGIN
    assert any("repeated" in n for n in result.notes)
    again = fastnn.explain([5, 1, 4, 2], hidden="leaky_relu", output="softmax", scaling="absorbed", m=8,
                           seed=18, l2=0.5)
    np.testing.assert_array_equal(again.X, result.X)  # still reproducible from the seed


# --------------------------------------------------------------------------
# Planted bugs: the affected marks flip, the others stay
# --------------------------------------------------------------------------

def test_weight_grad_ignoring_scale_fails_only_dW(monkeypatch):
    original = numpy_backend.weight_grad

    def no_scale(dZ, A_prev, W, scale, l2_scale):
        return original(dZ, A_prev, W, dZ.dtype.type(1), l2_scale)

    monkeypatch.setattr(numpy_backend, "weight_grad", no_scale)
    result = fastnn.explain([2, 4, 1], m=5, scaling="deferred")
    text = EX.render_text(result)
    for q in _quantities(result):
        ok, bad = _marks(text, q.formula)
        if q.name.startswith("dW"):
            assert bad and not ok, q.name
            assert q.check.rel_err > 0.5  # off by the factor m = 5: (5 - 1) / (5 + 1)
        else:
            assert ok and not bad, q.name
    # The mean-of-per-example dw and deferred = absorbed dW checks also see it.
    assert any(CROSS in ln for ln in _section(text, "3. One example", "Why the").splitlines()
               if "dW[" in ln)


def test_input_grad_without_transpose_fails_below_the_output(monkeypatch):
    monkeypatch.setattr(numpy_backend, "input_grad", lambda W, dZ: W @ dZ)  # square layers
    result = fastnn.explain([3, 3, 3, 3], hidden="tanh", output="softmax", m=4, scaling="absorbed")
    text = EX.render_text(result)
    L = 3
    for bl in result.backward:
        for q in bl.quantities:
            ok, bad = _marks(text, q.formula)
            unaffected = bl.layer == L and not q.name.startswith("dA")
            assert (ok, bad) == ((True, False) if unaffected else (False, True)), q.name
    # The output-layer routes do not go through input_grad.
    chain = [ln for ln in _section(text, "5. The output layer", "Method").splitlines() if "chain = fused" in ln]
    assert len(chain) == 1 and CHECK in chain[0]


def test_backward_hidden_without_derivative_fails_hidden_layers(monkeypatch):
    def no_gprime(dA, A, activation, db_scale):
        return dA, dA.sum(axis=1, keepdims=True) * db_scale

    monkeypatch.setattr(numpy_backend, "backward_hidden", no_gprime)
    result = fastnn.explain([2, 4, 1], hidden="tanh", m=5)
    text = EX.render_text(result)
    for bl in result.backward:
        for q in bl.quantities:
            ok, bad = _marks(text, q.formula)
            assert (ok, bad) == ((True, False) if bl.layer == 2 else (False, True)), q.name


def test_markdown_marks_follow_planted_bug(monkeypatch):
    monkeypatch.setattr(numpy_backend, "input_grad", lambda W, dZ: W @ dZ)
    result = fastnn.explain([2, 2, 2], output="identity", m=3)
    text, md = EX.render_text(result), EX.render_markdown(result)
    assert text.count(CROSS) == md.count(CROSS) > 0
    assert text.count(CHECK) == md.count(CHECK)


# --------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------

def _check_shape_arithmetic(shapes):
    lhs, rhs = shapes.split(" = ", 1)
    (result,) = _tuples(lhs)
    ops = _tuples(rhs)
    if " @ " in rhs:
        (a, b), = [ops]
        assert a[1] == b[0] and result == (a[0], b[1]), shapes
    elif rhs.startswith("sum("):
        assert result == (ops[0][0], 1), shapes
    else:  # elementwise - or *
        assert all(op == result for op in ops), shapes
    return result


def test_printed_shapes_match_the_arrays():
    result = fastnn.explain([3, 5, 4, 2], hidden="relu", output="softmax", m=6)
    text, md = EX.render_text(result), EX.render_markdown(result)
    for q in _quantities(result):
        assert _check_shape_arithmetic(q.shapes) == q.value.shape, q.name
        assert q.shapes in _backward_line(text, q.formula)
    L = len(result.forward)
    for step in result.forward:
        z, w, a_prev, b = _tuples(step.z_shapes)
        assert (z, w, a_prev, b) == (step.Z.shape, step.W.shape, step.A_prev.shape, step.b.shape)
        assert w[1] == a_prev[0] and z == (w[0], a_prev[1]) and b == (w[0], 1)
        assert _tuples(step.a_shapes) == [step.A.shape, step.Z.shape]
        assert f"broadcast over {result.m} columns" in step.broadcast
        assert step.z_shapes in text and step.z_shapes in md
    assert [s.layer for s in result.forward] == list(range(1, L + 1))
    # dW has the shape of W, db of b, dA[l-1] of A[l-1].
    for bl in result.backward:
        step = result.forward[bl.layer - 1]
        shapes = {q.name[:2]: q.value.shape for q in bl.quantities}
        assert shapes == {"dZ": step.Z.shape, "dW": step.W.shape, "db": step.b.shape, "dA": step.A_prev.shape}


# --------------------------------------------------------------------------
# Text and Markdown carry the same content
# --------------------------------------------------------------------------

def _content(result):
    items = []
    for step in result.forward:
        items += [step.z_formula, step.z_shapes, step.a_formula, step.a_shapes]
    items += [ln.text for ln in result.loss_lines]
    for q in _quantities(result):
        items += [q.formula, q.shapes, q.derivative_of, q.one_over_m, q.check.summary]
    ex = result.one_example
    for ln in ex.per_example + ex.batch_lines:
        items += [ln.text, ln.shapes, ln.detail] + ([ln.check.summary] if ln.check else [])
    for s in ex.index_sums:
        items += [s.index_form, s.numbers, s.check.summary]
    for ln in result.conventions.lines + result.output_layer.lines + result.output_layer.saturated:
        items += [ln.label, ln.text, ln.shapes, ln.detail] + ([ln.check.summary] if ln.check else [])
    for row in result.conventions.every_layer:
        items += list(EX._every_layer_cells(row, result.m)) + [row.check.summary]
    return [i for i in items if i]


@pytest.mark.parametrize("kw", [dict(layers=[2, 4, 1]),
                                dict(layers=[3, 4, 3], hidden="leaky_relu", output="softmax",
                                     scaling="absorbed", l2=0.3),
                                dict(layers=[2, 3, 2], hidden="identity", output="identity", scaling="sum")])
def test_markdown_has_the_same_content_as_text(kw):
    result = fastnn.explain(m=4, **kw)
    text, md = EX.render_text(result), EX.render_markdown(result)
    md_plain = md.replace("\\|", "|")
    for item in _content(result):
        assert item in text, item
        assert item in md_plain, item
    right, wrong = _verdicts(result)
    assert text.count(CHECK) == md.count(CHECK) == len(result.checks()) + right
    assert text.count(CROSS) == md.count(CROSS) == wrong
    assert md.startswith("# fastnn explain") and "| Formula | Shapes | Derivative of |" in md
    assert not ANSI.search(md) and not ANSI.search(text)


def test_colour_only_when_asked():
    result = fastnn.explain([2, 3, 1], m=3)
    plain, coloured = EX.render_text(result), EX.render_text(result, color=True)
    assert not ANSI.search(plain)
    assert ANSI.search(coloured)
    assert ANSI.sub("", coloured) == plain


# --------------------------------------------------------------------------
# The sections' claims
# --------------------------------------------------------------------------

@pytest.mark.parametrize("m", [2, 3, 5])
def test_one_over_m_in_every_layer_error_grows_like_m_to_the_depth(m):
    layers = [2, 3, 3, 3, 1]
    L = len(layers) - 1
    result = fastnn.explain(layers, hidden="tanh", output="sigmoid", m=m, seed=3)
    rows = {r.layer: r for r in result.conventions.every_layer}
    assert sorted(rows) == list(range(1, L + 1))
    for l, row in rows.items():
        assert row.expected == m ** (L - l)
        assert row.factor == pytest.approx(m ** (L - l), rel=tol(np.float64, L)[0])
        assert row.check.passed and row.check.tol == EX.TOL_EXACT
        assert row.verdict == ("right" if l == L else "wrong")
    # dW[l] of the mistake against the numerical dJ/dW[l]: relative error 1 - m^-(L-l) for
    # gradients that point the same way, growing towards 1 with depth.
    errs = [rows[l].rel_err for l in range(L, 0, -1)]
    assert errs[0] < EX.TOL_FD and all(b > a for a, b in zip(errs, errs[1:]))


def test_per_example_view_and_index_sums():
    m = 5
    result = fastnn.explain([2, 4, 1], m=m, scaling="deferred")
    ex = result.one_example
    assert ex.layer == 2 and ex.column == 0
    assert "mean" in ex.batch_rule
    assert all(ln.check.passed for ln in ex.batch_lines)
    dw_sum = ex.index_sums[0]
    assert dw_sum.index_form.startswith("dW[2][0,") and "(1/m) sum_i dZ[2][0,i] * A[1][" in dw_sum.index_form
    assert dw_sum.numbers.startswith(f"(1/{m}) * (") and dw_sum.numbers.count("*") == m + 1
    assert dw_sum.value == pytest.approx(dw_sum.matrix_value, rel=tol(np.float64, m)[0])
    assert "A[1].T" in dw_sum.why
    assert "W[1].T @ dZ[1]" in ex.index_sums[1].why
    summed = fastnn.explain([2, 4, 1], m=m, scaling="sum").one_example
    assert "sum of the m per-example dw" in summed.batch_rule and all(ln.check.passed for ln in summed.batch_lines)


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_saturated_output_breaks_chain_not_fused(output):
    result = fastnn.explain([2, 3, 3] if output == "softmax" else [2, 3, 1], output=output, m=4)
    sat = result.output_layer.saturated
    chain = [ln for ln in sat if ln.label.startswith("chain")]
    fused = [ln for ln in sat if ln.label == "fused"]
    assert len(chain) == 1 and "SaturationError" in chain[0].detail
    assert int(chain[0].detail.split(" of ")[0]) > 0  # inf/nan entries
    assert fused[0].check.passed and fused[0].check.tol == EX.TOL_F32
    assert "1]" in sat[0].detail.split(";")[0] or "0," in sat[0].detail.split(";")[0]
    assert result.output_layer.lines[-1].check.passed  # chain == fused on unsaturated data


def test_identity_output_has_nothing_to_saturate():
    result = fastnn.explain([2, 3, 2], output="identity", m=3)
    assert result.output_layer.saturated == []
    assert "nothing can saturate" in result.output_layer.notes[0]


@pytest.mark.parametrize("kw", [dict(layers=[2, 0, 1]), dict(layers=[2, 3, 1], output="softmax"),
                                dict(m=0), dict(scaling="mean"), dict(hidden="gelu"), dict(l2=-1.0),
                                dict(layers=[100, 100, 100], m=20)])
def test_bad_arguments_raise(kw):
    with pytest.raises((ValueError, TypeError)):
        fastnn.explain(**kw)


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------

ARGS = ["explain", "--layers", "2,4,1", "--hidden", "tanh", "--output", "sigmoid", "--m", "5",
        "--scaling", "deferred"]


def test_cli_text_is_plain_when_piped(capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert cli.main(ARGS) == 0
    out = capsys.readouterr().out
    assert not ANSI.search(out)
    assert out == EX.render_text(fastnn.explain([2, 4, 1], hidden="tanh", output="sigmoid", m=5))
    assert "(4, 5) = (4, 2) @ (2, 5) + (4, 1)" in out and "broadcast over 5 columns" in out
    assert out.count(CROSS) == 1  # the one mistaken row of "1/m in every layer" (layer 1 of 2)


def test_cli_colour_on_a_terminal_unless_no_color(capsys, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert cli.main(ARGS) == 0
    assert ANSI.search(capsys.readouterr().out)
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli.main(ARGS) == 0
    assert not ANSI.search(capsys.readouterr().out)


def test_cli_markdown_and_options(capsys):
    assert cli.main(ARGS + ["--format", "markdown", "--seed", "3", "--l2", "0.1"]) == 0
    out = capsys.readouterr().out
    assert out == EX.render_markdown(fastnn.explain([2, 4, 1], m=5, seed=3, l2=0.1))
    assert out.startswith("# fastnn explain") and "l2 = 0.1" in out


@pytest.mark.parametrize("hidden,output,scaling", list(itertools.islice(
    itertools.product(HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS, SCALINGS), 0, None, 7)))
def test_cli_runs_across_options(capsys, hidden, output, scaling):
    assert cli.main(["explain", "--layers", "2,3,2", "--hidden", hidden, "--output", output,
                     "--scaling", scaling, "--m", "3"]) == 0
    assert "checks passed" in capsys.readouterr().out


def test_cli_bad_input_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["explain", "--layers", "2,4,1", "--output", "softmax"])
    assert exc.value.code == 2
    assert "softmax needs at least 2 output units" in capsys.readouterr().err
