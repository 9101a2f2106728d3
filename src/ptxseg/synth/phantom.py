"""One synthetic frontal chest radiograph with pneumothorax and lung masks.

:func:`make_phantom` is a pure function of ``(seed, index, size, positive,
real_mask)``: the same arguments give the same arrays on any machine and in
any worker. Anatomy is drawn from a per-*patient* generator, so two images of
one patient share lung shapes and differ in pose, exposure and findings.

How a pneumothorax is rendered (what a model must learn to see): the affected
lung retracts toward its hilum; the free air between the chest wall and the
retracted lung is slightly darker than aerated lung and has **no vascular
markings**; it is bounded by a **thin bright visceral pleural line**. The
retracted lung is a little denser. Nuisances that cause errors on real films
are added: skin folds (long lines across the lung edge), tubes and lines, ECG
leads, exposure and contrast changes, noise, patient rotation/scale/shift, AP
and PA projections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ptxseg.synth.anatomy import (
    Anatomy,
    bezier,
    body_mask,
    draw_bones,
    draw_curve,
    draw_vessels,
    fill_polygon,
    hilum,
    lung_polygon,
)
from ptxseg.synth.pneumothorax import place_real_mask, pleural_line, procedural_region, sample_target_area

SIDES = ("right", "left")  # the patient's sides; "right" is on the image's left

#: RNG stream tags, so that adding a stream never changes another.
_PATIENT, _IMAGE = 11, 12


@dataclass
class Phantom:
    """A phantom radiograph and its ground truth, all ``size × size``.

    ``image`` is float32 in ``[0, 1]`` (higher = whiter). ``ptx`` is the
    pneumothorax mask, ``lung_right`` / ``lung_left`` the full (pre-collapse)
    lung fields of the patient's right (image left) and left lung, uint8 0/1.
    ``ratio`` maps each side to ``100 * |ptx ∩ lung| / |lung|``.
    """

    image: np.ndarray
    ptx: np.ndarray
    lung_right: np.ndarray
    lung_left: np.ndarray
    ratio: dict[str, float]
    info: dict = field(default_factory=dict)

    @property
    def positive(self) -> bool:
        return bool(self.ptx.any())

    @property
    def side(self) -> str:
        """``none``, ``right``, ``left`` or ``bilateral`` (patient's sides)."""
        hit = [s for s in SIDES if self.ratio[s] > 0]
        return "none" if not hit else ("bilateral" if len(hit) == 2 else hit[0])


def _ratio(ptx: np.ndarray, lung: np.ndarray) -> float:
    area = int(lung.sum())
    return 100.0 * int((ptx & lung).sum()) / area if area else 0.0


def _smooth_texture(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    noise = rng.standard_normal((size, size)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigma_px)
    return noise / (noise.std() + 1e-6)


def _soft(mask: np.ndarray, sigma_px: float) -> np.ndarray:
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma_px)


def _choose_sides(rng: np.random.Generator) -> tuple[str, ...]:
    u = rng.random()
    if u < 0.06:
        return SIDES  # bilateral
    return ("right",) if u < 0.06 + 0.94 * 0.6 else ("left",)  # right more often than left


def _add_nuisances(density: np.ndarray, a: Anatomy, rng: np.random.Generator, info: dict) -> None:
    size = density.shape[0]
    layer = np.zeros_like(density)
    if rng.random() < 0.3:  # skin fold: a long line across the lateral lung edge, denser on one side
        sign = rng.choice([-1.0, 1.0])
        x0 = a.cx + sign * rng.uniform(0.28, 0.40)
        fold = bezier((x0, rng.uniform(0.15, 0.3)), (x0 + sign * rng.uniform(-0.06, 0.06), 0.45), (x0 + sign * 0.05, 0.8))
        draw_curve(layer, fold, 0.05, 0.004)
        band = np.zeros_like(density)
        draw_curve(band, fold + [sign * 0.012, 0], 0.025, 0.025)
        density += cv2.GaussianBlur(band, (0, 0), size / 300)
        info["skin_fold"] = True
    if rng.random() < 0.25:  # a tube: chest drain or central line, two bright walls
        sign = rng.choice([-1.0, 1.0])
        start = (a.cx + sign * rng.uniform(0.35, 0.5), rng.uniform(0.5, 0.9))
        mid = (a.cx + sign * rng.uniform(0.15, 0.3), rng.uniform(0.25, 0.5))
        end = (a.cx + sign * rng.uniform(0.02, 0.15), rng.uniform(0.15, 0.35))
        tube = bezier(start, mid, end)
        for off in (-0.004, 0.004):
            draw_curve(layer, tube + [off, 0], 0.2, 0.003)
        info["tube"] = True
    if rng.random() < 0.3:  # ECG electrodes: small bright rings
        for _ in range(rng.integers(2, 5)):
            c = (int(rng.uniform(0.15, 0.85) * size), int(rng.uniform(0.1, 0.9) * size))
            cv2.circle(layer, c, max(2, size // 80), 0.25, max(1, size // 256), lineType=cv2.LINE_AA)
        info["ecg_leads"] = True
    density += layer


def make_phantom(
    seed: int,
    index: int,
    size: int = 512,
    positive: bool = True,
    patient: int | None = None,
    real_mask: np.ndarray | None = None,
) -> Phantom:
    """Generate phantom ``index`` of a dataset drawn with ``seed``.

    Args:
        size: image side in pixels (≥ 64).
        positive: whether the image has a pneumothorax.
        patient: patient number (anatomy stream); default ``index``.
        real_mask: a real SIIM pneumothorax mask resized to ``size × size``
            (uint8 0/1) to use as the shape of the free-air region; its parts
            on each half of the image go to that side's lung.
    """
    rng_p = np.random.default_rng([seed, _PATIENT, index if patient is None else patient])
    rng = np.random.default_rng([seed, _IMAGE, index])
    ap_view = bool(rng.random() < 0.4)
    a = Anatomy.sample(rng_p, ap_view)
    lungs = {s: fill_polygon(lung_polygon(a, s, rng_p), size) for s in SIDES}
    hila = {s: (hilum(a, s)[0] * size, hilum(a, s)[1] * size) for s in SIDES}
    info: dict = {"view": "AP" if ap_view else "PA"}

    # ---- the pneumothorax: free-air region per side, inside the full lung
    regions = {s: np.zeros((size, size), np.uint8) for s in SIDES}
    if positive:
        if real_mask is not None:
            for s in SIDES:
                regions[s] = place_real_mask(real_mask, lungs[s], s)
            info["mask_source"] = "siim"
        if not any(r.any() for r in regions.values()):
            sides = _choose_sides(rng)
            total = sample_target_area(rng, size) if real_mask is None else float(real_mask.sum())
            for s in sides:
                regions[s] = procedural_region(lungs[s], hila[s], total / len(sides), rng)
            info["mask_source"] = "procedural"

    # ---- density map (higher = whiter)
    px = size / 512  # pixel scale relative to the 512 default
    body = body_mask(a, size, rng_p)
    yy = np.linspace(0, 1, size, dtype=np.float32)[:, None]
    density = 0.03 + _soft(body, 2 * px) * (0.46 + 0.10 * yy)
    lung_any = lungs["right"] | lungs["left"]
    lung_soft = _soft(lung_any, 1.5 * px)
    texture = _smooth_texture(rng, size, 1.6 * px)
    aerated = 0.15 + 0.012 * texture + 0.04 * np.clip(yy - 0.5, 0, None)
    density = density * (1 - lung_soft) + lung_soft * aerated
    for s in SIDES:
        region = regions[s]
        collapsed = (lungs[s] & (1 - region)).astype(np.uint8)
        density += draw_vessels(a, s, collapsed, rng)
        if region.any():
            air = _soft(region, 0.7 * px)
            # free air: a little darker than aerated lung and without markings
            density = density * (1 - air) + air * (0.136 + 0.004 * texture)
            density += 0.03 * _soft(collapsed, 2 * px) * lungs[s]  # retracted lung is denser
            line = pleural_line(collapsed, region, width_px=1 if size <= 512 else 2)
            density += 0.11 * _soft(line, 0.4 * px)
    if rng.random() < 0.5:  # gastric bubble under the left hemidiaphragm
        c = (int((a.cx + 0.17) * size), int((a.base_y_left + 0.05) * size))
        bubble = np.zeros((size, size), np.float32)
        cv2.ellipse(bubble, c, (int(0.05 * size), int(0.025 * size)), 0, 0, 360, 1.0, -1)
        density -= 0.15 * cv2.GaussianBlur(bubble, (0, 0), 2 * px) * (1 - lung_any)
    density += draw_bones(a, size, rng_p)
    _add_nuisances(density, a, rng, info)

    # ---- patient pose: rotation, scale, shift (same warp for image and masks)
    angle = rng.uniform(-5, 5)
    scale = rng.uniform(0.93, 1.05)
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    m[:, 2] += rng.uniform(-0.035, 0.035, 2) * size
    warp = {"M": m, "dsize": (size, size), "borderMode": cv2.BORDER_CONSTANT}
    density = cv2.warpAffine(density, borderValue=0.03, flags=cv2.INTER_LINEAR, **warp)
    lungs = {s: cv2.warpAffine(lungs[s], flags=cv2.INTER_NEAREST, **warp) for s in SIDES}
    ptx = np.zeros((size, size), np.uint8)
    for s in SIDES:
        ptx |= cv2.warpAffine(regions[s], flags=cv2.INTER_NEAREST, **warp) & lungs[s]

    # ---- detector and exposure
    image = cv2.GaussianBlur(density, (0, 0), 0.6 * px)
    lo, hi = np.percentile(image, [0.5, 99.5])
    image = np.clip((image - lo) / (hi - lo + 1e-6), 0, 1)
    image = image ** rng.uniform(0.75, 1.35)  # exposure / processing curve
    image = image * rng.uniform(0.85, 1.0) + rng.uniform(0.0, 0.08)
    image += rng.normal(0, rng.uniform(0.006, 0.025), image.shape)
    image = np.clip(image, 0, 1).astype(np.float32)
    info.update(angle=round(angle, 2), scale=round(scale, 3))
    ratio = {s: _ratio(ptx, lungs[s]) for s in SIDES}
    return Phantom(image=image, ptx=ptx, lung_right=lungs["right"], lung_left=lungs["left"], ratio=ratio, info=info)
