"""fastnn against PyTorch and scikit-learn as their users run them, each in a process of its own.

    python -m benchmarks.compare                         # mnist, small, cat: 3 rounds
    python -m benchmarks.compare --rounds 5 --json quiet.json
    python -m benchmarks.compare --quick                 # one round: a before/after check
    python -m benchmarks.compare --load 1 --baseline quiet.json   # beside 1 busy process

Work (float32, random data from a fixed teacher), the configs of
``benchmarks.run_one``:

- ``mnist``: 60000 x 784, [784, 256, 128, 10], batch 256, Adam, 1 epoch:
  ``fastnn.Model.fit`` against idiomatic PyTorch (``nn.Sequential`` of
  ``nn.Linear``, row-major batches, ``torch.optim.Adam``) and PyTorch in the
  course layout; ``fastnn.MLPClassifier((256, 128), batch_size=256,
  max_iter=1)`` against scikit-learn's; and ``gemm``, the matrix products of the
  same epoch alone, so that the epoch's distance from its GEMM floor can be read;
- ``small``: scikit-learn's digits in shape (1797 x 64, random data), [64, 64, 10],
  batch 200, Adam, 50 epochs, every epoch run (``n_iter_no_change`` past them):
  ``Model.fit`` against idiomatic PyTorch, ``MLPClassifier`` against
  scikit-learn's; a learner's first fits, where per-epoch costs show;
- ``cat``: [12288, 20, 7, 5, 1], m = 209, 100 full-batch SGD steps:
  ``Model.fit(batch_size=None)`` against the same PyTorch contenders.

Every contender runs in a fresh process (``python -m benchmarks.run_one``) that
warms up (compile or cache load, first epoch) and then times the work; the
parent waits for it to exit before starting the next, so no other thread pool
is alive beside it.  Contenders alternate round-robin for ``--rounds`` rounds;
the tables show medians over rounds with the spread (min-max).  ``--load N``
runs everything beside N busy Python processes that this script starts and
always stops.  OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (they pin an older OpenBLAS
kernel) are unset for the children, and the table says so.  Without torch (or
scikit-learn) installed, the script says so and times the others.
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys

from . import harness
from .run_one import CONFIGS

#: config -> contenders timed on it (those whose library is missing are skipped).
JOBS = {
    "mnist": ("fastnn-fit", "torch", "torch-course", "gemm", "fastnn-mlp", "sklearn-mlp"),
    "cat": ("fastnn-fit", "torch", "torch-course", "gemm"),
    "small": ("fastnn-fit", "torch", "fastnn-mlp", "sklearn-mlp"),
    "tiny": ("fastnn-fit", "torch", "gemm", "fastnn-mlp", "sklearn-mlp"),  # a smoke test
}
NEEDS = {"torch": "torch", "torch-course": "torch", "sklearn-mlp": "sklearn"}

#: (config, what, numerator contender, denominator contender, target, sense): the
#: ratio is numerator time / denominator time; ">=" targets a speed-up, "<=" a bound.
RATIOS = [
    ("mnist", "Model.fit vs idiomatic PyTorch", "torch", "fastnn-fit", 1.5, ">="),
    ("mnist", "Model.fit vs PyTorch, course layout", "torch-course", "fastnn-fit", None, ">="),
    ("mnist", "MLPClassifier vs scikit-learn", "sklearn-mlp", "fastnn-mlp", 2.5, ">="),
    ("mnist", "Model.fit epoch / its GEMMs alone", "fastnn-fit", "gemm", 1.15, "<="),
    ("small", "Model.fit vs idiomatic PyTorch", "torch", "fastnn-fit", None, ">="),
    ("small", "MLPClassifier vs scikit-learn", "sklearn-mlp", "fastnn-mlp", None, ">="),
    ("cat", "Model.fit(batch_size=None) vs idiomatic PyTorch", "torch", "fastnn-fit", 5.0, ">="),
    ("cat", "Model.fit vs PyTorch, course layout", "torch-course", "fastnn-fit", None, ">="),
]
#: With background load, each ratio within this fraction of its quiet value.
LOAD_TOLERANCE = 0.25
#: A ratio whose contenders' spread (max - min) / median exceeds this is flagged noisy.
NOISY_SPREAD = 0.25


def available(contender):
    """Whether the contender's library can be imported here (without importing it)."""
    module = NEEDS.get(contender)
    return module is None or importlib.util.find_spec(module) is not None


def make_jobs(configs, backend=None, samples=1):
    """``{label: (contender, config, args)}`` for the configs, and the labels skipped."""
    jobs, skipped = {}, []
    for config in configs:
        for contender in JOBS[config]:
            label = f"{config} {contender}"
            if not available(contender):
                skipped.append(label)
                continue
            args = ["--samples", samples] + (["--backend", backend] if backend else [])
            jobs[label] = (contender, config, args)
    return jobs, skipped


def ratios(summaries, rounds=None):
    """Each ratio of :data:`RATIOS` whose contenders ran: dicts with the value and verdict.

    ``value`` is the ratio of the medians.  With ``rounds`` (``{label: [seconds per
    round]}``), ``paired`` is the median over rounds of the ratio within each round
    (the two contenders ran minutes apart at most, under the same load).  ``noisy``:
    either contender's spread is above :data:`NOISY_SPREAD`; ``met`` is then None
    (unclear) where the paired ratio's verdict differs from the medians' (``met_medians``).
    """
    rows = []
    for config, what, num, den, target, sense in RATIOS:
        la, lb = f"{config} {num}", f"{config} {den}"
        a, b = summaries.get(la), summaries.get(lb)
        if a is None or b is None:
            continue
        value = a["median"] / b["median"]
        verdict = (lambda v: None if target is None else  # noqa: E731
                   (v >= target if sense == ">=" else v <= target))
        paired = (statistics.median(x / y for x, y in zip(rounds[la], rounds[lb]))
                  if rounds else None)
        noisy = max(a["spread"], b["spread"]) > NOISY_SPREAD
        met = verdict(value)
        if noisy and paired is not None and verdict(paired) != met:
            met = None    # the rounds mixed machine states: neither ratio decides
        rows.append({"key": f"{config}: {what}", "value": value, "target": target, "sense": sense,
                     "met": met, "met_medians": verdict(value), "num": a["median"],
                     "den": b["median"], "paired": paired, "noisy": noisy})
    return rows


def against_baseline(rows, baseline_rows):
    """For each ratio also in the baseline run: (key, quiet, loaded, change, within tolerance)."""
    quiet = {r["key"]: r["value"] for r in baseline_rows}
    return [(r["key"], quiet[r["key"]], r["value"], r["value"] / quiet[r["key"]] - 1,
             abs(r["value"] / quiet[r["key"]] - 1) <= LOAD_TOLERANCE)
            for r in rows if r["key"] in quiet]


def times_against_baseline(summaries, baseline_summaries):
    """For each contender also in the baseline run: (label, quiet s, this run's s, factor):
    how much the load slowed each contender itself down."""
    return [(label, baseline_summaries[label]["median"], s["median"],
             s["median"] / baseline_summaries[label]["median"])
            for label, s in summaries.items() if label in baseline_summaries]


def markdown(summaries, rows, header, baseline=None, baseline_summaries=None):
    """The report as Markdown: the header, the contenders, the ratios with their targets."""
    lines = list(header)
    lines += ["| config | contender | time (median, min-max) | spread |", "|---|---|---|---|"]
    for label, s in summaries.items():
        config, contender = label.split(" ", 1)
        lines.append(f"| {config} | {contender} | {harness.fmt_s(s)} | {100 * s['spread']:.0f}% |")
    lines += ["", "| ratio | of medians | paired (per round) | target | met |", "|---|---|---|---|---|"]
    for r in rows:
        target = "-" if r["target"] is None else f"{r['sense']} {r['target']}x"
        met = ("-" if r["target"] is None else "unclear (medians and pairs disagree)"
               if r["met"] is None else "yes" if r["met"] else "**no**")
        paired = "-" if r.get("paired") is None else f"{r['paired']:.2f}x"
        noisy = f" (noisy: spread > {NOISY_SPREAD:.0%})" if r.get("noisy") else ""
        lines.append(f"| {r['key']} | {r['value']:.2f}x{noisy} | {paired} | {target} | {met} |")
    if baseline:
        lines += ["", f"| ratio | quiet | this run | change | within {LOAD_TOLERANCE:.0%} |",
                  "|---|---|---|---|---|"]
        for key, q, v, change, ok in against_baseline(rows, baseline):
            lines.append(f"| {key} | {q:.2f}x | {v:.2f}x | {100 * change:+.0f}% | "
                         f"{'yes' if ok else '**no**'} |")
    if baseline_summaries:
        lines += ["", "| contender | quiet | this run | slower by |", "|---|---|---|---|"]
        for label, q, v, factor in times_against_baseline(summaries, baseline_summaries):
            lines.append(f"| {label} | {q:.4g} s | {v:.4g} s | {factor:.2f}x |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="mnist,small,cat", help=f"of {sorted(JOBS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="one round (a before/after check; the README table uses 3)")
    parser.add_argument("--samples", type=int, default=1, help="timed runs per child (median)")
    parser.add_argument("--load", type=int, default=0, help="busy background processes to run beside")
    parser.add_argument("--backend", default=None, help="fastnn backend (default: auto)")
    parser.add_argument("--json", help="write all numbers to this file")
    parser.add_argument("--baseline", help="JSON of a quiet run: compare this run's ratios with it")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 1
    if args.json:
        harness.check_writable(args.json)
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in JOBS]
    if unknown:
        parser.error(f"--configs: unknown {unknown[0]!r} (known: {sorted(JOBS)})")
    jobs, skipped = make_jobs(configs, args.backend, args.samples)
    for label in skipped:
        print(f"{label}: skipped, {NEEDS[label.split(' ', 1)[1]]} is not installed "
              f"(pip install torch==2.13.0 / scikit-learn)")
    env, unset = harness.child_env()
    before = harness.machine_info()
    print(f"load average before: {before['loadavg']}; {len(jobs)} contenders, {args.rounds} rounds"
          + (f", beside {args.load} busy process(es)" if args.load else ""), flush=True)
    harness.sigterm_interrupts()
    with harness.BusyLoad(args.load):
        results = harness.run_rounds(jobs, args.rounds, env, log=lambda s: print(s, flush=True))
    results = harness.completed(results)
    after = os.getloadavg()
    summaries = {label: harness.summarize(r["rounds"]) for label, r in results.items()}
    rows = ratios(summaries, {label: r["rounds"] for label, r in results.items()})
    baseline = baseline_summaries = None
    if args.baseline:
        with open(args.baseline) as fh:
            quiet = json.load(fh)
        baseline, baseline_summaries = quiet["ratios"], quiet["summaries"]
    header = harness.markdown_header(before, harness.versions_of(results), unset, args.load,
                                     args.rounds)
    print()
    print(markdown(summaries, rows, header, baseline, baseline_summaries))
    print()
    print(f"load average before {before['loadavg']}, after {list(after)}")
    for line, labels in harness.blas_of(results).items():
        print(f"BLAS: {line} -- in {', '.join(labels)}")
    if args.json:
        harness.write_json(args.json, {
            "machine": before, "loadavg_after": list(after), "load": args.load,
            "rounds": args.rounds, "openblas_unset": unset,
            "versions": harness.versions_of(results), "blas": harness.blas_of(results),
            "summaries": summaries, "ratios": rows,
            "work": {c: CONFIGS[c]["work"] for c in configs},
            "records": {k: v["records"] for k, v in results.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
