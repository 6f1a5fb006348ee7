"""The instruments inside the network (training.instruments): what they read, that they read it
right, that they change nothing about training, and that the records reach the JSON, the tabs
and the readings (training.readings)."""

import json
from pathlib import Path
from dataclasses import asdict, replace

import pytest
import torch
from torch import nn

from models import create_model, list_models, model_arguments
from training.__main__ import main
from training.config import TrainConfig
from training.engine import Finished, Reading, TrainStep, compare
from training.experiments import EXPERIMENTS
from training.instruments import DYING, Instruments, reading_interval, weighted_layers
from training.lessons import preset_arms, with_new_settings
from training.readings import INSTRUMENTS, TITLE_CHARACTERS, layer_order, profile, times

TINY = TrainConfig(model="cnn-tiny", init="he", batch_size=16, epochs=2, lr=0.01, momentum=0.9, device="cpu", precision="fp32")
RECORD_KEYS = ["step", "layer", "grad_norm", "update_ratio", "step_cosine", "travelled", "act_std", "dead_share"]


def offline(name: str) -> nn.Module:
    """The model of a preset without downloaded weights (AlexNet's are random here)."""
    return create_model(name, **({"backbone_weights": None} if "backbone_weights" in model_arguments(name) else {}))


@pytest.mark.parametrize("name", list_models())
def test_every_conv_and_linear_layer_is_read_in_order_after_its_activation(name):
    model = offline(name)
    layers = weighted_layers(model)
    assert [layer.name for layer in layers] == [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    # The last layer gives the logits; every other layer is read after an activation.
    assert layers[-1].output is model.get_submodule(layers[-1].name)
    assert all(layer.output is not model.get_submodule(layer.name) for layer in layers[:-1])


def test_a_reading_is_what_the_step_did_to_each_layer():
    """Plain SGD steps by −lr·gradient, so each reading can be computed by hand from two steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    with torch.no_grad():
        model[0].bias[:2] = -100  # two hidden units that no input wakes: dead
    optimizer, lr = torch.optim.SGD(model.parameters(), lr=0.1), 0.1
    instruments = Instruments(model, total_steps=2 * 16)  # a reading every 2 steps: 2 is read, 1 watched
    start = [model[0].weight.detach().clone(), model[2].weight.detach().clone()]
    grads, hidden = [], None
    for step in (1, 2):
        x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
        watch = instruments.probe(step)
        with watch.forward():
            h = model[1](model[0](x))
            out = model[2](h)
            loss = nn.functional.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        grads.append([model[0].weight.grad.clone(), model[2].weight.grad.clone()])
        before = [model[0].weight.detach().clone(), model[2].weight.detach().clone()]
        watch.before_update()
        optimizer.step()
        watch.after_update()
        hidden, logits = h.detach(), out.detach()
    first, last = watch.readings
    assert (first.layer, last.layer) == ("0", "2")
    for reading, g1, g2, w, w0 in zip(watch.readings, grads[0], grads[1], before, start):
        assert reading.grad_norm == pytest.approx(g2.norm().item(), rel=1e-3)
        assert reading.update_ratio == pytest.approx(lr * g2.norm().item() / w.norm().item(), rel=1e-3)
        assert reading.step_cosine == pytest.approx(nn.functional.cosine_similarity(g1.flatten(), g2.flatten(), dim=0).item(), rel=1e-3, abs=1e-4)
        assert reading.travelled == pytest.approx((lr * (g1 + g2)).norm().item() / w0.norm().item(), rel=1e-3)
    assert first.act_std == pytest.approx(hidden.std().item(), rel=1e-3)
    assert first.dead_share == pytest.approx((hidden.amax(dim=0) == 0).float().mean().item()) and first.dead_share >= 2 / 5
    # The logits are read at the last layer itself, where no unit can die.
    assert last.dead_share is None and last.act_std == pytest.approx(logits.std().item(), rel=1e-3)


def test_a_frozen_layer_reads_no_gradient_and_no_step():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    instruments = Instruments(model, total_steps=64)
    for step in (1, 2):
        watch = instruments.probe(step)
        with watch.forward():
            loss = model(torch.randn(4, 4)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        watch.before_update(), optimizer.step(), watch.after_update()
    frozen, trained = watch.readings
    assert (frozen.grad_norm, frozen.update_ratio, frozen.step_cosine, frozen.travelled) == (None, 0.0, None, 0.0)
    assert frozen.dead_share is None and not isinstance(model[1], DYING)  # tanh units cannot die
    assert trained.update_ratio > 0 and trained.travelled > 0


def test_an_arm_is_read_every_few_steps_at_every_layer(tiny_data):
    events = list(compare([TINY]))
    readings = [e for e in events if isinstance(e, Reading)]
    total = next(e for e in events if isinstance(e, Finished)).steps
    every = reading_interval(total)
    assert [r.step for r in readings] == sorted({*range(every, total + 1, every), total})
    names = [layer.layer for layer in readings[0].layers]
    assert names == ["features.0.conv", "features.1.conv", "classifier.0.linear", "classifier.1.linear"]
    assert all([layer.layer for layer in r.layers] == names for r in readings)
    travelled = [r.layers[0].travelled for r in readings]
    assert travelled == sorted(travelled) and travelled[0] > 0  # momentum keeps moving away from the start


def test_the_instruments_change_nothing_about_training(tiny_data):
    """The readings copy weights and read outputs, and draw no random numbers."""
    on, off = replace(TINY, label="on", event_interval_s=0), replace(TINY, label="off", event_interval_s=0, instruments=False)  # a loss event every step
    events = list(compare([on, off]))
    losses = {arm: [e.train_loss for e in events if isinstance(e, TrainStep) and e.arm == arm] for arm in ("on", "off")}
    assert losses["on"] == losses["off"]
    models = {e.arm: e.model for e in events if isinstance(e, Finished)}
    assert all(torch.equal(a, b) for a, b in zip(models["on"].state_dict().values(), models["off"].state_dict().values()))
    assert not any(isinstance(e, Reading) and e.arm == "off" for e in events)


def test_the_json_gives_each_run_its_records_and_the_switch_turns_them_off(tiny_data, tmp_path):
    on, off = tmp_path / "on.json", tmp_path / "off.json"
    assert main(["momentum", "--device", "cpu", "--precision", "fp32", "--out", str(on)]) == 0
    assert main(["momentum", "--device", "cpu", "--precision", "fp32", "--no-instruments", "--out", str(off)]) == 0
    runs = json.loads(on.read_text())["runs"]
    for run in runs:
        assert run["instruments"] and all(list(record) == RECORD_KEYS for record in run["instruments"])
    # The same layer names in both arms, so that one layer compares across them.
    assert layer_order(runs[0]["instruments"]) == layer_order(runs[1]["instruments"])
    assert all(run["instruments"] == [] for run in json.loads(off.read_text())["runs"])


def test_a_profile_is_each_layers_median_in_the_networks_order():
    records = [
        {"step": s, "layer": name, "grad_norm": g}
        for s, values in ((2, (1.0, 5.0, 0.1)), (4, (3.0, 7.0, 0.3)), (6, (2.0, 6.0, None)))
        for name, g in zip(("features.0.conv", "features.2.conv", "classifier.0.linear"), values)
    ]
    assert profile(records, "grad_norm") == {"conv 1": 2.0, "conv 2": 6.0, "fc 1": pytest.approx(0.2)}
    assert profile(records, "grad_norm", last=True) == {"conv 1": 2.0, "conv 2": 6.0}


@pytest.mark.parametrize("value, words", [(4.29e-7, "1/2,300,000 of"), (1 / 300, "1/300 of"), (1 / 31, "1/31 of"), (0.25, "1/4.0 of"), (0.8, "80% of"), (5.24, "5.2×"), (31.7, "32×")])
def test_a_ratio_reads_as_a_student_says_it(value, words):
    assert times(value) == words


@pytest.mark.parametrize("name", sorted(INSTRUMENTS))
def test_each_instrument_reads_every_gauge_from_its_experiments_arms(name):
    """Records of the experiment's own arms and layers give every gauge a number: a gauge naming an
    arm or a layer the experiment lacks would read None."""
    instrument = INSTRUMENTS[name]
    assert instrument.metric in RECORD_KEYS[2:] and len(instrument.title) <= TITLE_CHARACTERS
    runs = {}
    for arm in EXPERIMENTS[name].arms("quick"):
        layers = weighted_layers(offline(arm.model) if not arm.model_overrides.get("n_conv") else create_model(arm.model, **arm.model_overrides))
        runs[arm.label] = [{"step": step, "layer": layer.name, **dict.fromkeys(RECORD_KEYS[2:], 0.5)} for step in (2, 4) for layer in layers]
    numbers = instrument.numbers(runs)
    assert numbers and None not in numbers.values()
    assert len(instrument.sentences(numbers)) == len(instrument.gauges)


# Every gauge's expectation (training.readings), the one the tab holds a student's run to, held to
# the recorded quick-preset runs at every seed (results/readings.json, benchmarks/lessons.py).
def test_the_recorded_readings_show_what_the_tabs_say_at_every_seed():
    recorded = json.loads((Path(__file__).parent.parent / "results" / "readings.json").read_text())["experiments"]
    checked = set()
    for name, entry in recorded.items():
        gauges = {gauge.name for gauge in INSTRUMENTS[name].gauges}
        assert [with_new_settings(arm) for arm in entry["arms"]] == preset_arms(name, "quick"), f"{name}: its quick preset changed since its readings were recorded"
        assert {run["seed"] for run in entry["runs"] if run["precision"] == "fp32"} == {0, 1, 2, 3, 4}, name
        for run in entry["runs"]:
            assert set(run["readings"]) == gauges, f"{name}: re-record its readings, its gauges changed"
            assert INSTRUMENTS[name].contrary(run["readings"]) == [], f"{name} seed {run['seed']} {run['precision']}"
            checked |= {gauge.name for gauge in INSTRUMENTS[name].gauges if gauge.expected and run["readings"].get(gauge.name) is not None}
    expected = {gauge.name for name in recorded for gauge in INSTRUMENTS[name].gauges if gauge.expected}
    assert checked == expected  # every expectation of a recorded experiment was held to a reading


@pytest.mark.parametrize("init, reason_given", [("default", True), ("he", False)])
def test_a_contrary_reading_gives_its_measured_reason_only_where_the_run_has_its_setting(init, reason_given):
    """Depth's gauge expects the gradient to arrive about whole under He's init; a run under the
    report's init, where it measurably does not, is told why, and a run under He's init is not
    given a reason that is not its own."""
    configs = [{**asdict(arm), "init": init} for arm in EXPERIMENTS["architecture"].arms("quick")]
    (line,) = INSTRUMENTS["architecture"].contrary({"deepest ÷ shallowest: gradient at conv 1": 0.002}, configs)
    assert line.startswith("Not as expected at these settings") and "this run read 0.002." in line
    assert ("Why: this run used the report's init" in line) is reason_given
    assert INSTRUMENTS["architecture"].contrary({"deepest ÷ shallowest: gradient at conv 1": 0.9}, configs) == []


def test_the_why_a_verdict_gives_is_the_readings_that_bear_out_their_expectation():
    """Activations' why is sigmoid's starved first layer; tanh's gradient beside ReLU's, which the
    literature expects no direction of, explains nothing on its own, and a reading against its
    expectation is no why."""
    activations = INSTRUMENTS["activations"]
    numbers = {"sigmoid ÷ relu: gradient at conv 1": 1e-6, "tanh ÷ relu: gradient at conv 1": 1.6, "relu: dead share, largest conv layer (last reading)": 0.0}
    assert activations.explaining(numbers) == ["sigmoid: the first conv layer got 1/1,000,000 of ReLU's gradient."]
    assert activations.explaining({**numbers, "sigmoid ÷ relu: gradient at conv 1": 2.0}) == []
