"""Training throughput (images/s) of U-Nets on this machine: sizes × encoders × fp32/bf16 × channels-last on/off.

Each setting runs the same training step as ``ptxseg train`` (forward under
autocast when bf16, BCE + Dice, backward, Adam step) on random tensors,
after warm-up steps, in one process, one after another, so the ratios are
measured side by side. Prints a table and the ratios against the first
setting at each size (first encoder, fp32, NCHW). Choosing the lung-field model's encoder and size:

    .venv/bin/python benchmarks/train_throughput.py --sizes 256 320 --encoders resnet18 resnet34 efficientnet-b0 \
        --precisions fp32 --layouts nchw --batch 8

    .venv/bin/python benchmarks/train_throughput.py [--sizes 256 512] [--batch 4] [--steps 5] [--encoders resnet34]
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch

from ptxseg.losses import SegmentationLoss
from ptxseg.models import create_model


def measure(size: int, batch: int, steps: int, warmup: int, amp: str, channels_last: bool, encoder: str) -> float:
    torch.manual_seed(0)
    model = create_model("unet", encoder=encoder).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    loss_fn = SegmentationLoss({"name": "sum", "terms": [[1, "bce"], [1, "dice"]]})
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=fmt)
    y = (torch.rand(batch, 1, size, size) > 0.9).float()
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp == "bf16" else nullcontext()
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        with ctx:
            out = model(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--encoders", nargs="+", default=["resnet34"])
    ap.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    ap.add_argument("--layouts", nargs="+", choices=["nchw", "channels-last"], default=["nchw", "channels-last"])
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, U-Net, batch {args.batch}, {args.steps} timed steps")
    print(f"{'size':>5} {'encoder':>16} {'precision':>9} {'layout':>13} {'images/s':>9} {'vs first':>9}")
    for size in args.sizes:
        base = None
        for encoder in args.encoders:
            for amp in args.precisions:
                for layout in args.layouts:
                    ips = measure(size, args.batch, args.steps, args.warmup, amp, layout == "channels-last", encoder)
                    base = base or ips
                    print(f"{size:>5} {encoder:>16} {amp:>9} {layout:>13} {ips:>9.2f} {ips / base:>8.2f}×", flush=True)


if __name__ == "__main__":
    main()
