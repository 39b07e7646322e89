"""pytest and Hypothesis settings for the whole suite. What tests share (paths, the tiny config, tolerances) is in
tests/helpers.py.

Hypothesis runs derandomised under CI=true (the "ci" profile), so the suite never flakes there; a failure a
random draw finds elsewhere is fixed in the code or the test; both profiles print the blob that reproduces it
(`@reproduce_failure`).
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=15, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")
