"""Training losses (OpenSeg eq. 1-4 and the supervised terms) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omniseg.train.losses import (
    class_max_over_prompts,
    dice_best_match_loss,
    dice_matrix,
    grounding_loss,
    grounding_similarity,
    pixel_class_loss,
    region_class_loss,
)

T = torch.tensor


# ---------------------------------------------------------------------------------------- eq. 1
PRED = T(
    [
        [1.0, 1.0, 0.0, 0.0],  # s_0
        [0.5, 0.5, 0.5, 0.5],
    ]
)  # s_1
TARGET = T(
    [
        [1.0, 1.0, 1.0, 0.0],  # t_0
        [0.0, 0.0, 0.0, 1.0],
    ]
)  # t_1


def test_dice_matrix_by_hand():
    # Dice = 2|s.t| / (|s| + |t|); |s_0| = 2, |s_1| = 2, |t_0| = 3, |t_1| = 1
    # (s_0,t_0): 2*2/5 = 0.8      (s_0,t_1): 0/3 = 0
    # (s_1,t_0): 2*1.5/5 = 0.6    (s_1,t_1): 2*0.5/3 = 1/3
    expected = np.array([[0.8, 0.0], [0.6, 1 / 3]])
    np.testing.assert_allclose(dice_matrix(PRED, TARGET).numpy(), expected, rtol=1e-6)


def test_dice_matrix_ignores_invalid_pixels():
    valid = T([1.0, 1.0, 0.0, 1.0])  # pixel 2 is "ignore"
    # Without pixel 2: s_0 = [1,1,.,0] (|s|=2), s_1 = [.5,.5,.,.5] (1.5), t_0 = [1,1,.,0] (2), t_1 = [0,0,.,1] (1)
    # (s_0,t_0): 2*2/4 = 1        (s_0,t_1): 0
    # (s_1,t_0): 2*1/3.5 = 4/7    (s_1,t_1): 2*0.5/2.5 = 0.4
    expected = np.array([[1.0, 0.0], [4 / 7, 0.4]])
    np.testing.assert_allclose(dice_matrix(PRED, TARGET, valid).numpy(), expected, rtol=1e-6)


def test_dice_best_match_loss_eq1():
    # L_S = 1/M sum_j (1 - max_i Dice): t_0 best is s_0 (0.8), t_1 best is s_1 (1/3)
    loss, index = dice_best_match_loss(PRED, TARGET)
    assert loss.item() == pytest.approx(((1 - 0.8) + (1 - 1 / 3)) / 2, rel=1e-6)
    assert index.tolist() == [0, 1]


def test_dice_best_match_loss_with_valid_mask():
    # From the table above: t_0 -> s_0 (1.0), t_1 -> s_1 (0.4): loss = (0 + 0.6) / 2
    loss, index = dice_best_match_loss(PRED, TARGET, T([1.0, 1.0, 0.0, 1.0]))
    assert loss.item() == pytest.approx(0.3, rel=1e-6)
    assert index.tolist() == [0, 1]


def test_dice_loss_is_zero_for_perfect_prediction_and_differentiable():
    pred = TARGET.clone().requires_grad_(True)
    loss, _ = dice_best_match_loss(pred, TARGET)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


# ---------------------------------------------------------------------------------------- eq. 3-4
def _np_grounding_similarity(z: np.ndarray, w: np.ndarray, scale: float) -> float:
    """G(I, C) = 1/K sum_j sum_i softmax_i(scale <z_i,w_j>) <z_i,w_j>, written with loops."""
    total = 0.0
    for j in range(w.shape[0]):
        sims = np.array([z[i] @ w[j] for i in range(z.shape[0])], dtype=np.float64)
        weights = np.exp(scale * sims) / np.exp(scale * sims).sum()
        total += float((weights * sims).sum())
    return total / w.shape[0]


def _unit(rows) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_grounding_similarity_closed_form():
    # Regions e_x, e_y and one word e_x: sims = [1, 0], softmax weights [e^s, 1] / (e^s + 1),
    # G = e^s / (e^s + 1). With s = ln 3: G = 3/4.
    g = grounding_similarity(T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 0.0]]), T(math.log(3.0)))
    assert g.item() == pytest.approx(0.75, rel=1e-6)


def test_grounding_similarity_matches_numpy():
    rng = np.random.default_rng(0)
    z, w = _unit(rng.normal(size=(5, 4))), _unit(rng.normal(size=(3, 4)))
    g = grounding_similarity(torch.from_numpy(z).float(), torch.from_numpy(w).float(), T(2.5))
    assert g.item() == pytest.approx(_np_grounding_similarity(z, w, 2.5), rel=1e-5)


def _np_grounding_loss(zs, ws, scale: float) -> float:
    """Eq. 4 both directions: -1/B sum_i log softmax_j(G(I_i,C_j)/tau)[i]  (image -> caption)
    and -1/B sum_j log softmax_i(G(I_i,C_j)/tau)[j]  (caption -> image)."""
    b = len(zs)
    g = np.array([[_np_grounding_similarity(zs[i], ws[j], scale) for j in range(b)] for i in range(b)])
    logits = g * scale
    img_to_cap = -np.mean([logits[i, i] - np.log(np.exp(logits[i]).sum()) for i in range(b)])
    cap_to_img = -np.mean([logits[j, j] - np.log(np.exp(logits[:, j]).sum()) for j in range(b)])
    return float(img_to_cap + cap_to_img), g


def test_grounding_loss_two_images_both_directions():
    # Image 0 has regions near e_x/e_y, caption 0 names e_x; image 1 regions near e_z, caption 1
    # names e_z and e_y (K differs per caption). G is asymmetric, so the two directions differ.
    z0 = _unit([[1.0, 0.1, 0.0], [0.0, 1.0, 0.2]])
    z1 = _unit([[0.1, 0.0, 1.0], [0.3, 0.3, 1.0], [0.0, 0.5, 1.0]])
    w0 = _unit([[1.0, 0.0, 0.0]])
    w1 = _unit([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    scale = 3.0
    expected, g = _np_grounding_loss([z0, z1], [w0, w1], scale)
    assert abs(g[0, 1] - g[1, 0]) > 0.05  # the case really distinguishes the two directions
    got = grounding_loss(
        [torch.from_numpy(z0).float(), torch.from_numpy(z1).float()],
        [torch.from_numpy(w0).float(), torch.from_numpy(w1).float()],
        T(scale),
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_grounding_loss_prefers_matched_pairs():
    z = [T([[1.0, 0.0]]), T([[0.0, 1.0]])]
    matched = grounding_loss(z, [T([[1.0, 0.0]]), T([[0.0, 1.0]])], T(5.0))
    swapped = grounding_loss(z, [T([[0.0, 1.0]]), T([[1.0, 0.0]])], T(5.0))
    # One region per image, so G = <z, w>: matched G = I, logits 5*I, each direction's CE is
    # -log(e^5 / (e^5 + e^0)) = log(1 + e^-5). Swapped G = [[0,1],[1,0]]: log(1 + e^5) per direction.
    assert matched.item() == pytest.approx(2 * math.log1p(math.exp(-5.0)), rel=1e-5)
    assert swapped.item() == pytest.approx(2 * math.log1p(math.exp(5.0)), rel=1e-5)


# ---------------------------------------------------------------------------------------- supervised terms
def _np_cross_entropy(logits: np.ndarray, target: np.ndarray) -> float:
    """mean over rows of -log softmax(logits)[target]."""
    logits = logits.astype(np.float64)
    lse = np.log(np.exp(logits).sum(1))
    return float(np.mean(lse - logits[np.arange(len(target)), target]))


def test_region_class_loss_matches_numpy():
    class_sim = T(
        [
            [0.9, 0.1, -0.2],  # class 0 vs regions 0..2
            [0.0, 0.4, 0.7],
        ]
    )  # class 1
    matched, target = T([2, 0]), T([1, 0])  # segment 0 -> region 2 (class 1), segment 1 -> region 0 (class 0)
    # rows = segments, columns = classes: segment 0 sees column 2 of class_sim, segment 1 column 0
    logits = 2.0 * np.array([[-0.2, 0.7], [0.9, 0.0]])
    expected = _np_cross_entropy(logits, np.array([1, 0]))
    assert region_class_loss(class_sim, matched, target, T(2.0)).item() == pytest.approx(expected, rel=1e-5)


def test_region_class_loss_small_when_right_large_when_wrong():
    class_sim = T([[1.0, -1.0], [-1.0, 1.0]])
    right = region_class_loss(class_sim, T([0, 1]), T([0, 1]), T(10.0))
    wrong = region_class_loss(class_sim, T([0, 1]), T([1, 0]), T(10.0))
    # right: log(1 + e^-20); wrong: log(1 + e^20)
    assert right.item() == pytest.approx(math.log1p(math.exp(-20.0)), abs=1e-7)
    assert wrong.item() == pytest.approx(math.log1p(math.exp(20.0)), rel=1e-5)


def test_class_max_over_prompts_by_hand():
    sim = T(
        [
            [0.1, 0.5],  # prompt 0 -> class 1
            [0.7, -0.3],  # prompt 1 -> class 0
            [0.2, 0.6],
        ]
    )  # prompt 2 -> class 1
    out = class_max_over_prompts(sim, T([1, 0, 1]), 3)
    # class 0: prompt 1 only; class 1: max(prompt 0, prompt 2) per column; class 2 has no prompt
    np.testing.assert_allclose(out[:2].numpy(), [[0.7, -0.3], [0.2, 0.6]], rtol=1e-6)
    assert torch.isneginf(out[2]).all()


def _np_semantic_logits(masks: np.ndarray, class_sim: np.ndarray) -> np.ndarray:
    """y[k,p] = sum_i c[k,i] s_i(p) / sum_i s_i(p), with explicit loops."""
    k, n = class_sim.shape
    p = masks.shape[1]
    y = np.zeros((k, p))
    for kk in range(k):
        for pp in range(p):
            y[kk, pp] = sum(class_sim[kk, i] * masks[i, pp] for i in range(n)) / sum(masks[i, pp] for i in range(n))
    return y


def test_pixel_class_loss_ignores_255():
    rng = np.random.default_rng(3)
    masks = rng.uniform(0.05, 1.0, size=(3, 6))
    class_sim = rng.uniform(-1, 1, size=(2, 3))
    labels = np.array([0, 1, 255, 1, 255, 0])
    scale = 4.0
    y = _np_semantic_logits(masks, class_sim) * scale  # [K, P]
    keep = labels != 255
    expected = _np_cross_entropy(y.T[keep], labels[keep])
    got = pixel_class_loss(
        torch.from_numpy(masks).float(), torch.from_numpy(class_sim).float(), torch.from_numpy(labels), T(scale)
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # The loss does not depend on what the model says at ignored pixels.
    masks2 = masks.copy()
    masks2[:, [2, 4]] = rng.uniform(0.05, 1.0, size=(3, 2))
    got2 = pixel_class_loss(
        torch.from_numpy(masks2).float(), torch.from_numpy(class_sim).float(), torch.from_numpy(labels), T(scale)
    )
    assert got2.item() == pytest.approx(got.item(), rel=1e-6)
