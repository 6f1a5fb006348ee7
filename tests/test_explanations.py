"""Every accuracy a lesson tab quotes beside its controls can be checked: each percentage in its
explanation and its quick preset's note is a test accuracy of the experiment's committed reference
run (results/reference/), at one of its evaluations, or one of the report's own figures."""

import re

import pytest

from app import TABS
from demo.lesson import lesson_tabs
from training.results import load_reference

ACCURACY = re.compile(r"(\d+\.\d\d)%")


def checkable_figures(experiment) -> set[str]:
    """The accuracies, as written, that the reference run recorded and the report states."""
    recorded = load_reference(experiment.name)
    figures = set(ACCURACY.findall(experiment.finding))
    figures |= {f"{100 * number.test_acc:.2f}" for number in experiment.report if number.test_acc}
    for run in recorded["runs"] if recorded else []:
        figures |= {f"{100 * point['test_acc']:.2f}" for point in run["history"] if point["type"] == "Evaluation"}
    return figures


@pytest.mark.parametrize("tab", lesson_tabs(TABS), ids=lambda tab: tab.title)
def test_every_quoted_accuracy_is_the_reference_runs_or_the_reports(tab):
    quoted = set(ACCURACY.findall(tab.explanation + tab.experiment.quick_note))
    assert quoted <= checkable_figures(tab.experiment), f"not in results/reference/{tab.experiment_name}.json nor the report"
