"""The course's file name for :mod:`fastnn.compat.opt_utils` (``from opt_utils_v1a import *``)."""

from .opt_utils import *  # noqa: F401,F403
from .opt_utils import __all__  # noqa: F401
