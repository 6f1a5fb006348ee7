"""Are the explanations faithful, and fast enough? For each network the app explains and each method
(training.explanations.METHODS), on real test images:

- deletion: the predicted class's probability drop, in points, when the map's most relevant 20% of
  the image is greyed out, against as much greyed out at random; and the share of images where the
  map's deletion hurt more;
- randomisation: Spearman's correlation between the trained network's map and the map of the same
  network re-initialised (Adebayo et al. 2018): near 0, the map explains the network, not the photo;
- latency: one explanation (the app's call, training.explanations.relevance), median over images,
  on the weak host (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, fp32, the machine's threads).

    python benchmarks/explanations.py --cifar10-images 500 --transfer-run DIR --teaching-run DIR [--write]

The CIFAR-10 networks: the embedded classifier (an AirbenchCNN), and a TeachingCNN from a
`--save-dir` of a quick run (`python -m training momentum --preset quick --save-dir DIR`). AlexNet:
the arms of a `--save-dir` of a Transfer run, on ants-vs-bees validation photos; its backbone
weights are whatever this machine has, which `--weights` names in the results. `--write` records
results/explanations.json, which the app's captions and docs/classifier.md quote.
"""

import os
import sys

WEAK_HOST = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
if any(os.environ.get(k) != v for k, v in WEAK_HOST.items()):  # before torch loads
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WEAK_HOST})

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import AirbenchCNN, AlexNetTransfer, TeachingCNN  # noqa: E402
from models.checkpoint import load_pretrained  # noqa: E402
from training import explanations  # noqa: E402
from training.datasets import CIFAR10_DATASET, HYMENOPTERA_DATASET, load_cifar10, load_hymenoptera  # noqa: E402
from training.devices import cpu_brand  # noqa: E402
from training.loader import center_crop, normalize  # noqa: E402
from training.runner import folder_name  # noqa: E402

RESULTS = ROOT / "results" / "explanations.json"


def measured(model: torch.nn.Module, images: torch.Tensor, spec, method: str, seed: int = 0) -> dict:
    """Deletion, randomisation and latency of one method on one network over `images` (uint8)."""
    generator = torch.Generator().manual_seed(seed)
    fresh = explanations.reinitialised(model, seed)
    by_map, at_random, correlations, seconds = [], [], [], []
    for image in images:
        x = normalize(center_crop(image[None], spec.crop_size), spec.mean, spec.std)
        with torch.no_grad():
            target = int(model(x).argmax())
        start = time.perf_counter()
        found = explanations.relevance(model, x, target, method)
        seconds.append(time.perf_counter() - start)
        drop_map, drop_random = explanations.deletion(model, x, target, found, generator)
        by_map.append(drop_map)
        at_random.append(drop_random)
        correlations.append(explanations.rank_correlation(found, explanations.relevance(fresh, x, target, method)))
    return {
        "images": len(images),
        "map_drop": round(statistics.fmean(by_map), 2),
        "random_drop": round(statistics.fmean(at_random), 2),
        "map_wins": round(sum(m > r for m, r in zip(by_map, at_random)) / len(images), 3),
        "rank_correlation_with_randomised": round(statistics.fmean(correlations), 3),
        "seconds_median": round(statistics.median(seconds[1:] or seconds), 4),  # the first warms up
    }


def networks(args) -> list[tuple[str, torch.nn.Module, torch.Tensor, object, str]]:
    """(name, model, images, dataset spec, what its weights are) of every network measured."""
    found = []
    cifar = load_cifar10("test").images[: args.cifar10_images]
    embedded = load_pretrained(AirbenchCNN, str(ROOT / "pretrained" / "classifier" / "cifar10"))
    found.append(("cifar10: embedded classifier", embedded, cifar, CIFAR10_DATASET, "pretrained/classifier/cifar10"))
    if args.teaching_run:
        folder = next(p for p in sorted(Path(args.teaching_run).iterdir()) if (p / "config.json").is_file())
        found.append((f"cifar10: TeachingCNN ({folder.name})", load_pretrained(TeachingCNN, str(folder)), cifar, CIFAR10_DATASET, f"a quick run's '{folder.name}' arm"))
    if args.transfer_run:
        photos = load_hymenoptera("val").images
        for arm in ("fine tuning", "feature extraction"):
            model = load_pretrained(AlexNetTransfer, str(Path(args.transfer_run) / folder_name(arm)))
            found.append((f"ants vs bees: AlexNet, {arm}", model, photos, HYMENOPTERA_DATASET, args.weights))
    return found


def page_latency(args, repeats: int = 10) -> dict:
    """Seconds (median) of the page's whole explanation of a photo, maps drawn side by side and
    written: the Final CNN's (the embedded classifier), and Transfer's with both AlexNet arms."""
    import numpy as np
    from PIL import Image

    from demo.tabs import final_cnn, transfer
    from serving.model_store import HeldModels

    photo = np.asarray(Image.open(ROOT / "tests" / "assets" / "cat.jpg").convert("RGB"))

    def median_s(call) -> float:
        call()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return round(statistics.median(times), 3)

    timed = {"final_cnn, embedded classifier": median_s(lambda: final_cnn.why_cifar10(photo))}
    if args.transfer_run:
        arms = {arm: load_pretrained(AlexNetTransfer, str(Path(args.transfer_run) / folder_name(arm))) for arm in ("feature extraction", "fine tuning")}
        session = {"models": HeldModels(arms)}
        transfer.ants_bees_model._loaded, transfer.ants_bees_model.model = True, None  # the session's arms answer
        timed["transfer, both AlexNet arms"] = median_s(lambda: transfer.why_ants_bees(photo, "fine tuning", session))
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar10-images", type=int, default=500)
    parser.add_argument("--teaching-run", help="a --save-dir of a quick CIFAR-10 run with TeachingCNN arms")
    parser.add_argument("--transfer-run", help="a --save-dir of a Transfer run")
    parser.add_argument("--weights", default="ImageNet's IMAGENET1K_V1", help="what the AlexNet backbone started from, in words")
    parser.add_argument("--methods", nargs="+", default=list(explanations.METHODS))
    parser.add_argument("--seed", type=int, default=0, help="of the random deletions and the re-initialised network")
    parser.add_argument("--write", action="store_true", help=f"record {RESULTS.relative_to(ROOT)}")
    parser.add_argument("--page-only", action="store_true", help="time the page's explanations alone, keeping the recorded checks")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.page_only:
        recorded = json.loads(RESULTS.read_text())
        recorded["page"] = page_latency(args)
        print("page", recorded["page"])
        if args.write:
            RESULTS.write_text(json.dumps(recorded, indent=1) + "\n")
        return
    recorded = {
        "host": os.environ.get("CNNLAB_HOST", f"{cpu_brand()}, {torch.get_num_threads()} threads, run as AVX2 ({torch.backends.cpu.get_cpu_capability()}), fp32"),
        "date": datetime.date.today().isoformat(), "torch": torch.__version__, "seed": args.seed, "networks": {},
    }
    for name, model, images, spec, weights in networks(args):
        model.eval()
        entry = {"model": type(model).__name__, "weights": weights, "methods": {}}
        for method in args.methods:
            entry["methods"][method] = measured(model, images, spec, method, args.seed)
            print(name, method, entry["methods"][method], flush=True)
        recorded["networks"][name] = entry
    recorded["page"] = page_latency(args)
    print("page", recorded["page"], flush=True)
    if args.write:
        RESULTS.write_text(json.dumps(recorded, indent=1) + "\n")
        print("wrote", RESULTS)


if __name__ == "__main__":
    main()
