"""Training and validation data from a canonical dataset folder.

The training set is every ``split=train`` row of ``folds.csv`` outside the held
out fold, the validation set is that fold (:func:`ptxseg.data.split.fold_split`);
``split=test`` rows are never read.

Each sample is a float32 ``1×S×S`` image (normalised) and a float32
``1×S×S`` mask in {0, 1}, or -1 where the dataset's ``ignore/<id>.png`` marks a pixel unknown (losses and
validation metrics leave those pixels out), and everywhere on an unlabelled film
(``folds.csv`` positive -1). Augmentation is seeded by ``(seed, epoch, index)``,
so a sample's augmentation does not depend on which worker loads it, on the
number of workers or processes, or on whether the run was resumed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ptxseg.config import Config
from ptxseg.data.augment import build_pipeline
from ptxseg.data.manifest import IGNORE_DIR, MASK_DIRS
from ptxseg.data.preprocess import Preprocessing, crop_box, resize_mask_to
from ptxseg.data.samplers import SAMPLERS, EpochSampler, stratum_factors
from ptxseg.data.split import UNKNOWN, FoldSplit, fold_split
from ptxseg.errors import PtxsegError
from ptxseg.io.images import read_image, read_mask
from ptxseg.io.names import under
from ptxseg.train.distributed import Dist, barrier

#: label of an unknown pixel in the uint8 masks that go through augmentation (-1 in the target tensor)
IGNORED = 255


class SegmentationDataset(Dataset):
    """``(image 1×S×S, mask 1×S×S)`` pairs of a canonical dataset through the model's :class:`Preprocessing`.

    Images are stored already (step 1 of the contract); each sample is cropped as the preprocessing says, then —
    for training — augmented with the albumentations ``augment`` pipeline, then resized and normalised by
    :meth:`Preprocessing.finish`, the very function the predictor applies.
    """

    def __init__(
        self,
        root: str | PathLike[str],
        ids: list[str],
        preprocessing: Preprocessing,
        target: str = "pneumothorax",
        augment: Sequence[dict[str, Any]] = (),
        train: bool = False,
        seed: int = 0,
        unlabelled: Sequence[str] = (),
    ) -> None:
        self.root, self.ids, self.pp, self.target, self.train, self.seed = Path(root), list(ids), preprocessing, target, train, seed
        # films of unknown label: every pixel unknown (the mask loss ignores them; the classifier head sees an
        # empty target, i.e. learns positive vs unlabelled)
        self.unlabelled = frozenset(unlabelled)
        self.pipeline = build_pipeline(augment, size=None, train=True) if train and augment else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (float32 [0, 1]) and mask (uint8: 0, 1, or ``IGNORED`` for unknown pixels) of item ``i`` at the
        stored size, cropped."""
        sid = self.ids[i]
        image, _ = self.pp.crop_stored(read_image(under(self.root / "images", f"{sid}.png")))
        mask_path = under(self.root / MASK_DIRS[self.target], f"{sid}.png")
        if self.target == "lungs" and not mask_path.is_file():
            raise PtxsegError(mask_path, "missing: a lung-field model needs every image's lungs/ mask")
        if sid in self.unlabelled:
            return image, np.full(image.shape, IGNORED, np.uint8)
        if mask_path.is_file():
            mask = read_mask(mask_path)
            r0, r1, c0, c1 = crop_box(mask.shape, self.pp.crop)
            mask = mask[r0:r1, c0:c1]
        else:
            mask = np.zeros(image.shape, np.uint8)
        ignore_path = under(self.root / IGNORE_DIR, f"{sid}.png")
        if ignore_path.is_file():
            ignore = read_mask(ignore_path)
            r0, r1, c0, c1 = crop_box(ignore.shape, self.pp.crop)
            ignore = ignore[r0:r1, c0:c1]
            if ignore.shape != mask.shape:
                ignore = cv2.resize(ignore, mask.shape[::-1], interpolation=cv2.INTER_NEAREST_EXACT)
            # one uint8 label map, so augmentation moves "unknown" with the mask (nearest neighbour, fill 0)
            mask = np.where(ignore > 0, IGNORED, mask).astype(np.uint8)
        if mask.shape != image.shape:
            mask = cv2.resize(mask, image.shape[::-1], interpolation=cv2.INTER_NEAREST_EXACT)
        return image, mask

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(i)
        if self.pipeline is not None:
            # a pure function of (seed, epoch, index): independent of workers, ranks and resumption
            self.pipeline.set_random_seed(int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0]))
            out = self.pipeline(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        x = self.pp.finish(image)
        y = resize_mask_to(np.ascontiguousarray(mask, dtype=np.uint8), self.pp.size)
        target = np.where(y == IGNORED, -1.0, y > 0).astype(np.float32)
        if self.ids[i] in self.unlabelled:  # after augmentation: its border fill must not become known background
            target.fill(-1.0)
        return torch.from_numpy(np.ascontiguousarray(x))[None], torch.from_numpy(target)[None]


def unlabelled_ids(ids: Sequence[str], labels: np.ndarray, target: str) -> list[str]:
    """The training films whose pneumothorax label is unknown (folds.csv positive −1), for a pneumothorax model.

    A lung-field model gets none: its dataset has no pneumothorax labels at all, which says nothing about its
    lung masks.
    """
    if target != "pneumothorax":
        return []
    return [i for i, y in zip(ids, labels, strict=True) if y == UNKNOWN]


def build_sampler(
    cfg: Config,
    labels: np.ndarray,
    share: float | list[float],
    seed: int,
    num_replicas: int,
    rank: int,
    strata: Sequence[str] | None = None,
) -> EpochSampler:
    """The training sampler the config names (each of them rank-aware and resumable).

    ``strata`` (one name per training image, from folds.csv) feeds ``sampler.stratum_weights``; naming a stratum
    the training images do not have is a config error, not a silent no-op.
    """
    weights = cfg.sampler.stratum_weights
    factors = stratum_factors(strata, weights) if weights else np.ones(len(labels))
    known_positive = (np.asarray(labels) == 1).astype(int)  # an unlabelled film (-1) is drawn with the negatives
    return SAMPLERS[cfg.sampler.kind](known_positive, share, factors, seed, num_replicas, rank)


def _seed_worker(worker_id: int) -> None:
    # numpy and random in workers follow torch's per-worker seed (set from the loader's generator)

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(
    dataset: Dataset, batch_size: int, sampler=None, workers: int = 0, seed: int = 0, drop_last: bool = False
) -> DataLoader:
    """A DataLoader with deterministic worker seeding and pinned memory when CUDA is present."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        worker_init_fn=_seed_worker if workers else None,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,  # workers are re-created each epoch and so see the dataset's current epoch
    )


def training_split(cfg: Config, dataset: Path, fold: int, dist: Dist) -> FoldSplit:
    """Fold ``fold``'s training/validation split (rank 0 creates ``folds.csv`` when missing; the other ranks read it
    after), checked against what ``cfg`` trains.

    Raises:
        PtxsegError: validation films without a pneumothorax annotation, unlabelled training films without a
            classifier head to train, or a positive-share sampler without positives.
    """
    d = cfg.data
    if dist.main:
        split = fold_split(dataset, fold, d.folds, d.split_seed)
    barrier(dist)
    if not dist.main:
        split = fold_split(dataset, fold, d.folds, d.split_seed, create=False)
    unknown = int((split.val_labels < 0).sum())
    if d.target == "pneumothorax" and unknown:
        raise PtxsegError(dataset, f"{unknown} images of fold {fold} have no pneumothorax annotation (a lungs-only dataset?)")
    unlabelled = int((split.train_labels < 0).sum())  # folds.csv fold -1 (ptxseg split --unlabelled)
    if d.target == "pneumothorax" and unlabelled and not cfg.model.aux_classifier:
        raise PtxsegError(
            dataset, f"{unlabelled} unlabelled training films train only the classifier head: set model.aux_classifier: true"
        )
    if cfg.sampler.kind == "positive_share" and (split.train_labels == 1).sum() == 0:
        raise PtxsegError("sampler.kind", "positive_share needs positive training images; this fold has none")
    return split
