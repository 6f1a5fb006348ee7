"""`python -m training publish`: the folder it would upload, its model card, and its errors.
Nothing here reaches the Hub: uploads go to a stand-in HfApi."""

import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from huggingface_hub import ModelCard, SpaceCard
from safetensors.torch import load_file

from demo import uploads
from models import AirbenchCNN, AlexNetTransfer, TeachingCNN
from training import publish
from training.__main__ import main
from training.results import TEST_PREDICTIONS


@pytest.fixture(scope="module")
def saved_final(tiny_root, tmp_path_factory):
    """A `--save-dir` folder of the final experiment's quick preset, trained on the tiny data."""
    save_dir = tmp_path_factory.mktemp("runs") / "final"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATA_DIR", str(tiny_root))
        assert main(["final", "--preset", "quick", "--device", "cpu", "--save-dir", str(save_dir)]) == 0
    return save_dir


def test_dry_run_writes_the_checkpoint_results_and_model_card(saved_final, tmp_path, capsys):
    out = tmp_path / "repo"
    assert main(["publish", "--repo-id", "teacher/cnn-lab-final", "--experiment", "final", "--from", str(saved_final), "--dry-run", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "results.json"]
    assert "nothing uploaded" in capsys.readouterr().out
    # The checkpoint is the trained model, weight for weight.
    published = AirbenchCNN.from_pretrained(out, strict=True).state_dict()
    trained = AirbenchCNN.from_pretrained(saved_final / "final", strict=True).state_dict()
    assert published.keys() == trained.keys() and all(torch.equal(published[k], trained[k]) for k in trained)
    results = json.loads((out / "results.json").read_text())
    card = ModelCard.load(out / "README.md")
    assert card.data.datasets == ["uoft-cs/cifar10"] and card.data.library_name == "pytorch"
    (evaluation,) = card.data.eval_results
    assert evaluation.metric_type == "accuracy" and evaluation.metric_value == results["runs"][0]["test_acc"]
    assert evaluation.dataset_type == "uoft-cs/cifar10" and evaluation.task_type == "image-classification"
    assert "| the report | 81.43% | 472 s | a Kaggle GPU |" in card.text
    assert f"{results['device_name']}, preset `quick`" in card.text and "not comparable with the report's" in card.text
    assert 'AirbenchCNN.from_pretrained("teacher/cnn-lab-final")' in card.text and "CIFAR10_MODEL=teacher/cnn-lab-final" in card.text
    assert f"commit `{results['provenance']['git_commit']}`" in card.text


def test_publish_uploads_exactly_the_folder_it_wrote(saved_final, tmp_path, monkeypatch, capsys):
    calls = []

    class RecordingApi:
        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create_repo", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in folder_path.iterdir())))
            return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(publish, "HfApi", RecordingApi)
    monkeypatch.chdir(tmp_path)
    assert main(["publish", "--repo-id", "teacher/final", "--experiment", "final", "--from", str(saved_final), "--private"]) == 0
    assert calls == [
        ("create_repo", "teacher/final", True, True),
        ("upload_folder", "teacher/final", ["README.md", "config.json", "model.safetensors", "results.json"]),
    ]
    assert "set CIFAR10_MODEL=teacher/final" in capsys.readouterr().out


def test_publish_lists_the_repo_in_the_space_card_and_the_app_loads_it_from_there(saved_final, tmp_path, monkeypatch, capsys, imagenet_weights):
    readme = Path(__file__).parent.parent / "README.md"
    card = tmp_path / "README.md"
    shutil.copyfile(readme, card)
    cache = tmp_path / "hub-cache"
    revision = "0123456789abcdef0123456789abcdef01234567"

    class HubLikeApi:
        """Uploads land where a Space build's preload_from_hub puts them: the Hub cache, in its layout."""

        def create_repo(self, repo_id, private, exist_ok):
            pass

        def upload_folder(self, repo_id, folder_path, commit_message):
            repo = cache / f"models--{repo_id.replace('/', '--')}"
            for name in publish.PRELOADED_FILES.split(","):
                (repo / "snapshots" / revision).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder_path / name, repo / "snapshots" / revision / name)
            (repo / "refs").mkdir(exist_ok=True)
            (repo / "refs" / "main").write_text(revision)
            return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()

    monkeypatch.setattr(publish, "HfApi", HubLikeApi)
    monkeypatch.chdir(tmp_path)
    ants_bees = tmp_path / "ants-bees"
    AlexNetTransfer(mode="fine_tuning").save_pretrained(ants_bees)
    HubLikeApi().upload_folder("teacher/ants-bees", ants_bees, "")
    publish.wire_space_card(card, "teacher/ants-bees")
    for _ in range(2):  # publishing again lists the repo once
        assert main(["publish", "--repo-id", "teacher/final", "--experiment", "final", "--from", str(saved_final), "--space-card", str(card)]) == 0
    assert "listed in" in capsys.readouterr().out
    data = SpaceCard.load(card).data
    assert data.models == ["teacher/ants-bees", "teacher/final"]
    assert data.preload_from_hub == ["teacher/ants-bees config.json,model.safetensors", "teacher/final config.json,model.safetensors"]
    assert data.python_version == "3.12" and SpaceCard.load(card).text == SpaceCard.load(readme).text  # the rest of the card unchanged

    # The app, offline, with no variables set: each tab takes the listed classifier that fits it.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(uploads, "SPACE_CARD", card)
    monkeypatch.delenv("CIFAR10_MODEL", raising=False)
    monkeypatch.delenv("ANTS_BEES_MODEL", raising=False)
    cifar10 = uploads.ConfiguredModel("CIFAR10_MODEL", (AirbenchCNN, TeachingCNN), default=str(tmp_path / "unused"))
    assert isinstance(cifar10.get(), AirbenchCNN) and cifar10.source == "teacher/final" and "Space card" in cifar10.message
    expected = load_file(saved_final / "final" / "model.safetensors")
    assert all(torch.equal(expected[k], v) for k, v in cifar10.get().state_dict().items())
    ants = uploads.ConfiguredModel("ANTS_BEES_MODEL", AlexNetTransfer)
    assert isinstance(ants.get(), AlexNetTransfer) and ants.source == "teacher/ants-bees"


@pytest.mark.parametrize(
    "extra, message",
    [(["--dry-run", "out"], "a dry run publishes nothing"), (["--experiment", "your-images"], "no place for a student's own classes"), (["--space-card", "nowhere.md"], "no Space card at")],
)
def test_space_card_wiring_is_refused_where_it_cannot_apply(saved_final, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("---\nsdk: gradio\n---\n")
    args = ["publish", "--repo-id", "teacher/final", "--experiment", "final", "--from", str(saved_final), "--space-card", "README.md", *extra]
    assert main(args) == 2 and message in capsys.readouterr().err


def test_a_failed_upload_is_a_message(saved_final, tmp_path, monkeypatch, capsys):
    class LoggedOutApi:
        def create_repo(self, *args, **kwargs):
            raise OSError("Invalid user token.")

    monkeypatch.setattr(publish, "HfApi", LoggedOutApi)
    monkeypatch.chdir(tmp_path)
    assert main(["publish", "--repo-id", "teacher/final", "--experiment", "final", "--from", str(saved_final)]) == 2
    err = capsys.readouterr().err
    assert "could not publish to teacher/final: Invalid user token." in err and "HF_TOKEN" in err


def test_missing_wrong_or_corrupt_runs_are_refused(saved_final, tmp_path, capsys):
    def publish_from(source, experiment="final", arm=None):
        arm_args = ["--arm", arm] if arm else []
        code = main(["publish", "--repo-id", "t/x", "--experiment", experiment, "--from", str(source), "--dry-run", str(tmp_path / "out"), *arm_args])
        return code, capsys.readouterr().err

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text('{"experiment": "final", "runs": []}')
    assert "results lack 'preset'" in publish_from(tmp_path / "broken")[1]
    assert publish_from(tmp_path / "nothing") == (2, f"error: {tmp_path / 'nothing' / 'results.json'} is missing: train with `python -m training final --save-dir {tmp_path / 'nothing'}` first\n")
    assert "holds the 'final' experiment, not 'transfer'" in publish_from(saved_final, "transfer")[1]
    assert "no arm 'batch norm'" in publish_from(saved_final, arm="batch norm")[1]
    corrupt = tmp_path / "corrupt"
    (corrupt / "final").mkdir(parents=True)
    (corrupt / "results.json").write_text((saved_final / "results.json").read_text())
    (corrupt / "final" / "config.json").write_text((saved_final / "final" / "config.json").read_text())
    (corrupt / "final" / "model.safetensors").write_bytes(b"not a safetensors file")
    code, err = publish_from(corrupt)
    assert code == 2 and "is corrupt or unreadable" in err and "Traceback" not in err


def test_a_dry_run_never_writes_into_a_folder_in_use(saved_final, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["publish", "--repo-id", "t/x", "--experiment", "final", "--from", str(saved_final), "--dry-run", str(tmp_path)]) == 2
    assert "is not empty" in capsys.readouterr().err and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_the_embedded_classifier_is_recorded_by_reproduce_and_published_beside_the_report(tiny_data, tmp_path, capsys):
    models_dir, reference_dir = tmp_path / "pretrained", tmp_path / "reference"
    assert main(["reproduce", "--only", "classifier", "--device", "cpu", "--out-dir", str(reference_dir), "--models-dir", str(models_dir)]) == 0
    assert not reference_dir.exists()  # an embedded model is recorded with its weights, not as a reference run
    folder = models_dir / "classifier"
    results = json.loads((folder / "results.json").read_text())
    assert results["experiment"] == "classifier" and {"git_commit", "wall_time_s", "device_name"} <= results["provenance"].keys()
    AirbenchCNN.from_pretrained(folder / "cifar10", strict=True)
    predictions = load_file(folder / "cifar10" / TEST_PREDICTIONS)
    assert predictions["label"].tolist() == [c for c in range(10) for _ in range(6)]  # the tiny test set, in order
    assert predictions["predicted"].shape == predictions["confidence"].shape == (60,)
    out = tmp_path / "repo"
    assert main(["publish", "--repo-id", "teacher/cifar10", "--experiment", "classifier", "--from", str(folder), "--dry-run", str(out)]) == 0
    card = ModelCard.load(out / "README.md")
    accuracy = results["runs"][0]["test_acc"]
    assert f"| this model | {accuracy:.2%} |" in card.text and f"{results['device_name']}, full length |" in card.text
    assert "| the report | 81.43% | 472 s | a Kaggle GPU |" in card.text and "not comparable" not in card.text
    assert "| `label_smoothing` | 0.2 |" in card.text and "| `widths` | [64, 256, 256] |" in card.text and "AirbenchCNN.from_pretrained" in card.text
