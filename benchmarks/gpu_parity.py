"""CPU/GPU parity of lossbook's SSIM and MS-SSIM (forward and the hand-written backward).

Runs the same inputs on the CPU and on CUDA in float64 and float32 and prints the largest
differences of the values and of the gradients. Needs a CUDA device.

    python benchmarks/gpu_parity.py
"""

from __future__ import annotations

import torch

from lossbook import losses


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("gpu_parity.py needs a CUDA device.")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        for name, fn, shape in (("ssim", losses.ssim, (4, 3, 96, 96)),
                                ("ms_ssim", losses.ms_ssim, (2, 1, 192, 192))):
            y = torch.rand(shape, generator=gen, dtype=dtype)
            x = (y + 0.1 * torch.randn(shape, generator=gen, dtype=dtype)).clamp(0, 1)
            out = {}
            for dev in ("cpu", "cuda"):
                xd = x.to(dev).requires_grad_(True)
                v = fn(xd, y.to(dev))
                (g,) = torch.autograd.grad(v, xd)
                out[dev] = (float(v), g.cpu())
            dv = abs(out["cpu"][0] - out["cuda"][0])
            dg = float((out["cpu"][1] - out["cuda"][1]).abs().max())
            gmax = float(out["cpu"][1].abs().max())
            print(f"{name:8s} {str(dtype):14s} value {out['cpu'][0]:.10f} |cpu-cuda| {dv:.2e}; "
                  f"gradient max |cpu-cuda| {dg:.2e} (largest entry {gmax:.2e})")
    # bf16 autocast on CUDA: the statistics stay in float32
    y = torch.rand(4, 3, 96, 96, device="cuda")
    x = (y + 0.1 * torch.randn_like(y)).clamp(0, 1)
    ref = float(losses.ssim(x, y))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        under = float(losses.ssim(x, y))
    print(f"ssim under bf16 autocast {under:.6f} vs float32 {ref:.6f} (|diff| "
          f"{abs(under - ref):.1e})")


if __name__ == "__main__":
    main()
