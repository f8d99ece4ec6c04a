"""Report of a stability sweep: ``summary.md`` (tables) and PNG plots.

Every number is a statistic over seeds of the per-point records written by
:func:`fastnn.stability.run`.  Two variants are compared on the seeds they
share (:mod:`.stats`): geometric-mean error ratio with a 95 % bootstrap
interval, the sign-flip test, Holm's correction over every comparison of the
report; a difference is called only where the adjusted p is below 0.05.
"""

import itertools
import json
import math
import os

import numpy as np

DTYPE_ORDER = ("float16", "bfloat16", "float32", "float64")
SCALING_ORDER = ("deferred", "absorbed", "sum")
#: One colour per convention (placement of 1/m), in every plot.
COLORS = {"deferred": "tab:blue", "absorbed": "tab:orange", "sum": "tab:green"}
#: One colour per mixed-precision recipe (headline ratios), distinct from the conventions'.
RECIPE_COLORS = {"plain": "black", "fp32_epilogue": "tab:purple", "static_ls": "tab:brown",
                 "dynamic_ls": "tab:cyan"}
RECIPE_ORDER = ("plain", "fp32_epilogue", "static_ls", "dynamic_ls")
#: Line style and marker per recipe, so that coinciding series stay visible.
RECIPE_STYLE = {"plain": ("-", "o", 6.5), "fp32_epilogue": ("--", "s", 5.5), "static_ls": (":", "^", 7),
                "dynamic_ls": ("-.", "D", 4)}
#: Parameters that must equal the base unless a table varies them.
MATCH = ("depth", "width", "n_in", "hidden", "output", "output_grad", "summation", "backend", "lr",
         "recipe", "inv_m", "micro", "accum", "loss_scale", "stage", "data")
_DEFAULTS = {"recipe": "plain", "inv_m": "mul", "micro": 1, "accum": "global", "loss_scale": 4096.0,
             "stage": 0, "data": "teacher"}
UNIT_ROUNDOFF = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8, "float32": 2.0 ** -24, "float64": 2.0 ** -53}


def _rows(records):
    rows = []
    for rec in records:
        met = dict(rec["metrics"])
        met["ls_used"] = met.pop("loss_scale", None)          # the scale used, not the parameter
        r = {**_DEFAULTS, **rec["params"], **met}
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


class _Holm:
    """Two passes over the tables: the first collects every comparison's
    p-value (by tag), the second formats with Holm-adjusted p-values."""

    def __init__(self):
        self.raw, self.adj = {}, None

    def finish(self):
        from .stats import holm
        tags = list(self.raw)
        self.adj = dict(zip(tags, holm([self.raw[t] for t in tags])))


_HOLM = _Holm()


def compare(a, b, identical=False, tag=None):
    """Paired comparison of two variants' errors over the same seeds.

    Parameters
    ----------
    a, b : dict
        seed -> error of variants A and B.
    identical : bool
        The two computed gradients were bitwise equal for every seed.
    tag : hashable
        Names the comparison (Holm's family, bootstrap seed).

    Returns
    -------
    dict
        :func:`.stats.paired`'s fields plus ``p_adj`` (Holm over the report;
        None in the collecting pass) and ``verdict``: ``"identical"``,
        ``"A smaller"``, ``"B smaller"``, ``"no difference detected"``,
        ``"A not finite"``, ``"B not finite"``, ``"both not finite"``, ``"n/a"``.
    """
    from .stats import paired
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return {"ratio": None, "n": 0, "verdict": "n/a", "p_adj": None}
    if identical or all(a[s] == b[s] for s in seeds):
        return {"ratio": 1.0, "lo": 1.0, "hi": 1.0, "n": len(seeds), "p": 1.0, "p_adj": 1.0,
                "inf_a": 0, "inf_b": 0, "verdict": "identical"}
    c = paired(a, b, tag=tag)
    c["p_adj"] = None
    if c["inf_a"] or c["inf_b"]:
        c["verdict"] = ("both not finite" if c["inf_a"] and c["inf_b"] else
                        "A not finite" if c["inf_a"] else "B not finite")
        return c
    if tag is not None and c["p"] is not None:
        if _HOLM.adj is None:
            _HOLM.raw[tag] = c["p"]
        else:
            c["p_adj"] = _HOLM.adj.get(tag, 1.0)
    p = c["p_adj"] if c["p_adj"] is not None else 1.0
    c["verdict"] = ("A smaller" if c["ratio"] < 1 else "B smaller") if p < 0.05 else "no difference detected"
    return c


def _ratio_cell(c, name_a, name_b):
    """(ratio with its 95 % interval, verdict with Holm's p) as table cells."""
    v = c["verdict"].replace("A smaller", f"{name_a} smaller").replace("B smaller", f"{name_b} smaller")
    v = v.replace("A not finite", f"{name_a} inf/NaN").replace("B not finite", f"{name_b} inf/NaN")
    if c.get("inf_a") or c.get("inf_b"):
        v += f" ({name_a} {c['inf_a']}/{c['n']}, {name_b} {c['inf_b']}/{c['n']} seeds)"
    if c["ratio"] is None:
        return "–", v
    if c["verdict"] == "identical":
        return "1 (bitwise)", f"identical ({c['n']} seeds)"
    cell = f"{c['ratio']:.3g} [{c['lo']:.3g}–{c['hi']:.3g}]"
    if c.get("p_adj") is not None:
        v += f", p_Holm {c['p_adj']:.2g}"
    return cell, f"{v} (n={c.get('n_finite', c['n'])})"


def _identical(ra, rb):
    seeds = set(ra) & set(rb)
    return bool(seeds) and all(ra[s].get("grad_sha") == rb[s].get("grad_sha") for s in seeds)


# --------------------------------------------------------------------------- tables

def _table_head(title, note, header, align):
    """The lines that open a Markdown table: its ``### title``, the note under it
    (None: none), the header row and the alignment row."""
    return [f"### {title}", ""] + ([] if note is None else [note, ""]) + [header, align]


def _table_row(*cells):
    """One Markdown table row of ``cells`` (each formatted as ``f"{cell}"``)."""
    return "| " + " | ".join(f"{c}" for c in cells) + " |"


def _placement_table(rows, base, key, title):
    dtypes = [d for d in DTYPE_ORDER if any(r["dtype"] == d for r in rows)]
    lines = _table_head(title,
                        None,
                        "| dtype | m | 2^k | deferred | absorbed | sum | absorbed / deferred | verdict |",
                        "|---|---:|:-:|---|---|---|---|---|")
    for d in dtypes:
        ms = sorted({r["m"] for r in _select(rows, base, dtype=d)})
        for m in ms:
            by = {s: _by_seed(_select(rows, base, dtype=d, m=m, scaling=s)) for s in SCALING_ORDER}
            if not by["deferred"] and not by["absorbed"]:
                continue
            cells = [_cell([r[key] for r in by[s].values()]) for s in SCALING_ORDER]
            c = compare({k: r[key] for k, r in by["absorbed"].items()},
                        {k: r[key] for k, r in by["deferred"].items()},
                        identical=_identical(by["absorbed"], by["deferred"]), tag=("place", key, d, m))
            ratio, verdict = _ratio_cell(c, "absorbed", "deferred")
            lines.append(f"| {d} | {m} | {'✓' if _is_pow2(m) else ''} | " + " | ".join(cells) +
                         f" | {ratio} | {verdict} |")
    return lines


def _range_table(rows, base):
    lines = _table_head("Underflow and overflow (mean over seeds)",
                        "Fractions of the `dW`, `db` entries (reference non-zero) that are exactly 0, "
                        "subnormal, or inf/NaN, and of the `dZ[l]` entries that are 0 where the reference "
                        "is not (zeros of `g'(Z)` excluded) or inf/NaN.",
                        "| dtype | m | scaling | dW,db = 0 | dW,db subnormal | dW,db inf/NaN | dZ = 0 | dZ inf/NaN |",
                        "|---|---:|---|---|---|---|---|---|")
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
    lines = _table_head("Placement vs summation order vs output route",
                        "Ratios of the `dW` error (geometric mean over seeds, paired by seed); placement is "
                        "absorbed / deferred, the others are taken with the deferred scaling.  `spread` is the "
                        "seed spread of log10(error) of the base point (dex); `~` marks ratios whose "
                        "Holm-adjusted sign-flip p is not below 0.05 (no difference detected).",
                        "| dtype | m | spread (dex) | absorbed / deferred | naive / pairwise | backend / pairwise | "
                        "fp64acc / pairwise | chain / fused |",
                        "|---|---:|---:|---|---|---|---|---|")
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
            for j, (a, b) in enumerate(((get(scaling="absorbed"), dfd),
                         (get(scaling="deferred", summation="naive"), get(scaling="deferred", summation="pairwise")),
                         (dfd, get(scaling="deferred", summation="pairwise")),
                         (get(scaling="deferred", summation="fp64acc"), get(scaling="deferred", summation="pairwise")),
                         (get(scaling="deferred", output_grad="chain"), dfd))):
                c = compare({k: r["eW"] for k, r in a.items()}, {k: r["eW"] for k, r in b.items()},
                            identical=_identical(a, b), tag=("effect", d, m, j))
                if c["ratio"] is None:
                    cols.append(c["verdict"] if c["verdict"] != "n/a" else "–")
                else:
                    mark = "~" if c["verdict"] == "no difference detected" else ""
                    cols.append(f"{mark}{c['ratio']:.3g}")
            lines.append(_table_row(d, m, f"{spread:.2f}", *cols))
    return lines


def _drift_table(rows, base):
    lines = _table_head("Training: drift from the reference trajectory (median over seeds)",
                        "`param drift`: relative distance of the parameters to the reference trajectory "
                        "after the last step; `cost drift`: relative difference of the final cost (both "
                        "costs evaluated in the reference precision).",
                        "| dtype | m | steps | param drift deferred | absorbed | sum | cost drift deferred | absorbed | sum |",
                        "|---|---:|---:|---|---|---|---|---|---|")
    for d in DTYPE_ORDER:
        ms = sorted({r["m"] for r in _select(rows, base, dtype=d) if r["steps"]})
        for m in ms:
            sel = {s: [r for r in _select(rows, base, dtype=d, m=m, scaling=s) if r["steps"]] for s in SCALING_ORDER}
            if not any(sel.values()):
                continue
            steps = next(r["steps"] for v in sel.values() for r in v)
            cells = [_fmt(_stats([r["drift_final"] for r in sel[s]])[0]) for s in SCALING_ORDER]
            cells += [_fmt(_stats([r["cost_drift"] for r in sel[s]])[0]) for s in SCALING_ORDER]
            lines.append(_table_row(d, m, steps, *cells))
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
    lines = _table_head("Depth, width, activation (dW error, median over seeds)",
                        None,
                        "| variant | dtype | m | deferred | absorbed | absorbed / deferred | verdict |",
                        "|---|---|---:|---|---|---|---|")
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
                            identical=_identical(a, b), tag=("arch", k, v, d, m))
                ratio, verdict = _ratio_cell(c, "absorbed", "deferred")
                name = "base" if k is None else f"{k}={v}"
                lines.append(f"| {name} | {d} | {m} | {_cell([r['eW'] for r in b.values()])} | "
                             f"{_cell([r['eW'] for r in a.values()])} | {ratio} | {verdict} |")
    return lines


def _backend_table(rows, base):
    bks = sorted({r["backend"] for r in rows} - {base["backend"]})
    if not bks:
        return []
    lines = _table_head("Backends (dW error / db error, median over seeds)",
                        None,
                        "| dtype | m | scaling | " + " | ".join([base["backend"]] + bks) + " |",
                        "|---|---:|---|" + "---|" * (len(bks) + 1))
    for d in DTYPE_ORDER:
        ms = sorted({r["m"] for r in rows if r["dtype"] == d and r["backend"] in bks})
        for m in ms:
            for s in SCALING_ORDER:
                cells = []
                for bk in [base["backend"]] + bks:
                    sel = _select(rows, base, dtype=d, m=m, scaling=s, backend=bk)
                    cells.append(f"{_fmt(_stats([r['eW'] for r in sel])[0])} / {_fmt(_stats([r['eb'] for r in sel])[0])}")
                lines.append(_table_row(d, m, s, *cells))
    return lines


def _pow2_table(rows, base):
    lines = _table_head("Powers of two",
                        "Points (dtype, m, seed) where deferred and absorbed gave bitwise the same `dW`, `db`.",
                        "| dtype | m = 2^k: identical / points | other m: identical / points |",
                        "|---|---|---|")
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


def _panel(ax, title, xlabel, ylabel=None, y_subs=(1.0,)):
    """One panel's log axes, title, labels and grid."""
    _log_axes(ax, y_subs=y_subs)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def _finish(plt, fig, axes, used, ncol, title, fontsize, rect, path):
    """Blank the unused panels, add the shared legend and title, lay out and save."""
    for ax in axes.ravel()[used:]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout(rect=rect)
    _save(plt, fig, path)
    return True


def _error_plot(rows, base, key, path, what):
    plt = _plt()
    dtypes = [d for d in DTYPE_ORDER if _select(rows, base, dtype=d)]
    n = len(dtypes)
    cols = 2 if n > 1 else 1
    fig, axes = plt.subplots((n + 1) // 2, cols, figsize=(5.2 * cols, 3.6 * ((n + 1) // 2)), squeeze=False)
    for ax, d in zip(axes.ravel(), dtypes):
        grid = sorted({r["m"] for r in _select(rows, base, dtype=d)})
        for s in SCALING_ORDER:
            sel = _select(rows, base, dtype=d, scaling=s)
            if not sel:
                continue
            med, lo, hi = _series(sel, key, grid)      # NaN where missing: the line breaks there
            _plot_lines(ax, grid, med, lo, hi, COLORS[s], s, "-" if s != "sum" else ":", "o", True,
                        floor=UNIT_ROUNDOFF[d] * 1e-3)
            odd = [i for i, m in enumerate(grid) if not _is_pow2(m)]
            ax.plot([grid[i] for i in odd], [med[i] for i in odd], "o", color=COLORS[s], mfc="white", ms=4)
        ax.axhline(UNIT_ROUNDOFF[d], color="gray", lw=0.8, ls=":")
        ax.text(0.01, UNIT_ROUNDOFF[d], " u", color="gray", transform=ax.get_yaxis_transform(), va="bottom")
        _panel(ax, d, "m (examples)", f"relative error of {what}")
    _finish(plt, fig, axes, n, 3,
            f"{what}: ||g - ref|| / ||ref||, worst layer; median over seeds, band = min-max; "
            "filled: m = 2^k, hollow: other m; x at top = inf/NaN; plain recipe", 9, (0, 0.07, 1, 0.96), path)


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
            top = max([r[key] for r in _select(rows, base, dtype=d)] + [1e-4])
            ax.set_ylim(-1e-5, min(1.5, top * 1.5))
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
        _panel(ax, d, "m", "relative error of dW")
    return _finish(plt, fig, axes, len(dtypes), 3,
                   "1/m placement vs summation order vs output route (dW error, median over seeds, "
                   "band = min-max)", 9, (0, 0.07, 1, 0.96), path)


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
        _panel(ax, d, "m", y_subs=(1.0, 2.0, 5.0))
    axes[0][0].set_ylabel("relative parameter drift")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle("training: ||theta_N - theta_ref,N|| / ||theta_ref,N|| after N full-batch GD steps "
                 "(median over seeds, band = min-max)", fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 0.93))
    _save(plt, fig, path)
    return True


def _summary_lines(rows, records, base):
    lines = ["# Stability sweep: where the 1/m goes", "",
             f"{len(rows)} points.  Base point: " +
             ", ".join(f"`{k}={base[k]}`" for k in MATCH + ("n_in",) if k in base and k != "n_in") +
             f", `n_in={base.get('n_in')}`.  Errors are relative to a reference of the same "
             "computation in higher precision (float64; long double or double-double for float64 "
             "runs): `||g - ref||_2 / ||ref||_2` of the worst layer, median over seeds with "
             "[min–max].  Ratios are geometric means over paired seeds with a 95 % bootstrap "
             "interval; verdicts use the two-sided sign-flip test with Holm's correction over "
             f"every comparison in this report ({{n_tests}} tests): a difference is called only "
             "where the adjusted p is below 0.05.", ""]
    lines += _env_lines(records) + [""]
    lines += _headline_table(rows, base) + [""]
    lines += _inv_m_table(rows, base) + [""]
    lines += _stage_table(rows, base) + [""]
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
    return lines


def write_report(out_dir, records, base):
    """Write ``summary.md`` and the plots; return {name: path}."""
    rows = _rows(records)
    files = {}
    _HOLM.__init__()
    _summary_lines(rows, records, base)               # first pass: collect the p-values
    _HOLM.finish()
    lines = _summary_lines(rows, records, base)       # second pass: Holm-adjusted verdicts
    text = "\n".join(lines).replace("{n_tests}", str(len(_HOLM.raw)))
    path = os.path.join(out_dir, "summary.md")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    files["summary.md"] = path
    try:
        _plt()
    except ImportError:
        return files
    for name, fn in (("ratio_vs_m.png", lambda p: _headline_plot(rows, base, p)),
                     ("error_dW_vs_m.png", lambda p: _error_plot(rows, base, "eW", p, "dW") or True),
                     ("error_db_vs_m.png", lambda p: _error_plot(rows, base, "eb", p, "db") or True),
                     ("underflow_vs_m.png", lambda p: _range_plot(rows, base, p)),
                     ("effects_vs_m.png", lambda p: _effects_plot(rows, base, p)),
                     ("drift_vs_m.png", lambda p: _drift_plot(rows, base, p))):
        p = os.path.join(out_dir, name)
        if fn(p):
            files[name] = p
    return files


# --------------------------------------------------------------------------- new tables

def _env_lines(records):
    envs = {json.dumps(r.get("env"), sort_keys=True) for r in records if r.get("env")}
    refs = sorted({r["metrics"].get("ref") for r in records if r["metrics"].get("ref")})
    lines = ["### Environment", "", f"References used: {', '.join(refs)}."]
    for e in sorted(envs):
        env = json.loads(e)
        blas = "; ".join(f"{b['api']} {b['version']} ({b['lib']}, {b['threads']} thread)" for b in env.get("blas") or [])
        lines.append(f"- Python {env['python']}, NumPy {env['numpy']}, fastnn {env['fastnn']}, BLAS: {blas or 'unknown'}; "
                     f"{env['system']} {env['machine']}, long double {env['longdouble_bits']} bits, "
                     f"float64 reference {env['float64_reference']}")
    return lines


def _cmp_cell(c):
    """Short cell: ratio [95 % CI] with * where Holm's p < 0.05."""
    if c["ratio"] is None:
        if c.get("inf_a") or c.get("inf_b"):
            return f"inf/NaN ({c['inf_a']}, {c['inf_b']} of {c['n']})"
        return "–"
    if c["verdict"] == "identical":
        return "1 (bitwise)"
    star = "*" if c.get("p_adj") is not None and c["p_adj"] < 0.05 else ""
    infs = f" (inf {c['inf_a']}/{c['inf_b']})" if c.get("inf_a") or c.get("inf_b") else ""
    return f"{c['ratio']:.3g} [{c['lo']:.3g}–{c['hi']:.3g}]{star}{infs}"


def _errs(sel, key="eW"):
    return {s: r[key] for s, r in sel.items()}


def _headline_table(rows, base):
    lines = _table_head("Headline: absorbed / deferred dW error per format and recipe",
                        "Recipes (see `fastnn.stability.mixed`): `plain` everything in the format; `fp32_epilogue` "
                        "the 1/m as a float32 operation on the float32 accumulator (absorbed: on A - Y), rounded "
                        "once to the format; `static_ls` loss scale 4096, float32 master gradient; `dynamic_ls` the "
                        "largest loss scale that does not overflow.  `dZ=0`: fraction of absorbed `dZ` entries "
                        "flushed to zero; `inf`: seeds whose deferred (absorbed) gradient has inf/NaN.",
                        "| dtype | recipe | m | seeds | deferred | absorbed | absorbed / deferred [95 % CI] | verdict | "
                        "abs. dZ=0 | inf def/abs |",
                        "|---|---|---:|---:|---|---|---|---|---|---|")
    for d in DTYPE_ORDER:
        for rc in RECIPE_ORDER:
            ms = sorted({r["m"] for r in _select(rows, base, dtype=d, recipe=rc)})
            for m in ms:
                a = _by_seed(_select(rows, base, dtype=d, m=m, recipe=rc, scaling="absorbed"))
                b = _by_seed(_select(rows, base, dtype=d, m=m, recipe=rc, scaling="deferred"))
                if not a or not b:
                    continue
                c = compare(_errs(a), _errs(b), identical=_identical(a, b), tag=("head", d, rc, m))
                ratio, verdict = _ratio_cell(c, "absorbed", "deferred")
                dz = np.mean([r["dz_underflow"] for r in a.values()])
                inf = f"{sum(not math.isfinite(r['eW']) for r in b.values())}/" \
                      f"{sum(not math.isfinite(r['eW']) for r in a.values())}"
                lines.append(f"| {d} | {rc} | {m} | {len(set(a) & set(b))} | {_cell([r['eW'] for r in b.values()])} | "
                             f"{_cell([r['eW'] for r in a.values()])} | {ratio} | {verdict} | {_fmt(float(dz), '.2g')} | {inf} |")
    return lines


def _inv_m_table(rows, base):
    lines = _table_head("Divide by m vs multiply by fl(1/m); micro-batch accumulation",
                        "dW error ratios against the single-batch `inv_m=mul` computation of the same seeds "
                        "(plain recipe), geometric mean [95 % CI], `*`: Holm-adjusted p < 0.05.  Micro-batches: "
                        "k = 4; `global`: each micro-batch scaled by the global 1/m, added in the format; "
                        "`per_micro`: each micro-batch's mean, the sum scaled by 1/k; `fp32`: global 1/m, added "
                        "into a float32 accumulator.",
                        "| dtype | m | scaling | mul (error) | div / mul | global / one batch | per_micro / one batch | "
                        "fp32 / one batch |",
                        "|---|---:|---|---|---|---|---|---|")
    ks = sorted({r["micro"] for r in rows if r["micro"] > 1})
    for d in DTYPE_ORDER:
        ms = sorted({r["m"] for r in rows if r["dtype"] == d and (r["inv_m"] == "div" or r["micro"] > 1)})
        for m, s in itertools.product(ms, ("deferred", "absorbed")):
            one = _by_seed(_select(rows, base, dtype=d, m=m, scaling=s))
            if not one:
                continue
            cells = []
            for cond in [{"inv_m": "div"}] + [{"micro": k, "accum": acc} for k in ks[:1]
                                              for acc in ("global", "per_micro", "fp32")]:
                v = _by_seed(_select(rows, base, dtype=d, m=m, scaling=s, **cond))
                c = compare(_errs(v), _errs(one), identical=_identical(v, one),
                            tag=("invm", d, m, s, tuple(sorted(cond.items()))))
                cells.append(_cmp_cell(c))
            lines.append(_table_row(d, m, s, _cell([r["eW"] for r in one.values()]), *cells))
    return lines


def _stage_table(rows, base):
    lines = _table_head("Training stage (float16): gradients after 0, 100, 1000 Adam steps",
                        "Weights from a float64 full-batch Adam run (lr 0.01, 2048 examples) on each data set; the "
                        "gradient is measured on m fresh examples.  Ratio absorbed / deferred [95 % CI], `*`: "
                        "Holm-adjusted p < 0.05; `dZ=0`: fraction of `dZ` entries flushed to zero (absorbed / "
                        "deferred); `inf`: seeds with inf/NaN gradients (deferred / absorbed).",
                        "| data, network | stage | m | recipe | deferred | absorbed | absorbed / deferred | dZ=0 abs/def | inf def/abs |",
                        "|---|---:|---:|---|---|---|---|---|---|")
    probs = sorted({(r["data"], r["hidden"], r["output"]) for r in rows if r["stage"] > 0})
    for data, hidden, output in probs:
        cond0 = {"data": data, "hidden": hidden, "output": output}
        for stage in sorted({r["stage"] for r in rows if r["data"] == data}):
            for m in sorted({r["m"] for r in rows if r["data"] == data and r["stage"] == stage
                             and r["dtype"] == "float16"}):
                for rc in RECIPE_ORDER:
                    kw = dict(dtype="float16", m=m, stage=stage, recipe=rc, **cond0)
                    a = _by_seed(_select(rows, base, scaling="absorbed", **kw))
                    b = _by_seed(_select(rows, base, scaling="deferred", **kw))
                    if not a or not b or len(set(a) & set(b)) < 2:
                        continue
                    c = compare(_errs(a), _errs(b), identical=_identical(a, b), tag=("stage", data, stage, m, rc))
                    dz = f"{np.mean([r['dz_underflow'] for r in a.values()]):.2g} / " \
                         f"{np.mean([r['dz_underflow'] for r in b.values()]):.2g}"
                    inf = f"{sum(not math.isfinite(r['eW']) for r in b.values())}/" \
                          f"{sum(not math.isfinite(r['eW']) for r in a.values())} of {len(a)}"
                    name = f"{data}, {hidden} → {output}"
                    lines.append(f"| {name} | {stage} | {m} | {rc} | {_cell([r['eW'] for r in b.values()])} | "
                                 f"{_cell([r['eW'] for r in a.values()])} | {_cmp_cell(c)} | {dz} | {inf} |")
    return lines


# --------------------------------------------------------------------------- headline plot

def _headline_plot(rows, base, path):
    """absorbed / deferred dW error ratio with its 95 % band against m, a panel per
    format, a line per recipe; gaps where a point is missing; triangles where
    one side is inf/NaN on every seed (up: deferred, down: absorbed)."""
    from .stats import paired
    plt = _plt()
    dtypes = [d for d in DTYPE_ORDER if _select(rows, base, dtype=d)]
    if not dtypes:
        return False
    cols = 2 if len(dtypes) > 1 else 1
    nr = (len(dtypes) + 1) // 2
    fig, axes = plt.subplots(nr, cols, figsize=(5.4 * cols, 3.7 * nr), squeeze=False)
    for ax, d in zip(axes.ravel(), dtypes):
        grid = sorted({r["m"] for rc in RECIPE_ORDER for r in _select(rows, base, dtype=d, recipe=rc)})
        for rc in RECIPE_ORDER:
            if not _select(rows, base, dtype=d, recipe=rc):
                continue
            ratio, lo, hi, up, down = [], [], [], [], []
            for m in grid:
                a = _by_seed(_select(rows, base, dtype=d, m=m, recipe=rc, scaling="absorbed"))
                b = _by_seed(_select(rows, base, dtype=d, m=m, recipe=rc, scaling="deferred"))
                c = paired(_errs(a), _errs(b), tag=("plot", d, rc, m)) if a and b else {"ratio": None}
                ratio.append(c["ratio"] if c["ratio"] is not None else np.nan)
                lo.append(c["lo"] if c["ratio"] is not None else np.nan)
                hi.append(c["hi"] if c["ratio"] is not None else np.nan)
                if c["ratio"] is None and a and b:
                    (up if c["inf_b"] else down).append(m)
            col = RECIPE_COLORS[rc]
            ls, mk, ms = RECIPE_STYLE[rc]
            ax.plot(grid, ratio, ls, marker=mk, color=col, ms=ms, mfc="none" if rc != "plain" else col,
                    lw=1.4, label=rc)
            ax.fill_between(grid, lo, hi, color=col, alpha=0.18, lw=0)
            for xs, marker, y in ((up, "^", 0.97), (down, "v", 0.03)):
                if xs:
                    ax.plot(xs, [y] * len(xs), marker, color=col, ms=8, transform=ax.get_xaxis_transform(),
                            clip_on=False, linestyle="none")
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        _panel(ax, d, "m (examples)", "dW error: absorbed / deferred", y_subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0))
    return _finish(plt, fig, axes, len(dtypes), 4,
                   "absorbed / deferred dW error (geometric mean over seeds, band = 95 % bootstrap CI); "
                   "below 1: absorbed more accurate.  ▲ deferred inf/NaN, ▼ absorbed inf/NaN", 8,
                   (0, 0.06, 1, 0.95), path)
