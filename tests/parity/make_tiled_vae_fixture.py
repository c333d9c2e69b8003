#!/usr/bin/env python3
"""Records diffusers' tiled VAE decode and encode (`AutoencoderKL.enable_tiling()`) on the tiny VAE:
tests/fixtures/parity/tiled_vae.safetensors, read by crate/tests/tiled_vae.rs.

    pip install torch diffusers safetensors
    python3 tests/parity/make_tiled_vae_fixture.py

Run after make_fixtures.py (it reads tests/fixtures/tiny-sdxl-base/vae). Deterministic: fixed seeds,
one CPU thread, float32 (the fp16 weights upcast, as the Rust loader does); re-running rewrites the
file byte-identically on the same library versions.

Each case sets the VAE's tiling attributes (`tile_sample_min_size`, `tile_latent_min_size`,
`tile_overlap_factor`) and calls `vae.decode(latents)` / `vae.encode(image)` with tiling enabled,
so diffusers' own condition decides to tile. Sizes are chosen so every case has several tiles,
uneven edge tiles (down to a single latent row or column) and real overlaps:

  decode_default  tiling from the config (64, 8, 0.25), latents [1,4,13,19]: 3×4 tiles → [1,3,104,152]
  decode_small    (32, 4, 0.25), latents [2,4,7,11]: 3×4 tiles → [2,3,56,88]
  encode_default  tiling from the config (64, 8, 0.25), image [1,3,104,136]: 3×3 tiles → [1,4,13,17]
  encode_half     (32, 4, 0.5), image [1,3,40,56]: 3×4 tiles → [1,4,5,7]

Tensors: `<case>.in` (latents or image), `<case>.out` (decoded sample; for encodes the posterior
mean), `<case>.std` (encodes: the posterior std) and `<case>.tiling` = [tile_sample_min_size, tile_latent_min_size, tile_overlap_factor].
"""

import os
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import diffusers  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OUT = FIXTURES / "parity" / "tiled_vae.safetensors"

vae = AutoencoderKL.from_pretrained(FIXTURES / "tiny-sdxl-base" / "vae", variant="fp16", torch_dtype=torch.float32).eval()
DEFAULT = (vae.tile_sample_min_size, vae.tile_latent_min_size, vae.tile_overlap_factor)
assert DEFAULT == (64, 8, 0.25), DEFAULT

g = torch.Generator().manual_seed(2024)
tensors = {}


def set_tiling(tiling):
    vae.tile_sample_min_size, vae.tile_latent_min_size, vae.tile_overlap_factor = tiling


@torch.no_grad()
def decode_case(name, tiling, shape, tiles):
    latents = torch.randn(*shape, generator=g)
    set_tiling(tiling)
    vae.disable_tiling()
    untiled = vae.decode(latents).sample
    vae.enable_tiling()
    calls = []
    original = vae.decoder.forward
    vae.decoder.forward = lambda z, *a, **k: calls.append(z.shape) or original(z, *a, **k)
    tiled = vae.decode(latents).sample
    del vae.decoder.forward
    assert len(calls) == tiles, (name, calls)
    assert tiled.shape == untiled.shape, (tiled.shape, untiled.shape)
    tensors.update(
        {
            f"{name}.in": latents,
            f"{name}.out": tiled,
            f"{name}.tiling": torch.tensor(tiling, dtype=torch.float32),
        }
    )
    print(name, tuple(latents.shape), "->", tuple(tiled.shape), f"{tiles} tiles", "tiled vs untiled rel. L2",
          f"{((tiled - untiled).norm() / untiled.norm()).item():.3e}")


@torch.no_grad()
def encode_case(name, tiling, shape, tiles):
    image = torch.rand(*shape, generator=g) * 2 - 1
    set_tiling(tiling)
    vae.disable_tiling()
    untiled = vae.encode(image).latent_dist.mean
    vae.enable_tiling()
    calls = []
    original = vae.encoder.forward
    vae.encoder.forward = lambda x, *a, **k: calls.append(x.shape) or original(x, *a, **k)
    posterior = vae.encode(image).latent_dist
    del vae.encoder.forward
    assert len(calls) == tiles, (name, calls)
    assert posterior.mean.shape == untiled.shape, (posterior.mean.shape, untiled.shape)
    tensors.update(
        {
            f"{name}.in": image,
            f"{name}.out": posterior.mean,
            f"{name}.std": posterior.std,
            f"{name}.tiling": torch.tensor(tiling, dtype=torch.float32),
        }
    )
    print(name, tuple(image.shape), "->", tuple(posterior.mean.shape), f"{tiles} tiles", "tiled vs untiled rel. L2",
          f"{((posterior.mean - untiled).norm() / untiled.norm()).item():.3e}")


decode_case("decode_default", DEFAULT, (1, 4, 13, 19), 3 * 4)
decode_case("decode_small", (32, 4, 0.25), (2, 4, 7, 11), 3 * 4)
encode_case("encode_default", DEFAULT, (1, 3, 104, 136), 3 * 3)
encode_case("encode_half", (32, 4, 0.5), (1, 3, 40, 56), 3 * 4)

# No metadata: safetensors writes its map in random order, and the file should be byte-identical on
# a re-run. The versions used are those of tests/fixtures/versions.json (diffusers 0.42.1).
save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, OUT)
OUT.chmod(0o644)
print("wrote", OUT, OUT.stat().st_size, "bytes; diffusers", diffusers.__version__, "torch", torch.__version__)
