"""The training worker (serving.worker): the classroom's runs train in a process of their own, and
what the server receives is what training in its own thread would have given."""

import os
import signal
import time

import pytest
import torch

from serving import worker as worker_module
from serving.worker import WorkerDied, WorkerProcess
from training.datasets import load_splits
from training.experiments import get_experiment
from training.runner import ComparisonRun

MOMENTUM = get_experiment("momentum")


def small_arms(epochs: int = 1, **changes):
    return MOMENTUM.arms("quick", seed=3, device="cpu", n_train=160, n_test=60, epochs=epochs, batch_size=16, **changes)


@pytest.fixture
def worker(tiny_data):
    load_splits("cifar10")  # the server's data fetch, before its runs reach the worker
    process = WorkerProcess()
    yield process
    process.close()


def in_worker(process: WorkerProcess, share: float = 0.1):
    return lambda configs, lockstep: process.events(configs, lockstep, share)


def test_a_run_in_the_worker_gives_the_numbers_and_models_of_a_run_in_this_thread(worker):
    there = ComparisonRun(MOMENTUM, small_arms(epochs=2), in_worker(worker))
    list(there)
    here = ComparisonRun(MOMENTUM, small_arms(epochs=2))
    list(here)
    for ours, theirs in zip(there.results("quick", "cpu")["runs"], here.results("quick", "cpu")["runs"]):
        assert ours["test_acc"] == theirs["test_acc"] and ours["confusion"] == theirs["confusion"]
        evaluations = lambda run: [h["test_acc"] for h in run["history"] if h["type"] == "Evaluation"]  # noqa: E731
        assert evaluations(ours) == evaluations(theirs)
    for label, model in there.recorder.models.items():
        theirs = here.recorder.models[label].state_dict()
        assert all(torch.equal(value, theirs[name]) and value.device.type == "cpu" for name, value in model.state_dict().items())
    assert there.steps_done == there.steps_planned > 0


@pytest.mark.parametrize("answers_in_time", [True, False])
def test_a_stopped_run_ends_and_the_next_run_trains(worker, monkeypatch, answers_in_time):
    if not answers_in_time:
        monkeypatch.setattr(worker_module, "STOP_WAIT_S", 0.0)  # as a worker stuck in a step
    events = worker.events(small_arms(epochs=30), True, 0.1)
    next(events), next(events)
    first = worker.pid
    events.close()
    assert (worker.pid == first) is answers_in_time  # asked, it stops between two events; else it is killed
    run = ComparisonRun(MOMENTUM, small_arms(), in_worker(worker))
    list(run)
    assert run.steps_done == run.steps_planned > 0


def test_a_worker_that_dies_fails_its_run_alone_and_the_next_run_starts_a_new_one(worker):
    events = worker.events(small_arms(epochs=30), True, 0.1)
    next(events)
    dead = worker.pid
    os.kill(dead, signal.SIGTERM)
    with pytest.raises(WorkerDied, match="ended in the middle of the run"):
        for _ in events:
            pass
    run = ComparisonRun(MOMENTUM, small_arms(), in_worker(worker))
    list(run)
    assert run.steps_done == run.steps_planned > 0 and worker.pid not in (None, dead)


def test_an_error_in_training_reaches_the_server_with_its_type_and_message(worker):
    arms = small_arms()
    with pytest.raises(ValueError, match="arm labels must be distinct"):
        list(worker.events([arms[0], arms[0]], True, 0.1))
    run = ComparisonRun(MOMENTUM, arms, in_worker(worker))
    list(run)  # the worker goes on
    assert run.steps_done == run.steps_planned > 0


def test_the_worker_gives_way_while_photos_are_classified_and_only_then(worker):
    list(worker.events(small_arms(), True, 0.2))
    assert worker.gave_way_s == 0.0
    worker.answers(1)  # a photo is being classified all along
    started = time.monotonic()
    list(worker.events(small_arms(), True, 0.2))
    took = time.monotonic() - started
    worker.answers(0)
    # It waited between its steps, and at most a quarter of its own time (a share of 0.2).
    assert 0.0 < worker.gave_way_s <= 0.25 * (took - worker.gave_way_s) + 0.05


def test_a_worker_runs_in_the_servers_present_environment(worker, monkeypatch):
    list(worker.events(small_arms(), True, 0.1))
    first = worker.pid
    list(worker.events(small_arms(), True, 0.1))
    assert worker.pid == first  # nothing changed: the same worker, its data already sent
    monkeypatch.setenv("CNNLAB_SOMETHING_NEW", "1")
    list(worker.events(small_arms(), True, 0.1))
    assert worker.pid not in (None, first)

