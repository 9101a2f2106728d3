"""Training images/s of the real-SIIM U-Net (EfficientNet-Lite0 encoder, classifier head, 256², batch 16) with smp's
default decoder (256-128-64-32-16) and the recipe's slim one (128-64-32-16-8), side by side in one run.

    python benchmarks/decoder_throughput.py [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from ptxseg.models import create_model

DECODERS = {"default 256-128-64-32-16": None, "slim 128-64-32-16-8 (siim_real_lite0_256)": [128, 64, 32, 16, 8]}


def images_per_second(decoder: list[int] | None, steps: int, batch: int = 16, size: int = 256) -> float:
    kwargs = {} if decoder is None else {"decoder_channels": decoder}
    model = create_model("unet", encoder="tu-tf_efficientnet_lite0", aux_classifier=True, **kwargs).train()
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(batch, 1, size, size).to(memory_format=torch.channels_last)
    times = []
    for _ in range(steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        out = model(x)
        (out.logits.mean() + out.cls.mean()).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return batch * steps / sum(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rates = {name: images_per_second(dec, args.steps) for name, dec in DECODERS.items()}
    for name, rate in rates.items():
        print(f"{name:45s} {rate:6.2f} images/s")
    a, b = rates.values()
    print(f"slim / default: {b / a:.2f}×")


if __name__ == "__main__":
    main()
