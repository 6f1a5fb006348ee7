"""A classroom on one server: the run cache's key, replays, attaching to a run in training, the
queue's places and one request per session, and the faults the server must survive."""

import dataclasses
import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import pytest
import torch

from demo import panel
from demo.tabs import batchnorm
from serving import classroom as classroom_module, jobs
from serving.classroom import REPLACED, Classroom
from models import create_model
from serving import cache as cache_module
from serving.cache import RunCache, run_key
from training.config import TrainConfig
from training.devices import resolve_precision
from training.experiments import get_experiment
from handlers import SMALL, Session, last

EXPERIMENT = get_experiment("batchnorm")


def arms(**changes) -> list[TrainConfig]:
    return EXPERIMENT.arms("quick", **{"epochs": 1, "n_train": 160, "batch_size": 32, **changes})


def settle() -> None:
    """Wait until the app's classroom has trained and cached everything asked of it."""
    room = classroom_module.classroom
    deadline = time.monotonic() + 30
    while (room.running or room._by_key) and time.monotonic() < deadline:
        time.sleep(0.02)


# --- the key --------------------------------------------------------------------------------

# A value other than the presets' for each setting of TrainConfig.
CHANGED = {
    "label": "another label", "dataset": "hymenoptera", "model": "cnn-tiny", "model_overrides": {"batch_norm": True, "n_fc": 2},
    "init": "he", "optimizer": "adam", "lr_schedule": "onecycle", "nesterov": True,
    "crop_padding": 2, "n_train": 100, "n_test": 50, "loss_threshold": 0.1, "test_time_flip": True, "cache_frozen_features": False,
    "crop_padding_mode": "reflect", "lookahead": True, "alternating_flip": True, "test_time_shift": True,
}


def changed(config: TrainConfig, name: str):
    if name == "precision":  # the one this host would not choose
        return "fp32" if resolve_precision("auto", torch.device("cpu")) == "bf16" else "bf16"
    if name in CHANGED:
        return CHANGED[name]
    value = getattr(config, name)
    return value + 1 if isinstance(value, int) else value * 2 + 0.5


SETTINGS = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "device"]


@pytest.mark.parametrize("name", SETTINGS)
def test_every_setting_of_any_arm_changes_the_key(name, tiny_data):
    configs = arms()
    configs[1] = dataclasses.replace(configs[1], **{name: changed(configs[1], name)})
    assert getattr(configs[1], name) != getattr(arms()[1], name)
    assert run_key("batchnorm", configs) != run_key("batchnorm", arms())


def test_the_experiment_data_code_and_device_kind_change_the_key(tiny_data, tmp_path, monkeypatch):
    key = run_key("batchnorm", arms())
    assert run_key("momentum", arms()) != key
    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "code_version", lambda: "another version")
        assert run_key("batchnorm", arms()) != key
    with monkeypatch.context() as patch:
        patch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
        with_avx2 = run_key("batchnorm", arms())
        patch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
        assert run_key("batchnorm", arms()) != with_avx2
    with monkeypatch.context() as patch:
        patch.setenv("DATA_DIR", str(tmp_path))  # another copy of the data
        assert run_key("batchnorm", arms()) != key
    added = tiny_data / "cifar10" / "train" / "cat" / "new.png"
    added.write_bytes(b"")  # a photo added
    try:
        assert run_key("batchnorm", arms()) != key
    finally:
        added.unlink()


def test_nothing_but_the_settings_changes_the_key(tiny_data):
    key = run_key("batchnorm", arms())
    assert run_key("batchnorm", arms()) == key  # asked again, later, by anyone
    # The same run, spelled otherwise: the device and precision this host resolves "auto" to, an
    # integer rate, the model's arguments in another order.
    spelled = [dataclasses.replace(c, device="cpu", precision=resolve_precision("auto", torch.device("cpu"))) for c in arms()]
    assert run_key("batchnorm", spelled) == key
    assert run_key("batchnorm", arms(lr=1)) == run_key("batchnorm", arms(lr=1.0))
    overrides = arms()[1].model_overrides
    reordered = [arms()[0], dataclasses.replace(arms()[1], model_overrides=dict(reversed(list(overrides.items()))))]
    assert run_key("batchnorm", reordered) == key


def test_a_sessions_own_photos_are_never_cached(tiny_data):
    from training.datasets import ImageTensors, forget_dataset, photo_dataset, register_dataset

    spec = photo_dataset("session-photos", "photos", ("a", "b"), train_size=4)
    images = ImageTensors(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]), spec)
    register_dataset(images, images)
    try:
        assert run_key("your-images", [TrainConfig(dataset="session-photos")]) is None
    finally:
        forget_dataset("session-photos")


# --- replay and attach ----------------------------------------------------------------------


def test_an_identical_request_is_replayed_at_once_with_the_same_curves_and_models(tiny_data, run_cache):
    first = list(batchnorm.TAB.handler(**SMALL))
    settle()
    started = time.perf_counter()
    again = list(batchnorm.TAB.handler(**SMALL))
    assert len(again) == 1 and time.perf_counter() - started < 5
    loss, accuracy, table, status, session, instrument, sentences = again[0]
    assert "the same run finished at" in status and "replayed" in status and "**Verdict:**" in status
    assert loss.equals(first[-1][0]) and accuracy.equals(first[-1][1]) and table.equals(first[-1][2])
    # The readings inside the network come back with the run: the same plot, the same sentences.
    assert instrument.value == first[-1][5].value and sentences == first[-1][6] and "Without batch norm" in sentences
    assert {arm for _, value, arm in instrument.value["data"] if value is not None} == {"no batch norm", "batch norm"}  # NaN is sent as None
    trained, replayed = first[-1][4]["models"], session["models"]
    for arm in trained:
        assert all(torch.equal(a, b) for a, b in zip(trained[arm].state_dict().values(), replayed[arm].state_dict().values()))
    # A restarted server reads the same run back from disk, weights exact.
    fresh = RunCache(run_cache, 512 * 2**20)
    stored = fresh.get(run_key("batchnorm", [dataclasses.replace(c, device="auto") for c in panel.lesson_arms(batchnorm.TAB, **SMALL)]))
    assert stored and stored.results["runs"] == session["results"]["runs"]
    for arm in trained:
        assert all(torch.equal(a, b) for a, b in zip(trained[arm].state_dict().values(), stored.models[arm].state_dict().values()))
    # Another setting trains.
    assert last(batchnorm.TAB.handler(**{**SMALL, "seed": 1}))[3].startswith("Done on")


def test_the_cache_keeps_to_its_bound_dropping_the_run_read_longest_ago(tmp_path):
    model = create_model("cnn-tiny")
    results = {"runs": [{"label": "a", "config": {"model": "cnn-tiny"}}], "device": "cpu", "device_name": "test"}
    size = sum(t.numel() * 4 for t in model.state_dict().values())
    cache = RunCache(tmp_path, int(2.5 * size))
    cache.put("first", results, {"a": model})
    cache.put("second", results, {"a": model})
    os.utime(tmp_path / "second", (1, 1))  # read long ago
    os.utime(tmp_path / "first")
    cache.put("third", results, {"a": model})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "third"]


@pytest.fixture
def gate(monkeypatch):
    """Runs that wait at their data until the returned event is set."""
    opened = threading.Event()
    original = jobs.fetch_data

    def waiting(configs, poll_s):
        while not opened.wait(0.05):
            yield "Waiting for the test"
        yield from original(configs, poll_s)

    monkeypatch.setattr(jobs, "fetch_data", waiting)
    yield opened
    opened.set()


def wait_for_training(room: Classroom) -> None:
    """Until the trainer has taken the first run off the queue."""
    deadline = time.monotonic() + 10
    while room.running is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert room.running, "the trainer never started"


def counting_runs(monkeypatch) -> list:
    started = []
    original = jobs.Job.steps

    def steps(job):
        started.append(job)
        return original(job)

    monkeypatch.setattr(jobs.Job, "steps", steps)
    return started


def test_identical_requests_in_training_attach_to_it_and_read_the_same_stream(tiny_data, gate, monkeypatch, tmp_path):
    room = Classroom(RunCache(tmp_path, 512 * 2**20))
    started = counting_runs(monkeypatch)
    first = room.request(EXPERIMENT, arms(), "quick", "student 1")
    second = room.request(EXPERIMENT, arms(), "quick", "student 2")
    other = room.request(EXPERIMENT, arms(seed=1), "quick", "student 3")
    assert first.job is second.job and other.job is not first.job
    results = {}
    readers = [threading.Thread(target=lambda t=t: results.__setitem__(t.session, last(room.follow(t)))) for t in (first, second, other)]
    for reader in readers:
        reader.start()
    gate.set()
    for reader in readers:
        reader.join(60)
    assert len(started) == 2  # two trainings for three requests
    mine, theirs = results["student 1"], results["student 2"]
    assert mine.finished and theirs.finished and mine.recorder.runs == theirs.recorder.runs


# --- the queue ------------------------------------------------------------------------------


def test_waiting_readers_learn_their_place_and_once_a_run_is_timed_their_start(tiny_data, gate, tmp_path):
    room = Classroom(RunCache(tmp_path, 0))
    tickets = [room.request(EXPERIMENT, arms(seed=seed), "quick", f"student {seed}") for seed in range(3)]
    wait_for_training(room)
    streams = [room.follow(t) for t in tickets[1:]]
    second, third = (next(stream).status for stream in streams)
    assert "2nd in line (1 ahead" in second and "3rd in line (2 ahead" in third
    assert "estimated once a run of each kind ahead has been timed" in third
    gate.set()
    assert last(room.follow(tickets[0])).finished
    late = room.request(EXPERIMENT, arms(seed=9), "quick", "latecomer")
    waiting = next(room.follow(late)).status
    assert "in line" in waiting and "It should start at about" in waiting and "UTC" in waiting
    for ticket in [*tickets[1:], late]:
        room.leave(ticket)


def test_a_second_click_of_a_session_replaces_its_first_request(tiny_data, gate, tmp_path):
    room = Classroom(RunCache(tmp_path, 0))
    blocker = room.request(EXPERIMENT, arms(seed=5), "quick", "someone else")
    first = room.request(EXPERIMENT, arms(seed=1), "quick", "student")
    stream = room.follow(first)
    assert "in line" in next(stream).status
    second = room.request(EXPERIMENT, arms(seed=2), "quick", "student")
    assert next(stream).status == REPLACED
    assert list(stream) == []
    assert first.job.state == "cancelled" and first.job not in room._queue and second.job in room._queue
    gate.set()
    assert last(room.follow(blocker)).finished and last(room.follow(second)).finished


def test_warm_ups_wait_behind_students_until_a_student_asks_for_one(tiny_data, gate, tmp_path):
    room = Classroom(RunCache(tmp_path, 512 * 2**20))
    tickets = [room.request(EXPERIMENT, arms(seed=1), "quick", "first student")]
    with room.in_background():
        tickets += [room.request(EXPERIMENT, arms(seed=seed), "quick") for seed in (2, 3)]
    tickets.append(room.request(EXPERIMENT, arms(seed=4), "quick", "second student"))
    wait_for_training(room)
    first_warm_up, second_warm_up, student = (ticket.job for ticket in tickets[1:])
    assert room._queue == [student, first_warm_up, second_warm_up]
    asked = room.request(EXPERIMENT, arms(seed=3), "quick", "third student")
    assert asked.job is second_warm_up and room._queue == [student, second_warm_up, first_warm_up]
    for ticket in [*tickets, asked]:
        room.leave(ticket)


def test_a_full_queue_refuses_a_new_run_with_a_message_but_still_attaches(tiny_data, gate, tmp_path, monkeypatch):
    monkeypatch.setattr(classroom_module, "MAX_QUEUED", 1)
    room = Classroom(RunCache(tmp_path, 512 * 2**20))
    tickets = [room.request(EXPERIMENT, arms(seed=1), "quick", "student 1")]
    wait_for_training(room)
    tickets.append(room.request(EXPERIMENT, arms(seed=2), "quick", "student 2"))
    with pytest.raises(classroom_module.QueueFull, match="1 runs are already waiting on this server. Try again in a few minutes"):
        room.request(EXPERIMENT, arms(seed=3), "quick", "student 3")
    tickets.append(room.request(EXPERIMENT, arms(seed=2), "quick", "student 4"))  # the same as a waiting run
    assert tickets[-1].job is tickets[1].job
    for ticket in tickets:
        room.leave(ticket)


def test_a_queued_run_nobody_waits_for_is_dropped_and_a_running_one_stopped(tiny_data, gate, tmp_path):
    room = Classroom(RunCache(tmp_path, 0))
    running = room.request(EXPERIMENT, arms(seed=1), "quick", "a")
    wait_for_training(room)
    queued = room.request(EXPERIMENT, arms(seed=2), "quick", "b")
    stream = room.follow(queued)
    next(stream)
    stream.close()
    assert queued.job.state == "cancelled" and not room._queue
    stream = room.follow(running)
    next(stream)
    stream.close()
    deadline = time.monotonic() + 10
    while running.job.state == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running.job.state == "cancelled" and room.running is None


def test_training_gives_way_to_answers_but_keeps_its_share_of_the_time(tmp_path, monkeypatch):
    monkeypatch.setattr(classroom_module, "GIVE_WAY_SHARE", 1 / 3)
    room = Classroom(RunCache(tmp_path, 0))

    def waited(step_s: float) -> float:
        started = time.monotonic()
        room._give_way(step_s)
        return time.monotonic() - started

    assert waited(0.6) < 0.05  # nobody is answering: the next step at once
    with room.answering():
        assert 0.25 <= waited(0.6) < 1.0  # after a 0.6-s step, 0.3 s: a third of the time, not until the answer ends
        assert waited(0.03) < 0.3  # short steps, short waits (0.015 s): answers that never stop still let it train
    answer = threading.Event()

    def one_answer():
        with room.answering():
            answer.set()
            time.sleep(0.1)

    threading.Thread(target=one_answer).start()
    answer.wait(5)
    assert waited(3.0) < 1.0  # the answer ended after 0.1 s: the trainer goes on then, not after 1.5 s


# --- faults ---------------------------------------------------------------------------------


def test_a_training_that_raises_halfway_fails_alone_and_the_queue_moves_on(tiny_data, monkeypatch):
    original = jobs.ComparisonRun.__iter__

    def breaking(run):
        for count, event in enumerate(original(run)):
            if run.configs[0].seed == 13 and count == 5:
                raise RuntimeError("a broken kernel")
            yield event

    monkeypatch.setattr(jobs.ComparisonRun, "__iter__", breaking)
    results = {}

    def click(name, seed):
        try:
            results[name] = last(batchnorm.TAB.handler(**{**SMALL, "seed": seed}, request=Session(name)))
        except gr.Error as error:
            results[name] = error

    clicks = [threading.Thread(target=click, args=args) for args in (("unlucky", 13), ("next in line", 1))]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join(120)
    assert isinstance(results["unlucky"], gr.Error) and "failed on the server (RuntimeError: a broken kernel)" in results["unlucky"].message
    assert results["next in line"][3].startswith("Done on")
    assert last(batchnorm.TAB.handler(**SMALL))[3].startswith("Done on")  # and the server still trains


def test_a_client_gone_mid_stream_leaves_the_others_reading_its_run(tiny_data, run_cache, monkeypatch):
    monkeypatch.setattr(classroom_module, "ABANDONED_AFTER_S", 0.3)
    started = counting_runs(monkeypatch)
    long = {**SMALL, "epochs": 3, "batch_size": 2}
    gone = batchnorm.TAB.handler(**long, request=Session("gone"))
    next(gone)  # then never asks again, as Gradio does for a client that disconnected
    staying = last(batchnorm.TAB.handler(**long, request=Session("staying")))
    assert staying[3].startswith("Done on") and set(staying[4]["models"]) == {"no batch norm", "batch norm"}
    assert len(started) == 1


def test_a_truncated_cache_entry_is_dropped_and_the_run_trained_again(tiny_data, run_cache):
    trained = last(batchnorm.TAB.handler(**SMALL))
    settle()
    weights = next(run_cache.glob("*/*/model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    cache_module._cache_at.cache_clear()  # a restarted server: nothing in memory
    again = last(batchnorm.TAB.handler(**SMALL))
    assert again[3].startswith("Done on") and again[2]["this run"].equals(trained[2]["this run"])
    settle()
    assert next(run_cache.glob("*/*/model.safetensors")).stat().st_size > 1000  # written whole again
    cache_module._cache_at.cache_clear()
    assert "replayed" in last(batchnorm.TAB.handler(**SMALL))[3]


def test_a_full_disk_costs_the_cache_entry_and_nothing_else(tiny_data, run_cache, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_text", full)
        result = last(batchnorm.TAB.handler(**SMALL))
        settle()
    assert result[3].startswith("Done on") and set(result[4]["models"]) == {"no batch norm", "batch norm"}
    assert not list(run_cache.iterdir())  # no entry, and no partial one
    cache_module._cache_at.cache_clear()
    assert last(batchnorm.TAB.handler(**SMALL))[3].startswith("Done on")  # trained again, then cached
    settle()
    assert len(list(run_cache.iterdir())) == 1


KILLED_WRITER = """
import sys, time
from serving import cache
from models import create_model

def stalled(folder):
    print("writing", flush=True)
    time.sleep(60)

cache._fsync_tree = stalled
results = {"runs": [{"label": "a", "config": {"model": "cnn-tiny"}}], "device": "cpu", "device_name": "test"}
cache.RunCache(sys.argv[1], 2**30).put("entry", results, {"a": create_model("cnn-tiny")})
"""


def test_a_server_killed_while_writing_the_cache_restarts_without_the_entry_or_its_debris(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    assert writer.stdout.readline().strip() == "writing"
    assert list(tmp_path.glob(".partial-*"))
    writer.kill()
    writer.wait()
    RunCache(tmp_path, 2**30)
    assert list(tmp_path.glob(".partial-*")), "a write this recent may still be under way: it is kept"
    for partial in tmp_path.glob(".partial-*"):
        os.utime(partial, (time.time() - cache_module.UNFINISHED_AFTER_S - 1,) * 2)
    restarted = RunCache(tmp_path, 2**30)
    assert restarted.get("entry") is None and not list(tmp_path.iterdir())
    model = create_model("cnn-tiny")
    restarted.put("entry", {"runs": [{"label": "a", "config": {"model": "cnn-tiny"}}], "device": "cpu", "device_name": "test"}, {"a": model})
    cache_module._cache_at.cache_clear()
    read = RunCache(tmp_path, 2**30).get("entry")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), read.models["a"].state_dict().values()))


# --- a class on one server ------------------------------------------------------------------


def test_waiting_readers_sleep_until_their_place_changes(tiny_data, gate, tmp_path, monkeypatch):
    room = Classroom(RunCache(tmp_path, 0))
    calls = []
    original = room.waiting_status
    monkeypatch.setattr(room, "waiting_status", lambda job: calls.append(job) or original(job))
    tickets = [room.request(EXPERIMENT, arms(seed=seed), "quick", f"student {seed}") for seed in range(11)]
    wait_for_training(room)
    readers = [threading.Thread(target=lambda t=t: list(room.follow(t))) for t in tickets[1:]]
    for reader in readers:
        reader.start()
    time.sleep(2)
    # Each of ten readers: its first status, and at most a wake-up for the one run that finished
    # waiting at its data; a spinning reader calls it thousands of times in two seconds.
    assert len(calls) <= 30, len(calls)
    before = len(calls)
    room.leave(tickets[1])  # the second in line leaves: everyone behind it moves up, and hears so
    deadline = time.monotonic() + 4  # well inside the 5-second tick
    while len(calls) < before + 9 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(calls) >= before + 9
    for ticket in tickets:
        room.leave(ticket)
    for reader in readers:
        reader.join(10)
    room.stop_training()


@pytest.mark.parametrize("where", ["cache.put", "the abandonment check"])
def test_an_unexpected_error_outside_training_fails_one_job_and_the_queue_goes_on(where, tiny_data, tmp_path, monkeypatch):
    room = Classroom(RunCache(tmp_path, 512 * 2**20))
    raised = []

    def broken(*args, **kwargs):
        if not raised:
            raised.append(where)
            raise RuntimeError(f"{where} broke")

    if where == "cache.put":
        monkeypatch.setattr(room.cache, "put", broken)
    else:
        monkeypatch.setattr(room, "_drop_abandoned", broken)
    first = room.request(EXPERIMENT, arms(seed=1), "quick", "first")
    try:
        outcome = last(room.follow(first)).status
    except classroom_module.TrainingFailed as error:
        outcome = str(error)
    deadline = time.monotonic() + 30
    while room._by_key and time.monotonic() < deadline:  # the cache is written beside the next run
        time.sleep(0.02)
    assert raised and ("Done on" in outcome or "abandonment check broke" in outcome)
    second = room.request(EXPERIMENT, arms(seed=2), "quick", "second")
    finished = []
    reader = threading.Thread(target=lambda: finished.append(last(room.follow(second))))
    reader.start()
    reader.join(120)
    assert finished and finished[0].finished and finished[0].status.startswith("Done on")
    room.stop_training()


def test_thirty_replays_after_a_restart_read_the_run_from_disk_once(tmp_path, monkeypatch):
    model = create_model("cnn-tiny")
    results = {"runs": [{"label": "a", "config": {"model": "cnn-tiny"}}], "device": "cpu", "device_name": "test"}
    RunCache(tmp_path, 2**30).put("entry", results, {"a": model})
    restarted = RunCache(tmp_path, 2**30)
    reads = []
    original = restarted._read
    monkeypatch.setattr(restarted, "_read", lambda entry: reads.append(entry) or time.sleep(0.2) or original(entry))
    got = []
    readers = [threading.Thread(target=lambda: got.append(restarted.get("entry"))) for _ in range(30)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(30)
    assert len(reads) == 1 and len(got) == 30 and len({id(run) for run in got}) == 1


def test_runs_read_back_are_held_in_memory_up_to_a_bound_in_bytes(tmp_path, monkeypatch):
    model = create_model("cnn-tiny")
    results = {"runs": [{"label": "a", "config": {"model": "cnn-tiny"}}], "device": "cpu", "device_name": "test"}
    writer = RunCache(tmp_path, 2**30)
    for key in ("one", "two", "three"):
        writer.put(key, results, {"a": model})
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    monkeypatch.setattr(cache_module, "LOADED_BYTES", 2 * size)
    reader = RunCache(tmp_path, 2**30)
    for key in ("one", "two", "three"):
        reader.get(key)
    assert list(reader._loaded) == ["two", "three"]  # the third run pushed the first out


def test_one_address_cannot_fill_the_queue_or_open_sessions_without_end(tiny_data, gate, tmp_path, monkeypatch):
    monkeypatch.setattr(classroom_module, "MAX_QUEUED_PER_CLIENT", 3)
    monkeypatch.setattr(classroom_module, "MAX_NEW_SESSIONS_PER_MINUTE", 5)
    room = Classroom(RunCache(tmp_path, 0))
    tickets = [room.request(EXPERIMENT, arms(seed=seed), "quick", f"invented {seed}", client="10.0.0.1") for seed in range(1, 4)]
    wait_for_training(room)  # one trains; two wait
    tickets.append(room.request(EXPERIMENT, arms(seed=4), "quick", "invented 4", client="10.0.0.1"))
    with pytest.raises(classroom_module.QueueFull, match="3 runs from your address are already waiting"):
        room.request(EXPERIMENT, arms(seed=5), "quick", "invented 5", client="10.0.0.1")
    with pytest.raises(classroom_module.QueueFull, match="5 new sessions came from your address in the last minute"):
        room.request(EXPERIMENT, arms(seed=1), "quick", "invented 6", client="10.0.0.1")
    # Another address still queues, and a session the first address already has still asks again
    # (its new request replaces its waiting one).
    tickets.append(room.request(EXPERIMENT, arms(seed=7), "quick", "a student", client="10.0.0.2"))
    tickets.append(room.request(EXPERIMENT, arms(seed=8), "quick", "invented 2", client="10.0.0.1"))
    for ticket in tickets:
        room.leave(ticket)
    room.stop_training()


def test_runs_nobody_else_asks_for_cannot_push_the_warm_ups_out_of_the_cache(tmp_path):
    model = create_model("cnn-tiny")
    results = {"runs": [{"label": "a", "config": {"model": "cnn-tiny"}}], "device": "cpu", "device_name": "test"}
    probe = RunCache(tmp_path / "probe", 2**30)
    probe.put("x", results, {"a": model})
    entry = sum(f.stat().st_size for f in (tmp_path / "probe" / "x").rglob("*") if f.is_file())
    cache = RunCache(tmp_path / "runs", 3 * entry + entry // 2)
    cache.put("defaults", results, {"a": model}, pinned=True)
    for n in range(6):
        time.sleep(0.01)
        cache.put(f"invented {n}", results, {"a": model})
    kept = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert kept == ["defaults", "invented 4", "invented 5"]
