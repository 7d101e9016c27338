"""Issue 17: property-based fuzz of every architecture's and wrapper's constructor arguments.

Invalid values (wrong types, negatives, NaN/Inf, huge ints, wrong-length tuples, unknown names; see
fuzz_cases.py) must raise a ValueError/TypeError naming the argument: never another exception, never a silent
build. Valid values build a real tiny model that runs. The default profile draws a few examples per class (the
whole file stays well under a minute); ``-m slow`` runs a longer profile, and benchmarks/fuzz_arguments.py tries
every case.
"""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_cases

settings.register_profile("fuzz-default", max_examples=4, deadline=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("fuzz-long", max_examples=60, deadline=None,
                          suppress_health_check=list(HealthCheck))

CLASSES = sorted(fuzz_cases.BASE)


def _check_invalid(name, case):
    argument, category, value = case
    outcome, detail = fuzz_cases.classify(name, argument, value)
    assert outcome == "clear", f"{name}({argument}={value!r}) [{category}]: {outcome}: {detail}"


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", CLASSES)
def test_invalid_arguments_raise_a_clear_error(name):
    cases = fuzz_cases.cases(name)
    assert len(cases) > 20  # every class has many arguments to break

    @settings(settings.get_profile("fuzz-default"))
    @given(st.sampled_from(cases))
    def run(case):
        _check_invalid(name, case)

    run()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", CLASSES)
def test_invalid_arguments_raise_a_clear_error_long(name):
    @settings(settings.get_profile("fuzz-long"))
    @given(st.sampled_from(fuzz_cases.cases(name)))
    def run(case):
        _check_invalid(name, case)

    run()


# Valid variations: class -> strategies for arguments that every configuration of BASE accepts.
def _valid(name):
    options = {"classes": st.integers(1, 3)} if "classes" in dict(fuzz_cases.arguments(name)) else {}
    if name in ("ClM",):
        options["dropout"] = st.floats(0.0, 0.9)
    if name in ("MeshNet", "ATrousNet"):
        options["in_channels"] = st.integers(1, 3)
    if name.startswith(("DD", "SD")):
        options["guidance_scale"] = st.floats(0.0, 5.0)
    return st.fixed_dictionaries(options)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", CLASSES)
def test_valid_arguments_build_and_run(name):
    @settings(max_examples=1, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(_valid(name))
    def run(overrides):
        out = fuzz_cases.build_and_run(name, overrides)
        assert torch.isfinite(out).all()
        if "classes" in overrides and name not in ("SDPM", "SDIM", "ClM"):
            assert out.shape[1] == overrides["classes"]

    run()
