import numpy as np
import pytest

from pea_keras import schedules


def test_cosine_default_reaches_relu_at_three_quarters():
    s = schedules.default(1000)
    assert s == schedules.Cosine(0, 750)
    assert s(0) == 0.0
    assert s(375) == pytest.approx(0.5)
    assert s(750) == 1.0 and s(999) == 1.0


def test_linear_begin_middle_end():
    s = schedules.Linear.over(100, start=0.2, end=0.6)
    assert (s.begin_step, s.end_step) == (20, 60)
    assert s(0) == s(20) == 0.0
    assert s(40) == pytest.approx(0.5)
    assert s(60) == s(100) == 1.0


@pytest.mark.parametrize("schedule", [schedules.Linear(5, 50), schedules.Cosine(0, 80),
                                      schedules.Step.over(100), schedules.Constant(0.3)])
def test_monotone_and_in_unit_interval(schedule):
    values = np.array([schedule(step) for step in range(120)])
    assert np.all(np.diff(values) >= 0)
    assert values.min() >= 0 and values.max() <= 1


def test_step_values():
    s = schedules.Step([10, 20], [0.0, 0.5, 1.0])
    assert [s(0), s(9), s(10), s(19), s(20), s(1000)] == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    stepped = schedules.Step.over(90, start=0.0, end=0.6)
    assert (stepped.boundaries, stepped.values) == ([18, 36, 54], [0.0, 1 / 3, 2 / 3, 1.0])


@pytest.mark.parametrize("schedule", [schedules.Linear(3, 9), schedules.Cosine.over(40, 0.1, 0.9),
                                      schedules.Step([1, 5], [0.0, 0.2, 1.0]), schedules.Constant(0.25)])
def test_config_round_trip(schedule):
    assert type(schedule).from_config(schedule.get_config()) == schedule
    assert schedules.deserialize(schedules.serialize(schedule)) == schedule


@pytest.mark.parametrize("make, message", [
    (lambda: schedules.Linear(10, 10), "must be greater than begin_step"),
    (lambda: schedules.Cosine(-1, 10), "begin_step must be >= 0"),
    (lambda: schedules.Cosine.over(100, start=0.8, end=0.5), "must be greater than start"),
    (lambda: schedules.Linear.over(100, end=1.5), r"end must be in \[0, 1\]"),
    (lambda: schedules.Step([5], [0.0, 1.2]), r"every value must be in \[0, 1\]"),
    (lambda: schedules.Step([5, 3], [0.0, 0.5, 1.0]), "strictly increasing"),
    (lambda: schedules.Step([5], [0.0]), "len\\(values\\) == len\\(boundaries\\) \\+ 1"),
    (lambda: schedules.Constant(-0.1), r"value must be in \[0, 1\]"),
    (lambda: schedules.deserialize({"class_name": "Exp", "config": {}}), "Unknown schedule 'Exp'"),
])
def test_invalid_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
