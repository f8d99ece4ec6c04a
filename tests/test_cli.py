"""The ``fastnn`` command line, run as a user runs it: a subprocess.

Every bad option or path must end the command before any work (no header line, no
training) with one line ``fastnn COMMAND: error: --OPTION: ...`` and exit status 2,
never a traceback.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args, block=(), tmp_path=None, timeout=300):
    """Run ``python -m fastnn.cli ARGS`` with this checkout first on the path.

    ``block`` names modules made unimportable (a package on the path that raises
    ImportError), to act out a machine without them.
    """
    paths = [str(ROOT)]
    if block:
        shim = Path(tmp_path) / "blocked"
        for name in block:
            (shim / name).mkdir(parents=True, exist_ok=True)
            (shim / name / "__init__.py").write_text(f"raise ImportError('blocked: {name}')\n")
        paths.insert(0, str(shim))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), NO_COLOR="1")
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    return subprocess.run([sys.executable, "-m", "fastnn.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=tmp_path or ROOT)


def assert_usage_error(proc, command, option, *fragments):
    """Exit 2, nothing on stdout (no work started), one stderr line naming the option."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"fastnn {command}: error: {option}: "), lines[0]
    for text in fragments:
        assert text in lines[0], (text, lines[0])
    assert "Traceback" not in proc.stderr


def _npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.fixture
def small_data(tmp_path):
    """A 2-class problem with 3 features, 40 examples: X (m, n), y (m,)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    return _npz(tmp_path / "small.npz", X=X, y=(X[:, 0] > 0).astype(int))


@pytest.mark.parametrize("args, option, fragment", [
    (["--epochs", "0"], "--epochs", ">= 1"),
    (["--test-fraction", "0"], "--test-fraction", "between 0 and 1"),
    (["--test-fraction", "1.5"], "--test-fraction", "between 0 and 1"),
    (["--test-fraction", "-0.2"], "--test-fraction", "between 0 and 1"),
    (["--test-fraction", "0.0001"], "--test-fraction", "no test example"),
    (["--batch-size", "0"], "--batch-size", ">= 1"),
    (["--lr", "0"], "--lr", "> 0"),
    (["--lr", "nan"], "--lr", "finite"),
    (["--l2", "-1"], "--l2", ">= 0"),
    (["--seed", "-1"], "--seed", ">= 0"),
    (["--layers", "128,64"], "--layers", "64,128,64,10"),
    (["--layers", "64,x,10"], "--layers", "integers"),
    (["--output", "sigmoid"], "--output", "2 classes"),
    (["--backend", "bogus"], "--backend", "invalid choice"),
    (["--data", "nonexist"], "--data", "neither a bundled dataset"),
    (["--data", "missing.npz"], "--data", "no such file"),
    (["--bogus-option"], "unrecognized arguments", "--bogus-option"),
])
def test_train_rejects_bad_options_before_work(tmp_path, args, option, fragment):
    proc = run_cli("train", *args, tmp_path=tmp_path)
    if option == "unrecognized arguments":
        assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
        assert proc.stderr.strip() == f"fastnn: error: unrecognized arguments: {fragment}"
        return
    assert_usage_error(proc, "train", option, fragment)


def test_train_data_files_with_clear_errors(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("not an archive\n")
    assert_usage_error(run_cli("train", "--data", text, tmp_path=tmp_path), "train", "--data", "not a .npz archive")
    keys = _npz(tmp_path / "keys.npz", a=np.zeros((4, 2)), b=np.zeros(4))
    assert_usage_error(run_cli("train", "--data", keys, tmp_path=tmp_path), "train", "--data", "expected X")
    short = _npz(tmp_path / "short.npz", X=np.zeros((12, 2)), y=np.arange(10) % 2)
    assert_usage_error(run_cli("train", "--data", short, tmp_path=tmp_path), "train", "--data",
                       "y has 10 labels but X has 12 rows")
    one = _npz(tmp_path / "one.npz", X=np.random.default_rng(0).random((8, 2)), y=np.zeros(8))
    assert_usage_error(run_cli("train", "--data", one, tmp_path=tmp_path), "train", "--data", "single class")
    nan = _npz(tmp_path / "nan.npz", X=np.full((8, 2), np.nan), y=np.arange(8) % 2)
    assert_usage_error(run_cli("train", "--data", nan, tmp_path=tmp_path), "train", "--data", "nan or inf")


def test_train_save_to_a_missing_folder_fails_before_training(tmp_path, small_data):
    target = tmp_path / "missing" / "dir" / "m.npz"
    proc = run_cli("train", "--data", small_data, "--layers", "3,4,1", "--save", target, tmp_path=tmp_path)
    assert_usage_error(proc, "train", "--save", "does not exist")
    assert not target.parent.exists()


def test_plot_without_matplotlib_is_reported_before_training(tmp_path, small_data):
    proc = run_cli("train", "--data", small_data, "--layers", "3,4,1", "--plot", tmp_path / "c.png",
                   block=["matplotlib"], tmp_path=tmp_path)
    assert_usage_error(proc, "train", "--plot", "pip install matplotlib", '-e ".[plot]"')
    assert "fastnn[" not in proc.stderr


def test_plot_with_an_unknown_image_type(tmp_path, small_data):
    proc = run_cli("train", "--data", small_data, "--layers", "3,4,1", "--plot", tmp_path / "c.xyz",
                   tmp_path=tmp_path)
    assert_usage_error(proc, "train", "--plot", "unknown image type")


def test_bundled_data_without_scikit_learn_names_the_real_package(tmp_path):
    proc = run_cli("train", block=["sklearn"], tmp_path=tmp_path)
    assert_usage_error(proc, "train", "--data", "pip install scikit-learn", '-e ".[sklearn]"')
    assert "fastnn[" not in proc.stderr


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "iris", "wine"])
def test_bundled_data_read_from_the_file_is_scikit_learns(name):
    """The bundled datasets, read from scikit-learn's data files without importing it, are
    the arrays its loaders return (values, shapes, dtypes)."""
    from sklearn import datasets

    from fastnn.cli import _bundled_file
    X, y = _bundled_file(name)
    X_ref, y_ref = getattr(datasets, f"load_{name}")(return_X_y=True)
    assert X.dtype == X_ref.dtype and y.dtype == y_ref.dtype
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_train_on_bundled_data_does_not_import_scikit_learn(tmp_path):
    """Importing scikit-learn was most of a ``fastnn train`` run's start-up; the bundled
    data are read from its files, and a fallback to its loaders when they are not found."""
    probe = ("import sys; from fastnn.cli import _load_bundled; X, y = _load_bundled('digits'); "
             "print(X.shape, 'sklearn' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                         timeout=120, cwd=tmp_path)
    assert out.stdout.split("\n")[0] == "(1797, 64) False", out.stderr


def test_bundled_data_fall_back_to_scikit_learns_loader(monkeypatch):
    from sklearn import datasets

    from fastnn import cli
    monkeypatch.setattr(cli, "BUNDLED_FILES", {**cli.BUNDLED_FILES, "iris": "no-such-file.csv"})
    assert cli._bundled_file("iris") is None
    X, y = cli._load_bundled("iris")
    X_ref, y_ref = datasets.load_iris(return_X_y=True)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_help_shows_defaults():
    train = run_cli("train", "--help")
    assert train.returncode == 0
    text = " ".join(train.stdout.split())
    for fragment in ("(default: 30)", "(default: 32)", "(default: adam)", "(default: 0.001)",
                     "(default: 0.2)", "(default: digits)", "(default: 0.0)", "(default: n_0,128,64,n_L"):
        assert fragment in text, fragment
    explain = run_cli("explain", "--help")
    assert explain.returncode == 0
    text = " ".join(explain.stdout.split())
    for fragment in ("(default: 2,4,1)", "(default: 5)", "(default: tanh)", "(default: deferred)"):
        assert fragment in text, fragment


def test_layers_means_all_sizes_in_train_and_explain(tmp_path, small_data):
    train = run_cli("train", "--data", small_data, "--layers", "3,5,1", "--epochs", "1", "--no-progress",
                    "--save", tmp_path / "m.npz", tmp_path=tmp_path)
    assert train.returncode == 0, train.stderr
    assert "layers [3, 5, 1]" in train.stdout.splitlines()[0]
    explain = run_cli("explain", "--layers", "3,5,1")
    assert explain.returncode == 0, explain.stderr
    assert "layers [3, 5, 1]" in explain.stdout
    from fastnn import Model
    assert Model.load(tmp_path / "m.npz").layer_dims == [3, 5, 1]


@pytest.mark.parametrize("args, option, fragment", [
    (["--m", "0"], "--m", ">= 1"),
    (["--layers", "2"], "--layers", "at least two sizes"),
    (["--layers", "200,300,1"], "--layers", "too large"),
    (["--output", "softmax"], "--output", "at least 2 output units"),
    (["--l2", "inf"], "--l2", "finite"),
])
def test_explain_rejects_bad_options(args, option, fragment):
    assert_usage_error(run_cli("explain", *args), "explain", option, fragment)


def test_stability_rejects_bad_options(tmp_path):
    assert_usage_error(run_cli("stability", "--dtypes", "float8", tmp_path=tmp_path), "stability", "--dtypes",
                       "subset")
    assert_usage_error(run_cli("stability", "--workers", "0", tmp_path=tmp_path), "stability", "--workers", ">= 1")
    (tmp_path / "file").write_text("")
    assert_usage_error(run_cli("stability", "--out", tmp_path / "file", tmp_path=tmp_path), "stability", "--out",
                       "is a file")
