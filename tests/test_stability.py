"""fastnn.stability: the measuring instrument first (rounding, emulation,
summations, reference, error measure), then the sweep machinery (resume,
failures, Dask, CLI)."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest

import fastnn.stability as S
from fastnn.stability import evaluate as C
from fastnn.stability import formats as F
from fastnn.backends import numpy_backend as nb


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _same(a, b):
    a, b = _f64(a), _f64(b)
    return (a == b) | (np.isnan(a) & np.isnan(b))


# --------------------------------------------------------------------------- rounding and emulation

def _values(rng, lo, hi, n=20000):
    x = rng.standard_normal(n) * 2.0 ** rng.integers(lo, hi, n)
    return np.concatenate([x, -x])


def test_round_to_format_is_the_hardware_rounding_for_float16_and_float32():
    rng = np.random.default_rng(0)
    grid = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    ties = (grid[:-1] + grid[1:]) / 2                     # every float16 midpoint
    x16 = np.concatenate([_values(rng, -30, 18), ties, -ties, grid,
                          [65504.0, 65519.99, 65520.0, 1e6, np.inf, -np.inf, 0.0, 2.0 ** -25]])
    with np.errstate(over="ignore"):
        want16 = x16.astype(np.float16).astype(np.float64)
        x32 = _values(rng, -160, 130)
        want32 = x32.astype(np.float32).astype(np.float64)
    assert _same(S.round_to_format(x16, "float16"), want16).all()
    assert (np.signbit(S.round_to_format(x16, "float16")) == np.signbit(want16)).all()
    assert _same(S.round_to_format(x32, "float32"), want32).all()          # incl. float32 subnormals
    assert _same(F._round_fast(x16, F.FORMATS["float16"]), want16).all()   # the compiled twin


def _rne_exact(x, p, emin, emax):
    """Round-to-nearest-even of a float onto (p, emin, emax), with Fractions."""
    if x == 0 or not math.isfinite(x):
        return x
    f = Fraction(x)
    a = abs(f)
    e = math.floor(math.log2(a))
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    q = max(e - p + 1, emin - p + 1)
    units = a / Fraction(2) ** q
    n = math.floor(units)
    rem = units - n
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and n % 2):
        n += 1
    r = n * Fraction(2) ** q
    if r > (2 - Fraction(2) ** (1 - p)) * Fraction(2) ** emax:
        return math.copysign(math.inf, x)
    return math.copysign(float(r), x)


def test_round_to_format_bfloat16_against_exact_rational_rounding():
    rng = np.random.default_rng(1)
    grid = np.array([1.0, 1.0078125, 2.0 ** -126, 2.0 ** -133, 3.0 * 2.0 ** -133, 1.5 * 2.0 ** 127])
    ties = np.concatenate([grid * (1 + 2.0 ** -8), grid + 2.0 ** -134])   # midpoints, incl. subnormal ones
    x = np.concatenate([_values(rng, -140, 130, 1500), ties, -ties,
                        [3.3895313892515355e38, 3.4e38, 2.0 ** -134, 2.0 ** -135]])
    want = np.array([_rne_exact(float(v), 8, -126, 127) for v in x])
    got = S.round_to_format(x, "bfloat16")
    assert _same(got, want).all()
    assert _same(F._round_fast(x, F.FORMATS["bfloat16"]), want).all()


def test_emulation_reproduces_numpy_float16_bitwise():
    """The bfloat16 emulator, run with float16's parameters, must give NumPy's
    float16 results bit for bit wherever both define the same operations."""
    E = F._Emulated("float16")
    rng = np.random.default_rng(2)
    m = 3000
    W = (rng.standard_normal((6, 5)) * 0.5).astype(np.float16)
    A = rng.standard_normal((5, m)).astype(np.float16)
    b = (rng.standard_normal((6, 1)) * 0.1).astype(np.float16)
    dA = (rng.standard_normal((6, m)) * 0.3).astype(np.float16)
    s = np.float16(1 / m)
    for act in ("identity", "relu", "leaky_relu", "tanh", "sigmoid"):
        Zn = W @ A + b                                  # the same pre-activation for both
        An = nb.ACTIVATIONS[act](Zn.copy(), Zn.copy())
        assert _same(An, E._act(_f64(Zn), act)).all(), act
        dZn, dbn = nb.backward_hidden(dA.copy(), An, act, s)
        dZe, dbe = E.backward_hidden(_f64(dA), _f64(An), act, float(s))
        assert _same(dZn, dZe).all() and _same(dbn, dbe).all(), act
    Z = rng.standard_normal((3, m)).astype(np.float16)          # no saturation: chain finite
    for out in ("sigmoid", "softmax", "identity"):
        Aout = nb.ACTIVATIONS[out](Z, np.empty_like(Z))
        assert _same(Aout, E._act(_f64(Z), out)).all(), out
        Y = np.zeros_like(Aout)
        Y[rng.integers(0, 3, m), np.arange(m)] = 1
        for dz in (np.float16(1), s):
            got = nb.output_delta(Z, Aout, Y, out, dz, s)[:2]
            emu = E.output_delta(_f64(Z), _f64(Aout), _f64(Y), out, float(dz), float(s))[:2]
            assert all(_same(g, e).all() for g, e in zip(got, emu)), out
            got = nb.output_delta_chain(Z, Aout, Y, out, dz, s)[:2]
            emu = E.output_delta_chain(_f64(Z), _f64(Aout), _f64(Y), out, float(dz), float(s))[:2]
            assert all(_same(g, e).all() for g, e in zip(got, emu)), out
    P, G = W.copy(), (rng.standard_normal(W.shape)).astype(np.float16)
    Pe = _f64(P)
    nb.sgd_update(P, G, np.float16(0.3))
    E.sgd_update(Pe, _f64(G), float(np.float16(0.3)))
    assert _same(P, Pe).all()
    # Matrix products accumulate in float32 in both, in different orders: all
    # within one float16 ulp, and almost all bitwise.
    got, emu = _f64(nb.input_grad(W, dA)), E.input_grad(_f64(W), _f64(dA))
    assert np.all(np.abs(got - emu) <= np.spacing(np.abs(got).astype(np.float16)).astype(np.float64))
    assert _same(got, emu).mean() > 0.999


# --------------------------------------------------------------------------- summations

def _exact_sums(P, Q):
    """sum_i P[j,i] Q[k,i] exactly (products exact in float64 for narrow inputs)."""
    P64, Q64 = _f64(P), _f64(Q)
    return np.array([[math.fsum(P64[j] * Q64[k]) for k in range(Q.shape[0])] for j in range(P.shape[0])])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("m", [1, 7, 1001, 4096])
def test_summations_against_fsum(dtype, m):
    fmt = F.FORMATS[dtype]
    rng = np.random.default_rng(m)
    P = fmt.array(rng.uniform(0.1, 1.0, (2, m)))            # positive terms: worst-case growth visible
    Q = np.ones((1, m), dtype=fmt.storage)
    exact = _exact_sums(P, Q)
    absum = _exact_sums(np.abs(_f64(P)), np.ones((1, m)))
    u = fmt.eps / 2
    bounds = {"naive": (m - 1) * u, "pairwise": math.ceil(math.log2(max(m, 2))) * u,
              "fp64acc": u + m * 2.0 ** -53}
    for method, k in bounds.items():
        got = _f64(S.weighted_sums(P, Q, method, dtype))
        err = np.abs(got - exact)
        assert np.all(err <= k * absum * (1 + 1e-6) + 1e-300), (method, err / absum)
    if m >= 1001 and dtype != "float64":
        e_naive = np.abs(_f64(S.weighted_sums(P, Q, "naive", dtype)) - exact).max()
        e_pair = np.abs(_f64(S.weighted_sums(P, Q, "pairwise", dtype)) - exact).max()
        assert e_pair < e_naive          # the orders really differ


def test_summation_orders_are_the_ones_claimed():
    rng = np.random.default_rng(3)
    x16 = (rng.uniform(0, 1, 3000)).astype(np.float16)
    naive16 = np.add.accumulate(x16)[-1]                   # NumPy's honest float16 left-to-right
    assert S.weighted_sums(x16[None], np.ones((1, 3000), np.float16), "naive", "float16")[0, 0] == naive16
    x32 = rng.standard_normal(37).astype(np.float32)
    y32 = rng.standard_normal(37).astype(np.float32)
    acc = np.float32(0)
    for a, b in zip(x32, y32):
        acc = np.float32(acc + np.float32(a * b))
    assert S.weighted_sums(x32[None], y32[None], "naive", "float32")[0, 0] == acc

    def tree(v):                                            # adjacent pairs, stride 1, 2, 4, ...
        v = list(v)
        s = 1
        while s < len(v):
            for i in range(0, len(v) - s, 2 * s):
                v[i] = np.float32(v[i] + v[i + s])
            s *= 2
        return v[0]
    assert S.weighted_sums(x32[None], np.ones((1, 37), np.float32), "pairwise", "float32")[0, 0] == tree(x32)
    with pytest.raises(ValueError):
        S.weighted_sums(x32[None], y32[None], "kahan", "float32")


# --------------------------------------------------------------------------- reference and error measure

def test_long_double_reference_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    pt = {**S.BASE, "m": 24, "depth": 2, "width": 3, "n_in": 2, "hidden": "tanh", "seed": 5}
    Ws, bs, X, Y = C._problem(pt)
    GW, Gb, _, _ = S.reference_gradients(Ws, bs, X, Y, "tanh", "sigmoid", np.longdouble)
    mp = mpmath.mpf
    W1, W2 = mpmath.matrix(Ws[0].tolist()), mpmath.matrix(Ws[1].tolist())
    b1, b2 = mpmath.matrix(bs[0].tolist()), mpmath.matrix(bs[1].tolist())
    gW1, gW2 = mpmath.zeros(*Ws[0].shape), mpmath.zeros(*Ws[1].shape)
    gb1, gb2 = mpmath.zeros(*bs[0].shape), mpmath.zeros(*bs[1].shape)
    for i in range(X.shape[1]):
        x = mpmath.matrix([mp(v) for v in X[:, i]])
        a1 = (W1 * x + b1).apply(mpmath.tanh)
        a2 = (W2 * a1 + b2).apply(lambda z: 1 / (1 + mpmath.exp(-z)))
        g2 = a2 - mpmath.matrix([mp(v) for v in Y[:, i]])
        g1 = W2.T * g2
        for j in range(g1.rows):
            g1[j] *= 1 - a1[j] ** 2
        gW2 += g2 * a1.T
        gb2 += g2
        gW1 += g1 * x.T
        gb1 += g1
    def exact(v):                      # a long double as an mpmath number, exactly
        hi = float(v)
        return mp(hi) + mp(float(v - np.longdouble(hi)))

    worst = 0.0
    for got, want in ((GW[0], gW1), (GW[1], gW2), (Gb[0], gb1), (Gb[1], gb2)):
        scale = max(abs(want[r, c]) for r in range(want.rows) for c in range(want.cols))
        for r in range(want.rows):
            for c in range(want.cols):
                worst = max(worst, float(abs(exact(got[r, c]) - want[r, c]) / scale))
    # Long double eps is 1.08e-19; the float64 runs it judges err by >= 1.1e-16.
    print(f"long double reference vs mpmath: {worst:.2e}")
    assert worst < 1e-17, worst


def test_long_double_pairwise_sum_bound():
    rng = np.random.default_rng(4)
    m = 1 << 16
    x = rng.standard_normal(m).astype(np.longdouble) * np.longdouble(1 + 2.0 ** -40)
    hi = x.astype(np.float64)
    lo = (x - hi.astype(np.longdouble)).astype(np.float64)                  # exact split
    s1 = math.fsum(np.concatenate([hi, lo]))
    s2 = math.fsum(np.concatenate([hi, lo, [-s1]]))
    exact = np.longdouble(s1) + np.longdouble(s2)
    err = abs(np.sum(x) - exact) / np.sum(np.abs(x))
    assert err <= 16 * np.finfo(np.longdouble).eps / 2, err


def test_relative_errors_on_planted_errors():
    rng = np.random.default_rng(6)
    r = rng.standard_normal((4, 5))
    g = r.copy()
    g[1, 2] *= 1 + 1e-5
    e = S.relative_errors(g, r)
    assert e["elem"] == pytest.approx(1e-5, rel=1e-9)
    assert e["norm"] == pytest.approx(abs(r[1, 2]) * 1e-5 / np.linalg.norm(r), rel=1e-9)
    assert e["max"] == pytest.approx(abs(r[1, 2]) * 1e-5 / np.abs(r).max(), rel=1e-9)
    assert S.relative_errors(r, r) == {"norm": 0.0, "max": 0.0, "elem": 0.0}
    g[0, 0] = np.inf
    assert S.relative_errors(g, r)["norm"] == math.inf
    z = r.copy()
    z[0, 0] = 0
    g = z.copy()
    g[0, 0] = 1e-30
    assert S.relative_errors(g, z)["elem"] == math.inf          # non-zero where the reference is 0
    # through a whole point: an error planted in the float32 run is found at its size
    pt = {"dtype": "float32", "m": 100, "steps": 0}
    base = S.evaluate_point(pt)
    assert 1e-9 < max(base["err_dW"]) < 1e-5
    assert base["ref"] == "float64" and S.evaluate_point({"dtype": "float64", "m": 100, "steps": 0})["ref"] == "longdouble"


def test_powers_of_two_and_float16_range_facts():
    # 1/m exact: deferred and absorbed are bitwise equal in float32; not for m = 1000.
    pw = {(s, m): S.evaluate_point({"dtype": "float32", "m": m, "scaling": s, "steps": 0})["grad_sha"]
          for s in ("deferred", "absorbed") for m in (1000, 1024)}
    assert pw[("deferred", 1024)] == pw[("absorbed", 1024)]
    assert pw[("deferred", 1000)] != pw[("absorbed", 1000)]
    # float16, large m: 1/m applied to dZ[L] pushes dZ entries to zero; deferred keeps them.
    small = {"dtype": "float16", "m": 1 << 18, "steps": 0, "depth": 2, "width": 4, "n_in": 4}
    d = S.evaluate_point({**small, "scaling": "deferred"})
    a = S.evaluate_point({**small, "scaling": "absorbed"})
    assert a["dz_underflow"] > 100 * d["dz_underflow"]
    # ... and unscaled float16 sums overflow once they pass 65504 (pairwise and float32
    # accumulation reach the true total), while a naive float16 loop stagnates at 2048.
    ones = np.ones((1, 1 << 17), np.float16)
    assert math.isinf(S.weighted_sums(ones, ones, "pairwise", "float16")[0, 0])
    with np.errstate(over="ignore"):
        assert math.isinf(float((ones @ ones.T)[0, 0]))      # the numpy backend's float16 matmul
    assert S.weighted_sums(ones, ones, "naive", "float16")[0, 0] == 2048


# --------------------------------------------------------------------------- sweep machinery

POINTS = [{"dtype": d, "m": m, "scaling": s, "steps": 2, "depth": 2, "width": 3, "n_in": 2}
          for d in ("float16", "float32") for m in (10, 16) for s in ("deferred", "absorbed")]
BAD = {"dtype": "float32", "m": 10, "hidden": "bogus"}


def _metrics(records):
    out = {}
    for r in records:
        m = dict(r["metrics"])
        m.pop("elapsed_s")
        out[r["key"]] = m
    return out


def test_run_writes_skips_resumes_and_reports_failures(tmp_path):
    res = S.run(tmp_path, points=POINTS + [BAD], workers=1, progress=False, report=False)
    assert (res.computed, res.skipped, len(res.failures)) == (len(POINTS), 0, 1)
    fail = res.failures[0]
    assert fail["params"]["hidden"] == "bogus" and "bogus" in fail["error"] and fail["key"] == S.point_key(BAD)
    assert json.loads((tmp_path / "failures.jsonl").read_text().strip())["params"]["hidden"] == "bogus"
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(POINTS)
    # a re-run computes nothing that is there, and retries the failure
    again = S.run(tmp_path, points=POINTS + [BAD], workers=1, progress=False, report=False)
    assert (again.computed, again.skipped, len(again.failures)) == (0, len(POINTS), 1)
    # interrupted mid-write: the truncated last line is ignored and that point recomputed
    text = (tmp_path / "results.jsonl").read_text()
    (tmp_path / "results.jsonl").write_text(text[: len(text) - len(lines[-1]) // 2 - 1])
    assert len(S.load_results(tmp_path)) == len(POINTS) - 1
    third = S.run(tmp_path, points=POINTS, workers=1, progress=False, report=False)
    assert (third.computed, third.skipped) == (1, len(POINTS) - 1)
    assert _metrics(third.records) == _metrics(res.records)
    assert all(json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()[-1:])
    with pytest.raises(ValueError):
        S.run(tmp_path, points=[{"colour": 1}], workers=1, progress=False)


def test_dask_local_cluster_gives_the_serial_results(tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = S.run(tmp_path / "serial", points=POINTS, workers=1, progress=False, report=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                                  dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")      # what --scheduler takes
        res = S.run(tmp_path / "dask", points=POINTS + [BAD], scheduler=cluster.scheduler_address,
                    progress=False, report=False)
        assert res.computed == len(POINTS) and len(res.failures) == 1
        assert res.failures[0]["params"]["hidden"] == "bogus"
        assert _metrics(res.records) == _metrics(serial.records)
        again = S.run(tmp_path / "dask", points=POINTS, scheduler=cluster.scheduler_address,
                      progress=False, report=False)
        assert (again.computed, again.skipped) == (0, len(POINTS))


def test_cli_quick_run(tmp_path, capsys):
    from fastnn.cli import main
    out = tmp_path / "quick"
    assert main(["stability", "--quick", "--out", str(out), "--no-progress"]) == 0
    records = S.load_results(out)
    assert len(records) == len(S.sweep_points("quick"))
    for name in ("summary.md", "error_dW_vs_m.png", "error_db_vs_m.png", "underflow_vs_m.png",
                 "effects_vs_m.png", "drift_vs_m.png"):
        assert (out / name).stat().st_size > 1000, name
    summary = (out / "summary.md").read_text()
    assert "absorbed / deferred" in summary and "float16" in summary and "bfloat16" in summary
    # the worker processes computed what this process computes
    for rec in records[:3]:
        again = S.evaluate_point(rec["params"])
        again.pop("elapsed_s")
        want = dict(rec["metrics"])
        want.pop("elapsed_s")
        assert again == want
    assert "computed" in capsys.readouterr().out
