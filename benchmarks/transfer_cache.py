"""Feature extraction on ants vs bees: the engine (backbone every epoch) against training the
head on features computed once.

    DATA_DIR=/path/to/data python benchmarks/transfer_cache.py [--epochs 10] [--weights IMAGENET1K_V1]

A frozen backbone maps the same image to the same features, so its conv part (features →
avgpool, 90% of AlexNet's FLOPs) can run once. Augmentation: the engine takes a random 224
crop and flip each epoch, which a cache cannot hold; the cached path keeps two views of each
photo (the centre crop and its mirror image) and draws one per image per epoch. The frozen
fully-connected layers still run every step, so their dropout stays as in the engine.
Without --weights (this machine cannot download ImageNet weights) the backbone is random: the
times are real, the accuracies then only show that both paths learn alike.
"""

import argparse
import time

import torch

from training.data import center_crop, load_hymenoptera, normalize
from training.engine import Finished, TrainConfig, build_model, evaluate, run


@torch.no_grad()
def pooled_features(model, images: torch.Tensor, info) -> torch.Tensor:
    x = normalize(center_crop(images, info.crop_size), info.mean, info.std)
    return model.flatten(model.avgpool(model.features(x)))  # N, 9216


def cached_training(config: TrainConfig, epochs: int) -> tuple[float, float, float]:
    """(seconds for the one feature pass, seconds per epoch, test accuracy) of the cached path."""
    train, test = load_hymenoptera("train"), load_hymenoptera("val")
    model = build_model(config, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.head.parameters(), lr=config.lr, momentum=config.momentum)
    start = time.perf_counter()
    views = torch.stack([pooled_features(model, train.images, train.info), pooled_features(model, train.images.flip(-1), train.info)])
    feature_pass = time.perf_counter() - start
    generator = torch.Generator().manual_seed(config.seed)
    n = len(train)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        view = torch.randint(0, 2, (n,), generator=generator)
        for i in range(n // config.batch_size):
            index = order[i * config.batch_size : (i + 1) * config.batch_size]
            logits = model.head(model.classifier(views[view[index], index]))
            loss = torch.nn.functional.cross_entropy(logits, train.labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    per_epoch = (time.perf_counter() - start) / epochs
    accuracy = evaluate(model, test, torch.device("cpu"), "fp32").diag().sum().item() / len(test)
    return feature_pass, per_epoch, accuracy


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
    result = next(e for e in run(config) if isinstance(e, Finished))
    print(f"engine, backbone every epoch: {result.train_time_s / args.epochs:.2f} s/epoch, {args.epochs} epochs {result.train_time_s:.1f} s, test accuracy {result.test_acc:.2%}")
    feature_pass, per_epoch, accuracy = cached_training(config, args.epochs)
    print(f"cached features:              {per_epoch:.2f} s/epoch, {args.epochs} epochs {per_epoch * args.epochs:.1f} s after a {feature_pass:.1f} s feature pass, test accuracy {accuracy:.2%}")
    print(f"weights: {args.weights or 'random (no ImageNet download here)'}; fp32; {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
