"""The peers of the device check, timed with CUDA events on the shapes of `DeviceCheck bench`:
scaled_dot_product_attention (EFFICIENT fp32, FLASH/CUDNN bf16, MATH), flex_attention with a 50% block mask,
and the bmm chain of a Monarch product. Writes peer.json into the output folder."""
import json, sys, os, torch
from torch.nn.attention import sdpa_kernel, SDPBackend
import torch.nn.functional as F

out = sys.argv[1] if len(sys.argv) > 1 else "."
dev = "cuda"
res = []

def timed(fn, reps=5):
    fn(); torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps): fn()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / reps

B, H, L = 4, 16, 4096
for d in (64, 128):
    for causal in (False, True):
        for backend, dtype in ((SDPBackend.EFFICIENT_ATTENTION, torch.float32), (SDPBackend.MATH, torch.float32),
                               (SDPBackend.FLASH_ATTENTION, torch.bfloat16), (SDPBackend.CUDNN_ATTENTION, torch.bfloat16)):
            q, k, v = (torch.randn(B, H, L, d, device=dev, dtype=dtype) for _ in range(3))
            try:
                with sdpa_kernel(backend):
                    ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
            except Exception as ex:  # a backend that refuses the dtype or shape
                print(f"sdpa {backend.name} d{d}: {ex.__class__.__name__}"); continue
            fl = 4 * B * H * L * L * d * (0.5 if causal else 1.0)
            res.append({"kernel": f"sdpa_{backend.name.lower()}_{str(dtype)[6:]}", "shape": f"d{d} {'causal' if causal else 'dense'}", "ms": ms, "tflops": fl / ms / 1e9})
            print(res[-1])
try:
    from torch.nn.attention.flex_attention import flex_attention, create_block_mask
    def keep(b, h, qi, ki): return ((qi // 128) * 7 + (ki // 128) * 3) % 2 == 0
    bm = create_block_mask(keep, None, None, L, L, device=dev)
    fa = torch.compile(flex_attention)
    q, k, v = (torch.randn(B, H, L, 64, device=dev) for _ in range(3))
    ms = timed(lambda: fa(q, k, v, block_mask=bm))
    res.append({"kernel": "flex_attention_fp32", "shape": "d64 block50", "ms": ms, "tflops": 4 * B * H * L * L * 64 * 0.5 / ms / 1e9}); print(res[-1])
except Exception as ex:
    print("flex_attention:", ex)
x = torch.randn(16384, 4096, device=dev)
w1 = torch.randn(64, 64, 64, device=dev); w2 = torch.randn(64, 64, 64, device=dev)
def monarch():
    h = torch.bmm(x.reshape(-1, 64, 64).transpose(0, 1), w1.transpose(-1, -2))
    h = h.transpose(0, 1).reshape(-1, 64, 64).transpose(-1, -2).contiguous().transpose(0, 1)
    return torch.bmm(h, w2.transpose(-1, -2))
ms = timed(monarch)
res.append({"kernel": "monarch_bmm_fp32", "shape": "16384x4096 nb64", "ms": ms, "tflops": 2 * 16384 * 4096 * 64 * 2 / ms / 1e9}); print(res[-1])
json.dump(res, open(os.path.join(out, "peer.json"), "w"), indent=1)
