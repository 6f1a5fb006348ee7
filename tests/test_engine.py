import gc
import weakref
from dataclasses import replace

import pytest
import torch

from models import create_model
from models.airbench import AirbenchCNN
from models.cnn import TeachingCNN
from training.config import TrainConfig
from training.datasets import load_cifar10
from training.engine import (
    EARLY_STOP_CHECK_STEPS,
    Evaluation,
    Finished,
    Started,
    TrainStep,
    build_model,
    compare,
    make_optimizer,
    make_schedule,
    run,
)
from training.evaluation import evaluate, predict
from training.experiments import EXPERIMENTS

TINY = TrainConfig(model="cnn-tiny", init="he", batch_size=16, epochs=2, lr=0.01, momentum=0.9, device="cpu", precision="fp32")


def finished(events) -> dict[str, Finished]:
    return {e.arm: e for e in events if isinstance(e, Finished)}


def same_named_parameters(a: torch.nn.Module, b: torch.nn.Module) -> list[str]:
    sa, sb = a.state_dict(), b.state_dict()
    shared = [k for k in sa if k in sb and sa[k].shape == sb[k].shape]
    assert all(torch.equal(sa[k], sb[k]) for k in shared), "shared parameters differ"
    return shared


@pytest.mark.parametrize("name", ["activations", "momentum", "adaptive-lr", "batchnorm", "transfer"])
def test_arms_of_an_experiment_start_from_identical_weights(name, imagenet_weights):
    arms = EXPERIMENTS[name].arms("quick", seed=3, device="cpu")
    models = [build_model(arm, torch.device("cpu")) for arm in arms]
    for model in models[1:]:
        shared = same_named_parameters(models[0], model)
        # Every conv and linear weight is shared; only batch-norm parameters may be extra.
        weights = [k for k in model.state_dict() if k.endswith("weight") and ".norm." not in k]
        assert set(weights) <= set(shared)


@pytest.mark.parametrize("init", ["default", "he"])
def test_batch_norm_arms_start_from_identical_weights_under_either_init(init):
    plain, normed = (build_model(arm, torch.device("cpu")) for arm in EXPERIMENTS["batchnorm"].arms("report", seed=2, device="cpu", init=init))
    shared = same_named_parameters(plain, normed)
    assert "features.0.conv.weight" in shared and "classifier.2.linear.weight" in shared
    assert (plain.features[0].conv.bias == 0).all() == (init == "he")


def test_init_cannot_be_changed_for_a_pretrained_model():
    arm = EXPERIMENTS["transfer"].arms("quick", device="cpu")[0]
    with pytest.raises(ValueError, match="pretrained weights; init must be 'default'"):
        list(run(replace(arm, init="he")))


def test_the_report_preset_uses_the_reports_init():
    for name in ("activations", "momentum", "adaptive-lr", "batchnorm", "architecture", "final"):
        assert {arm.init for arm in EXPERIMENTS[name].arms("report")} == {"default"}, name


def test_another_seed_gives_other_initial_weights():
    a = build_model(TINY, torch.device("cpu"))
    b = build_model(replace(TINY, seed=1), torch.device("cpu"))
    assert not torch.equal(a.features[0].conv.weight, b.features[0].conv.weight)


def test_arms_see_identical_batches(tiny_data, monkeypatch):
    seen: dict[int, list[torch.Tensor]] = {}
    original_forward = torch.nn.Module.__call__

    def recording_call(self, x, *args, **kwargs):
        if isinstance(self, TeachingCNN) and self.training:
            seen.setdefault(id(self), []).append(x.clone())
        return original_forward(self, x, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", recording_call)
    arms = [replace(TINY, label="plain", momentum=0.0), replace(TINY, label="momentum")]
    list(compare(arms))
    first, second = seen.values()
    assert len(first) == len(second) == 2 * (160 // 16)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_an_arm_trains_the_same_alone_or_beside_others(tiny_data):
    arm = replace(TINY, label="a")
    alone = finished(run(arm))["a"].model
    paired = finished(compare([arm, replace(TINY, label="b", lr=0.2)]))["a"].model
    assert all(torch.equal(x, y) for x, y in zip(alone.state_dict().values(), paired.state_dict().values()))


def test_loss_falls_and_accuracy_beats_chance_on_a_learnable_task(tiny_data):
    events = list(run(replace(TINY, epochs=6)))
    losses = [e.train_loss for e in events if isinstance(e, TrainStep)]
    result = finished(events)["run"]
    assert losses[-1] < 0.5 * losses[0]
    assert result.test_acc > 0.5
    assert len(result.confusion) == 10 and sum(map(sum, result.confusion)) == 60
    assert len(result.per_class_acc) == 10


def test_events_come_in_order_with_an_evaluation_per_epoch(tiny_data):
    events = list(run(replace(TINY, epochs=3, event_interval_s=0.0)))
    assert isinstance(events[0], Started) and events[0].total_steps == 30
    assert isinstance(events[-1], Finished) and events[-1].steps == 30
    evaluations = [e for e in events if isinstance(e, Evaluation)]
    assert [e.step for e in evaluations] == [10, 20, 30]
    steps = [e.step for e in events if isinstance(e, TrainStep)]
    assert steps == list(range(1, 31))
    assert all(0 <= e.test_acc <= 1 for e in evaluations)


@pytest.mark.parametrize("evals_per_epoch, steps", [(0.25, [30]), (0.5, [15, 30]), (2, [5, 10, 15, 20, 25, 30])])
def test_evaluations_are_spread_evenly_and_the_last_step_is_always_evaluated(evals_per_epoch, steps, tiny_data):
    events = run(replace(TINY, epochs=3, evals_per_epoch=evals_per_epoch))
    assert [e.step for e in events if isinstance(e, Evaluation)] == steps


def test_early_stop_fires_at_the_first_check_under_the_threshold(tiny_data):
    result = finished(run(replace(TINY, epochs=5, loss_threshold=100.0)))["run"]
    assert result.stopped_early and result.steps == EARLY_STOP_CHECK_STEPS
    never = finished(run(replace(TINY, epochs=3, loss_threshold=1e-9)))["run"]
    assert not never.stopped_early and never.steps == 30


def test_feature_extraction_keeps_the_backbone_and_fine_tuning_changes_it(tiny_data, imagenet_weights):
    arms = EXPERIMENTS["transfer"].arms("quick", device="cpu")
    arms = [replace(arm, epochs=1, batch_size=8, precision="fp32") for arm in arms]
    results = finished(compare(arms))
    frozen, tuned = results["feature extraction"].model, results["fine tuning"].model
    for key, value in imagenet_weights.items():
        if key.startswith("classifier.6"):
            continue  # the replaced 1000-class layer
        assert torch.equal(frozen.state_dict()[key], value), key
    assert not torch.equal(tuned.features[0].weight, imagenet_weights["features.0.weight"])
    start = build_model(arms[0], torch.device("cpu")).head.weight
    assert not torch.equal(frozen.head.weight, start)


def test_cached_backbone_features_train_like_running_the_backbone_every_step(tiny_data, imagenet_weights):
    arm = replace(EXPERIMENTS["transfer"].arms("quick", device="cpu")[0], epochs=3, batch_size=4, precision="fp32")
    assert arm.model_overrides["mode"] == "feature_extraction"
    cached = finished(run(arm))[arm.label]
    direct = finished(run(replace(arm, cache_frozen_features=False)))[arm.label]
    assert cached.steps == direct.steps == 3 * (16 // 4)
    assert torch.allclose(cached.model.head.weight, direct.model.head.weight, atol=1e-5)
    assert not torch.equal(cached.model.head.weight, build_model(arm, torch.device("cpu")).head.weight)
    assert cached.test_acc == direct.test_acc


def test_closing_the_generator_stops_training_and_frees_the_models(tiny_data, monkeypatch):
    built = []

    def tracked_build(config, device):
        model = build_model(config, device)
        built.append(weakref.ref(model))
        return model

    monkeypatch.setattr("training.engine.build_model", tracked_build)
    arms = [replace(TINY, label=label, epochs=50, event_interval_s=0.0) for label in ("a", "b")]
    events = compare(arms)
    steps = []
    for event in events:
        if isinstance(event, TrainStep):
            steps.append((event.arm, event.step))
        if len(steps) == 4:
            break
    assert steps == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]  # lockstep
    events.close()
    with pytest.raises(StopIteration):
        next(events)
    gc.collect()
    assert len(built) == 2 and all(ref() is None for ref in built)


def test_a_linear_schedule_starts_at_the_set_rate_and_decays_to_zero_by_the_end():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = make_schedule(replace(TINY, lr_schedule="linear"), optimizer, total_steps=10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.1) and rates[5] == pytest.approx(0.05)
    assert optimizer.param_groups[0]["lr"] == 0.0
    assert make_schedule(TINY, optimizer, total_steps=10) is None


def test_a_one_cycle_schedule_warms_up_to_the_set_rate_then_decays_to_zero():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2, momentum=0.9)
    schedule = make_schedule(replace(TINY, lr=0.2, lr_schedule="onecycle"), optimizer, total_steps=100)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    peak = max(range(100), key=rates.__getitem__)
    assert rates[0] == pytest.approx(0.02) and rates[peak] == pytest.approx(0.2) and peak == pytest.approx(20, abs=1)
    assert rates[-1] == pytest.approx(0.2 / 80) and optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert optimizer.param_groups[0]["momentum"] == 0.9  # the optimizer's momentum is left alone


def test_a_one_cycle_schedule_fits_runs_of_a_step_or_two(tiny_data):
    for steps in (1, 2, 3):
        events = list(run(replace(TINY, lr_schedule="onecycle", n_train=16 * steps, epochs=1)))
        assert finished(events)["run"].steps == steps


def test_flipped_evaluation_averages_each_image_with_its_mirror(tiny_data):
    test = load_cifar10("test")
    model = build_model(TINY, torch.device("cpu")).eval()
    mirrored = replace(test, images=test.images.flip(-1))
    plain, plain_confidence = predict(model, test, torch.device("cpu"), "fp32")
    both, both_confidence = predict(model, test, torch.device("cpu"), "fp32", flip=True)
    assert torch.equal(both, predict(model, mirrored, torch.device("cpu"), "fp32", flip=True)[0])
    assert not torch.equal(plain_confidence, both_confidence) and ((0 < both_confidence) & (both_confidence <= 1)).all()
    confusion = evaluate(model, test, torch.device("cpu"), "fp32", flip=True)
    assert confusion.sum() == len(test) and confusion.diag().sum() == (both == test.labels).sum()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"nesterov": True, "momentum": 0.0}, "nesterov"),
        ({"nesterov": True, "optimizer": "adam"}, "nesterov"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"device": "tpu"}, "device"),
        ({"n_train": 1}, "n_train"),
        ({"lr_schedule": "cosine"}, "lr_schedule"),
        ({"evals_per_epoch": 0}, "evals_per_epoch"),
        ({"norm_lr_scale": 0.0}, "norm_lr_scale"),
        ({"crop_padding": 40}, "crop_padding"),
    ],
)
def test_bad_settings_are_named(change, message, tiny_data):
    with pytest.raises(ValueError, match=message):
        next(run(replace(TINY, **change)))


def test_duplicate_arm_labels_are_rejected():
    with pytest.raises(ValueError, match="distinct"):
        next(compare([TINY, TINY]))


def test_batch_norm_parameters_learn_faster_and_decay_as_much_per_step_as_the_rest():
    config = replace(TINY, model="cnn-classifier", init="default", lr=0.5, weight_decay=2e-3, norm_lr_scale=64)
    model = build_model(config, torch.device("cpu"))
    rest, norms = make_optimizer(config, model).param_groups
    norm_parameters = {p for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert norms["params"] and all(p in norm_parameters and p.requires_grad for p in norms["params"])
    assert not any(p in norm_parameters for p in rest["params"])
    # Frozen parameters (the whitening filters, the norms' scales) are not optimised at all.
    assert len(rest["params"]) + len(norms["params"]) == sum(p.requires_grad for p in model.parameters()) < len(list(model.parameters()))
    assert norms["lr"] == 64 * rest["lr"] == 32.0
    assert norms["lr"] * norms["weight_decay"] == pytest.approx(rest["lr"] * rest["weight_decay"])
    assert len(make_optimizer(replace(config, norm_lr_scale=1), model).param_groups) == 1


def test_a_data_fitted_first_layer_is_fitted_before_training_frozen_and_alike_for_arms_with_one_seed(tiny_data, monkeypatch):
    fitted = []
    fit = AirbenchCNN.fit_whitening

    def recording_fit(model, images):
        fitted.append(images.clone())
        fit(model, images)

    monkeypatch.setattr(AirbenchCNN, "fit_whitening", recording_fit)
    arms = [replace(TINY, model="cnn-classifier", init="default", label=label, epochs=1, lr=0.05) for label in ("a", "b")]
    models = {e.arm: e.model for e in compare(arms) if isinstance(e, Finished)}
    assert len(fitted) == 2 and torch.equal(fitted[0], fitted[1])
    trained = [models[label].features[0].conv.weight for label in ("a", "b")]
    fresh = create_model("cnn-classifier")
    assert not torch.equal(trained[0], fresh.features[0].conv.weight)
    fit(fresh, fitted[0])
    assert torch.equal(trained[0], fresh.features[0].conv.weight) and torch.equal(*trained)  # fitted, then left alone


def test_the_whitening_sample_is_drawn_across_the_classes_not_the_first_images(tiny_data, monkeypatch):
    """A split is stored sorted by class: its first images are all airplanes."""
    import training.engine

    fitted = []
    monkeypatch.setattr(training.engine, "WHITENING_IMAGES", 20)
    monkeypatch.setattr(AirbenchCNN, "fit_whitening", lambda model, images: fitted.append(images.clone()))
    next(run(replace(TINY, model="cnn-classifier", init="default", model_overrides={"widths": (8, 8, 8)})))
    train = load_cifar10("train")
    normalised = training.engine.normalize(train.images, train.spec.mean, train.spec.std)
    sampled = [int((normalised == image).flatten(1).all(dim=1).nonzero()[0]) for image in fitted[0]]
    assert len(set(sampled)) == 20 and len(set(train.labels[sampled].tolist())) >= 5


def test_lookahead_pulls_the_weights_back_more_as_the_run_ends_and_ends_on_its_slow_copy():
    from training.lookahead import EVERY_STEPS, MOST_DECAY, Lookahead

    model = torch.nn.Linear(2, 2)
    torch.nn.init.zeros_(model.weight)
    lookahead = Lookahead(model, total_steps=2 * EVERY_STEPS)
    for step in range(1, 2 * EVERY_STEPS + 1):
        with torch.no_grad():
            model.weight.fill_(1.0)  # the optimizer moves every weight to 1 each step
        lookahead.step()
        if step == EVERY_STEPS:  # halfway: the slow copy keeps MOST_DECAY · (1/2)³ of itself
            assert torch.allclose(model.weight, torch.full((2, 2), 1 - MOST_DECAY / 8))
    # At the end it keeps MOST_DECAY of itself, and the weights are reset to it.
    slow = 1 - (MOST_DECAY / 8) * 1.0
    slow = slow * MOST_DECAY + (1 - MOST_DECAY)
    assert torch.allclose(model.weight, torch.full((2, 2), slow))
    with torch.no_grad():
        model.weight.fill_(5.0)
    lookahead.finish()
    assert torch.allclose(model.weight, torch.full((2, 2), slow))


def test_a_run_with_lookahead_ends_on_the_slow_weights_it_evaluated(tiny_data):
    config = replace(TINY, model="cnn-classifier", init="default", lr=0.05, lookahead=True, model_overrides={"widths": (8, 8, 8)})
    events = list(run(config))
    result = finished(events)["run"]
    model = result.model
    test = load_cifar10("test")
    confusion = evaluate(model, test, torch.device("cpu"), "fp32")
    assert confusion.diag().sum().item() / len(test) == result.test_acc == [e for e in events if isinstance(e, Evaluation)][-1].test_acc


def test_shifted_test_views_average_the_image_moved_a_pixel_each_way():
    from training.evaluation import view_logits

    def pixel(x: torch.Tensor) -> torch.Tensor:  # "logits": the image's pixel at row 3, column 3
        return x[:, :, 3, 3]

    x = torch.rand(4, 3, 8, 8)
    shifted = x[:, :, 2, 2], x[:, :, 4, 4]  # what the two views shifted by a pixel show at (3, 3)
    assert torch.allclose(view_logits(pixel, x, shift=True), (x[:, :, 3, 3] + (shifted[0] + shifted[1]) / 2) / 2)
    mirrored = x.flip(-1)[:, :, 3, 3]
    assert torch.allclose(view_logits(pixel, x, flip=True), (x[:, :, 3, 3] + mirrored) / 2)
    # The shifted views are mirrored too; at the edge a shift reads the mirrored border.
    corner = view_logits(lambda x: x[:, :, 0, 0], x, shift=True)
    assert torch.allclose(corner, (x[:, :, 0, 0] + (x[:, :, 1, 1] + x[:, :, 1, 1]) / 2) / 2)
