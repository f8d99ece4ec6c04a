"""The points of a stability sweep: presets and their axes.

A preset is a union of blocks, each a product of axes around :data:`BASE`:

- ``head``: the headline -- absorbed vs deferred per format and mixed-precision
  recipe over m, with many seeds (the paired statistics need them);
- ``fill``: float16 between 2^17 and 2^20, where the unscaled sums overflow;
- ``inv_m``: divide by m vs multiply by fl(1/m), and micro-batch accumulation
  (k micro-batches, three placements of the 1/m);
- ``stage``: training stages (0, 100, 1000 Adam steps) on three data sets and
  architectures;
- ``sub``: summation order, output route, backends; ``arch``: depth, width,
  activation; ``train``: trajectory drift over a few SGD steps.
"""

import hashlib
import itertools
import json

from ..errors import FastnnValueError
from ..network import SCALINGS
from .evaluate import BASE
from .formats import DTYPES, SUMMATIONS

#: m from 10 to about 10^6: each power of ten next to a power of two.
M_LOG = (10, 16, 100, 128, 1000, 1024, 10_000, 16_384, 100_000, 131_072, 1_000_000, 1_048_576)
#: m between 2^17 and 2^20 in half-octaves (the float16 overflow threshold lies there).
M_FILL = (131_072, 196_608, 262_144, 393_216, 524_288, 786_432, 1_000_000, 1_048_576)

#: Mixed-precision recipes per format (float32/float64 compute everything in the format).
RECIPES_OF = {"float16": ("plain", "fp32_epilogue", "static_ls", "dynamic_ls"),
              "bfloat16": ("plain", "fp32_epilogue"), "float32": ("plain",), "float64": ("plain",)}
#: Data set and architecture of the training-stage block.
STAGE_PROBLEMS = ({"data": "teacher"},
                  {"data": "rings", "hidden": "tanh"},
                  {"data": "blobs", "output": "softmax"})
ARCH_VARIANTS = ({"depth": 2}, {"depth": 5}, {"width": 32}, {"hidden": "tanh"},
                 {"hidden": "sigmoid"}, {"hidden": "leaky_relu"})

#: Presets: per block, its m, seeds and options.
PRESETS = {
    "quick": {
        "head": {"ms": (100, 1000, 1024, 100_000), "seeds": 6, "recipes": ("plain", "fp32_epilogue", "dynamic_ls")},
        "fill": {"ms": (131_072, 262_144), "seeds": 3},
        "inv_m": {"ms": (10_000,), "seeds": 3, "dtypes": ("float16", "float32"), "micro": 4},
        "stage": {"ms": (10_000,), "seeds": 2, "stages": (0, 100), "dtypes": ("float16",)},
        "sub": {"ms": (1024,), "seeds": 2, "backends": ("numpy",)},
        "arch": {"ms": (), "seeds": 2},
        "train": {"ms": (16,), "seeds": 2, "steps": 10},
    },
    "medium": {
        "head": {"ms": (100, 1000, 1024, 10_000, 100_000, 131_072, 1_000_000), "seeds": 20,
                 "recipes": ("plain", "fp32_epilogue", "static_ls", "dynamic_ls"),
                 "large": 200_000, "large_dtypes": ("float16",), "large_seeds": 5},
        "fill": {"ms": M_FILL[1:6], "seeds": 2,
                 "recipes": ("plain", "fp32_epilogue", "dynamic_ls")},
        "inv_m": {"ms": (10_000, 262_144), "seeds": 3, "dtypes": ("float16", "float32"), "micro": 4},
        "stage": {"ms": (100_000, 1_000_000), "seeds": 3, "stages": (0, 100, 1000), "dtypes": ("float16",),
                  "recipes": ("plain", "dynamic_ls"), "large": 200_000, "large_recipes": ("plain",)},
        "sub": {"ms": (1024, 131_072), "seeds": 3, "backends": ("numpy", "numba", "numba-parallel")},
        "arch": {"ms": (1000,), "seeds": 3},
        "train": {"ms": (16, 100, 1024), "seeds": 3, "steps": 20},
    },
    "full": {
        "head": {"ms": M_LOG, "seeds": 30, "recipes": RECIPES_OF["float16"]},
        "fill": {"ms": M_FILL, "seeds": 20},
        "inv_m": {"ms": (10_000, 100_000, 1_000_000), "seeds": 20, "dtypes": DTYPES[:3], "micro": 8},
        "stage": {"ms": (10_000, 100_000, 1_000_000), "seeds": 20, "stages": (0, 100, 1000), "dtypes": ("float16", "bfloat16")},
        "sub": {"ms": M_LOG[:10], "seeds": 5, "backends": ("numpy", "numba", "numba-parallel")},
        "arch": {"ms": (1000, 1024, 100_000), "seeds": 5},
        "train": {"ms": (16, 100, 1024, 16_384), "seeds": 5, "steps": 50},
    },
}


def point_key(point):
    """Stable identifier of a sweep point: 16 hex digits of the SHA-256 of its
    parameters (completed with :data:`BASE`) as canonical JSON."""
    full = {**BASE, **point}
    text = json.dumps(full, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _available_backends(names):
    from ..backends import available_backends
    status = available_backends()
    return tuple(n for n in names if n in status and status[n].available)


def _seeds(n, given):
    if given is None:
        return tuple(range(n))
    return tuple(range(given)) if isinstance(given, int) else tuple(int(s) for s in given)


def _blocks(cfg, dtypes, scalings, keep, seeds, steps, backends):
    """Yield point overrides (dicts) block by block."""
    two = tuple(s for s in scalings if s != "sum")
    h = cfg["head"]
    for d in dtypes:
        for m in filter(keep, h["ms"]):
            n = h["seeds"]
            if m > h.get("large", 10 ** 12):
                n = h["large_seeds"] if d in h["large_dtypes"] else 0
            for seed in _seeds(n, seeds):
                for r in (x for x in RECIPES_OF[d] if x in h["recipes"]):
                    for s in (scalings if r == "plain" else two):
                        yield {"dtype": d, "m": m, "seed": seed, "scaling": s, "recipe": r, "steps": 0}
    if "float16" in dtypes:
        for m, seed in itertools.product(filter(keep, cfg["fill"]["ms"]), _seeds(cfg["fill"]["seeds"], seeds)):
            for r, s in itertools.product(cfg["fill"].get("recipes", RECIPES_OF["float16"]), two):
                yield {"dtype": "float16", "m": m, "seed": seed, "scaling": s, "recipe": r, "steps": 0}
    c = cfg["inv_m"]
    for d, m, seed in itertools.product([d for d in c["dtypes"] if d in dtypes], filter(keep, c["ms"]),
                                        _seeds(c["seeds"], seeds)):
        for s in two:
            base = {"dtype": d, "m": m, "seed": seed, "scaling": s, "steps": 0}
            yield {**base}
            yield {**base, "inv_m": "div"}
            for acc in ("global", "per_micro", "fp32"):
                yield {**base, "micro": c["micro"], "accum": acc}
    c = cfg["stage"]
    for prob, d, m, stage, seed in itertools.product(STAGE_PROBLEMS, [d for d in c["dtypes"] if d in dtypes],
                                                     filter(keep, c["ms"]), c["stages"], _seeds(c["seeds"], seeds)):
        recipes = c.get("recipes", ("plain", "fp32_epilogue", "dynamic_ls"))
        if m > c.get("large", 10 ** 12):
            recipes = c["large_recipes"]
        for r in recipes:
            for s in two:
                yield {"dtype": d, "m": m, "seed": seed, "scaling": s, "recipe": r, "stage": stage,
                       "steps": 0, **prob}
    c = cfg["sub"]
    bks = _available_backends(backends or c["backends"])
    for d, m, seed in itertools.product(dtypes, filter(keep, c["ms"]), _seeds(c["seeds"], seeds)):
        for s in two:
            for summ in SUMMATIONS:
                if not (summ == "fp64acc" and d == "float64"):
                    yield {"dtype": d, "m": m, "seed": seed, "scaling": s, "summation": summ, "steps": 0}
            yield {"dtype": d, "m": m, "seed": seed, "scaling": s, "output_grad": "chain", "steps": 0}
        if d in ("float32", "float64"):
            for bk, s in itertools.product(bks, scalings):
                yield {"dtype": d, "m": m, "seed": seed, "scaling": s, "backend": bk, "steps": 0}
    c = cfg["arch"]
    for var, d, m, seed in itertools.product(ARCH_VARIANTS, dtypes, filter(keep, c["ms"]), _seeds(c["seeds"], seeds)):
        for s in two:
            yield {"dtype": d, "m": m, "seed": seed, "scaling": s, "steps": 0, **var}
    c = cfg["train"]
    for d, m, seed in itertools.product(dtypes, filter(keep, c["ms"]), _seeds(c["seeds"], seeds)):
        for s in scalings:
            yield {"dtype": d, "m": m, "seed": seed, "scaling": s, "steps": c["steps"] if steps is None else steps}


def sweep_points(preset="medium", *, dtypes=None, scalings=None, ms=None, seeds=None, steps=None,
                 backends=None, base=None):
    """The points of a sweep preset.

    Parameters
    ----------
    preset : {"quick", "medium", "full"}
        See :data:`PRESETS`.
    dtypes, scalings : sequence of str, optional
        Restrict the formats (:data:`DTYPES`) and scalings (deferred, absorbed, sum).
    ms : sequence of int, optional
        Keep only these m (in every block).
    seeds : int or sequence of int, optional
        Number of seeds (0, 1, ...) or the seeds themselves, for every block
        (default: each block's own).
    steps : int, optional
        SGD steps of the training-drift block (0: none).
    backends : sequence of str, optional
        Backends of the backend block (unavailable ones are dropped).
    base : dict, optional
        Overrides of :data:`BASE` shared by every point.

    Returns
    -------
    list of dict
        Distinct points, each with every key of :data:`BASE`, sorted so that
        points sharing a reference (and forward pass) are adjacent.
    """
    if preset not in PRESETS:
        raise FastnnValueError(f"preset: unknown {preset!r}; expected one of {tuple(PRESETS)}")
    dtypes = tuple(dtypes or DTYPES)
    scalings = tuple(scalings or SCALINGS)
    for d in dtypes:
        if d not in DTYPES:
            raise FastnnValueError(f"dtypes: unknown {d!r}; expected some of {DTYPES}")
    for s in scalings:
        if s not in SCALINGS:
            raise FastnnValueError(f"scalings: unknown {s!r}; expected some of {SCALINGS}")
    m_set = {int(m) for m in ms} if ms else None
    keep = (lambda m: m in m_set) if m_set else (lambda m: True)
    base = {**BASE, **(base or {})}
    unique = {}
    for kw in _blocks(PRESETS[preset], dtypes, scalings, keep, seeds, steps, backends):
        p = {**base, **kw}
        unique.setdefault(point_key(p), p)
    return sorted(unique.values(), key=group_key)


#: Parameters that do not change the forward pass (a group shares it).
VARIANT_KEYS = ("scaling", "recipe", "inv_m", "micro", "accum", "loss_scale", "output_grad", "summation")


def group_key(p):
    """Sort/group key: points equal on everything but :data:`VARIANT_KEYS` share
    their reference and forward pass."""
    return tuple((k, str(p[k])) for k in sorted(p) if k not in VARIANT_KEYS)
