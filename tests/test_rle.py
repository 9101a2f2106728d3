"""RLE encode/decode in both SIIM formats, CSV reading, and the real SIIM annotation file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ptxseg.errors import PtxsegError
from ptxseg.io.rle import (
    detect_rle_format,
    mask_to_runs,
    read_rle_csv,
    rle_decode,
    rle_encode,
    write_rle_csv,
)

masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(lambda shape: arrays(np.uint8, shape, elements=st.integers(0, 1)))


@settings(max_examples=300, deadline=None)
@given(mask=masks, fmt=st.sampled_from(["relative", "absolute"]))
def test_round_trip_mask(mask, fmt):
    decoded = rle_decode(rle_encode(mask, fmt), mask.shape, fmt)
    np.testing.assert_array_equal(decoded, mask)


@settings(max_examples=200, deadline=None)
@given(
    runs=st.lists(st.tuples(st.integers(1, 30), st.integers(1, 30)), min_size=1, max_size=12),
    fmt=st.sampled_from(["relative", "absolute"]),
)
def test_round_trip_string(runs, fmt):
    """A canonical RLE (positive gaps, positive lengths) re-encodes to itself."""
    shape = (17, 40)
    gaps = [g for g, _ in runs]
    lengths = [n for _, n in runs]
    if sum(gaps) + sum(lengths) > shape[0] * shape[1]:
        return
    starts = np.cumsum(gaps) + np.cumsum(lengths) - lengths
    if fmt == "relative":
        text = " ".join(f"{g} {n}" for g, n in runs)
    else:
        text = " ".join(f"{s + 1} {n}" for s, n in zip(starts, lengths, strict=True))
    assert rle_encode(rle_decode(text, shape, fmt), fmt) == text


def test_column_major_order():
    """Runs go down columns first: pixel 1 is row 1 of column 0, pixel H is row 0 of column 1."""
    mask = rle_decode("1 2", (4, 3), "relative")  # 0-based pixels 1, 2
    expected = np.zeros((4, 3), np.uint8)
    expected[1:3, 0] = 1
    np.testing.assert_array_equal(mask, expected)
    mask = rle_decode("4 2", (4, 3), "absolute")  # 1-based 4,5 → (3,0), (0,1)
    expected = np.zeros((4, 3), np.uint8)
    expected[3, 0] = expected[0, 1] = 1
    np.testing.assert_array_equal(mask, expected)


def test_relative_gaps_count_from_previous_run_end():
    # runs at 0-based 2..3 and 6..6: gaps 2 and (6 - 4) = 2
    mask = rle_decode("2 2 2 1", (10, 1), "relative")
    assert np.flatnonzero(mask[:, 0]).tolist() == [2, 3, 6]
    assert rle_encode(mask, "relative") == "2 2 2 1"
    assert rle_encode(mask, "absolute") == "3 2 7 1"


def test_empty_tokens():
    for text in ("-1", " -1", " -1 ", "", "  "):
        assert not rle_decode(text, (8, 8)).any()
    assert rle_encode(np.zeros((8, 8), np.uint8)) == "-1"
    assert rle_encode(np.zeros((8, 8), np.uint8), "absolute") == "-1"


def test_run_reaching_last_pixel_is_written():
    mask = np.zeros((4, 4), np.uint8)
    mask[2:, 3] = 1  # the last two pixels in column-major order
    assert rle_encode(mask, "absolute") == "15 2"
    assert rle_encode(mask, "relative") == "14 2"
    full = np.ones((3, 3), np.uint8)
    assert rle_encode(full, "relative") == "0 9"


@pytest.mark.parametrize(
    ("text", "fmt", "needle"),
    [
        ("0 17", "relative", "overruns"),
        ("10 5 3 3", "relative", "overruns"),
        ("16 2", "absolute", "overruns"),
        ("1 2 3", "relative", "odd number"),
        ("1 2.5", "relative", "non-integer"),
        ("1 x", "absolute", "non-integer"),
        ("3 -2", "relative", "negative run length"),
        ("-3 2", "relative", "negative gap"),
        ("0 2", "absolute", "below 1"),
    ],
)
def test_malformed_rle_names_image(text, fmt, needle):
    with pytest.raises(PtxsegError, match=needle) as info:
        rle_decode(text, (4, 4), fmt, image_id="1.2.3.4")
    assert info.value.where == "1.2.3.4"


def test_detect_format():
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(5):
        m = np.zeros((64, 64), np.uint8)
        r, c = rng.integers(5, 40, 2)
        m[r : r + 12, c : c + 9] = 1
        rows.append(m)
    rel = [rle_encode(m, "relative") for m in rows]
    ab = [rle_encode(m, "absolute") for m in rows]
    assert detect_rle_format(rel + ["-1"], (64, 64)) == "relative"
    assert detect_rle_format(ab + ["-1"], (64, 64)) == "absolute"
    with pytest.raises(PtxsegError, match="cannot tell"):
        detect_rle_format(["5 3"], (64, 64))


def test_csv_union_header_spaces_gzip(tmp_path):
    a = np.zeros((32, 32), np.uint8)
    a[4:10, 4:10] = 1
    b = np.zeros((32, 32), np.uint8)
    b[8:14, 8:20] = 1  # overlaps a
    lines = ["ImageId, EncodedPixels", f"img1, {rle_encode(a)}", f"img1, {rle_encode(b)}", "img2, -1"]
    path = tmp_path / "rle.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    masks = read_rle_csv(path, shape=(32, 32))
    assert masks.fmt == "relative"
    assert sorted(masks) == ["img1", "img2"]
    np.testing.assert_array_equal(masks["img1"], a | b)
    assert masks["img1"].sum() < a.sum() + b.sum()  # the union, not the sum
    assert not masks["img2"].any()
    assert masks.positive_ids == ["img1"]
    forced = read_rle_csv(path, shape=(32, 32), fmt="absolute")
    assert forced.fmt == "absolute"


def test_write_then_read_csv(tmp_path):
    rng = np.random.default_rng(1)
    items = {f"id{i}": (rng.random((20, 30)) > 0.7).astype(np.uint8) for i in range(4)}
    items["empty"] = np.zeros((20, 30), np.uint8)
    for fmt in ("relative", "absolute"):
        path = tmp_path / f"{fmt}.csv"
        write_rle_csv(path, items, fmt=fmt)
        back = read_rle_csv(path, shape=(20, 30), fmt="auto")
        assert back.fmt == fmt
        for k, m in items.items():
            np.testing.assert_array_equal(back[k], m)


def test_csv_errors_name_file_and_image(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("ImageId,EncodedPixels\nabc,0 2000000\n")
    with pytest.raises(PtxsegError, match="abc: RLE overruns") as info:
        read_rle_csv(bad, fmt="relative")
    assert str(bad) in str(info.value)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    with pytest.raises(PtxsegError, match="lacks ImageId"):
        read_rle_csv(wrong)
    binary = tmp_path / "image.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 10)
    with pytest.raises(PtxsegError):
        read_rle_csv(binary)


def test_mask_to_runs_matches_encoding():
    mask = np.zeros((5, 5), np.uint8)
    mask[1:4, 2] = 1
    starts, lengths = mask_to_runs(mask)
    assert starts.tolist() == [11] and lengths.tolist() == [3]


# ------------------------------------------------------------------ real SIIM annotations


def test_real_siim_file_counts(siim_masks):
    """The facts ../shared/data/README.md states about train-rle.csv.gz."""
    assert siim_masks.fmt == "relative"
    assert len(siim_masks) == 12_047
    positives = siim_masks.positive_ids
    assert len(positives) == 2_669
    areas = np.array([int(siim_masks[i].sum()) for i in positives])
    assert areas.min() == 55
    assert areas.max() == 161_421
    assert np.median(areas) == pytest.approx(8_630, abs=1)


def test_real_siim_rows_and_overlaps(siim_csv, siim_masks):
    with gzip.open(siim_csv, "rt") as fh:
        rows = fh.read().strip().splitlines()[1:]
    assert len(rows) == 12_954
    assert sum("-1" not in r.split(",", 1)[1] for r in rows) == 3_576
    # some images' rows overlap: summing row areas would overcount
    multi = {}
    for r in rows:
        image_id, rle = (x.strip() for x in r.split(",", 1))
        if rle != "-1":
            multi.setdefault(image_id, []).append(rle)
    overlapping = 0
    for image_id, rles in multi.items():
        if len(rles) > 1:
            row_sum = sum(int(rle_decode(x).sum()) for x in rles)
            overlapping += row_sum > int(siim_masks[image_id].sum())
    assert overlapping > 0


def test_real_siim_round_trip(siim_masks):
    """Every real positive mask re-encodes (both formats) and decodes to itself."""
    for image_id in siim_masks.positive_ids[:300]:
        mask = siim_masks[image_id]
        for fmt in ("relative", "absolute"):
            np.testing.assert_array_equal(rle_decode(rle_encode(mask, fmt), fmt=fmt), mask)
