"""crossbn.reference -- exact float64 NumPy oracle for BatchNorm.

Pure NumPy (no framework, no ``crossbn`` import): one function per stage of
the BatchNorm forward/backward pass and of the running-statistics update.
See :mod:`reference.batchnorm` for the accuracy argument of each stage.
"""

from .batchnorm import *  # noqa: F401,F403
from .batchnorm import __all__  # noqa: F401
