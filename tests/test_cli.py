import json
import subprocess
from urllib.error import URLError

import pytest

from models import AlexNetTransfer, TeachingCNN
from training.__main__ import main
from training.results import git_commit

REQUIRED_CONFIG_KEYS = {"batch_norm", "momentum", "activation", "optimizer", "n_conv", "n_fc"}


def test_cli_writes_results_and_models(tiny_data, tmp_path, capsys):
    out, save_dir = tmp_path / "results.json", tmp_path / "models"
    assert main(["batchnorm", "--device", "cpu", "--seed", "4", "--out", str(out), "--save-dir", str(save_dir)]) == 0
    results = json.loads(out.read_text())
    assert results["experiment"] == "batchnorm" and results["preset"] == "quick" and results["seed"] == 4
    assert results["device"] == "cpu"
    labels = [run["label"] for run in results["runs"]]
    assert labels == ["no batch norm", "batch norm"]
    for run in results["runs"]:
        assert REQUIRED_CONFIG_KEYS <= run["config"].keys()
        assert 0 <= run["test_acc"] <= 1 and run["train_time_s"] > 0
        assert any(h["type"] == "Evaluation" for h in run["history"])
    assert [run["config"]["batch_norm"] for run in results["runs"]] == [False, True]
    reloaded = TeachingCNN.from_pretrained(save_dir / "batch-norm", strict=True)
    assert any(name.endswith("norm.running_mean") for name in reloaded.state_dict())
    assert "report (Kaggle GPU)" in capsys.readouterr().out


def test_cli_reports_missing_data_without_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setattr("training.sources.urlopen", _offline_cifar)
    assert main(["momentum", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "error: CIFAR-10 was not found" in err and "Traceback" not in err


def _offline_cifar(*args, **kwargs):
    raise URLError("[Errno -3] Temporary failure in name resolution")


def test_cli_rejects_unknown_experiments():
    with pytest.raises(SystemExit):
        main(["dropout"])


def test_reproduce_records_provenance_and_resumes(tiny_data, tmp_path, capsys):
    out = tmp_path / "reference"
    assert main(["reproduce", "--preset", "quick", "--only", "momentum", "--device", "cpu", "--out-dir", str(out)]) == 0
    results = json.loads((out / "momentum.json").read_text())
    assert results["preset"] == "quick" and len(results["runs"]) == 2
    provenance = results["provenance"]
    assert {"device_name", "torch", "git_commit", "date", "wall_time_s"} <= provenance.keys()
    assert provenance["torch"] == __import__("torch").__version__ and provenance["wall_time_s"] > 0
    written = (out / "momentum.json").stat().st_mtime_ns
    assert main(["reproduce", "--preset", "quick", "--only", "momentum", "--device", "cpu", "--out-dir", str(out)]) == 0
    assert (out / "momentum.json").stat().st_mtime_ns == written
    assert "skipped" in capsys.readouterr().out


def test_cli_records_the_precision_and_init_it_ran_with(tiny_data, tmp_path):
    out = tmp_path / "results.json"
    assert main(["momentum", "--device", "cpu", "--precision", "fp32", "--init", "he", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["precision"] == "fp32" and {run["precision"] for run in results["runs"]} == {"fp32"}
    assert {run["config"]["init"] for run in results["runs"]} == {"he"}


def test_cli_rejects_an_unknown_precision(capsys):
    with pytest.raises(SystemExit):
        main(["momentum", "--precision", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


def test_cli_trains_the_transfer_comparison_on_a_folder_of_three_classes(tiny_data, imagenet_weights, tmp_path, capsys):
    from conftest import write_folder

    write_folder(tmp_path / "shapes", ("circle", "square", "star"), 5, 64, ".png", seed=0)
    out, save_dir = tmp_path / "results.json", tmp_path / "models"
    assert main(["transfer", "--device", "cpu", "--dataset", str(tmp_path / "shapes"), "--out", str(out), "--save-dir", str(save_dir)]) == 0
    results = json.loads(out.read_text())
    assert {run["config"]["dataset"] for run in results["runs"]} == {str(tmp_path / "shapes")}
    assert all(sum(map(sum, run["confusion"])) == 3 for run in results["runs"])  # one held-out photo per class
    model = AlexNetTransfer.from_pretrained(save_dir / "fine-tuning", strict=True)
    assert model.head.out_features == 3 and results["runs"][0]["classes"] == ["circle", "square", "star"]


def test_cli_names_a_bad_dataset(tiny_data, capsys):
    assert main(["transfer", "--device", "cpu", "--dataset", "no-such-folder"]) == 2
    assert "unknown dataset 'no-such-folder'" in capsys.readouterr().err


def test_a_recording_from_uncommitted_code_says_so(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "engine.py").write_text("STEPS = 1\n")
    (tmp_path / "notes.md").write_text("a note\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    head = git_commit(tmp_path)
    assert len(head) == 40
    (tmp_path / "notes.md").write_text("another note\n")  # not code: the commit still names what ran
    assert git_commit(tmp_path) == head
    (tmp_path / "training" / "engine.py").write_text("STEPS = 2\n")
    assert git_commit(tmp_path) == f"{head} with uncommitted changes to training/engine.py"
