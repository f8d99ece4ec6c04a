"""Report of a stability sweep: ``summary.md`` (tables) and PNG plots.

Every number is a statistic over seeds of the per-point records written by
:func:`fastnn.stability.run`.  A difference between two variants is called
*below noise* when the mean over seeds of ``log10(err_A / err_B)`` (paired by
seed) is not larger than the seed spread (standard deviation over seeds of
``log10 err``, pooled over A and B), or when its sign changes between seeds.
"""

import math
import os

import numpy as np

DTYPE_ORDER = ("float16", "bfloat16", "float32", "float64")
SCALING_ORDER = ("deferred", "absorbed", "sum")
COLORS = {"deferred": "tab:blue", "absorbed": "tab:orange", "sum": "tab:green"}
#: Parameters that must equal the base unless a table varies them.
MATCH = ("depth", "width", "n_in", "hidden", "output", "output_grad", "summation", "backend", "lr")
UNIT_ROUNDOFF = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8, "float32": 2.0 ** -24, "float64": 2.0 ** -53}


def _rows(records):
    rows = []
    for rec in records:
        r = {**rec["params"], **rec["metrics"]}
        r["eW"] = max(rec["metrics"]["err_dW"])
        r["eb"] = max(rec["metrics"]["err_db"])
        rows.append(r)
    return rows


def _select(rows, base, **cond):
    out = []
    for r in rows:
        if all(r.get(k) == v for k, v in cond.items()) and \
                all(r.get(k) == base[k] for k in MATCH if k not in cond):
            out.append(r)
    return out


def _by_seed(rows):
    return {r["seed"]: r for r in rows}


def _is_pow2(m):
    return m & (m - 1) == 0


def _fmt(x, spec=".2e"):
    if x is None:
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return format(x, spec)


def _stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return None, None, None
    a = np.array(v, dtype=float)
    return float(np.median(a)), float(a.min()), float(a.max())


def _cell(values):
    med, lo, hi = _stats(values)
    if med is None:
        return "–"
    if lo == hi:
        return _fmt(med)
    return f"{_fmt(med)} [{_fmt(lo)}–{_fmt(hi)}]"


def _log(x, floor=1e-300):
    return math.log10(max(x, floor))


def compare(a, b, identical=False):
    """Paired comparison of two variants' errors over the same seeds.

    Parameters
    ----------
    a, b : dict
        seed -> error of variants A and B.
    identical : bool
        The two computed gradients were bitwise equal for every seed.

    Returns
    -------
    dict
        ``ratio`` (geometric mean over seeds of ``a/b``), ``lo``/``hi`` (its
        range over seeds), ``spread`` (dex), ``verdict`` one of ``"identical"``,
        ``"A smaller"``, ``"B smaller"``, ``"below noise"``,
        ``"below noise (consistent sign)"``, ``"A not finite"``,
        ``"B not finite"``, ``"both not finite"``, ``"n/a"``.
    """
    seeds = sorted(set(a) & set(b))
    out = {"ratio": None, "lo": None, "hi": None, "spread": None, "n": len(seeds), "verdict": "n/a"}
    if not seeds:
        return out
    va = [a[s] for s in seeds]
    vb = [b[s] for s in seeds]
    fa = all(math.isfinite(x) for x in va)
    fb = all(math.isfinite(x) for x in vb)
    if not (fa and fb):
        out["verdict"] = "both not finite" if not (fa or fb) else "A not finite" if not fa else "B not finite"
        return out
    if identical or all(x == y for x, y in zip(va, vb)):
        out.update(ratio=1.0, lo=1.0, hi=1.0, spread=0.0, verdict="identical")
        return out
    la = np.array([_log(x) for x in va])
    lb = np.array([_log(x) for x in vb])
    rho = la - lb
    out["ratio"] = float(10 ** rho.mean())
    out["lo"], out["hi"] = float(10 ** rho.min()), float(10 ** rho.max())
    if len(seeds) < 2:
        return out
    spread = float(math.sqrt((la.var(ddof=1) + lb.var(ddof=1)) / 2))
    out["spread"] = spread
    consistent = bool((rho > 0).all() or (rho < 0).all())
    if abs(rho.mean()) <= spread:
        out["verdict"] = "below noise (consistent sign)" if consistent else "below noise"
    elif not consistent:
        out["verdict"] = "below noise"
    else:
        out["verdict"] = "A smaller" if rho.mean() < 0 else "B smaller"
    return out


def _ratio_cell(c, name_a, name_b):
    if c["ratio"] is None:
        v = c["verdict"].replace("A ", f"{name_a} ").replace("B ", f"{name_b} ")
        return "–", v
    rng = "" if c["lo"] == c["hi"] else f" [{c['lo']:.3g}–{c['hi']:.3g}]"
    verdict = c["verdict"].replace("A smaller", f"{name_a} smaller").replace("B smaller", f"{name_b} smaller")
    return f"{c['ratio']:.3g}{rng}", verdict


def _identical(ra, rb):
    seeds = set(ra) & set(rb)
    return bool(seeds) and all(ra[s].get("grad_sha") == rb[s].get("grad_sha") for s in seeds)


# --------------------------------------------------------------------------- tables

def _placement_table(rows, base, key, title):
    dtypes = [d for d in DTYPE_ORDER if any(r["dtype"] == d for r in rows)]
    lines = [f"### {title}", "",
             "| dtype | m | 2^k | deferred | absorbed | sum | absorbed / deferred | verdict |",
             "|---|---:|:-:|---|---|---|---|---|"]
    for d in dtypes:
        ms = sorted({r["m"] for r in _select(rows, base, dtype=d)})
        for m in ms:
            by = {s: _by_seed(_select(rows, base, dtype=d, m=m, scaling=s)) for s in SCALING_ORDER}
            if not by["deferred"] and not by["absorbed"]:
                continue
            cells = [_cell([r[key] for r in by[s].values()]) for s in SCALING_ORDER]
            c = compare({k: r[key] for k, r in by["absorbed"].items()},
                        {k: r[key] for k, r in by["deferred"].items()},
                        identical=_identical(by["absorbed"], by["deferred"]))
            ratio, verdict = _ratio_cell(c, "absorbed", "deferred")
            lines.append(f"| {d} | {m} | {'✓' if _is_pow2(m) else ''} | " + " | ".join(cells) +
                         f" | {ratio} | {verdict} |")
    return lines


def _range_table(rows, base):
    lines = ["### Underflow and overflow (mean over seeds)", "",
             "Fractions of the `dW`, `db` entries (reference non-zero) that are exactly 0, "
             "subnormal, or inf/NaN, and of the `dZ[l]` entries that are 0 where the reference "
             "is not (zeros of `g'(Z)` excluded) or inf/NaN.", "",
             "| dtype | m | scaling | dW,db = 0 | dW,db subnormal | dW,db inf/NaN | dZ = 0 | dZ inf/NaN |",
             "|---|---:|---|---|---|---|---|---|"]
    for d in ("float16", "bfloat16"):
        for m in sorted({r["m"] for r in _select(rows, base, dtype=d)}):
            for s in SCALING_ORDER:
                sel = _select(rows, base, dtype=d, m=m, scaling=s)
                if not sel:
                    continue
                vals = [np.mean([r[k] for r in sel]) for k in
                        ("underflow", "subnormal", "overflow", "dz_underflow", "dz_overflow")]
                lines.append(f"| {d} | {m} | {s} | " + " | ".join(_fmt(float(v), ".3g") for v in vals) + " |")
    return lines


def _effects_table(rows, base):
    lines = ["### Placement vs summation order vs output route", "",
             "Ratios of the `dW` error (geometric mean over seeds, paired by seed); placement is "
             "absorbed / deferred, the others are taken with the deferred scaling.  `spread` is the "
             "seed spread of log10(error) of the base point (dex): ratios within 10^±spread are "
             "below noise (marked ~).", "",
             "| dtype | m | spread (dex) | absorbed / deferred | naive / pairwise | backend / pairwise | "
             "fp64acc / pairwise | chain / fused |",
             "|---|---:|---:|---|---|---|---|---|"]
    for d in DTYPE_ORDER:
        ms = sorted({r["m"] for r in rows if r["dtype"] == d and r["summation"] == "naive"})
        for m in ms:
            def get(**c):
                return _by_seed(_select(rows, base, dtype=d, m=m, **c))
            dfd = get(scaling="deferred")
            if not dfd:
                continue
            spread = np.std([_log(r["eW"]) for r in dfd.values()], ddof=1) if len(dfd) > 1 else float("nan")
            cols = []
            for a, b in ((get(scaling="absorbed"), dfd),
                         (get(scaling="deferred", summation="naive"), get(scaling="deferred", summation="pairwise")),
                         (dfd, get(scaling="deferred", summation="pairwise")),
                         (get(scaling="deferred", summation="fp64acc"), get(scaling="deferred", summation="pairwise")),
                         (get(scaling="deferred", output_grad="chain"), dfd)):
                c = compare({k: r["eW"] for k, r in a.items()}, {k: r["eW"] for k, r in b.items()},
                            identical=_identical(a, b))
                if c["ratio"] is None:
                    cols.append(c["verdict"] if c["verdict"] != "n/a" else "–")
                else:
                    mark = "~" if c["verdict"].startswith("below") else ""
                    cols.append(f"{mark}{c['ratio']:.3g}")
            lines.append(f"| {d} | {m} | {spread:.2f} | " + " | ".join(cols) + " |")
    return lines


def _drift_table(rows, base):
    lines = ["### Training: drift from the reference trajectory (median over seeds)", "",
             "`param drift`: relative distance of the parameters to the reference trajectory "
             "after the last step; `cost drift`: relative difference of the final cost (both "
             "costs evaluated in the reference precision).", "",
             "| dtype | m | steps | param drift deferred | absorbed | sum | cost drift deferred | absorbed | sum |",
             "|---|---:|---:|---|---|---|---|---|---|"]
    for d in DTYPE_ORDER:
        ms = sorted({r["m"] for r in _select(rows, base, dtype=d) if r["steps"]})
        for m in ms:
            sel = {s: [r for r in _select(rows, base, dtype=d, m=m, scaling=s) if r["steps"]] for s in SCALING_ORDER}
            if not any(sel.values()):
                continue
            steps = next(r["steps"] for v in sel.values() for r in v)
            cells = [_fmt(_stats([r["drift_final"] for r in sel[s]])[0]) for s in SCALING_ORDER]
            cells += [_fmt(_stats([r["cost_drift"] for r in sel[s]])[0]) for s in SCALING_ORDER]
            lines.append(f"| {d} | {m} | {steps} | " + " | ".join(cells) + " |")
    return lines


def _arch_table(rows, base):
    variants = []
    for r in rows:
        for k in ("depth", "width", "hidden"):
            if r[k] != base[k] and all(r[j] == base[j] for j in MATCH if j != k):
                variants.append((k, r[k]))
    variants = sorted(set(variants), key=str)
    if not variants:
        return []
    lines = ["### Depth, width, activation (dW error, median over seeds)", "",
             "| variant | dtype | m | deferred | absorbed | absorbed / deferred | verdict |",
             "|---|---|---:|---|---|---|---|"]
    for k, v in [(None, None)] + variants:
        for d in DTYPE_ORDER:
            cond = {} if k is None else {k: v}
            ms = sorted({r["m"] for r in _select(rows, base, dtype=d, **cond)})
            if k is None:
                ms = sorted({r["m"] for r in rows for kk, vv in variants if r[kk] == vv and r["dtype"] == d})
            for m in ms:
                a = _by_seed(_select(rows, base, dtype=d, m=m, scaling="absorbed", **cond))
                b = _by_seed(_select(rows, base, dtype=d, m=m, scaling="deferred", **cond))
                if not a or not b:
                    continue
                c = compare({s: r["eW"] for s, r in a.items()}, {s: r["eW"] for s, r in b.items()},
                            identical=_identical(a, b))
                ratio, verdict = _ratio_cell(c, "absorbed", "deferred")
                name = "base" if k is None else f"{k}={v}"
                lines.append(f"| {name} | {d} | {m} | {_cell([r['eW'] for r in b.values()])} | "
                             f"{_cell([r['eW'] for r in a.values()])} | {ratio} | {verdict} |")
    return lines


def _backend_table(rows, base):
    bks = sorted({r["backend"] for r in rows} - {base["backend"]})
    if not bks:
        return []
    lines = ["### Backends (dW error / db error, median over seeds)", "",
             "| dtype | m | scaling | " + " | ".join([base["backend"]] + bks) + " |",
             "|---|---:|---|" + "---|" * (len(bks) + 1)]
    for d in DTYPE_ORDER:
        ms = sorted({r["m"] for r in rows if r["dtype"] == d and r["backend"] in bks})
        for m in ms:
            for s in SCALING_ORDER:
                cells = []
                for bk in [base["backend"]] + bks:
                    sel = _select(rows, base, dtype=d, m=m, scaling=s, backend=bk)
                    cells.append(f"{_fmt(_stats([r['eW'] for r in sel])[0])} / {_fmt(_stats([r['eb'] for r in sel])[0])}")
                lines.append(f"| {d} | {m} | {s} | " + " | ".join(cells) + " |")
    return lines


def _pow2_table(rows, base):
    lines = ["### Powers of two", "",
             "Points (dtype, m, seed) where deferred and absorbed gave bitwise the same `dW`, `db`.", "",
             "| dtype | m = 2^k: identical / points | other m: identical / points |", "|---|---|---|"]
    for d in DTYPE_ORDER:
        counts = {True: [0, 0], False: [0, 0]}
        for m in sorted({r["m"] for r in _select(rows, base, dtype=d)}):
            a = _by_seed(_select(rows, base, dtype=d, m=m, scaling="absorbed"))
            b = _by_seed(_select(rows, base, dtype=d, m=m, scaling="deferred"))
            for s in set(a) & set(b):
                counts[_is_pow2(m)][1] += 1
                counts[_is_pow2(m)][0] += a[s].get("grad_sha") == b[s].get("grad_sha")
        if counts[True][1] or counts[False][1]:
            lines.append(f"| {d} | {counts[True][0]} / {counts[True][1]} | {counts[False][0]} / {counts[False][1]} |")
    return lines


# --------------------------------------------------------------------------- plots

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _null():
    from matplotlib import ticker
    return ticker.NullLocator()


def _plain():
    from matplotlib import ticker
    return ticker.FuncFormatter(lambda v, _pos: "0" if v == 0 else f"{v:.0e}".replace("e-0", "e-").replace("e+00", ""))


def _save(plt, fig, path):
    """PNG at 80 dpi, quantized to a 128-colour palette (a third of the size)."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    try:
        from PIL import Image
    except ImportError:
        with open(path, "wb") as fh:
            fh.write(buf.getvalue())
        return
    buf.seek(0)
    Image.open(buf).convert("RGB").quantize(colors=128).save(path, optimize=True)


def _log_axes(ax, x=True, y=True, y_subs=(1.0,)):
    """Log axes with plain '1e-5' labels (mathtext labels are slow to lay out)."""
    from matplotlib import ticker

    def fmt(v, _pos):
        if v <= 0:
            return "0"
        e = math.log10(v)
        if abs(e - round(e)) < 1e-9:
            return f"1e{int(round(e))}"
        return f"{v:.2g}".replace("e-0", "e-")

    for on, axis, setter, subs in ((x, ax.xaxis, ax.set_xscale, (1.0,)), (y, ax.yaxis, ax.set_yscale, y_subs)):
        if on:
            setter("log")
            axis.set_major_locator(ticker.LogLocator(base=10, subs=subs, numticks=12))
            axis.set_major_formatter(ticker.FuncFormatter(fmt))
            axis.set_minor_locator(ticker.NullLocator())


def _series(rows, key, xs):
    med, lo, hi = [], [], []
    for x in xs:
        vals = [r[key] for r in rows if r["m"] == x and r[key] is not None]
        s = _stats(vals)
        med.append(s[0] if s[0] is not None else np.nan)
        lo.append(s[1] if s[1] is not None else np.nan)
        hi.append(s[2] if s[2] is not None else np.nan)
    return np.array(med, float), np.array(lo, float), np.array(hi, float)


def _plot_lines(ax, x, med, lo, hi, color, label, style="-", marker="o", filled=True, floor=None):
    x = np.asarray(x, float)
    bad = ~np.isfinite(med)
    med_p = np.where(np.isfinite(med), med, np.nan)
    if floor is not None:                       # exact zeros drawn at the floor of the log axis
        med_p = np.where(med_p == 0, floor, med_p)
        lo = np.where(lo == 0, floor, lo)
    ax.plot(x, med_p, style, color=color, marker=marker, ms=4,
            mfc=color if filled else "white", label=label)
    lo_f = np.where(np.isfinite(lo), lo, np.nan)
    hi_f = np.where(np.isfinite(hi), hi, np.nan)
    ax.fill_between(x, lo_f, hi_f, color=color, alpha=0.15, lw=0)
    if bad.any() and np.isinf(med[bad]).any():
        ax.plot(x[bad], np.full(bad.sum(), 1.0), "x", color=color, ms=7, transform=ax.get_xaxis_transform(),
                clip_on=False)


def _error_plot(rows, base, key, path, what):
    plt = _plt()
    dtypes = [d for d in DTYPE_ORDER if _select(rows, base, dtype=d)]
    n = len(dtypes)
    cols = 2 if n > 1 else 1
    fig, axes = plt.subplots((n + 1) // 2, cols, figsize=(5.2 * cols, 3.6 * ((n + 1) // 2)), squeeze=False)
    for ax, d in zip(axes.ravel(), dtypes):
        for s in SCALING_ORDER:
            sel = _select(rows, base, dtype=d, scaling=s)
            if not sel:
                continue
            ms = sorted({r["m"] for r in sel})
            for pow2, style, filled in ((True, "-", True), (False, "--", False)):
                xs = [m for m in ms if _is_pow2(m) == pow2]
                if not xs:
                    continue
                med, lo, hi = _series(sel, key, xs)
                _plot_lines(ax, xs, med, lo, hi, COLORS[s], f"{s}, m {'= 2^k' if pow2 else '≠ 2^k'}",
                            style, "o" if pow2 else "s", filled, floor=UNIT_ROUNDOFF[d] * 1e-3)
        ax.axhline(UNIT_ROUNDOFF[d], color="gray", lw=0.8, ls=":")
        ax.text(0.01, UNIT_ROUNDOFF[d], " u", color="gray", transform=ax.get_yaxis_transform(), va="bottom")
        _log_axes(ax)
        ax.set_title(d)
        ax.set_xlabel("m (examples)")
        ax.set_ylabel(f"relative error of {what}")
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"{what}: ||g - ref|| / ||ref||, worst layer; median over seeds, band = min-max; "
                 "x at top = inf/NaN", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    _save(plt, fig, path)


def _range_plot(rows, base, path):
    plt = _plt()
    dtypes = [d for d in ("float16", "bfloat16") if _select(rows, base, dtype=d)]
    if not dtypes:
        return False
    keys = (("underflow", "dW, db entries = 0 (ref ≠ 0)"), ("dz_underflow", "dZ entries = 0 (ref ≠ 0)"),
            ("overflow", "dW, db entries inf/NaN"))
    fig, axes = plt.subplots(len(dtypes), 3, figsize=(13, 3.3 * len(dtypes)), squeeze=False)
    for row, d in zip(axes, dtypes):
        for ax, (key, title) in zip(row, keys):
            for s in SCALING_ORDER:
                sel = _select(rows, base, dtype=d, scaling=s)
                if not sel:
                    continue
                xs = sorted({r["m"] for r in sel})
                vals = [[r[key] for r in sel if r["m"] == x] for x in xs]
                mean = np.array([np.mean(v) for v in vals])
                lo = np.array([np.min(v) for v in vals])
                hi = np.array([np.max(v) for v in vals])
                ax.plot(xs, mean, "-o", color=COLORS[s], ms=3, label=s)
                ax.fill_between(xs, lo, hi, color=COLORS[s], alpha=0.15, lw=0)
            _log_axes(ax, y=False)
            ax.set_yscale("symlog", linthresh=1e-4)
            ax.yaxis.set_major_formatter(_plain())
            ax.yaxis.set_minor_locator(_null())
            ax.set_ylim(-1e-5, 1.5)
            ax.set_title(f"{d}: {title}", fontsize=9)
            ax.set_xlabel("m")
            ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("fraction of entries (mean over seeds, band = min-max; symlog axis, linear below 1e-4)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    _save(plt, fig, path)
    return True


def _effects_plot(rows, base, path):
    plt = _plt()
    dtypes = [d for d in DTYPE_ORDER if any(r["dtype"] == d and r["summation"] == "naive" for r in rows)]
    if not dtypes:
        return False
    variants = (("deferred (base)", "k", {"scaling": "deferred"}),
                ("absorbed", COLORS["absorbed"], {"scaling": "absorbed"}),
                ("naive sum", "tab:red", {"scaling": "deferred", "summation": "naive"}),
                ("pairwise sum", "tab:purple", {"scaling": "deferred", "summation": "pairwise"}),
                ("fp64-accumulated", "tab:brown", {"scaling": "deferred", "summation": "fp64acc"}),
                ("chain route", "tab:olive", {"scaling": "deferred", "output_grad": "chain"}))
    cols = 2 if len(dtypes) > 1 else 1
    fig, axes = plt.subplots((len(dtypes) + 1) // 2, cols, figsize=(5.2 * cols, 3.6 * ((len(dtypes) + 1) // 2)),
                             squeeze=False)
    for ax, d in zip(axes.ravel(), dtypes):
        ms = sorted({r["m"] for r in rows if r["dtype"] == d and r["summation"] == "naive"})
        for label, color, cond in variants:
            sel = [r for r in _select(rows, base, dtype=d, **cond) if r["m"] in ms]
            if not sel:
                continue
            xs = sorted({r["m"] for r in sel})
            med, lo, hi = _series(sel, "eW", xs)
            _plot_lines(ax, xs, med, lo, hi, color, label, floor=UNIT_ROUNDOFF[d] * 1e-3)
        ax.axhline(UNIT_ROUNDOFF[d], color="gray", lw=0.8, ls=":")
        _log_axes(ax)
        ax.set_title(d)
        ax.set_xlabel("m")
        ax.set_ylabel("relative error of dW")
        ax.grid(True, alpha=0.3)
    for ax in axes.ravel()[len(dtypes):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle("1/m placement vs summation order vs output route (dW error, median over seeds, "
                 "band = min-max)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    _save(plt, fig, path)
    return True


def _drift_plot(rows, base, path):
    plt = _plt()
    dtypes = [d for d in DTYPE_ORDER if any(r["steps"] for r in _select(rows, base, dtype=d))]
    if not dtypes:
        return False
    fig, axes = plt.subplots(1, len(dtypes), figsize=(3.6 * len(dtypes), 3.6), squeeze=False)
    for ax, d in zip(axes[0], dtypes):
        for s in SCALING_ORDER:
            sel = [r for r in _select(rows, base, dtype=d, scaling=s) if r["steps"]]
            if not sel:
                continue
            ms = sorted({r["m"] for r in sel})
            for pow2, style, filled in ((True, "-", True), (False, "--", False)):
                xs = [m for m in ms if _is_pow2(m) == pow2]
                if xs:
                    med, lo, hi = _series(sel, "drift_final", xs)
                    _plot_lines(ax, xs, med, lo, hi, COLORS[s], f"{s}, m {'= 2^k' if pow2 else '≠ 2^k'}",
                                style, "o" if pow2 else "s", filled, floor=UNIT_ROUNDOFF[d] * 1e-3)
        _log_axes(ax, y_subs=(1.0, 2.0, 5.0))
        ax.set_title(d)
        ax.set_xlabel("m")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("relative parameter drift")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle("training: ||theta_N - theta_ref,N|| / ||theta_ref,N|| after N full-batch GD steps "
                 "(median over seeds, band = min-max)", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 0.93))
    _save(plt, fig, path)
    return True


def write_report(out_dir, records, base):
    """Write ``summary.md`` and the plots; return {name: path}."""
    rows = _rows(records)
    files = {}
    lines = ["# Stability sweep: where the 1/m goes", "",
             f"{len(rows)} points.  Base point: " +
             ", ".join(f"`{k}={base[k]}`" for k in MATCH + ("n_in",) if k in base and k != "n_in") +
             f", `n_in={base.get('n_in')}`.  Errors are relative to a reference of the same "
             "computation in higher precision (float64; long double for float64 runs): "
             "`||g - ref||_2 / ||ref||_2` of the worst layer, median over seeds with "
             "[min–max].  Verdicts compare paired seeds: *below noise* when the mean "
             "log-ratio is within the seed spread of log10(error) or changes sign.", ""]
    lines += _placement_table(rows, base, "eW", "Placement of 1/m: dW error") + [""]
    lines += _placement_table(rows, base, "eb", "Placement of 1/m: db error") + [""]
    lines += _pow2_table(rows, base) + [""]
    lines += _range_table(rows, base) + [""]
    lines += _effects_table(rows, base) + [""]
    lines += _drift_table(rows, base) + [""]
    arch = _arch_table(rows, base)
    if arch:
        lines += arch + [""]
    bk = _backend_table(rows, base)
    if bk:
        lines += bk + [""]
    path = os.path.join(out_dir, "summary.md")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    files["summary.md"] = path
    try:
        _plt()
    except ImportError:
        return files
    for name, fn in (("error_dW_vs_m.png", lambda p: _error_plot(rows, base, "eW", p, "dW") or True),
                     ("error_db_vs_m.png", lambda p: _error_plot(rows, base, "eb", p, "db") or True),
                     ("underflow_vs_m.png", lambda p: _range_plot(rows, base, p)),
                     ("effects_vs_m.png", lambda p: _effects_plot(rows, base, p)),
                     ("drift_vs_m.png", lambda p: _drift_plot(rows, base, p))):
        p = os.path.join(out_dir, name)
        if fn(p):
            files[name] = p
    return files
