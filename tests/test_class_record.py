"""The class record: every finished run a class makes (trained, replayed) is kept, the verdict and the
board read the class's runs at the same settings, a teacher's key clears it, bad input and floods
are refused without failing a page, and the Hub keeps a copy (a stand-in HfApi: nothing leaves)."""

import json
import sqlite3
import time

import pytest
from huggingface_hub import HfApi
from huggingface_hub.hf_api import RepoUrl

from demo import panel
from demo.tabs import class_page, momentum
from serving import class_record as record_module
from serving.class_record import ClassRecord, class_record, clear_with_key
from serving.class_view import as_csv, record_finished, summary
from serving.jobs import Update
from handlers import SMALL, Session, last

CLASS = {**SMALL, "n_train": 192}  # settings no other run in a test shares


def finished(stream) -> tuple[str, dict]:
    """A momentum run's verdict status and session result."""
    *_, status, session, _, _ = last(stream)
    return status, session


def results(seed: int = 0, accuracies: dict | None = None) -> dict:
    """A finished momentum run's results, as a run makes them."""
    arms = momentum.TAB.experiment.arms("quick")
    accuracies = accuracies or {"no momentum": 0.30, "momentum 0.9": 0.40}
    return {
        "experiment": "momentum", "preset": "quick", "seed": seed, "precision": "fp32", "device_name": "a test CPU",
        "runs": [{"label": arm.label, "config": {**json.loads(json.dumps(arm.__dict__)), "seed": seed}, "test_acc": accuracies[arm.label]} for arm in arms],
    }


def test_three_runs_at_seeds_1_2_3_are_three_points_and_the_verdicts_spread(tiny_data):
    statuses = []
    for seed in (1, 2, 3):
        status, session = finished(momentum.TAB.handler(0.9, **{**CLASS, "seed": seed}, request=Session(f"student-{seed}")))
        statuses.append(status)
        note, board, words = panel.after_run(momentum.TAB.experiment, "momentum", session)
    assert "in your class" not in statuses[0] and "in your class" not in statuses[1]  # two runs are no spread yet
    assert "In 3 runs at these settings in your class (seeds 1, 2, 3) the gap was" in statuses[2]
    assert board["visible"] is True and board["value"] is not None
    assert words.startswith("**Your class at these settings:** 3 runs.")
    assert "3 said momentum; " in words
    right = sum(run.prediction == run.outcome for run in class_record().runs())
    assert f"; {right} right, {3 - right} not." in words
    assert note.startswith("**Your prediction, momentum:")


def test_a_replay_adds_a_student_not_a_run(tiny_data, run_cache):
    for student in ("ana", "ben"):  # ben's identical request replays ana's run
        status, session = finished(momentum.TAB.handler(0.9, **CLASS, request=Session(student)))
    assert "replayed" in status
    _, _, words = panel.after_run(momentum.TAB.experiment, None, session)
    assert words.startswith("**Your class at these settings:** 1 run, finished by 2 students.")
    (line,) = summary(class_record())
    assert (line.runs, line.finished, line.unpredicted, line.differs) == (1, 2, 2, "lr 0.01, epochs 1, n_train 192")


def test_a_run_on_a_sessions_own_photos_is_not_recorded(tmp_path, monkeypatch):
    record = ClassRecord(tmp_path)
    monkeypatch.setattr("serving.class_view.data_source", lambda name: None)  # as for a dataset held in memory
    update, recorded = record_finished(record, momentum.TAB.experiment, Update(None, "Done", True, results=results()), "s", None)
    assert recorded.run_id is None and update.status == "Done" and record.runs() == []


def test_the_verdict_judges_against_the_class_spread_when_it_is_the_larger(tmp_path):
    from training.lessons import verdicts

    experiment = momentum.TAB.experiment
    class_runs = [{"seed": s, "accuracies": {"no momentum": 0.30, "momentum 0.9": 0.30 + gap}} for s, gap in ((1, 0.01), (2, 0.35), (3, 0.40))]
    run = results(3, class_runs[2]["accuracies"])
    alone, = verdicts(experiment, run)
    told, = verdicts(experiment, run, class_runs)
    assert alone.outcome == "ahead" and told.outcome == "unclear"  # a class spread of σ 21 points makes a gap of 40 no clear winner
    assert "spread of your class's 3 runs" in told.details
    steady = [{"seed": s, "accuracies": {"no momentum": 0.30, "momentum 0.9": 0.40 + s / 1000}} for s in (1, 2, 3)]
    told, = verdicts(experiment, run, steady)  # a narrower class spread never makes it surer than measured
    assert told.outcome == alone.outcome and told.details.startswith(alone.details.removesuffix(".")) and "spread less (σ 0.1)" in told.details


def test_clearing_needs_the_teacher_key(tmp_path, monkeypatch):
    record = ClassRecord(tmp_path)
    record.add(results())
    monkeypatch.delenv("CNNLAB_TEACHER_KEY", raising=False)
    with pytest.raises(PermissionError, match="No teacher key is set"):
        clear_with_key(record, "")
    monkeypatch.setenv("CNNLAB_TEACHER_KEY", "plum-orchard-42")
    with pytest.raises(PermissionError, match="not this server's teacher key"):
        clear_with_key(record, "plum-orchard-41")
    assert len(record.runs()) == 1
    assert clear_with_key(record, "plum-orchard-42") == 1 and record.runs() == []


def test_the_class_page_refuses_a_wrong_key_and_clears_with_the_right_one(monkeypatch):
    class_record().add(results())
    monkeypatch.setenv("CNNLAB_TEACHER_KEY", "plum-orchard-42")
    said, table, _ = class_page.clear("guess")
    assert said.startswith("**Not cleared.**") and len(class_page.summary_table()) == 1
    said, table, typed = class_page.clear("plum-orchard-42")
    assert said == "**Cleared:** 1 finished runs were deleted." and len(table) == 0 and typed == ""


def test_the_csv_has_a_row_per_finished_run_with_its_numbers(tmp_path):
    record = class_record()
    first = record.add(results(1))
    record.add(results(2, {"no momentum": 0.35, "momentum 0.9": 0.33}))
    record.settle(first, outcome="ahead", prediction="behind")
    with open(class_page.download_csv()) as csv_file:
        rows = csv_file.read().splitlines()
    assert rows[0] == "finished_at_utc,experiment,settings,settings_key,seed,precision,device,margin_points,outcome,prediction,acc: momentum 0.9,acc: no momentum"
    assert ",momentum,quick preset," in rows[1] and rows[1].endswith(",1,fp32,a test CPU,10.00,ahead,behind,0.4000,0.3000")
    assert rows[2].endswith(",2,fp32,a test CPU,-2.00,,,0.3300,0.3500")
    assert len(rows) == 3 and as_csv(ClassRecord(tmp_path)).count("\n") == 1


@pytest.mark.parametrize("bad", [
    {}, {"experiment": "no such experiment"}, {**results(), "seed": "first"},
    {**results(), "runs": [{"label": "momentum 0.9", "config": {}, "test_acc": 7.0}]}, {**results(), "runs": []},
])
def test_what_does_not_parse_is_refused_without_raising(tmp_path, bad):
    record = ClassRecord(tmp_path)
    assert record.add(bad) is None and record.runs() == []


def test_a_file_that_is_not_a_database_is_moved_aside_and_a_new_one_begun(tmp_path):
    (tmp_path / record_module.FILE_NAME).write_text("these are not the runs you are looking for")
    record = ClassRecord(tmp_path)
    assert record.add(results()) is not None and len(record.runs()) == 1
    assert len(list(tmp_path.glob("*.unreadable-*"))) == 1


def test_one_session_one_address_and_the_whole_record_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(record_module, "MAX_RUNS_PER_SESSION", 3)
    monkeypatch.setattr(record_module, "MAX_RUNS_PER_CLIENT_HOUR", 5)
    record = ClassRecord(tmp_path, max_runs=4)
    assert [record.add(results(), session="flood") is not None for _ in range(4)] == [True, True, True, False]
    assert [record.add(results(), session=f"s{i}", client="10.0.0.1") is not None for i in range(6)] == [True] * 5 + [False]
    assert len(record.runs()) == 4  # the oldest went
    record.add(results(9), session="late")
    assert record.runs()[-1].seed == 9 and len(record.runs()) == 4
    wider = {**results(), "runs": [{**run, "config": {**run["config"], "n_train": 300}} for run in results()["runs"]]}
    for _ in range(4):  # another setting fills the record: the first setting's arms go with its last run
        record.add(wider)
    (key,) = {run.settings for run in record.runs()}
    with sqlite3.connect(record.path) as db:
        assert [k for (k,) in db.execute("SELECT key FROM settings")] == [key]
    assert record.arms(key)[0]["n_train"] == 300


def test_a_prediction_is_kept_once_and_only_in_its_own_words(tmp_path):
    record = ClassRecord(tmp_path)
    run_id = record.add(results())
    record.settle(run_id, prediction="DROP TABLE runs")
    record.settle(run_id, prediction="behind")
    record.settle(run_id, prediction="ahead")  # a second prediction after the run does not replace the first
    (run,) = record.runs()
    assert run.prediction == "behind"


def test_the_board_counts_predictions_and_marks_this_run_and_the_reports(tmp_path):
    from serving.class_view import board

    record = ClassRecord(tmp_path)
    for seed, prediction in ((1, "ahead"), (2, "unclear"), (2, "ahead")):
        run_id = record.add(results(seed, {"no momentum": 0.30, "momentum 0.9": 0.30 + seed / 10}))
        record.settle(run_id, outcome="ahead", prediction=prediction)
    found = board(record, momentum.TAB.experiment, results(2, {"no momentum": 0.30, "momentum 0.9": 0.50}))
    assert [(seed, round(m, 1), n) for seed, m, n in found.points] == [(1, 10.0, 1), (2, 20.0, 2)]
    assert found.this_run == pytest.approx(20.0) and found.report == pytest.approx(100 * (0.5686 - 0.4958))
    assert found.predicted == {"momentum": 2, "no clear winner": 1} and (found.right, found.wrong) == (2, 1)


class StandInHub(HfApi):
    """The Hub as CommitScheduler uses it, answered here: what would be committed is kept."""

    def __init__(self):
        super().__init__(endpoint="http://hub.invalid", token="hf_test")
        self.commits = []

    def create_repo(self, repo_id, **kwargs):
        self.created = (repo_id, kwargs)
        return RepoUrl(f"http://hub.invalid/datasets/{repo_id}", endpoint="http://hub.invalid")

    def create_commit(self, repo_id, operations, **kwargs):
        self.commits.append({op.path_in_repo: op.path_or_fileobj.read() if hasattr(op.path_or_fileobj, "read") else op.path_or_fileobj for op in operations})


def test_the_hub_keeps_a_consistent_copy_only_when_the_record_changed(tmp_path):
    record, hub = ClassRecord(tmp_path / "class"), StandInHub()
    record.add(results(1))
    scheduler = record_module.HubCopy(record, repo_id="teacher/class-record", every=60, hf_api=hub)
    try:
        deadline = time.monotonic() + 30
        while not hub.commits and time.monotonic() < deadline:  # its first push starts with it
            time.sleep(0.05)
        record.add(results(2))
        scheduler.push_to_hub()
        scheduler.push_to_hub()  # nothing changed since: nothing committed
    finally:
        scheduler.stop()
    assert hub.created == ("teacher/class-record", {"private": True, "repo_type": "dataset", "exist_ok": True})
    assert len(hub.commits) == 2 and all(list(commit) == ["class.sqlite"] for commit in hub.commits)
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(hub.commits[-1]["class.sqlite"] if isinstance(hub.commits[-1]["class.sqlite"], bytes) else open(hub.commits[-1]["class.sqlite"], "rb").read())
    with sqlite3.connect(copy) as db:
        assert [seed for (seed,) in db.execute("SELECT seed FROM runs ORDER BY id")] == [1, 2]


def test_a_fresh_disk_reads_the_record_back_from_the_hub(tmp_path, monkeypatch):
    kept = ClassRecord(tmp_path / "before restart")
    kept.add(results(4))
    copy = tmp_path / "from the hub.sqlite"
    kept.copy_to(copy)
    asked = []
    monkeypatch.setattr(record_module, "hf_hub_download", lambda repo_id, filename, **kwargs: asked.append((repo_id, filename, kwargs["repo_type"])) or str(copy))
    fresh = ClassRecord(tmp_path / "after restart")
    assert record_module.restore_from_hub(fresh, "teacher/class-record") is True
    assert asked == [("teacher/class-record", "class.sqlite", "dataset")] and [run.seed for run in fresh.runs()] == [4]
    assert record_module.restore_from_hub(fresh, "teacher/class-record") is False  # a record on disk is not overwritten


def test_no_copy_on_the_hub_starts_an_empty_record(tmp_path, monkeypatch):
    def missing(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(record_module, "hf_hub_download", missing)
    record = ClassRecord(tmp_path)
    assert record_module.restore_from_hub(record, "teacher/class-record") is False and record.runs() == []
