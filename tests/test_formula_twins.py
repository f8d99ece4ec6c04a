"""The Numba twins of the loss formulas (``_numba_kernels/formulas.py``) held equal
to their one source, ``numpy_backend._loss_terms``, over samples with edge
logits (``tests/twins.py``); and, in float64, bitwise equal to the plain Python
functions they are compiled from."""

import numpy as np
import pytest

from fastnn.backends._numba_kernels import formulas
from conftest import assert_close, requires_backends
from twins import column_losses, samples, source_column_losses

pytestmark = requires_backends("numba")

OUTPUTS = ("sigmoid", "softmax", "identity")


def _compiled():
    from fastnn.backends._numba_kernels import output
    return (output._loss_term, output._column_max, output._column_exp_sum, output._xent_column)


def _python():
    return (formulas.loss_term, formulas.column_max, formulas.column_exp_sum,
            formulas.xent_column)


def _losses(twins, Z, A, Y, output):
    # As the Numba kernels call them: entries read in the array's dtype, ``one`` of it.
    return column_losses(Z, A, Y, formulas.CODES[output], output == "softmax", *twins,
                         one=Z.dtype.type(1), widen=lambda x: x)


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("soft", [False, True], ids=["labels", "soft"])
def test_numba_twins_equal_the_numpy_loss(output, dtype, soft):
    Z, A, Y = samples(output, dtype, soft=soft)
    expected, magnitude = source_column_losses(Z, A, Y, output)
    actual = _losses(_compiled(), Z, A, Y, output)
    assert np.isfinite(actual).all()
    assert_close(actual, expected, dtype, n_terms=Z.shape[0], magnitude=magnitude,
                 err_msg=f"{output} loss, Numba twins vs numpy_backend._loss_terms")


@pytest.mark.parametrize("output", OUTPUTS)
def test_numba_twins_bitwise_their_python_source_in_float64(output):
    Z, A, Y = samples(output, np.float64, seed=1, soft=True)
    compiled = _losses(_compiled(), Z, A, Y, output)
    python = _losses(_python(), Z, A, Y, output)
    assert np.array_equal(compiled.view(np.uint64), python.view(np.uint64))


def test_codes_are_one_table():
    from fastnn.activations import ACTIVATIONS
    from fastnn.backends._numba_kernels import activation
    assert activation.CODES is formulas.CODES
    assert set(formulas.CODES) == set(ACTIVATIONS)
    assert sorted(formulas.CODES.values()) == list(range(len(ACTIVATIONS)))
