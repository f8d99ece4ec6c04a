"""fastnn's benchmarks: the asv suite (``bench_*.py``) and ``python -m benchmarks.compare``."""
