"""The one change fastnn makes to the process environment: OMP_WAIT_POLICY, only when unset."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

PROBE = r'''
import json, os
before = os.environ.get("OMP_WAIT_POLICY")
from fastnn.backends import _numba_config
print(json.dumps([before, os.environ.get("OMP_WAIT_POLICY"), _numba_config.USER_OMP_WAIT_POLICY]))
'''


def _probe(value):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if value is not None:
        env["OMP_WAIT_POLICY"] = value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("value", ["ACTIVE", "passive", ""])
def test_a_users_own_omp_wait_policy_is_left_alone(value):
    assert _probe(value) == [value, value, value]


def test_an_unset_omp_wait_policy_becomes_passive_and_is_recorded_as_unset():
    assert _probe(None) == [None, "PASSIVE", None]
