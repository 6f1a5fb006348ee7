import hashlib
from pathlib import Path

import pytest
import torch

from models import AirbenchCNN, AlexNetTransfer, TeachingCNN, WeightsUnavailableError, create_model, gpu_steps_per_s, list_models, model_arguments
from models.alexnet import check_cached
from models.checkpoint import load_pretrained


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_trains_one_step_without_nans(name, imagenet_weights):
    torch.manual_seed(0)
    model = create_model(name)
    side = 224 if name.startswith("alexnet") else 32
    x = torch.randn(2, 3, side, side)
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    loss.backward()
    assert logits.shape == (2, model_arguments(name)["num_classes"])
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_has_a_gpu_speed_to_price_a_zerogpu_request_by(name):
    assert gpu_steps_per_s(name) > 0


def test_final_architecture_follows_the_report():
    model = create_model("cnn-final")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [100, 200, 300, 400, 500, 600, 700]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert [type(m).__name__ for m in model.features].count("MaxPool2d") == 2
    assert type(model.features[2]).__name__ == "MaxPool2d"  # 2 conv → pool → 5 conv → pool
    assert [lin.out_features for lin in linears] == [100, 200, 10]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 7


@pytest.mark.parametrize("kwargs, message", [({"n_conv": 8}, "n_conv"), ({"n_fc": 0}, "n_fc"), ({"activation": "swish"}, "activation"), ({"pool_after": (9,)}, "pool_after")])
def test_bad_model_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TeachingCNN(**kwargs)


def test_unknown_model_lists_the_choices():
    with pytest.raises(ValueError, match="cnn-quick"):
        create_model("resnet-9000")


def test_teaching_cnn_checkpoint_round_trip_is_exact(tmp_path):
    torch.manual_seed(3)
    model = create_model("cnn-quick", batch_norm=True, activation="tanh")
    model(torch.randn(4, 3, 32, 32))  # moves the batch-norm running statistics off their defaults
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists() and (tmp_path / "model.safetensors").exists()
    loaded = TeachingCNN.from_pretrained(tmp_path, strict=True)
    original, reloaded = model.state_dict(), loaded.state_dict()
    assert original.keys() == reloaded.keys()
    assert all(torch.equal(original[k], reloaded[k]) for k in original)
    model.eval(), loaded.eval()
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))


def test_alexnet_checkpoint_reloads_without_imagenet_weights(tmp_path, imagenet_weights, monkeypatch):
    model = create_model("alexnet-transfer", mode="fine_tuning")
    model.save_pretrained(tmp_path)
    # Reloading must not look for the ImageNet file: the checkpoint holds every weight.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    loaded = AlexNetTransfer.from_pretrained(tmp_path, strict=True)
    assert loaded.mode == "fine_tuning"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_alexnet_loads_torchvisions_cached_imagenet_weights(imagenet_weights):
    model = create_model("alexnet-transfer")
    assert torch.equal(model.features[0].weight, imagenet_weights["features.0.weight"])
    assert torch.equal(model.classifier[1].weight, imagenet_weights["classifier.1.weight"])


def test_a_cached_file_that_is_not_imagenets_weights_is_refused_saying_what_is_wrong(tmp_path, monkeypatch, names_hold_hashes):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    cached.parent.mkdir(parents=True)
    torch.save(torch.nn.Linear(2, 2).state_dict(), cached)  # loads, but is not ImageNet's: it would train to chance
    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    with pytest.raises(WeightsUnavailableError) as error:
        create_model("alexnet-transfer")
    assert all(part in str(error.value) for part in (str(cached), f"begins {digest[:8]}", "says 7be5be79", "Delete it"))


def test_a_cached_checkpoint_is_hashed_once_per_process_until_it_changes(tmp_path, monkeypatch, names_hold_hashes):
    import models.checkpoint as checkpoint

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    content = b"stand-in weights"
    url = f"https://example.org/weights-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    cached = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(content)
    hashed = []
    monkeypatch.setattr(checkpoint.hashlib, "sha256", lambda: hashed.append(1) or hashlib.new("sha256"))
    check_cached(url)
    check_cached(url)
    assert len(hashed) == 1
    cached.write_bytes(b"truncated")  # replaced under the same name: checked again, and refused
    with pytest.raises(WeightsUnavailableError, match="truncated download"):
        check_cached(url)
    assert len(hashed) == 2


def test_missing_imagenet_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailableError, match=r"alexnet-owt-7be5be79\.pth") as error:
        create_model("alexnet-transfer")
    assert str(tmp_path) in str(error.value)


def test_feature_extraction_freezes_exactly_the_backbone():
    frozen = AlexNetTransfer(mode="feature_extraction")
    tuned = AlexNetTransfer(mode="fine_tuning")
    assert {n for n, p in frozen.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    assert all(p.requires_grad for p in tuned.parameters())


def test_hub_repo_loads_offline_from_the_cache_strictly(tmp_path, monkeypatch):
    """A Hub cache folder in huggingface_hub's own layout, read with the Hub unreachable."""
    import huggingface_hub.constants


    torch.manual_seed(5)
    model = create_model("cnn-tiny", batch_norm=True)
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--cnn-lab--cifar10-final" / "snapshots" / revision
    model.save_pretrained(snapshot)
    (tmp_path / "models--cnn-lab--cifar10-final" / "refs").mkdir()
    (tmp_path / "models--cnn-lab--cifar10-final" / "refs" / "main").write_text(revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    loaded = load_pretrained(TeachingCNN, "cnn-lab/cifar10-final")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert not loaded.training


def test_corrupt_or_missing_checkpoints_get_a_clear_message(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from models.checkpoint import CheckpointError

    create_model("cnn-tiny").save_pretrained(tmp_path / "good")
    (tmp_path / "good" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_pretrained(TeachingCNN, str(tmp_path / "good"))
    create_model("cnn-tiny").save_pretrained(tmp_path / "bad-config")
    (tmp_path / "bad-config" / "config.json").write_text('{"n_conv": 2,')
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_pretrained((AirbenchCNN, TeachingCNN), str(tmp_path / "bad-config"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="not in the local Hub cache"):
        load_pretrained(TeachingCNN, "cnn-lab/never-published")


def test_default_init_is_pytorchs_own_layer_init():
    """The report's code built its layers with PyTorch's defaults; `init="default"` must draw exactly those."""
    torch.manual_seed(11)
    model = TeachingCNN(n_conv=1, n_fc=1, width=8, init="default")
    torch.manual_seed(11)
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1)
    linear = torch.nn.Linear(8 * 16 * 16, 10)
    assert torch.equal(model.features[0].conv.weight, conv.weight) and torch.equal(model.features[0].conv.bias, conv.bias)
    assert torch.equal(model.classifier[0].linear.weight, linear.weight)


def test_he_init_scales_weights_for_relu_and_zeroes_biases():
    torch.manual_seed(0)
    conv = TeachingCNN(n_conv=2, n_fc=1, width=64, width_growth=64, init="he").features[1].conv
    fan_in = 64 * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    assert not conv.bias.any()


def test_unknown_init_is_named():
    with pytest.raises(ValueError, match="init must be one of"):
        TeachingCNN(init="xavier")


def test_explicit_widths():
    model = TeachingCNN(n_conv=3, n_fc=1, widths=(4, 8, 16), pool_after=(1, 3), batch_norm=True)
    assert [block.conv.out_channels for block in model.features if hasattr(block, "conv")] == [4, 8, 16]
    assert model.classifier[0].linear.in_features == 16 * 8 * 8
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="one width per conv layer"):
        TeachingCNN(n_conv=2, widths=(4, 8, 16))


def correlated_images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random images whose colour channels and neighbouring pixels are correlated, as in photos."""
    generator = torch.Generator().manual_seed(seed)
    grey = torch.nn.functional.avg_pool2d(torch.randn(n, 1, 36, 36, generator=generator), 5, stride=1)  # N, 1, 32, 32
    return grey * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1) + 0.1 * torch.randn(n, 3, 32, 32, generator=generator)


def test_the_whitening_layer_decorrelates_the_patches_it_was_fitted_on():
    model = AirbenchCNN()
    images = correlated_images()
    model.fit_whitening(images)
    conv = model.features[0].conv
    assert not conv.weight.requires_grad and conv.bias.requires_grad and not conv.bias.any()
    half = conv.out_channels // 2
    assert torch.equal(conv.weight[half:], -conv.weight[:half])  # each filter and its negative
    outputs = torch.nn.functional.conv2d(images, conv.weight[:half]).transpose(0, 1).flatten(1)  # 12, N·positions
    covariance = outputs @ outputs.T / outputs.shape[1]
    # Unit variance along every direction the images vary in (eps only damps the faintest ones).
    assert torch.allclose(covariance, torch.eye(half), atol=0.05)
    patches = torch.nn.functional.unfold(images, 2)  # N, 12, positions
    correlation = torch.corrcoef(patches.transpose(0, 1).flatten(1))
    assert (correlation - torch.eye(half)).abs().max() > 0.5  # which the raw patches were not


def test_a_learned_first_layer_trains_from_its_random_init_and_ignores_the_data():
    model = AirbenchCNN(widths=(8, 16, 16), whitening=False)
    conv = model.features[0].conv
    before = conv.weight.clone()
    model.fit_whitening(correlated_images(8))
    assert conv.weight.requires_grad and torch.equal(conv.weight, before) and before.std() > 0


def test_airbench_batch_norms_follow_the_batches_closely_with_a_tiny_eps():
    norms = [m for m in AirbenchCNN().modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 6 and all(m.momentum == 0.4 and m.eps == 1e-12 for m in norms)
    assert all(m.momentum == 0.1 for m in AirbenchCNN(norm_momentum=0.1).modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_airbench_conv_groups_start_by_passing_their_input_on():
    group = AirbenchCNN().features[1]
    x = torch.randn(2, group.conv1.in_channels, 8, 8)
    assert torch.equal(group.conv1(x)[:, : x.shape[1]], x)
    assert not group.norm1.weight.requires_grad and group.norm1.bias.requires_grad


def test_airbench_checkpoint_round_trip_is_exact_and_keeps_the_fitted_first_layer(tmp_path):
    torch.manual_seed(3)
    model = AirbenchCNN(widths=(8, 16, 16))
    model.fit_whitening(correlated_images(8))
    model(torch.randn(4, 3, 32, 32))  # moves the batch-norm running statistics off their defaults
    model.save_pretrained(tmp_path)
    loaded = load_pretrained((AirbenchCNN, TeachingCNN), str(tmp_path))
    assert type(loaded) is AirbenchCNN
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True))
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(model.eval()(x), loaded(x))


def test_a_checkpoint_loads_as_whichever_of_the_classes_it_fits_or_says_it_fits_none(tmp_path, imagenet_weights):
    from models.checkpoint import CheckpointError

    create_model("cnn-tiny").save_pretrained(tmp_path / "teaching")
    assert type(load_pretrained((AirbenchCNN, TeachingCNN), str(tmp_path / "teaching"))) is TeachingCNN
    create_model("alexnet-transfer", backbone_weights=None).save_pretrained(tmp_path / "alexnet")
    with pytest.raises(CheckpointError, match="does not fit the AirbenchCNN or TeachingCNN architecture"):
        load_pretrained((AirbenchCNN, TeachingCNN), str(tmp_path / "alexnet"))


def test_the_embedded_classifier_is_a_small_save_pretrained_folder():
    folder = Path(__file__).parent.parent / "pretrained" / "classifier" / "cifar10"
    assert sorted(p.name for p in folder.iterdir() if p.name != "README.md") == ["config.json", "model.safetensors", "test_predictions.safetensors"]
    assert (folder / "model.safetensors").stat().st_size <= 10 * 2**20
    model = load_pretrained(AirbenchCNN, str(folder))
    assert model.state_dict().keys() == create_model("cnn-classifier").state_dict().keys()
