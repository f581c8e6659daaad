"""Hypothesis profiles of the fuzz suite (issue 13).

``fuzz_default`` keeps the whole suite well under two minutes on a small CPU
machine: few examples per property, derandomized (the same examples every
run, so its wall time is stable), no example database written into the
checkout. ``fuzz_slow`` (the ``slow``-marked twins of every property, run
with ``-m slow``) draws many more, randomly. XLA compiles take seconds, so
there are no deadlines.
"""

from hypothesis import HealthCheck, Phase, settings

_COMMON = dict(
    deadline=None,
    database=None,
    print_blob=True,
    # No "explain" phase: it writes patch files into .hypothesis/.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
settings.register_profile("fuzz_default", max_examples=10, derandomize=True, **_COMMON)
settings.register_profile("fuzz_slow", max_examples=200, derandomize=False, **_COMMON)
