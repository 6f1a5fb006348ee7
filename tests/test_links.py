"""Experiment links: a link's parameters are its tab's endpoint's, checked one at a time by the
endpoint's own validator, and the link a tab gives for its controls reads back to the same values."""

import pytest

from app import TABS
from demo.lesson import lesson_tabs
from demo.panel import GRADIO_PARAMETERS
from demo.links import link_query, parameters, read_link
from demo.tabs import activations, depth, momentum

LESSONS = lesson_tabs(TABS)


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda lesson: lesson.title)
def test_a_links_parameters_are_named_as_its_endpoints(lesson):
    endpoint = [name for name in lesson.signature.parameters if name not in {p.name for p in GRADIO_PARAMETERS}]
    assert parameters(lesson) == endpoint


def test_a_link_sets_what_it_can_and_says_what_it_cannot():
    query = {"tab": "compare_momentum", "beta": "0.5", "seed": "3", "epochs": "abc", "lr": "-1", "colour": "red", "run": "1"}
    lesson, values, refused = read_link(LESSONS, query)
    assert lesson is momentum.TAB and values == {"beta": 0.5, "seed": 3}
    assert refused[0] == "epochs=abc: must be an integer, got 'abc'"
    assert refused[1].startswith("lr=-1: ") and "lr" in refused[1]  # the engine's own bound, in its words
    assert refused[2] == f"colour: this tab takes {', '.join(parameters(momentum.TAB))}."
    lesson, values, refused = read_link(LESSONS, {"tab": "compare_momentum", "beta": "7"})
    assert values == {} and refused and "momentum" in refused[0]  # β past its bound
    assert read_link(LESSONS, {}) == (None, {}, [])
    assert read_link(LESSONS, {"tab": "nowhere"})[2][0].startswith("tab: no tab is named 'nowhere'")


@pytest.mark.parametrize(
    "lesson, own",
    [(momentum.TAB, {"beta": 0.5}), (activations.TAB, {"activations": ["relu", "tanh"]}), (depth.TAB, {"conv_counts": [1, 3], "fc_counts": [2]})],
    ids=lambda value: getattr(value, "title", ""),
)
def test_the_link_a_tab_gives_reads_back_to_its_controls(lesson, own):
    shared = {"preset": "quick", "epochs": 1, "n_train": 500, "lr": 0.01, "batch_size": 16, "seed": 2, "init": "he"}
    values = [own.get(name, shared.get(name)) for name in parameters(lesson)]
    query = link_query(lesson, *values)
    pairs = dict(pair.split("=", 1) for pair in query.removeprefix("?").split("&"))
    _, read, refused = read_link(LESSONS, pairs)
    assert refused == [] and read == dict(zip(parameters(lesson), values))


def test_on_a_space_the_link_is_the_space_page_which_hands_its_query_to_the_app(monkeypatch):
    from demo.links import space_link

    values = [0.5, "quick", 1, 500, 0.01, 16, 2, "he"]
    assert space_link(momentum.TAB, *values) == link_query(momentum.TAB, *values)
    monkeypatch.setenv("SPACE_ID", "teacher/cnn-lab")
    assert space_link(momentum.TAB, *values) == "https://huggingface.co/spaces/teacher/cnn-lab" + link_query(momentum.TAB, *values)
