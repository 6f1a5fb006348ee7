"""A new lesson is one module and one line of app.TABS: a throwaway tab, registered here with a
toy experiment, is served with its own endpoint, offered by the CLI, trained by the warm-up and
seen by everything that iterates the tab list."""

from dataclasses import replace

import gradio as gr
import pytest

import app
from demo.lesson import Lesson, lesson_tabs
from demo.panel import warm_up
from training.__main__ import main
from training.config import TrainConfig
from training.experiments import EXPERIMENTS, Experiment, Lesson as Finding

TINY = TrainConfig(model="cnn-tiny", init="he", optimizer="sgd", lr=0.01, batch_size=32, epochs=1, n_train=160)
TOY = Experiment(
    name="toy",
    title="Toy: a slow and a fast learning rate",
    finding="The faster rate learns more in one epoch.",
    arm_overrides={preset: {"slow": {"lr": 0.001}, "fast": {}} for preset in ("quick", "report")},
    base={"quick": TINY, "report": TINY},
    lessons=(Finding(("fast",), ("slow",)),),
)


class Toy(Lesson):
    """Two learning rates on the smallest network, at a width of the student's choice."""

    def controls(self):
        return [gr.Slider(4, 32, value=8, step=4, label="Width")]

    def arms(self, settings, width=8):
        return [replace(arm, model_overrides={"width": int(width)}) for arm in settings.arms(self.experiment)]


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(EXPERIMENTS, "toy", TOY)
    return Toy("Toy", "toy", "compare_toy", "Two learning rates, one network.")


def test_the_toy_tab_is_served_with_an_endpoint_named_after_its_own_control_then_the_shared_settings(toy):
    tabs = (*app.TABS, toy)
    endpoints = app.build_app(tabs).get_api_info()["named_endpoints"]
    parameters = [p["parameter_name"] for p in endpoints["/compare_toy"]["parameters"]]
    assert parameters == ["width", "preset", "epochs", "n_train", "lr", "batch_size", "seed", "init"]
    assert toy in lesson_tabs(tabs)  # what the tests and benchmarks parametrized over the tabs iterate


def test_its_handler_trains_both_arms_to_a_verdict(tiny_data, toy):
    *_, status, session, _, _ = list(toy.handler(16, "quick", epochs=1, n_train=160, batch_size=32))[-1]
    assert status.startswith("Done") and "**Verdict:**" in status
    assert [run["config"]["width"] for run in session["results"]["runs"]] == [16, 16]


def test_the_command_line_offers_it(tiny_data, toy, capsys):
    assert main(["toy", "--device", "cpu", "--precision", "fp32"]) == 0
    assert "Toy: a slow and a fast learning rate" in capsys.readouterr().out


def test_the_warm_up_trains_exactly_what_a_default_click_asks_for(tiny_data, run_cache, toy):
    warm_up([toy]).join(120)
    *_, status, _, _, _ = list(toy.handler())[-1]
    assert "replayed" in status
