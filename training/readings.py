"""What each experiment's instruments say: the metric its tab plots by layer, and the numbers
(gauges) read from its arms' instrument records (training.instruments), each with the sentence
a tab prints and the direction the literature expects, which benchmarks/lessons.py checks at
every seed and precision.

A layer's value is the median over the run's readings (a single batch's reading is noisy), except
where a gauge says otherwise. Records come as each arm's list, by the arm's label.
"""

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from training.lessons import member

Runs = dict[str, list[dict]]  # arm label → its instrument records
# The longest plot title a 400-pixel screen shows whole.
TITLE_CHARACTERS = 36


def short_name(layer: str, position: dict[str, int]) -> str:
    """"conv 2" or "fc 1": a layer's kind and its place among the layers of that kind."""
    kind = "conv" if "conv" in layer or layer.startswith("features.") else "fc"
    position[kind] = position.get(kind, 0) + 1
    return f"{kind} {position[kind]}"


def layer_order(records: list[dict]) -> dict[str, str]:
    """Each layer's short name, in the network's order."""
    position: dict[str, int] = {}
    layers = list(dict.fromkeys(record["layer"] for record in records))
    return {layer: short_name(layer, position) for layer in layers}


def profile(records: list[dict], metric: str, last: bool = False) -> dict[str, float]:
    """Each layer's median `metric` over the readings (`last`: at the last reading only), by
    short name in the network's order; layers without a value are left out."""
    if last and records:
        final = records[-1]["step"]
        records = [record for record in records if record["step"] == final]
    names = layer_order(records)
    values: dict[str, list[float]] = {}
    for record in records:
        if record[metric] is not None:
            values.setdefault(names[record["layer"]], []).append(record[metric])
    return {name: statistics.median(values[name]) for name in names.values() if name in values}


def arm_records(runs: Runs, name: str) -> list[dict] | None:
    """The records of the first arm that counts under `name` (training.lessons.member)."""
    return next((records for label, records in runs.items() if member(label, name) and records), None)


def at(layer: int | str, metric: str, name: str, last: bool = False) -> Callable[[Runs], float | None]:
    """An arm's `metric` at a layer: by index (0: the first, -1: the last) or short name ("conv 5")."""

    def read(runs: Runs) -> float | None:
        records = arm_records(runs, name)
        values = profile(records, metric, last) if records else {}
        if isinstance(layer, str):
            return values.get(layer)
        return list(values.values())[layer] if values else None

    return read


def ratio(top: Callable[[Runs], float | None], bottom: Callable[[Runs], float | None]) -> Callable[[Runs], float | None]:
    def read(runs: Runs) -> float | None:
        a, b = top(runs), bottom(runs)
        return a / b if a is not None and b else None

    return read


def largest(metric: str, name: str, layers: str = "", but_last: bool = False) -> Callable[[Runs], float | None]:
    """An arm's largest `metric` at its last reading over its layers: those whose short name
    starts with `layers`, the last layer left out where `but_last`."""

    def read(runs: Runs) -> float | None:
        records = arm_records(runs, name)
        values = list((profile(records, metric, last=True) if records else {}).items())
        values = [v for layer, v in values[: -1 if but_last else None] if layer.startswith(layers)]
        return max(values) if values else None

    return read


def times(value: float) -> str:
    """A ratio as a student reads it: "1/300 of", "80% of", "5.2×"."""
    if value < 0.5:
        share = 1 / value
        if share >= 100:  # two significant digits: "1/2,300,000", not "1/2331002"
            return f"1/{float(f'{share:.2g}'):,.0f} of"
        return f"1/{share:.0f} of" if share > 10 else f"1/{share:.1f} of"
    if value < 1:
        return f"{value:.0%} of"
    return f"{value:.0f}×" if value >= 10 else f"{value:.1f}×"


@dataclass(frozen=True)
class Expectation:
    """What the literature expects of a gauge, stated once: the words the readings table and the tab
    print, and the test the recorded seeds, the benchmark and a student's own run are held to. Its
    bounds are the literature's direction or a margin stated in its words, never the recorded spread."""

    words: str  # "< 1: sigmoid's first layer gets less gradient than ReLU's"
    holds: Callable[[float], bool]
    reasons: tuple["Reason", ...] = ()  # measured causes of a contrary reading, said where they apply


@dataclass(frozen=True)
class Reason:
    """A measured cause of a reading against its expectation, said beside it when the run's arms
    (their configs, as the results record them) have the setting it names."""

    applies: Callable[[list[dict]], bool]
    words: str


@dataclass(frozen=True)
class Gauge:
    """One number read from the arms' records, with its sentence and what is expected of it."""

    name: str  # its row in the readings table
    read: Callable[[Runs], float | None]
    sentence: Callable[[float], str]  # what the tab prints for the value
    expected: Expectation | None = None  # None: the literature expects no direction

    def contrary(self, value: float | None, configs: list[dict] = ()) -> str | None:
        """What a run whose reading goes against the expectation is told, with the measured reason
        its arms' settings give, or None."""
        if value is None or self.expected is None or self.expected.holds(value):
            return None
        why = "".join(f" Why: {reason.words}" for reason in self.expected.reasons if reason.applies(list(configs)))
        return f"Not as expected at these settings: expected {self.expected.words}; this run read {value:.3g}.{why}"


@dataclass(frozen=True)
class Instrument:
    """An experiment's view inside the network: one metric by layer per arm, and its gauges."""

    metric: str  # the LayerReading field its plot shows by layer, each layer's median over the readings
    title: str  # the plot's title, short enough for a phone's width (TITLE_CHARACTERS)
    log: bool  # plotted as log₁₀ (values spanning decades)
    how_to_read: str  # one or two sentences under the plot
    gauges: tuple[Gauge, ...]

    def numbers(self, runs: Runs) -> dict[str, float | None]:
        return {gauge.name: gauge.read(runs) for gauge in self.gauges}

    def sentences(self, numbers: dict[str, float | None]) -> list[str]:
        """What the tab says of these numbers, one sentence for each gauge read."""
        return [gauge.sentence(value) for gauge in self.gauges if (value := numbers.get(gauge.name)) is not None]

    def explaining(self, numbers: dict[str, float | None]) -> list[str]:
        """The sentences of the gauges whose expectation this run bears out: the why a verdict
        gives (a gauge the literature expects no direction of explains nothing on its own)."""
        return [gauge.sentence(value) for gauge in self.gauges if gauge.expected and (value := numbers.get(gauge.name)) is not None and gauge.expected.holds(value)]

    def contrary(self, numbers: dict[str, float | None], configs: list[dict] = ()) -> list[str]:
        """One line for each gauge whose reading goes against what is expected of it (`configs`:
        the arms' settings, for the reasons that depend on them)."""
        return [line for gauge in self.gauges if (line := gauge.contrary(numbers.get(gauge.name), configs))]


ACTIVATIONS = Instrument(
    "grad_norm",
    "Gradient each layer gets (log₁₀)",
    True,
    "Each point is the size of the loss gradient for one layer's weights; one step down is ten times less. "
    "Through sigmoid each layer passes back at most a quarter of the gradient it gets (σ′ ≤ 1/4), so the first layers get least; "
    "ReLU passes it whole (its slope is 1 or 0), but a unit that is zero on every image passes nothing: it is dead.",
    (
        Gauge("sigmoid ÷ relu: gradient at conv 1", ratio(at(0, "grad_norm", "sigmoid"), at(0, "grad_norm", "relu")), lambda v: f"sigmoid: the first conv layer got {times(v)} ReLU's gradient.",
              Expectation("< 1: through sigmoid the first conv layer gets less gradient than through ReLU (σ′ ≤ 1/4 at every layer)", lambda v: v < 1)),
        Gauge("tanh ÷ relu: gradient at conv 1", ratio(at(0, "grad_norm", "tanh"), at(0, "grad_norm", "relu")), lambda v: f"tanh: the first conv layer got {times(v)} ReLU's gradient."),
        Gauge("relu: dead share, largest conv layer (last reading)", largest("dead_share", "relu", "conv"), lambda v: f"relu: {v:.0%} of the channels of its most affected conv layer were dead at the last reading."),
    ),
)

MOMENTUM = Instrument(
    "step_cosine",
    "Do successive steps agree?",
    False,
    "Each point is the cosine between one step of a layer's weights and the step before: near 1 the steps point the same way and add up, "
    "near 0 or below they zig-zag and cancel. Momentum averages the gradients, so its steps agree, and its weights travel farther for the same number of steps.",
    (
        Gauge(
            "no momentum: step cosine at conv 1", at(0, "step_cosine", "no momentum"), lambda v: f"no momentum: successive steps of the first conv layer had a median cosine of {v:+.2f}.",
            Expectation("between −0.5 and +0.5: plain SGD's successive steps barely agree (they zig-zag)", lambda v: abs(v) < 0.5),
        ),
        Gauge("momentum: step cosine at conv 1", at(0, "step_cosine", "momentum"), lambda v: f"momentum: {v:+.2f}.", Expectation("above +0.5: momentum's successive steps mostly point the same way", lambda v: v > 0.5)),
        Gauge(
            "momentum ÷ no momentum: distance travelled by conv 1",
            ratio(at(0, "travelled", "momentum", last=True), at(0, "travelled", "no momentum", last=True)),
            lambda v: f"So momentum's first conv layer travelled {times(v)} the distance plain SGD's did from its initial weights.",
            Expectation("> 1: momentum's first conv layer travels farther than plain SGD's", lambda v: v > 1),
        ),
    ),
)

ADAPTIVE_LR = Instrument(
    "update_ratio",
    "Step size, ‖ΔW‖/‖W‖ (log₁₀)",
    True,
    "Each point is how far one step moved a layer's weights, relative to their size; one step down is ten times smaller. "
    "Constant-rate SGD moves every weight by its gradient times the rate; Adadelta scales each weight's step by the running size of its own gradients and steps, "
    "so layers whose gradients are small still take real steps.",
    (
        Gauge("adadelta ÷ constant lr: step size at conv 1", ratio(at(0, "update_ratio", "adadelta"), at(0, "update_ratio", "constant lr")), lambda v: f"Adadelta's steps in the first conv layer were {times(v)} constant-rate SGD's.",
              Expectation("> 1: Adadelta's steps in the first conv layer are larger than constant-rate SGD's", lambda v: v > 1)),
        Gauge("adadelta ÷ constant lr: step size at the last layer", ratio(at(-1, "update_ratio", "adadelta"), at(-1, "update_ratio", "constant lr")), lambda v: f"In the last layer: {times(v)}.",
              Expectation("> 1: Adadelta's steps in the last layer are larger than constant-rate SGD's", lambda v: v > 1)),
    ),
)

BATCHNORM = Instrument(
    "act_std",
    "Each layer's output spread (log₁₀)",
    True,
    "Each point is the spread of one layer's outputs on a training batch (after its norm and activation). "
    "Under the report's init every layer shrinks the signal, so without batch norm the deep layers' outputs are tiny and learn slowly; "
    "batch norm rescales every layer's input to one scale.",
    (
        Gauge("no batch norm: last conv ÷ conv 1 output scale", ratio(at("conv 5", "act_std", "no batch norm"), at(0, "act_std", "no batch norm")), lambda v: f"Without batch norm the fifth conv layer's outputs were {times(v)} the first's.",
              Expectation("< 1: without batch norm the deep layers' outputs shrink", lambda v: v < 1)),
        Gauge("batch norm: last conv ÷ conv 1 output scale", ratio(at("conv 5", "act_std", "batch norm"), at(0, "act_std", "batch norm")), lambda v: f"With batch norm: {times(v)}.",
              Expectation("between 0.5 and 2: batch norm keeps every layer's outputs at one scale, within a factor of two", lambda v: 0.5 < v < 2)),
    ),
)


def depth_ratio(runs: Runs) -> float | None:
    """The gradient reaching the first layer of the deepest cells over the shallowest's, each the
    mean over the cells' fully-connected counts (cells are labelled "conv5-fc2")."""
    by_depth: dict[int, list[float]] = {}
    for label, records in runs.items():
        value = at(0, "grad_norm", label)({label: records})
        if value is not None:
            by_depth.setdefault(int(label.split("-")[0].removeprefix("conv")), []).append(value)
    if len(by_depth) < 2:
        return None
    return statistics.fmean(by_depth[max(by_depth)]) / statistics.fmean(by_depth[min(by_depth)])


DEPTH = Instrument(
    "grad_norm",
    "Gradient at the first layer (log₁₀)",
    True,
    "Each point is the size of the loss gradient for the first conv layer's weights in one cell; one step down is ten times less. "
    "The gradient reaches the first layer back through every layer above it, and each layer can shrink it on the way. Under the quick preset's "
    "He init it arrived about whole at every depth (the deepest cells got 0.84–1.11 of the shallowest's, seeds 0–4); under the report's init "
    "it fell 440-fold from 1 conv × 1 fc to 5 × 3 (the explanation above).",
    (
        Gauge(
            "deepest ÷ shallowest: gradient at conv 1", depth_ratio, lambda v: f"The deepest cells' first layer got {times(v)} the gradient of the shallowest cells'.",
            Expectation(
                "between 0.5 and 2: under He's init the gradient reaches the first layer about whole at every depth, within a factor of two",
                lambda v: 0.5 < v < 2,
                (Reason(lambda configs: any(c["init"] == "default" for c in configs),
                        "this run used the report's init, under which, at the report's settings, we measured the gradient "
                        "falling 440-fold from 1 conv × 1 fc to 5 × 3 (the explanation above)."),),
            ),
        ),
    ),
)

FINAL = Instrument(
    "update_ratio",
    "Step size, ‖ΔW‖/‖W‖ (log₁₀)",
    True,
    "Each point is how far one step moved a layer's weights, relative to their size; one step down is ten times smaller. "
    "The first layer is missing: its whitening filters are computed from the images and never move. "
    "The fast recipe does not win by larger steps: in the first learned conv layer its steps were 0.75–0.87 of Adadelta's at its "
    "default rate (quick preset, seeds 0–4, fp32 and bf16); its one-cycle schedule takes them down to zero, so the run ends on settled weights.",
    (
        Gauge(
            "fast ÷ report recipe: step size at conv 2",
            ratio(at("conv 2", "update_ratio", "final"), at("conv 2", "update_ratio", "report recipe")),
            lambda v: f"The fast recipe's steps in the first learned conv layer were {times(v)} the report recipe's.",
            Expectation("< 1: the fast recipe does not win by larger steps in its first learned conv layer", lambda v: v < 1),
        ),
    ),
)

TRANSFER = Instrument(
    "travelled",
    "How far it moved, ‖W − W₀‖/‖W₀‖",
    False,
    "Each point is how far a layer's weights are from where they started, relative to their size (0: untouched). "
    "Feature extraction trains only the new head, so its backbone stays at exactly 0; fine tuning trains every layer, "
    "and the sentence reads how far its first layer moved beside its new head.",
    (
        Gauge("feature extraction: backbone's farthest layer", largest("travelled", "feature extraction", but_last=True), lambda v: f"Feature extraction: the backbone moved {v:.3g} (frozen).",
              Expectation("0: feature extraction never moves the backbone", lambda v: v == 0)),
        Gauge(
            "fine tuning: conv 1 ÷ head, distance travelled",
            ratio(at(0, "travelled", "fine tuning", last=True), at(-1, "travelled", "fine tuning", last=True)),
            lambda v: f"Fine tuning: the first conv layer moved {times(v)} the distance the new head moved.",
            Expectation("< 1: fine tuning moves the pretrained first layer less than the new head", lambda v: v < 1),
        ),
    ),
)

# Each experiment's instrument, by name: the tab of an experiment shows it, benchmarks/lessons.py reads its gauges.
INSTRUMENTS = {
    "activations": ACTIVATIONS,
    "momentum": MOMENTUM,
    "adaptive-lr": ADAPTIVE_LR,
    "batchnorm": BATCHNORM,
    "architecture": DEPTH,
    "final": FINAL,
    "transfer": TRANSFER,
    "your-images": TRANSFER,
}


# What an experiment without an instrument of its own shows: the gradient each layer gets.
GRADIENTS = Instrument("grad_norm", ACTIVATIONS.title, True, "Each point is the size of the loss gradient for one layer's weights; one step down is ten times less.", ())


def instrument_of(experiment_name: str) -> Instrument:
    return INSTRUMENTS.get(experiment_name, GRADIENTS)
