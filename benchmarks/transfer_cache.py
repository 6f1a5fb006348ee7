"""Feature extraction on ants vs bees: the engine running the frozen backbone every step against
the engine computing its features once (`cache_frozen_features`, the default).

    DATA_DIR=/path/to/data python benchmarks/transfer_cache.py [--epochs 10] [--weights IMAGENET1K_V1]

Augmentation: photos are stored at 224×224, so horizontal flips are the only augmentation and a
frozen backbone sees two views of each photo; FeatureLoader computes both once and then makes
exactly the draws BatchLoader makes. The frozen fully-connected layers still run every step, so
their dropout stays. Without --weights (this machine cannot download ImageNet weights) the
backbone is random: the times are real, the accuracies only show that both paths learn alike.
"""

import argparse
from dataclasses import replace

import torch

from training.config import TrainConfig
from training.engine import Finished, run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--weights", default=None, help="IMAGENET1K_V1 where the weights are cached")
    args = parser.parse_args()
    config = TrainConfig(
        dataset="hymenoptera",
        model="alexnet-transfer",
        model_overrides={"mode": "feature_extraction", "backbone_weights": args.weights},
        lr=0.001,
        momentum=0.9,
        batch_size=20,
        epochs=args.epochs,
        device="cpu",
        precision="fp32",
    )
    for cached in (False, True):
        result = next(e for e in run(replace(config, cache_frozen_features=cached)) if isinstance(e, Finished))
        name = "features computed once (feature pass included)" if cached else "backbone every step"
        print(f"{name:<48} {result.train_time_s / args.epochs:.2f} s/epoch, {args.epochs} epochs {result.train_time_s:.1f} s, test accuracy {result.test_acc:.2%}")
    print(f"weights: {args.weights or 'random (no ImageNet download here)'}; fp32; {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
