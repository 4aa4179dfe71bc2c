import numpy as np
import pytest

from geo_assets.geo.landcover import IGNORE
from geo_assets.ml.metrics import confusion_matrix, scores
from geo_assets.ml.predict import predict_batch
from geo_assets.ml.train import TrainConfig, TrainResult, train

K, C = 4, 3
# Each class has its own constant spectrum; noise keeps it from being a lookup table.
SPECTRA = np.random.default_rng(0).uniform(0.05, 0.6, size=(K, C)).astype(np.float32)


def synthetic_tile(seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, K, size=(size // 16, size // 16))
    label = np.kron(blocks, np.ones((16, 16), dtype=np.int64)).astype(np.uint8)
    image = SPECTRA[label].transpose(2, 0, 1) + rng.normal(0, 0.03, (C, size, size))
    return image.astype(np.float32), label


TRAIN = [synthetic_tile(s) for s in range(4)]
HELD_OUT = synthetic_tile(100)
IMAGES, LABELS = [t[0] for t in TRAIN], [t[1].copy() for t in TRAIN]
LABELS[0][:32] = IGNORE  # partial labels must be fine

# Tuned to converge in ~2 s on 2 CPU cores.
FAST = {
    "unet": TrainConfig(
        architecture="unet",
        hyperparameters={"base_channels": 8},
        epochs=5,
        batch_size=4,
        learning_rate=5e-3,
        chip_size=32,
        chips_per_epoch=128,
        seed=0,
        device="cpu",
    ),
    "fcn": TrainConfig(
        architecture="fcn",
        hyperparameters={"hidden_channels": 16},
        epochs=4,
        batch_size=8,
        learning_rate=2e-2,
        chip_size=32,
        chips_per_epoch=64,
        seed=0,
        device="cpu",
    ),
}


def held_out_miou(result: TrainResult) -> float:
    pred = predict_batch(result.model, HELD_OUT[0][None], "cpu")
    return scores(confusion_matrix(pred, HELD_OUT[1][None], K), [str(k) for k in range(K)])["miou"]


@pytest.fixture(scope="module")
def unet_runs() -> tuple[TrainResult, TrainResult, list[tuple[int, int, float]]]:
    calls: list[tuple[int, int, float]] = []
    first = train(IMAGES, LABELS, C, K, FAST["unet"], progress=lambda *a: calls.append(a))
    second = train(IMAGES, LABELS, C, K, FAST["unet"])
    return first, second, calls


def test_unet_learns_easy_problem(unet_runs):
    first, _, _ = unet_runs
    assert first.loss_curve[-1] < first.loss_curve[0] / 3
    assert held_out_miou(first) >= 0.9
    assert first.device == "cpu" and first.seconds > 0
    assert not first.model.training


def test_same_seed_same_loss_curve(unet_runs):
    first, second, _ = unet_runs
    assert first.loss_curve == second.loss_curve
    other = train(IMAGES, LABELS, C, K, TrainConfig(**{**FAST["fcn"].__dict__, "seed": 1}))
    assert other.loss_curve != train(IMAGES, LABELS, C, K, FAST["fcn"]).loss_curve


def test_progress_called_each_epoch(unet_runs):
    first, _, calls = unet_runs
    epochs = FAST["unet"].epochs
    assert [(e, n) for e, n, _ in calls] == [(i + 1, epochs) for i in range(epochs)]
    assert [loss for _, _, loss in calls] == first.loss_curve


def test_fcn_learns_easy_problem():
    assert held_out_miou(train(IMAGES, LABELS, C, K, FAST["fcn"])) >= 0.9


def test_defaults():
    cfg = TrainConfig()
    assert (cfg.architecture, cfg.hyperparameters, cfg.epochs, cfg.batch_size) == ("unet", {}, 8, 8)
    assert (cfg.learning_rate, cfg.chip_size, cfg.chips_per_epoch, cfg.seed, cfg.device) == (2e-3, 128, 256, 0, "auto")
    assert TrainConfig().hyperparameters is not cfg.hyperparameters  # no shared mutable default


CFG = TrainConfig(architecture="fcn", epochs=1, chips_per_epoch=4, chip_size=16, device="cpu")
IMG = np.zeros((C, 16, 16), np.float32)
LAB = np.zeros((16, 16), np.uint8)


@pytest.mark.parametrize(
    "images, labels, match",
    [
        ([], [], "empty"),
        ([IMG, IMG], [LAB, np.zeros((16, 15), np.uint8)], "image 1 is 16x16 but label 1 is 16x15"),
        ([IMG, np.zeros((C + 1, 16, 16), np.float32)], [LAB, LAB], "image 1 has 4 channels, expected in_channels=3"),
        ([IMG], [np.full((16, 16), IGNORE, np.uint8)], "no labelled pixels"),
        ([IMG], [np.full((16, 16), K, np.uint8)], "contains class 4 but num_classes=4"),
        ([IMG], [LAB, LAB], "1 images but 2 label arrays"),
    ],
)
def test_input_validation(images, labels, match):
    with pytest.raises(ValueError, match=match):
        train(images, labels, C, K, CFG)


def test_bad_config_rejected_before_training():
    with pytest.raises(ValueError, match="unknown architecture"):
        train([IMG], [LAB], C, K, TrainConfig(architecture="resnet", device="cpu"))
    with pytest.raises(ValueError, match="accepted: auto, cpu"):
        train([IMG], [LAB], C, K, TrainConfig(device="tpu"))


def test_weights_do_not_depend_on_the_thread_count_the_process_had():
    # A step that predicted first (its own torch thread count) or a remote container must train the same bytes.
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = train(IMAGES, LABELS, C, K, FAST["fcn"]).model.state_dict()
        torch.set_num_threads(max(2, before))
        many = train(IMAGES, LABELS, C, K, FAST["fcn"]).model.state_dict()
        assert torch.get_num_threads() == max(2, before)  # put back after training
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(one[k], many[k]) for k in one)
