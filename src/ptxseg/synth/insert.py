"""A pneumothorax inserted into a real radiograph: a real SIIM mask shape fitted into a real lung field's
periphery and rendered the way the physics draws it (pure numpy + OpenCV; ``docs/sim2real.md``).

Geometry: per side it covers, the SIIM shape (drawn on a 1024² SIIM film) is mapped from that lung's typical
box on a SIIM film to the background's lung field (so an apical lesion stays apical, a basal one basal), then
each row is redrawn against the lung's lateral wall with its own width and clipped to the full lung field
(:func:`hug_wall`): the lesion follows this chest wall's curve with the real shape's thickness, and never
crosses the mediastinum or the diaphragm. A bilateral SIIM shape gives a bilateral lesion, so bilateral cases
come at the real file's frequency; a unilateral one may be drawn as tension (:func:`shift_mediastinum`).

Rendering, inside the region (all in the display range [0, 1], dark = air):

- **no lung markings**: frequency separation — the image's low-pass (Gaussian, ``vessel_sigma`` of the image
  width: keeps ribs and the chest wall's gradient, removes vessels) replaces the image there; above it, the band
  where the vessels are is synthetic noise at the film's own grain level, and the two finest bands are the
  film's own, attenuated (``keep_fine``), with synthetic grain making up the rest — so neither a smooth patch
  nor a noise mismatch gives the insertion away;
- **darker**: the air removes ``air_drop`` of the lung's own density (the film blurred at ``lung_sigma``, above
  the darkest lung level) — a smooth field, so ribs keep their contrast — more at the chest wall than at the
  pleural line (``periphery``), feathered over ``edge_sigma``;
- **the visceral pleural line**: a thin bright line along the edge of the retracted lung facing the air;
- **the collapsed lung is denser**: the rest of that lung field brightens by ``denser_gain`` × the collapsed
  share of the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

SIDES = ("right", "left")
#: each lung field's median bounding box on a SIIM film (top, bottom, left, right as shares of the image): the
#: shipped lung model on 100 SIIM stage-2 films (scripts/siim_lung_boxes.py; IQR about 0.06 at the top, 0.15 at
#: the bottom, 0.04-0.07 at the sides)
SIIM_LUNG_BOXES = {"right": (0.142, 0.761, 0.131, 0.454), "left": (0.145, 0.774, 0.542, 0.857)}


@dataclass(frozen=True)
class InsertParams:
    """How a lesion is drawn; lengths are shares of the image width.

    ``air_drop``: the share of the lung level's height above the darkest lung that the air removes (set so
    that inserted lesions darken like the real SIIM positive here: ``benchmarks/sim2real_contrast.py``), the
    lung level being the film blurred at ``lung_sigma``; ``keep_fine``: the share of the film's own two finest
    bands (< 1 px, 1-2 px) kept in the region, the rest made up by synthetic grain; ``periphery``: how much more
    the air darkens at the chest wall than at the pleural line (0: uniform); ``contour_sigma``: the smoothing of
    the lesion's row widths (SIIM's polygons have straight horizontal edges, a pleural edge does not);
    ``tension_shift``: how far a tension pneumothorax pushes the mediastinum to the other side."""

    vessel_sigma: float = 0.006
    keep_fine: tuple[float, float] = (0.6, 0.5)
    air_drop: float = 0.6
    lung_sigma: float = 0.03
    periphery: float = 0.4
    edge_sigma: float = 0.0015
    contour_sigma: float = 0.012
    line_gain: float = 0.08
    line_width: float = 0.0012
    denser_gain: float = 0.08
    tension_shift: float = 0.05


@dataclass
class Inserted:
    """The radiograph with its lesion, the lesion mask (uint8 0/1), per side its share of the lung field, and the
    lung fields as they are in the output (moved by a tension pneumothorax's mediastinal shift)."""

    image: np.ndarray
    mask: np.ndarray
    ratio: dict[str, float] = field(default_factory=dict)
    side: str = "none"
    lungs: dict[str, np.ndarray] = field(default_factory=dict)
    tension: bool = False


def fit_shape(shape: np.ndarray, lungs: dict[str, np.ndarray], smooth: float = 0.0) -> dict[str, np.ndarray]:
    """The SIIM ``shape`` (a mask on a square SIIM film, any size) fitted into each lung it covers: the part on
    each half of the film is mapped from that lung's typical box on a SIIM film (:data:`SIIM_LUNG_BOXES`) to the
    bounding box of the background's lung field, then drawn against its chest wall row by row (:func:`hug_wall`,
    ``smooth``: its width smoothing as a share of the image height). Returns ``{side: uint8 mask}`` for the
    sides whose fitted part is not empty."""
    src = (np.asarray(shape) > 0).astype(np.uint8)
    n = src.shape[1]
    out = {}
    for side in SIDES:
        lung = lungs[side].astype(np.uint8)
        half = np.zeros_like(src)
        cut = slice(0, n // 2) if side == "right" else slice(n // 2, n)  # the patient's right is the film's left
        half[:, cut] = src[:, cut]
        if not half.any() or not lung.any():
            continue
        top, bottom, left, right = (v * s for v, s in zip(SIIM_LUNG_BOXES[side], (src.shape[0], src.shape[0], n, n), strict=True))
        rows, cols = np.flatnonzero(lung.any(1)), np.flatnonzero(lung.any(0))
        sy, sx = (rows[-1] - rows[0]) / (bottom - top), (cols[-1] - cols[0]) / (right - left)
        affine = np.float32([[sx, 0, cols[0] - sx * left], [0, sy, rows[0] - sy * top]])
        moved = cv2.warpAffine(half, affine, (lung.shape[1], lung.shape[0]), flags=cv2.INTER_NEAREST)
        placed = hug_wall(moved, lung, side, smooth * lung.shape[0])
        if placed.any():
            out[side] = placed
    return out


def noise_level(image: np.ndarray, where: np.ndarray) -> float:
    """Robust standard deviation of the image's finest-scale grain (image minus a 1-px Gaussian) inside ``where``."""
    fine = image - cv2.GaussianBlur(image, (0, 0), 1.0)
    values = fine[where > 0]
    if values.size < 16:
        values = fine.ravel()
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _bands(x: np.ndarray, top_sigma: float) -> list[np.ndarray]:
    """``x`` split into three fine bands: below 1 px, 1-2 px and 2 px to ``top_sigma`` (differences of Gaussians)."""
    b1, b2, b3 = (cv2.GaussianBlur(x, (0, 0), s) for s in (1.0, 2.0, top_sigma))
    return [x - b1, b1 - b2, b2 - b3]


def _grain(rng: np.random.Generator, film_bands: list[np.ndarray], where: np.ndarray, top_sigma: float) -> np.ndarray:
    """Noise with the film's own fine-scale spectrum: white noise split into the bands of :func:`_bands`, each
    scaled to the robust level of the same band of the film (``film_bands``, :func:`_bands` of the image) inside
    ``where`` (the lung fields). Below ``top_sigma`` the image's structure is what the rendering replaces: this
    makes up the texture there."""
    white = rng.standard_normal(film_bands[0].shape).astype(np.float32)
    inside = where > 0 if (where > 0).sum() >= 64 else np.ones(white.shape, bool)
    out = np.zeros_like(white)
    for band_img, band_noise in zip(film_bands, _bands(white, top_sigma), strict=True):
        # the band's level where the film is least structured (10th percentile of its local level in the lungs):
        # the grain alone, without the vessels this band also carries elsewhere
        local = np.sqrt(np.clip(cv2.blur(band_img * band_img, (9, 9)), 0, None))
        level = float(np.percentile(local[inside], 10))
        out += band_noise * (level / max(float(np.std(band_noise)), 1e-9))
    return out


def hug_wall(region: np.ndarray, lung: np.ndarray, side: str, smooth: float = 0.0) -> np.ndarray:
    """``region`` redrawn row by row against ``lung``'s lateral wall: each row keeps its width and starts at the
    lung's outermost pixel of that row (the patient's right lung is on the image's left), clipped to the lung.
    The lesion then follows the chest wall's own curve with the real shape's thickness profile. ``smooth`` > 0
    (rows) smooths the width profile with a Gaussian of that size, so the lesion tapers at its ends and its
    inner edge curves instead of stepping where a polygon's straight edges were."""
    out = np.zeros_like(region, dtype=np.uint8)
    widths = np.zeros(region.shape[0], np.float32)
    for r in np.flatnonzero(region.any(1)):
        cols = np.flatnonzero(region[r])
        widths[r] = cols.max() - cols.min() + 1
    if smooth > 0:
        widths = cv2.GaussianBlur(widths[:, None], (1, 0), sigmaX=0, sigmaY=smooth)[:, 0]
    for r in np.flatnonzero(widths >= 1):
        lung_cols = np.flatnonzero(lung[r])
        if lung_cols.size == 0:
            continue
        width = round(float(widths[r]))
        if side == "right":
            out[r, lung_cols.min() : lung_cols.min() + width] = 1
        else:
            out[r, max(lung_cols.max() - width + 1, 0) : lung_cols.max() + 1] = 1
    return out & lung.astype(np.uint8)


def _depth_from_lung(regions: dict[str, np.ndarray], lungs: dict[str, np.ndarray]) -> np.ndarray:
    """Per pixel of each region, its distance from the retracted lung as a share of the region's deepest point
    (0 at the pleural line, 1 at the chest wall); 0 elsewhere."""
    shape = next(iter(lungs.values())).shape
    depth = np.zeros(shape, np.float32)
    for side, m in regions.items():
        collapsed = lungs[side].astype(np.uint8) & (1 - m.astype(np.uint8))
        if not collapsed.any():
            depth[m > 0] = 1.0
            continue
        dist = cv2.distanceTransform((1 - collapsed).astype(np.uint8), cv2.DIST_L2, 3)
        inside = m > 0
        depth[inside] = np.clip(dist[inside] / max(float(np.percentile(dist[inside], 95)), 1.0), 0, 1)
    return depth


def render(
    image: np.ndarray, regions: dict[str, np.ndarray], lungs: dict[str, np.ndarray], rng: np.random.Generator, params: InsertParams
) -> np.ndarray:
    """``image`` (H×W float in [0, 1]) with the pneumothorax ``regions`` (per side, 0/1) drawn into ``lungs``."""
    img = image.astype(np.float32)
    h, w = img.shape
    region = np.zeros((h, w), np.uint8)
    for m in regions.values():
        region |= m.astype(np.uint8)
    if not region.any():
        return img.copy()
    lung_any = np.zeros((h, w), np.uint8)
    for m in lungs.values():
        lung_any |= m.astype(np.uint8)
    top = params.vessel_sigma * w
    low = cv2.GaussianBlur(img, (0, 0), top)
    # the film's own finest bands, attenuated (the faintest markings fade, its grain and resampling stay its
    # own), the rest of the grain synthetic; the band up to the low-pass, where the vessels are, is all synthetic
    film = _bands(img, top)
    synthetic = _bands(_grain(rng, film, lung_any, top), top)
    k1, k2 = params.keep_fine
    texture = k1 * film[0] + (1 - k1) * synthetic[0] + k2 * film[1] + (1 - k2) * synthetic[1] + synthetic[2]
    # air removes a share of the lung level's height above the darkest lung level, more at the chest wall (the
    # full depth of air) than at the pleural line
    floor = float(np.percentile(low[lung_any > 0], 2)) if lung_any.any() else 0.0
    depth = _depth_from_lung(regions, lungs)
    drop = params.air_drop * (1 - params.periphery / 2 + params.periphery * depth)
    # the lung's own density is a smooth field: subtracting it (measured on a coarse blur, not the low-pass) leaves
    # the ribs and the chest wall, which are not lung, at their full contrast
    lung_level = cv2.GaussianBlur(img, (0, 0), params.lung_sigma * w)
    air = low - drop * np.clip(lung_level - floor, 0, None) + texture
    soft = cv2.GaussianBlur(region.astype(np.float32), (0, 0), max(params.edge_sigma * w, 0.5))
    soft = soft * (region > 0)  # feathered inwards: nothing outside the region changes
    out = img * (1 - soft) + air * soft
    for side, m in regions.items():
        lung = lungs[side].astype(np.uint8)
        collapsed = lung & (1 - m.astype(np.uint8))
        share = m.sum() / max(int(lung.sum()), 1)
        if collapsed.any():
            denser = cv2.GaussianBlur(collapsed.astype(np.float32), (0, 0), 2 * params.edge_sigma * w + 0.5)
            out += params.denser_gain * share * denser * (collapsed > 0)
            width = max(1, round(params.line_width * w))
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
            line = cv2.dilate(m.astype(np.uint8), kernel) & collapsed
            line = cv2.GaussianBlur(line.astype(np.float32), (0, 0), max(0.35 * width, 0.5))
            out += params.line_gain * line * lung  # the line stays inside its lung field
    return np.clip(out, 0.0, 1.0)


def insert_lesion(
    image: np.ndarray,
    lungs: dict[str, np.ndarray],
    shape: np.ndarray,
    rng: np.random.Generator,
    params: InsertParams = InsertParams(),
    tension: bool = False,
) -> Inserted:
    """Insert the SIIM ``shape`` into ``image`` (H×W float in [0, 1]) whose patient's ``lungs`` are given
    (``{"right": mask, "left": mask}``, the image's frame). An empty result (the shape found no lung to fit)
    returns the image unchanged with an empty mask. ``tension``: a unilateral lesion also shifts the mediastinum
    away from it (:func:`shift_mediastinum`); the returned lungs, mask and ratios are those of the shifted film."""
    regions = fit_shape(shape, lungs, params.contour_sigma)
    side = "bilateral" if len(regions) == 2 else (next(iter(regions)) if regions else "none")
    out = render(image, regions, lungs, rng, params)
    lungs = {k: v.astype(np.uint8) for k, v in lungs.items()}
    tension = tension and side in SIDES
    if tension:
        out, moved = shift_mediastinum(out, {**lungs, "lesion": regions[side]}, side, params.tension_shift)
        regions = {side: moved.pop("lesion") & moved[side]}
        lungs = moved
    mask = np.zeros(image.shape, np.uint8)
    for m in regions.values():
        mask |= m
    ratio = {s: float(regions[s].sum() / max(int(lungs[s].sum()), 1)) if s in regions else 0.0 for s in SIDES}
    return Inserted(out, mask, ratio, side, lungs, tension)


def shift_mediastinum(
    image: np.ndarray, masks: dict[str, np.ndarray], side: str, shift: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A tension pneumothorax on ``side``: the mediastinum pushed towards the other side by ``shift`` × the image
    width, the shift fading to nothing at both lateral chest walls and above and below the lung fields, so the
    affected hemithorax widens and the other narrows. ``masks`` (0/1, including ``"right"`` and ``"left"``) move
    with the image (nearest neighbour). Returns the image (H×W float) and the moved masks."""
    h, w = image.shape
    right, left = masks["right"] > 0, masks["left"] > 0
    rows = np.flatnonzero((right | left).any(1))
    if rows.size == 0:
        return image.copy(), {k: v.copy() for k, v in masks.items()}
    mid_rows = rows[len(rows) // 4 : 3 * len(rows) // 4 + 1]
    gaps = [(np.flatnonzero(right[r]).max() + np.flatnonzero(left[r]).min()) / 2 for r in mid_rows if right[r].any() and left[r].any()]
    centre = float(np.median(gaps)) if gaps else w / 2
    walls = np.flatnonzero((right | left).any(0))
    x = np.arange(w, dtype=np.float32)
    # 0 at each lateral chest wall, 1 at the mediastinum, smoothstep on each side: no kink at either end
    rising, falling = (x - walls[0]) / max(centre - walls[0], 1), (walls[-1] - x) / max(walls[-1] - centre, 1)
    t = np.clip(np.where(x < centre, rising, falling), 0, 1)
    tent = t * t * (3 - 2 * t)
    band = np.zeros(h, np.float32)
    band[rows[0] : rows[-1] + 1] = 1
    band = cv2.GaussianBlur(band[:, None], (1, 0), sigmaX=0, sigmaY=0.05 * h)[:, 0]
    # the patient's right is the image's left: a right-sided lesion pushes the mediastinum to larger columns
    dx = (shift * w if side == "right" else -shift * w) * band[:, None] * tent[None, :]
    grid_x = (x[None, :] - dx).astype(np.float32)
    grid_y = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    warped = cv2.remap(image.astype(np.float32), grid_x, grid_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    moved = {
        k: cv2.remap(v.astype(np.uint8), grid_x, grid_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT) for k, v in masks.items()
    }
    return warped, moved


def trivial_cues(image: np.ndarray, region: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """What could give an insertion away without being pneumothorax: the grain inside ``region`` relative to the
    rest of ``lung`` (:func:`noise_level`), and the sharpness of the finest scale relative to the next (a blurred
    patch has less energy at 1 px than at 2 px). Returns the two log-ratios (0: like the rest of the lung)."""
    inside = region.astype(np.uint8)
    outside = (lung.astype(np.uint8) & (1 - inside)).astype(np.uint8)

    def sharpness(where: np.ndarray) -> float:
        one = image - cv2.GaussianBlur(image, (0, 0), 1.0)
        two = cv2.GaussianBlur(image, (0, 0), 1.0) - cv2.GaussianBlur(image, (0, 0), 2.0)
        return float(np.std(one[where > 0]) / max(np.std(two[where > 0]), 1e-6))

    grain = np.log(max(noise_level(image, inside), 1e-6) / max(noise_level(image, outside), 1e-6))
    return np.array([grain, np.log(sharpness(inside) / max(sharpness(outside), 1e-6))])


def insertion_cues(
    image: np.ndarray, lungs: dict[str, np.ndarray], shape: np.ndarray, rng: np.random.Generator, min_px: int = 50
) -> tuple[np.ndarray, np.ndarray] | None:
    """Insert ``shape`` into ``image`` and return the :func:`trivial_cues` of the inserted region on the inserted
    film and, at the same place, on the untouched one (each a 2-vector); None when the lesion has fewer than
    ``min_px`` pixels. A classifier that tells the two apart finds an insertion by cues a real pneumothorax lacks."""
    out = insert_lesion(image, lungs, shape, rng)
    if out.mask.sum() < min_px:
        return None
    lung = lungs["right"] | lungs["left"]
    return trivial_cues(out.image, out.mask, lung), trivial_cues(image, out.mask, lung)
