#!/usr/bin/env python3
"""Faster arithmetic for the backbone, and what it costs in accuracy: memory layout and bfloat16 (issue #25).

    python bench/precision.py [--images 400] [--ways 20] [--repeats 5] [--threads 1] [--json OUT]

One forward and backward pass of the 4-block ConvNet over a batch of
``--images`` 28x28 images (a 20-way ProtoNet episode has 400: 20 x (1 + 19)),
cross-entropy over ``--ways`` outputs, in four variants:

* ``float32``: today's path (contiguous NCHW, float32);
* ``float32 channels-last``: the weights, and so every activation, in NHWC;
* ``bfloat16 autocast``: ``torch.autocast("cpu", torch.bfloat16)`` around the
  forward pass, float32 weights and gradients;
* ``bfloat16 autocast channels-last``: both.

For each it reports the best time of ``--repeats`` rounds (the variants take
turns within a round, so a busy neighbour slows them alike) and the error of
each weight gradient against the same pass in float64: ``|g - g64| / |g64|``
(Frobenius norms), the largest over the layers and the first convolution's.
The float32 path's own error is the yardstick: a faster path whose error is
far above it changes the numbers, and only validation runs can show whether
the accuracy changes too.

The network is at its random initialisation and the images are Gaussian
noise, so the gradients are small sums of large terms: a pessimistic case for
rounding, not a trained model's.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from limits import interleaved_best  # noqa: E402

from l2l_omniglot.models import ConvNet  # noqa: E402

VARIANTS = {
    "float32": (torch.contiguous_format, False),
    "float32 channels-last": (torch.channels_last, False),
    "bfloat16 autocast": (torch.contiguous_format, True),
    "bfloat16 autocast channels-last": (torch.channels_last, True),
}


def weight_gradients(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, bfloat16: bool) -> list:
    model.zero_grad()
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bfloat16 else contextlib.nullcontext()
    with context:
        logits = model(images)
    F.cross_entropy(logits.float() if logits.dtype != torch.float64 else logits, labels).backward()
    return [p.grad.double() for name, p in model.named_parameters() if name.endswith("weight")]


def relative_errors(gradients: list, reference: list) -> list:
    return [((g - r).norm() / r.norm()).item() for g, r in zip(gradients, reference)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--ways", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = ConvNet(args.ways)
    images, labels = torch.randn(args.images, 1, 28, 28), torch.randint(0, args.ways, (args.images,))
    reference = weight_gradients(copy.deepcopy(base).double(), images.double(), labels, bfloat16=False)
    models = {name: copy.deepcopy(base).to(memory_format=layout) for name, (layout, _) in VARIANTS.items()}
    rows = {}
    for name, (_, bfloat16) in VARIANTS.items():
        errors = relative_errors(weight_gradients(models[name], images, labels, bfloat16), reference)
        rows[name] = {"max_error": max(errors), "first_conv_error": errors[0]}
    best, timed = interleaved_best(
        {name: (lambda name=name: weight_gradients(models[name], images, labels, VARIANTS[name][1]))
         for name in VARIANTS}, args.repeats)
    for name, row in rows.items():
        row.update(seconds=best[name], timed_rounds=timed[name])
    baseline = rows["float32"]["seconds"]
    print(f"CPU capability: {torch.backends.cpu.get_cpu_capability()}; {args.threads} thread(s); "
          f"{args.images} images, {args.ways} ways; best of {args.repeats}\n")
    print("| variant | seconds | speed-up | gradient error, largest layer | first convolution |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['seconds']:.3f} | {baseline / row['seconds']:.2f}x | {row['max_error']:.1e} | "
              f"{row['first_conv_error']:.1e} |")
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump({"capability": torch.backends.cpu.get_cpu_capability(), "settings": vars(args),
                       "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
