#!/usr/bin/env python3
"""Write the bundled demo model (web/demo-model/) and its diffusers reference
(tests/fixtures/demo/reference.safetensors).

    python3 weights-tools/scripts/make_demo_model.py

The demo is the tiny random-weight base + refiner of tests/parity/make_fixtures.py with CLIP's
vocabulary cut to its first DEMO_MERGES merges: the full vocabulary would make each text encoder's
token embedding (never quantized) 3.2 MB and each tokenizer folder 1.4 MB. The UNets and the VAE
are the fixtures' own weights (same seeds), so the per-component parity fixtures apply to them.
The diffusers folders go to a temporary directory, then `sdxl-weights convert` writes them q8:
the base whole, the refiner with `--components unet` (it runs beside the base, whose second text
encoder and VAE it shares). The reference is one base + refiner run in diffusers on the fp16
weights (upcast to f32): what `crate/tests/sharded.rs` compares the converted demo against.
Needs the reference stack (torch, diffusers, ...) and cargo.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "parity"))
import make_fixtures as fixtures  # noqa: E402  (sets torch to one deterministic CPU thread)
import torch  # noqa: E402
from diffusers import EulerDiscreteScheduler  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

DEMO_MERGES = 2000
DEMO = ROOT / "web" / "demo-model"
REFERENCE = ROOT / "tests" / "fixtures" / "demo" / "reference.safetensors"
# One run, as `crate/tests/sharded.rs` repeats it with the converted demo.
PROMPT = "a lighthouse on a cliff at dusk"
SIZE, STEPS, GUIDANCE, REFINER_START = 64, 10, 5.0, 0.8


def convert(src, dst, *extra):
    if dst.exists():
        shutil.rmtree(dst)
    cargo = ["cargo", "run", "--quiet", "-p", "weights-tools", "--bin", "sdxl-weights", "--"]
    subprocess.run(cargo + ["convert", "--quant", "q8", "--from", str(src), "--out", str(dst), *extra], check=True, cwd=ROOT)


@torch.no_grad()
def reference(base, refiner):
    ids = {
        "input_ids": base.tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids,
        "input_ids_2": base.tokenizer_2(PROMPT, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids,
    }
    noise = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(1234))
    base.scheduler = EulerDiscreteScheduler.from_config(base.scheduler.config)
    refiner.scheduler = EulerDiscreteScheduler.from_config(refiner.scheduler.config)
    common = dict(negative_prompt="", num_inference_steps=STEPS, guidance_scale=GUIDANCE)
    handover = base(
        PROMPT, height=SIZE, width=SIZE, denoising_end=REFINER_START, latents=noise.clone(), output_type="latent", **common
    ).images
    steps = fixtures.StepRecorder()
    image = refiner(
        PROMPT, image=handover.clone(), denoising_start=REFINER_START, output_type="np", callback_on_step_end=steps, **common
    ).images
    latents = list(steps.tensors.values())[-1]
    tensors = {"noise": noise, "latents_handover": handover, "latents": latents, "image": torch.from_numpy(image[0])}
    tensors = {k: v.float().contiguous() for k, v in tensors.items()}
    tensors.update({k: v.to(torch.int64).contiguous() for k, v in ids.items()})
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, REFERENCE)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        base_dir, refiner_dir = Path(tmp) / "base", Path(tmp) / "refiner"
        built = fixtures.make_models(base_dir, refiner_dir, num_merges=DEMO_MERGES)
        base, refiner = fixtures.load_pipes(built, base_dir, refiner_dir)
        reference(base, refiner)
        convert(base_dir, DEMO / "base")
        convert(refiner_dir, DEMO / "refiner", "--components", "unet")
    print("wrote", DEMO, "and", REFERENCE)


if __name__ == "__main__":
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    main()
