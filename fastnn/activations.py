"""Activation name tables for the NumPy backend.

Forward functions map ``Z`` to ``A``.  Derivatives are written in terms of the
forward value ``A`` that the forward pass already computed (as in
scikit-learn's ``neural_network/_base.py``), so the backward pass never needs
``Z`` for hidden layers and never re-evaluates a transcendental function.

All functions preserve the dtype of their input.
"""

import numpy as np

#: Slope of leaky ReLU for negative inputs.
LEAKY_SLOPE = 0.01

HIDDEN_ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax", "identity")
#: The loss paired with each output activation.
OUTPUT_LOSS = {
    "sigmoid": "binary cross-entropy",
    "softmax": "categorical cross-entropy",
    "identity": "mean squared error (1/2 (a - y)^2 per entry)",
}


def _identity(Z, out):
    out[...] = Z
    return out


def _sigmoid(Z, out):
    # exp(-|z|) never overflows; the two branches are the same function
    # written so that neither divides inf by inf.
    e = np.exp(-np.abs(Z))
    np.divide(np.where(Z >= 0, 1, e), 1 + e, out=out)
    return out


def _tanh(Z, out):
    return np.tanh(Z, out=out)


def _relu(Z, out):
    return np.maximum(Z, 0, out=out)


def _leaky_relu(Z, out):
    out[...] = np.where(Z > 0, Z, Z * Z.dtype.type(LEAKY_SLOPE))
    return out


def _softmax(Z, out):
    # Subtracting the column max keeps exp() <= 1: no overflow for any logit.
    np.subtract(Z, Z.max(axis=0, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=0, keepdims=True)
    return out


#: name -> f(Z, out) writing g(Z) into ``out`` (which may be ``Z`` itself).
ACTIVATIONS = {
    "identity": _identity,
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "softmax": _softmax,
}


def _d_identity(A, dZ):
    return dZ


def _d_sigmoid(A, dZ):
    dZ *= A
    dZ *= 1 - A
    return dZ


def _d_tanh(A, dZ):
    dZ *= 1 - A * A
    return dZ


def _d_relu(A, dZ):
    # relu'(0) is taken as 0, like the course (dZ[Z <= 0] = 0).
    dZ[A <= 0] = 0
    return dZ


def _d_leaky_relu(A, dZ):
    dZ[A <= 0] *= A.dtype.type(LEAKY_SLOPE)
    return dZ


#: name -> f(A, dZ) multiplying ``dZ`` in place by g'(Z), expressed through A = g(Z).
DERIVATIVES = {
    "identity": _d_identity,
    "sigmoid": _d_sigmoid,
    "tanh": _d_tanh,
    "relu": _d_relu,
    "leaky_relu": _d_leaky_relu,
}


def check_hidden(name):
    """Return ``name`` if it is a known hidden activation, else raise ValueError."""
    if name not in HIDDEN_ACTIVATIONS:
        from .errors import FastnnValueError
        raise FastnnValueError(
            f"hidden: unknown activation {name!r}; expected one of {HIDDEN_ACTIVATIONS}")
    return name


def check_output(name):
    """Return ``name`` if it is a known output activation, else raise ValueError."""
    if name not in OUTPUT_ACTIVATIONS:
        from .errors import FastnnValueError
        raise FastnnValueError(
            f"output: unknown output activation {name!r}; expected one of {OUTPUT_ACTIVATIONS}")
    return name
