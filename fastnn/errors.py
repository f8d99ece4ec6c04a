"""Exception types raised by fastnn.

Every error raised for bad input derives from :class:`ValueError` or
:class:`TypeError`, so callers that already catch those keep working.
"""


class FastnnValueError(ValueError):
    """An argument has the wrong shape, value or content."""


class FastnnTypeError(TypeError):
    """An argument has the wrong type or dtype."""


class SaturationError(FloatingPointError):
    """The course's chain route for the output gradient hit a saturated output.

    ``dA[L] = -(Y/A - (1-Y)/(1-A))`` divides by ``A`` and ``1 - A``; once the
    output rounds to exactly 0 or 1 that division gives inf/NaN.  The fused route
    (``output_grad="fused"``, ``dZ[L] = A - Y``) has no division and stays finite.
    """


class DivergenceError(FloatingPointError):
    """Training produced a non-finite cost or gradient."""


class BackendUnavailableError(RuntimeError):
    """A backend was requested by name but cannot run on this machine.

    ``status`` is the backend's :class:`fastnn.backends.BackendStatus` (its
    ``state`` says whether it is not installed, has no device, or is broken).
    """

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class NoDeviceError(ImportError):
    """Raised while importing a device backend (CUDA) on a machine without the device."""
