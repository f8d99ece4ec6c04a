"""The layers' one-way imports: backends (kernels only) <- engine <- features.

Every module under ``fastnn/backends/`` is parsed (not imported, so the CUDA
backend is checked without a GPU) and its imports are resolved to absolute
module names.
"""

import ast
import pathlib

import pytest

import fastnn

BACKENDS = pathlib.Path(fastnn.__file__).parent / "backends"
#: What a backend may import from the package outside ``backends/``: kernel-level sources.
ALLOWED_OUTSIDE = ("fastnn.errors", "fastnn.activations", "fastnn._dropout")


def _package_of(path):
    rel = path.relative_to(BACKENDS.parent.parent).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] != "__init__" else parts[:-1]


def imported_modules(source, package):
    """Absolute names of the fastnn modules ``source`` imports, as a module of ``package``
    (a list of names) (``from x import y``: ``x`` and ``x.y``, where ``y`` may be a module)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.append(module)
            names += [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" \
                and node.args and isinstance(node.args[0], ast.Constant):
            names.append(node.args[0].value)
    return [n for n in names if n == "fastnn" or n.startswith("fastnn.")]


def _allowed(name):
    if name.startswith("fastnn.backends.") or name == "fastnn.backends":
        return True
    return any(name == a or name.startswith(a + ".") for a in ALLOWED_OUTSIDE)


def _is_module_name(name):
    """Whether ``fastnn.a.b`` names a module or package (not a name imported from one)."""
    path = BACKENDS.parent.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


@pytest.mark.parametrize("path", sorted(BACKENDS.rglob("*.py")), ids=lambda p: p.name)
def test_backend_modules_import_only_kernel_sources(path):
    bad = []
    for name in imported_modules(path.read_text(), _package_of(path)):
        # "from .. import errors" lists "fastnn" and "fastnn.errors": judge the module named.
        if name == "fastnn" or _allowed(name):
            continue
        parent = name.rsplit(".", 1)[0]
        if not _is_module_name(name) and _allowed(parent):
            continue  # a name imported from an allowed module
        bad.append(name)
    assert not bad, f"{path.name} imports {bad}: a backend may import only backends/ and " \
                    f"{ALLOWED_OUTSIDE}"


def test_the_import_check_resolves_relative_imports():
    """Upward imports written every way are seen, from a backend and from a kernel package."""
    source = "from .. import model\nfrom ..engine import sgd_loop\nimport fastnn.network\n"
    names = set(imported_modules(source, ["fastnn", "backends"]))
    assert {"fastnn.model", "fastnn.engine", "fastnn.network"} <= names
    names = set(imported_modules("from ... import engine\n", ["fastnn", "backends", "_numba_kernels"]))
    assert "fastnn.engine" in names
