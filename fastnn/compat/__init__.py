"""Course-compatible helpers (DLS Course 1, Weeks 3 and 4) in plain NumPy.

``from fastnn.compat.dnn import *`` replaces the course's helper imports
(``dnn_app_utils_v3``, the W4A1 step-by-step functions and the Week-3 model
functions); ``fastnn.compat.planar`` holds the full Week-3 set.
"""
