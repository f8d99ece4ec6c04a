"""fastnn.stability: the measuring instrument first (rounding, emulation,
summations, reference, error measure), then the sweep machinery (resume,
failures, Dask, CLI)."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest

import fastnn.stability as S
from conftest import STAB_DD_GRAD_REL, STAB_DD_OP_REL, STAB_FP16_ONE_ROUNDING, STAB_LD_VS_DD
from fastnn.stability import evaluate as C
from fastnn.stability import formats as F
from fastnn import engine
from fastnn.backends import numpy_backend as nb
from fastnn.backends.emulated import EmulatedBackend


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
    E = EmulatedBackend("float16")
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
    import mpmath
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
    import distributed
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
    for name in ("summary.md", "ratio_vs_m.png", "error_dW_vs_m.png", "error_db_vs_m.png", "underflow_vs_m.png",
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


# --------------------------------------------------------------------------- statistics

from fastnn.stability import stats as ST  # noqa: E402


def test_bootstrap_interval_covers_a_known_ratio():
    """Synthetic paired errors with true geometric-mean ratio 0.8: the 95 %
    interval must cover it in about 95 % of replicates (20 seeds each)."""
    rng = np.random.default_rng(10)
    true = 0.8
    cover = 0
    reps = 300
    for k in range(reps):
        d = math.log(true) + 0.3 * rng.standard_normal(20)
        lo, hi = ST.bootstrap_ci(d, tag=k)
        cover += lo <= true <= hi
    # binomial(300, 0.95) lies in [0.90, 0.99] with probability > 0.999; the
    # percentile bootstrap undercovers slightly at n = 20 (about 0.93)
    assert 0.88 <= cover / reps <= 0.99, cover / reps


def test_sign_flip_exact_and_holm():
    d = np.array([0.1, 0.2, 0.3])                     # all positive: 2 of 8 patterns as extreme
    assert ST.sign_flip_p(d) == pytest.approx(2 / 8)
    d = np.array([0.1, -0.1])
    assert ST.sign_flip_p(d) == 1.0
    big = np.full(20, 0.1)                            # Monte Carlo: p about 2 * 2^-20, floor 1/(n+1)
    assert ST.sign_flip_p(big) <= 2 / ST.N_FLIPS
    adj = ST.holm([0.01, 0.04, 0.03, 0.5])
    assert np.allclose(adj, [0.04, 0.09, 0.09, 0.5])  # 4*0.01, max(3*0.03, .04), 2*0.04 -> 0.09, 0.5
    c = ST.paired({0: 1.0, 1: 2.0, 2: math.inf}, {0: 2.0, 1: 2.0, 2: 1.0})
    assert c["inf_a"] == 1 and c["n_finite"] == 2 and c["ratio"] == pytest.approx(math.sqrt(0.5))


# --------------------------------------------------------------------------- double-double reference

from fastnn.stability import _dd  # noqa: E402


def test_double_double_primitives_against_fractions():
    rng = np.random.default_rng(11)
    a = _dd.DD(rng.standard_normal(50), rng.standard_normal(50) * 1e-17)
    b = _dd.DD(rng.standard_normal(50) + 3, rng.standard_normal(50) * 1e-17)

    def F(x, i):
        return Fraction(float(x.hi[i])) + Fraction(float(x.lo[i]))
    for op, f in ((_dd.add, lambda x, y: x + y), (_dd.mul, lambda x, y: x * y), (_dd.div, lambda x, y: x / y)):
        r = op(a, b)
        for i in range(50):
            exact = f(F(a, i), F(b, i))
            assert abs(F(r, i) - exact) <= abs(exact) * Fraction(STAB_DD_OP_REL), op.__name__


def test_double_double_reference_against_mpmath():
    import mpmath
    mpmath.mp.dps = 50
    for hidden, output in (("tanh", "sigmoid"), ("relu", "softmax")):
        pt = {**S.BASE, "m": 16, "depth": 2, "width": 3, "n_in": 2, "hidden": hidden, "output": output,
              "seed": 5, "data": "teacher"}
        Ws, bs, X, Y = C._problem(pt)
        GW, Gb, _, _ = S.reference_gradients(Ws, bs, X, Y, hidden, output, "double-double")
        mp = mpmath.mpf
        W = [mpmath.matrix(w.tolist()) for w in Ws]
        b = [mpmath.matrix(v.tolist()) for v in bs]
        gW = [mpmath.zeros(*w.shape) for w in Ws]
        gb = [mpmath.zeros(*v.shape) for v in bs]
        act = {"tanh": mpmath.tanh, "relu": lambda z: z if z > 0 else mp(0)}[hidden]
        for i in range(X.shape[1]):
            x = mpmath.matrix([mp(v) for v in X[:, i]])
            a1 = (W[0] * x + b[0]).apply(act)
            z2 = W[1] * a1 + b[1]
            if output == "sigmoid":
                a2 = z2.apply(lambda z: 1 / (1 + mpmath.exp(-z)))
            else:
                e = z2.apply(mpmath.exp)
                a2 = e / sum(e)
            g2 = a2 - mpmath.matrix([mp(v) for v in Y[:, i]])
            g1 = W[1].T * g2
            for j in range(g1.rows):
                g1[j] *= (1 - a1[j] ** 2) if hidden == "tanh" else (1 if a1[j] > 0 else 0)
            gW[1] += g2 * a1.T
            gb[1] += g2
            gW[0] += g1 * x.T
            gb[0] += g1
        worst = 0.0
        for got, want in ((GW[0], gW[0]), (GW[1], gW[1]), (Gb[0], gb[0]), (Gb[1], gb[1])):
            scale = max(abs(want[r, c]) for r in range(want.rows) for c in range(want.cols))
            for r in range(want.rows):
                for c in range(want.cols):
                    v = mp(float(got.hi[r, c])) + mp(float(got.lo[r, c]))
                    worst = max(worst, float(abs(v - want[r, c]) / scale))
        # 2^-104 = 4.9e-32 per operation; a few hundred operations stay below 1e-28,
        # twelve orders of magnitude below the float64 errors it judges (>= 1e-16)
        assert worst < STAB_DD_GRAD_REL, (hidden, output, worst)


def test_reference_kind_is_chosen_and_recorded(monkeypatch):
    from fastnn.stability import reference as RF
    want = "longdouble" if RF.longdouble_is_extended() else "double-double"
    assert S.reference_kind() == want
    monkeypatch.setenv(RF.REFERENCE_ENV, "double-double")
    pt = {"dtype": "float64", "m": 300, "steps": 2, "depth": 2, "width": 4, "n_in": 3}
    dd = S.evaluate_point(pt)
    assert dd["ref"] == "double-double"
    assert 1e-17 < max(dd["err_dW"]) < 1e-14 and dd["drift_final"] < 1e-14
    if RF.longdouble_is_extended():
        monkeypatch.setenv(RF.REFERENCE_ENV, "longdouble")
        ld = S.evaluate_point(pt)
        assert ld["ref"] == "longdouble"
        # the two references judge the same float64 gradients: the errors agree to
        # the long double reference's own error (2^-64 relative to the gradient)
        for e_ld, e_dd in zip(ld["err_dW"] + ld["err_db"], dd["err_dW"] + dd["err_db"]):
            assert abs(e_ld - e_dd) <= STAB_LD_VS_DD
    monkeypatch.setenv(RF.REFERENCE_ENV, "quad")
    with pytest.raises(ValueError):
        S.reference_kind()


# --------------------------------------------------------------------------- recipes, 1/m, micro-batches

from fastnn.stability import mixed as MX  # noqa: E402


def _grads(pt):
    pt = {**S.BASE, **pt}
    fmt = F.FORMATS[pt["dtype"]]
    bk = C._backend(pt, fmt)
    Ws, bs, X, Y = (C._round_all(v, fmt) for v in C._problem(pt))
    if fmt.native:
        Ws, bs, X, Y = ([a.astype(fmt.storage) for a in Ws], [a.astype(fmt.storage) for a in bs],
                        X.astype(fmt.storage), Y.astype(fmt.storage))
    return bk, fmt, Ws, bs, X, Y, pt


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_plain_recipe_through_the_mixed_path_is_the_backend_path(dtype):
    for scaling in ("deferred", "absorbed", "sum"):
        bk, fmt, Ws, bs, X, Y, pt = _grads({"dtype": dtype, "m": 3000, "scaling": scaling, "depth": 3})
        a = C._run_gradients(bk, fmt, Ws, bs, X, Y, pt)
        b = MX.mixed_gradients(bk, fmt, Ws, bs, X, Y, pt)
        for g, h in zip(a[0] + a[1], b[0] + b[1]):
            assert _same(g, h).all(), (dtype, scaling)


def test_a_saturated_chain_route_is_reported_by_the_recipes_too():
    # bfloat16, m = 2^15: the chain route's dA[L] = -Y/A + (1-Y)/(1-A) is not finite
    # for some example; every recipe reports the saturation instead of failing.
    base = {"dtype": "bfloat16", "output_grad": "chain", "m": 1 << 15, "steps": 0, "depth": 2,
            "width": 4, "n_in": 4}
    for recipe in ("plain", "fp32_epilogue"):
        r = S.evaluate_point({**base, "recipe": recipe})
        assert r["saturated"] is True, recipe


def test_divide_by_m_is_one_correct_rounding():
    for dtype in ("float16", "bfloat16", "float32"):
        fmt = F.FORMATS[dtype]
        ctx = MX._Ctx(fmt, "div")
        x = fmt.array(np.random.default_rng(12).uniform(-4, 4, 200))
        for m in (3, 1000, 100_003, 1_000_000):           # m beyond float16's range too
            got = _f64(ctx.scale(x, m, "fmt"))
            want = np.array([_rne_exact(float(Fraction(float(v)) / m), fmt.p, fmt.emin, fmt.emax)
                             for v in _f64(x)])
            assert _same(got, want).all(), (dtype, m)
        mul = MX._Ctx(fmt, "mul")
        assert not _same(_f64(mul.scale(x, 1000, "fmt")), _f64(ctx.scale(x, 1000, "fmt"))).all() or dtype == "float32"


def test_recipes_against_the_exact_reference_behave_as_derived():
    # float16, m = 2^18 examples, all-positive activations summed over m: the
    # deferred unscaled sums pass 65504 and overflow in the plain recipe; the
    # float32 epilogue applies 1/m before rounding to float16 (error about u16);
    # absorbed flushes small dZ entries to zero, a loss scale brings them back.
    base = {"dtype": "float16", "m": 1 << 18, "steps": 0, "depth": 2, "width": 4, "n_in": 4}
    r = {(rc, s): S.evaluate_point({**base, "recipe": rc, "scaling": s})
         for rc in ("plain", "fp32_epilogue", "static_ls", "dynamic_ls") for s in ("deferred", "absorbed")}
    assert r[("plain", "deferred")]["overflow"] > 0 and max(r[("plain", "deferred")]["err_dW"]) == math.inf
    assert max(r[("fp32_epilogue", "deferred")]["err_dW"]) < STAB_FP16_ONE_ROUNDING
    flushed = r[("plain", "absorbed")]["dz_underflow"]
    assert flushed > 0
    assert r[("fp32_epilogue", "absorbed")]["dz_underflow"] > flushed / 2    # the scale still lands in float16
    for rc in ("static_ls", "dynamic_ls"):
        assert r[(rc, "absorbed")]["dz_underflow"] < flushed / 10
        assert max(r[(rc, "absorbed")]["err_dW"]) < STAB_FP16_ONE_ROUNDING
    # flushed dZ entries lose their contribution: the plain absorbed error is the larger one
    assert max(r[("plain", "absorbed")]["err_dW"]) > 2 * max(r[("dynamic_ls", "absorbed")]["err_dW"])
    dyn = r[("dynamic_ls", "deferred")]
    assert dyn["loss_scale"] * 2 > r[("dynamic_ls", "absorbed")]["loss_scale"] / (1 << 18) and dyn["passes"] >= 2
    # with a loss scale the deferred 1/m is a float32 epilogue: S * dW is stored, no overflow
    assert r[("static_ls", "deferred")]["overflow"] == 0
    assert max(r[("static_ls", "deferred")]["err_dW"]) < STAB_FP16_ONE_ROUNDING


def test_micro_batches_as_derived():
    base = {"dtype": "float16", "m": 1 << 18, "steps": 0, "depth": 2, "width": 4, "n_in": 4,
            "scaling": "deferred"}
    one = S.evaluate_point(base)
    per = S.evaluate_point({**base, "micro": 8, "accum": "per_micro"})
    glob = S.evaluate_point({**base, "micro": 8, "accum": "global"})
    f32 = S.evaluate_point({**base, "micro": 8, "accum": "fp32"})
    assert one["overflow"] > 0                      # one batch of 2^18: the unscaled sums overflow
    assert per["overflow"] == 0 and glob["overflow"] == 0   # 2^15-example sums stay below 65504
    assert max(f32["err_dW"]) <= max(glob["err_dW"]) * 1.05
    # exact powers of two: per-micro 1/m_j = 2^-15 then 1/k = 2^-3 is the global 2^-18
    assert max(per["err_dW"]) < STAB_FP16_ONE_ROUNDING
    with pytest.raises(ValueError):
        S.evaluate_point({**base, "micro": 0})


def test_training_stages_shrink_the_residuals():
    from fastnn.stability import problems as PB
    for data, kw in (("rings", {"hidden": "tanh"}), ("blobs", {"output": "softmax"}), ("teacher", {})):
        pt = {**S.BASE, "m": 4000, "data": data, **kw}
        res = []
        for stage in (0, 100, 1000):
            Ws, bs, X, Y = PB.problem({**pt, "stage": stage})
            As, _ = engine.forward(nb, Ws, bs, X, pt["hidden"], pt["output"])
            res.append(float(np.abs(As[-1] - Y).mean()))
        assert res[2] < res[1] < res[0], (data, res)
    with pytest.raises(ValueError):
        PB.problem({**S.BASE, "data": "blobs"})              # blobs needs the softmax output


def test_environment_is_recorded_and_report_reads_gzip(tmp_path):
    import gzip
    pts = [{"dtype": "float16", "m": 100, "scaling": s, "steps": 0, "seed": k} for s in ("deferred", "absorbed")
           for k in range(3)]
    res = S.run(tmp_path / "r", points=pts, workers=1, progress=False, report=False)
    env = res.records[0]["env"]
    for key in ("python", "numpy", "fastnn", "blas", "float64_reference", "longdouble_bits"):
        assert key in env, key
    gz = tmp_path / "r.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write((tmp_path / "r" / "results.jsonl").read_text())
    assert len(S.load_results(gz)) == len(pts)
    from fastnn.cli import main
    assert main(["stability", "report", str(gz), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "summary.md").read_text()
    assert "absorbed / deferred" in text and "NumPy " + np.__version__ in text
    assert (tmp_path / "rep" / "ratio_vs_m.png").stat().st_size > 1000
