"""Course-compatible helpers (DLS Courses 1 and 2) in plain NumPy.

One module per course helper file, each behaving as that file (same seeds,
shapes, printing, in-place or copying updates) and holding that notebook's
graded functions: ``dnn_app_utils_v3``, ``planar_utils``, ``init_utils``,
``reg_utils``, ``gc_utils``, ``opt_utils`` (also as ``opt_utils_v1a``).
``from fastnn.compat.dnn import *`` gives the W4A1 step-by-step functions
(and the Week-3 model functions); ``fastnn.compat.planar`` holds the full
Week-3 set.
"""
