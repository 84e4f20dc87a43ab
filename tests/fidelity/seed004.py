"""Facts read from seed 004's published code (see docs/FIDELITY.md), restated independently of the
library so the fidelity tests compare our code against them rather than against itself."""
from __future__ import annotations

from pathlib import Path

from freesound_tf.config import Recipe, load_recipe

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = ("v1mix", "max3exam", "msc_se_w1", "msc_se_w2", "se_w15", "se")

# Training scripts: 35 noisy epochs halving at 0-based epochs 8/12/16 (mixup 0.7), 40 curated epochs
# halving at 14/21/28 (mixup 0.6); Nadam 5e-4, gamma 0.5.
PRETRAIN = {"epochs": 35, "milestones": (8, 12, 16), "mixup_prob": 0.7}
FINETUNE = {"epochs": 40, "milestones": (14, 21, 28), "mixup_prob": 0.6}
LR, GAMMA = 5e-4, 0.5

# models.py: backbone per member, (stem, squeeze-excitation, block width ratio).
ARCHITECTURE = {
    "v1mix": ("plain", False, 1.0),      # get_conv_backbone, pool_mode (max, avemax1)
    "max3exam": ("plain", False, 1.0),   # get_conv_backbone, pool_mode (max, avemax3)
    "msc_se_w1": ("msc", True, 1.0),     # model_se_MSC, w_ratio 1
    "msc_se_w2": ("msc", True, 2.0),     # model_se_MSC, w_ratio 2.0
    "se_w15": ("msc", True, 1.5),        # model_se_MSC, w_ratio 1.5 ("model_se_r4_1.5")
    "se": ("plain", True, 1.0),          # get_se_backbone
}
BLOCK_WIDTHS = (96, 128, 256, 512)


def recipe(member: str) -> Recipe:
    return load_recipe(ROOT / "models" / f"{member}.toml")


def seed_schedule(epochs: int, milestones: tuple[int, ...], mixup_prob: float) -> list[tuple[float, float]]:
    """(learning rate, mixup probability) per epoch as the seed's loop sets them: at the top of epoch
    ``e`` the rate is multiplied by gamma when ``e`` is a milestone; its loader mixes a batch only
    when ``e`` is below the first milestone."""
    rate, table = LR, []
    for epoch in range(epochs):
        if epoch in milestones:
            rate *= GAMMA
        table.append((rate, mixup_prob if epoch < milestones[0] else 0.0))
    return table


def seed_epochs_run(scores: list[float], epochs: int = 40, stop_from: int = 35, patience: int = 10) -> int:
    """Epochs the seed's fine-tune loop trains for validation scores ``scores`` (one per epoch): before
    epoch e it breaks when e >= stop_from and e - best_epoch > patience; best_epoch starts at 0 with
    best_score -1 and moves on a strictly higher score."""
    best_epoch, best_score = 0, -1.0
    for epoch in range(epochs):
        if epoch >= stop_from and epoch - best_epoch > patience:
            return epoch
        if scores[epoch] > best_score:
            best_epoch, best_score = epoch, scores[epoch]
    return epochs


def seed_stacker_stop(scores: list[float], max_epochs: int = 1000, patience: int = 15) -> tuple[int, int]:
    """The seed's stacker loop: before training epoch e it breaks when e - best_epoch > patience, else
    scores the model as it is (e epochs trained: e = 0 is the untrained stacker), keeps the best
    (strictly higher) and trains one epoch. Returns (epochs trained when the best was scored, number
    of scores taken)."""
    best_epoch, best_score, taken = 0, -1.0, 0
    for epoch in range(max_epochs):
        if epoch - best_epoch > patience:
            break
        taken += 1
        if scores[epoch] > best_score:
            best_epoch, best_score = epoch, scores[epoch]
    return best_epoch, taken


def se_params(channels: int, ratio: int = 4) -> int:
    """squeeze_excitation_layer: Dense(C / 4) and Dense(C), both with bias."""
    reduced = channels // ratio
    return channels * reduced + reduced + reduced * channels + channels


def seed_param_count(member: str, n_classes: int = 80, rnn_units: int = 128) -> tuple[int, int]:
    """(parameters of the seed's cnn_model for ``member`` without its kapre frontend, of which the
    biases of the block convolutions, which sit before a batch norm). BatchNormalization counts 4
    weights per channel; CuDNNGRU 3u(in + u) + 6u per direction."""
    stem, se, w_ratio = ARCHITECTURE[member]
    if stem == "plain":  # Conv2D(64, 3, no bias) -> BN
        total, channels = 9 * 64 + 4 * 64, 64
    else:  # Conv2D(32, k, no bias) for k = 3, 5, 7 -> concat -> BN
        total, channels = (9 + 25 + 49) * 32 + 4 * 96, 96
    total += se_params(channels) if se else 0
    conv_biases = 0
    for width in (int(w * w_ratio) for w in BLOCK_WIDTHS):
        for fan_in in (channels, width):  # two 3x3 convs with bias -> BN [-> SE]
            total += 9 * fan_in * width + width + 4 * width + (se_params(width) if se else 0)
            conv_biases += width
        channels = width
    total += 4 * 12  # BatchNormalization of the (128, 12) global features
    total += 2 * (3 * rnn_units * (12 + rnn_units) + 6 * rnn_units)  # bidirectional GRU 1
    total += 2 * (3 * rnn_units * (2 * rnn_units) + 6 * rnn_units)  # bidirectional GRU 2 (merge sum)
    total += (2 * channels + rnn_units + 1) * n_classes + n_classes  # Dense on [pixel shuffle, GRU, length]
    return total, conv_biases
