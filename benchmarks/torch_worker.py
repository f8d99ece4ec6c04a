"""The PyTorch contender of ``benchmarks.compare``, in a process of its own.

fastnn sets ``OMP_WAIT_POLICY=PASSIVE`` for its own process (its Numba
threads then sleep instead of spinning; see ``fastnn/backends/_numba_config.py``),
and PyTorch's OpenMP pool in the same process would inherit it: measured on
the reference machine, a cat step went from 6.1 to 9.6 ms and an mnist step
from 3.4 to 5.3 ms.  So PyTorch runs here, never importing fastnn, with the
environment the user started ``compare`` with, and ``compare`` drives it over
a pipe, interleaved with the other contenders.

Protocol (one JSON object per line): ``{"gemm": dtype}`` -> GFLOP/s of a
square GEMM; ``{"setup": name, "config": c, "dtype": d}`` -> ``{"ok": true}``
(``{"setup_gemm": name, "dtype": d, "n": n}``: k square GEMMs per run);
``{"run": name, "k": k}`` -> ``{"seconds": t}`` for k training steps.
"""

import json
import os
import sys
import time

import numpy as np


def runner(torch, params, X, Y, hidden, output):
    """``run(k)``: k eager training steps (forward, loss, autograd, SGD update)."""
    L = len(params) // 2
    P = [torch.tensor(params[f"{p}{l}"], requires_grad=True) for l in range(1, L + 1) for p in "Wb"]
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[hidden]
    labels = Yt.argmax(dim=0) if output == "softmax" else None

    def run(k):
        for _ in range(k):
            A = Xt
            for l in range(L):
                Z = P[2 * l] @ A + P[2 * l + 1]
                A = act(Z) if l < L - 1 else Z
            if output == "softmax":
                loss = torch.nn.functional.cross_entropy(A.T, labels)
            else:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(A, Yt)
            for p in P:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                for p in P:
                    p -= 0.01 * p.grad
    return run


def gemm_runner(torch, dtype, n):
    """``run(k)``: k square (n, n) GEMMs."""
    rng = np.random.default_rng(0)
    a, b = (torch.from_numpy(rng.standard_normal((n, n)).astype(dtype)) for _ in range(2))

    def run(k):
        for _ in range(k):
            a @ b
    return run


def gemm_rate(torch, dtype, n=1024, repeats=5):
    rng = np.random.default_rng(0)
    a, b = (torch.from_numpy(rng.standard_normal((n, n)).astype(dtype)) for _ in range(2))
    a @ b
    best = min(_timed(lambda: a @ b, settle=True) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(f, settle=False):
    if settle:  # as compare's SETTLE_S: let spinning BLAS threads sleep first
        time.sleep(0.15)
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main():
    import torch

    from .common import CONFIGS, make_data

    torch.set_num_threads(os.cpu_count() or 1)
    print(json.dumps({"version": torch.__version__}), flush=True)
    runs = {}
    for line in sys.stdin:
        msg = json.loads(line)
        if "gemm" in msg:
            out = {"gflops": gemm_rate(torch, msg["gemm"], msg.get("n", 1024))}
        elif "setup_gemm" in msg:
            runs[msg["setup_gemm"]] = gemm_runner(torch, msg["dtype"], msg["n"])
            out = {"ok": True}
        elif "setup" in msg:
            params, X, Y = make_data(msg["config"], msg["dtype"])
            _, hidden, output, _ = CONFIGS[msg["config"]]
            runs[msg["setup"]] = runner(torch, params, X, Y, hidden, output)
            out = {"ok": True}
        else:
            out = {"seconds": _timed(lambda: runs[msg["run"]](msg["k"]))}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
