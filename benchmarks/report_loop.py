"""Training throughput: the report's loop against the engine, same model, same images.

    DATA_DIR=/path/to/data python benchmarks/report_loop.py [--images 5000] [--pairs 5]

(a) the report's way: torchvision ImageFolder with per-sample ToTensor/Normalize, a DataLoader
    at batch 10, fp32, a plain loop (as in the PyTorch CIFAR-10 tutorial the report follows);
(b) the engine (`training.engine.run`) at batch 10, and at its own default batch size (64).
All on the `report` preset's 5-conv/3-fc network (`cnn-report`) and the first `--images` of a
class-balanced subset of CIFAR-10's training split (the image-folder layout). Runs alternate
A/B/A/B so that drift in the machine affects both; medians and spread over the pairs.
"""

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from training.datasets import CIFAR10_MEAN, CIFAR10_STD, balanced_subset, load_cifar10
from training.sources import data_dir
from training.config import TrainConfig
from training.engine import Finished, build_model, run


def report_loop(indices: list[int], batch_size: int) -> float:
    """Images/s of the report's loop over the given training images (one epoch)."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    dataset = Subset(datasets.ImageFolder(data_dir() / "cifar10" / "train", transform=transform), indices)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    model = build_model(TrainConfig(model="cnn-report"), torch.device("cpu")).to(memory_format=torch.contiguous_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for images, labels in loader:
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
    return len(indices) / (time.perf_counter() - start)


def engine(n_images: int, batch_size: int) -> float:
    """Images/s of the engine, wall clock from the first step to the last (evaluation excluded)."""
    config = TrainConfig(model="cnn-report", lr=0.001, momentum=0.9, batch_size=batch_size, epochs=1, n_train=n_images, n_test=100, device="cpu")
    result = next(e for e in run(config) if isinstance(e, Finished))
    return result.images_per_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    labels = load_cifar10("train").labels  # decoded (and cached) before any timing
    indices = balanced_subset(labels, args.images, seed=0).tolist()
    rates: dict[str, list[float]] = {"report loop, batch 10, fp32": [], "engine, batch 10": [], "engine, batch 64": []}
    for pair in range(args.pairs):
        rates["report loop, batch 10, fp32"].append(report_loop(indices, 10))
        rates["engine, batch 10"].append(engine(args.images, 10))
        rates["engine, batch 64"].append(engine(args.images, 64))
        print(f"pair {pair + 1}: " + ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in rates.items()), flush=True)
    baseline = statistics.median(rates["report loop, batch 10, fp32"])
    print(f"\n{args.images} images, {args.pairs} interleaved rounds, {torch.get_num_threads()} threads")
    for name, values in rates.items():
        ratios = [v / b for v, b in zip(values, rates["report loop, batch 10, fp32"])]
        print(f"{name:<28} median {statistics.median(values):7.0f} img/s (min {min(values):.0f}, max {max(values):.0f})  ×{statistics.median(values) / baseline:.2f} (pairwise {min(ratios):.2f}–{max(ratios):.2f})")


if __name__ == "__main__":
    main()
