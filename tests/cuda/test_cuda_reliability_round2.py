"""tests/test_reliability_round2.py on the cuda backend, under the simulator.

Run in the CUDA test process (``NUMBA_ENABLE_CUDASIM=1 python -m pytest -q -m cuda
tests/cuda``).  The classes that concern a backend run here: edited model state
(refused before any kernel; consistent edits used), hyperparameters that round
in float32, masked arrays, huge ``epochs`` (the minibatch path: the whole-loop
path's 64 simulated steps are the same bookkeeping as on the CPU backends) and
read-only inputs.  Files, fork and float16 do not depend on the backend (cuda
has no float16).
"""

import numpy as np
import pytest

import test_reliability_round2 as round2

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.filterwarnings("ignore::RuntimeWarning:fastnn.backends.cuda_backend"),
    # ... and the loss formulas it compiles from _numba_kernels/formulas.py.
    pytest.mark.filterwarnings("ignore::RuntimeWarning:fastnn.backends._numba_kernels.formulas"),
    pytest.mark.filterwarnings(r"ignore::RuntimeWarning:numba.*\.simulator\."),
]

CUDA = "cuda"


@pytest.fixture(scope="module", autouse=True)
def _small_launch(launch):
    with launch(4, 4):
        yield


@pytest.mark.parametrize("edit", sorted(round2.STATE_EDITS))
def test_edited_model_state_is_refused_before_any_kernel(cb, edit, tmp_path):
    round2.test_edited_model_state_is_refused_before_any_kernel(CUDA, edit, tmp_path)


def test_valid_state_edits_are_used(cb, tmp_path):
    round2.test_valid_state_edits_are_used(CUDA, tmp_path)


def test_hyperparameters_that_round_in_the_dtype_are_refused(cb):
    round2.test_hyperparameters_that_round_in_the_dtype_are_refused(CUDA, "float32")


def test_masked_arrays_are_refused_everywhere(cb):
    round2.test_masked_arrays_are_refused_everywhere(CUDA)


def test_huge_epochs_start_without_allocating_per_epoch(cb, monkeypatch):
    round2.test_huge_epochs_start_without_allocating_per_epoch(CUDA, 8, monkeypatch)


@pytest.mark.parametrize("batch_size", [None, 8], ids=["whole-loop", "minibatch"])
def test_read_only_memory_mapped_inputs_train(cb, batch_size, tmp_path):
    round2.test_read_only_memory_mapped_inputs_train(CUDA, batch_size, tmp_path)


def test_cuda_state_check_needs_no_device_arrays(cb):
    """The refusal happens on the host: a model edited to a wrong b1 is refused by
    name with the same message on cuda as on numpy."""
    X, _ = round2._problem()
    msgs = []
    for backend in ("numpy", CUDA):
        model = round2.fastnn.Model([3, 4, 1], seed=0)
        model.params["b1"] = np.zeros((3, 1))
        with pytest.raises(round2.FastnnValueError) as info:
            model.predict(X, backend=backend)
        msgs.append(str(info.value))
    assert msgs[0] == msgs[1]
