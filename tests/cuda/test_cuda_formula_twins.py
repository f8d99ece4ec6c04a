"""The CUDA twins of the loss formulas (``_numba_kernels/formulas.py``, compiled with
``cuda.jit(device=True)``) held equal to their one source,
``numpy_backend._loss_terms``, over samples with edge logits (``tests/twins.py``;
``tests/test_formula_twins.py`` holds the Numba twins)."""

import numpy as np
import pytest
from numba import cuda

from twins import samples, source_column_losses

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def column_loss(cb):
    """Each column's summed loss, by the CUDA backend's per-column device function."""
    @cuda.jit
    def kernel(Z, A, Y, code, out):
        j = cuda.grid(1)
        if j < Z.shape[1]:
            out[j] = cb._column_loss(Z, A, Y, j, code)

    def run(Z, A, Y, output):
        out = cuda.device_array(Z.shape[1], dtype=np.float64)
        cb._QuietLaunch(kernel)[(Z.shape[1] + 31) // 32, 32](*(cb.to_device(x) for x in (Z, A, Y)),
                                              cb.CODES[output], out)
        return out.copy_to_host()

    return run


@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_cuda_twins_equal_the_numpy_loss(column_loss, tols, output, dtype, soft):
    Z, A, Y = samples(output, dtype, soft=soft)
    expected, magnitude = source_column_losses(Z, A, Y, output)
    actual = column_loss(Z, A, Y, output)
    assert np.isfinite(actual).all()
    tols.assert_close(actual, expected, dtype, n_terms=Z.shape[0], magnitude=magnitude,
                 err_msg=f"{output} loss, CUDA twins vs numpy_backend._loss_terms")
