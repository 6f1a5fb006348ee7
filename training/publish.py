"""Publish a trained classifier to the Hugging Face Hub with a model card that states its numbers.

    python -m training final --preset report --save-dir runs/final        # on a GPU: train, save
    python -m training publish --repo-id OWNER/NAME --experiment final [--from runs/final]

`--from` is a `--save-dir` folder: `results.json` and one `save_pretrained` folder per arm. The
repo gets the arm's `config.json` and `model.safetensors`, `results.json` (every arm's curves
and provenance) and a README written with huggingface_hub's `ModelCard`/`ModelCardData`:
datasets, the test accuracy as an `EvalResult`, the training settings, the device, and the
report's number beside ours. `--dry-run` writes that folder and uploads nothing. `--space-card README.md` then lists the
published repo in a Space card's `models:` and `preload_from_hub:`, so that the Space's build
downloads it and the app finds it there (`demo.uploads.ConfiguredModel`): one command publishes
and wires the Space.

The folder is built with `save_pretrained` and sent with `upload_folder`, which is what the
mixin's `push_to_hub` does, so that the folder a dry run or a test inspects is exactly what is
uploaded. The token comes from `HF_TOKEN` or `hf auth login`, as everywhere in huggingface_hub.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client: its errors are how an upload fails on the network
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, SpaceCard
from huggingface_hub.errors import HFValidationError

from models import model_class
from models.checkpoint import CheckpointError, load_pretrained
from training.runner import folder_name
from training.config import card_settings
from training.datasets import get_dataset
from training.sources import DatasetMissingError
from training.experiments import get_experiment
from training.results import PRETRAINED_DIR, validate_results

PUBLISHABLE = {"final": "final", "classifier": "cifar10", "transfer": "fine tuning", "your-images": "fine tuning"}  # experiment → the arm published by default
APP_VARIABLES = {"final": "CIFAR10_MODEL", "classifier": "CIFAR10_MODEL", "transfer": "ANTS_BEES_MODEL"}  # your-images: no app variable, a student's own classes

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ description }}

## Result

| | test accuracy | training time | where |
| --- | --- | --- | --- |
| this model | {{ accuracy }} | {{ train_time }} | {{ device }}, {{ preset }} |
| the report | {{ report_accuracy }} | {{ report_time }} | a Kaggle GPU |

{{ preset_note }}

**Data.** Trained and tested on {{ data }}.{% if published_note %} {{ published_note }}{% endif %}

## Training settings

| setting | value |
| --- | --- |
{{ settings }}

Seed, initial weights, data and batch order are shared by every arm of the experiment; the
other arms' curves and numbers are in `results.json` with the run's provenance
(torch {{ torch }}, commit `{{ commit }}`, {{ date }}).

## How to load it

```python
from models import {{ model_class }}  # from the CNN Lab repository

model = {{ model_class }}.from_pretrained("{{ repo_id }}")
```

{% if app_variable %}In the CNN Lab app, set `{{ app_variable }}={{ repo_id }}`.{% endif %}
"""


class PublishError(RuntimeError):
    """The saved run is missing, incomplete or of another experiment."""


def read_run(experiment: str, source: Path, arm: str) -> tuple[dict, dict, Path]:
    """(results JSON, the arm's run, the arm's model folder) of a `--save-dir` folder."""
    results_path, model_folder = source / "results.json", source / folder_name(arm)
    if not results_path.is_file():
        raise PublishError(f"{results_path} is missing: train with `python -m training {experiment} --save-dir {source}` first")
    results = validate_results(json.loads(results_path.read_text()))
    if results.get("experiment") != experiment:
        raise PublishError(f"{results_path} holds the {results.get('experiment')!r} experiment, not {experiment!r}")
    runs = {run["label"]: run for run in results["runs"]}
    if arm not in runs or not model_folder.is_dir():
        raise PublishError(f"no arm {arm!r} in {source}; it holds {sorted(runs)}")
    return results, runs[arm], model_folder


def dataset_facts(name: str) -> tuple[str | None, str, str]:
    """(Hub id, title, evaluation split) of the dataset a run trained on; a folder that is gone (a
    browser session's photos) is named as it was."""
    try:
        dataset = get_dataset(name)
    except (ValueError, DatasetMissingError):
        return None, f"the images in {Path(name).name}", "val"
    return dataset.hub_id, dataset.title, dataset.splits[1]


def model_card(experiment_name: str, results: dict, run: dict, repo_id: str) -> ModelCard:
    experiment = get_experiment(experiment_name)
    dataset_id, dataset_name, split = dataset_facts(run["config"]["dataset"])
    report = {r.arm: r for r in experiment.report}.get(run["label"])
    provenance = results.get("provenance", {})
    card_data = ModelCardData(
        model_name=repo_id.split("/")[-1],
        library_name="pytorch",
        tags=["cnn-lab", "image-classification", experiment_name],
        datasets=[dataset_id] if dataset_id else None,
        metrics=["accuracy"],
        eval_results=[
            EvalResult(
                task_type="image-classification",
                dataset_type=dataset_id or run["config"]["dataset"],
                dataset_name=dataset_name,
                dataset_split=split,
                metric_type="accuracy",
                metric_value=run["test_acc"],
                metric_name="Test accuracy",
            )
        ],
    )
    config = {**run["config"], "n_train": run["config"].get("n_train") or "all"}
    settings = "\n".join(f"| `{key}` | {config[key]} |" for key in card_settings() if key in config)
    return ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        model_name=f"CNN Lab: {experiment.title} ({run['label']})",
        description=f"Trained by CNN Lab's `{experiment_name}` experiment on {dataset_name}. The report found: {experiment.finding}",
        accuracy=f"{run['test_acc']:.2%}",
        train_time=f"{run['train_time_s']:.0f} s" + (" (early stop)" if run.get("stopped_early") else ""),
        device=results["device_name"],
        preset="full length" if experiment.embedded else f"preset `{results['preset']}`",
        preset_note="" if results["preset"] == "report" else "**A `quick` run: a smaller network or fewer images than the report's, so the numbers are not comparable with the report's.**",
        report_accuracy=f"{report.test_acc:.2%}" if report and report.test_acc else "—",
        report_time=f"{report.train_time_s} s" if report and report.train_time_s else "—",
        settings=settings,
        data=provenance.get("data", f"{dataset_name} (which copy was not recorded)"),
        published_note=experiment.published_note,
        torch=provenance.get("torch", "not recorded"),
        commit=provenance.get("git_commit", "not recorded"),
        date=provenance.get("date", "date not recorded"),
        model_class=model_class(run["config"]["model"]).__name__,
        repo_id=repo_id,
        app_variable=APP_VARIABLES.get(experiment_name),
    )


def export(experiment: str, source: Path, arm: str, repo_id: str, folder: Path) -> Path:
    """Write the repo's files into `folder`: the checked checkpoint, results.json and README.md."""
    results, run, model_folder = read_run(experiment, source, arm)
    try:  # reloading it strictly proves the checkpoint is whole before anyone downloads it
        model = load_pretrained(model_class(run["config"]["model"]), str(model_folder))  # the class the run's registry name builds
    except CheckpointError as error:
        raise PublishError(str(error)) from None
    folder.mkdir(parents=True, exist_ok=True)
    model_card(experiment, results, run, repo_id).save(folder / "README.md")
    model.save_pretrained(folder)  # keeps the README written above
    shutil.copyfile(source / "results.json", folder / "results.json")
    return folder


# What a Space preloads of a published classifier: the files save_pretrained writes.
PRELOADED_FILES = "config.json,model.safetensors"


def wire_space_card(card_path: Path, repo_id: str) -> None:
    """List a published repo in a Space card's `models:` and `preload_from_hub:` (once each)."""
    card = SpaceCard.load(card_path)
    card.data.models = [m for m in card.data.models or [] if m != repo_id] + [repo_id]
    preloaded = [line for line in card.data.get("preload_from_hub") or [] if line.split()[0] != repo_id]
    card.data.preload_from_hub = [*preloaded, f"{repo_id} {PRELOADED_FILES}"]
    card.save(card_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training publish", description="Push a trained model and its model card to the Hugging Face Hub.")
    parser.add_argument("--repo-id", required=True, help="OWNER/NAME on the Hub")
    parser.add_argument("--experiment", required=True, choices=sorted(PUBLISHABLE))
    parser.add_argument("--from", dest="source", type=Path, help="a --save-dir folder (default: runs/EXPERIMENT; pretrained/classifier for the embedded classifier)")
    parser.add_argument("--arm", help="the arm to publish (default: final, or fine tuning for transfer)")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--dry-run", type=Path, metavar="DIR", help="write the repo's files to DIR and upload nothing")
    parser.add_argument("--space-card", type=Path, metavar="README", help="once published, list the repo in this Space card, which the app reads")
    args = parser.parse_args(argv)
    if args.space_card and (args.dry_run or args.experiment not in APP_VARIABLES):
        why = "a dry run publishes nothing to list" if args.dry_run else "the app has no place for a student's own classes"
        print(f"error: --space-card lists only a published final, classifier or transfer model: {why}", file=sys.stderr)
        return 2
    if args.space_card and not args.space_card.is_file():
        print(f"error: no Space card at {args.space_card}", file=sys.stderr)
        return 2
    # `--from` defaults to the experiment's `--save-dir` under runs/, or where reproduce records an embedded one.
    source = args.source or (PRETRAINED_DIR if get_experiment(args.experiment).embedded else Path("runs")) / args.experiment
    arm = args.arm or PUBLISHABLE[args.experiment]
    staging = args.dry_run or Path("runs") / "publish" / folder_name(args.repo_id)
    if args.dry_run and args.dry_run.exists() and any(args.dry_run.iterdir()):
        print(f"error: {args.dry_run} is not empty; a dry run writes into an empty or new folder", file=sys.stderr)
        return 2
    shutil.rmtree(staging, ignore_errors=True)  # what is uploaded is this run's files and nothing left over
    try:
        export(args.experiment, source, arm, args.repo_id, staging)
    except (PublishError, OSError, ValueError) as error:  # ValueError: results.json is not valid JSON or not a results file
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"wrote {sorted(p.name for p in staging.iterdir())} to {staging}; nothing uploaded")
        return 0
    try:
        api = HfApi()
        api.create_repo(args.repo_id, private=args.private, exist_ok=True)
        commit = api.upload_folder(repo_id=args.repo_id, folder_path=staging, commit_message=f"CNN Lab: {args.experiment} ({arm})")
    except (httpx2.HTTPError, HFValidationError, OSError, ValueError) as error:  # HfHubHTTPError is an httpx2.HTTPError and an OSError
        print(f"error: could not publish to {args.repo_id}: {error}\n(log in with `hf auth login` or set HF_TOKEN)", file=sys.stderr)
        return 2
    if args.space_card:
        wire_space_card(args.space_card, args.repo_id)
        wire = f"\nlisted in {args.space_card}: commit it to the Space, and the app loads it"
    elif args.experiment in APP_VARIABLES:
        wire = f"\nset {APP_VARIABLES[args.experiment]}={args.repo_id} for the app, or publish with --space-card README.md"
    else:
        wire = ""
    print(f"published {commit.commit_url}{wire}")
    return 0
