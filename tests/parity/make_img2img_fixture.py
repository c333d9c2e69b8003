"""Records diffusers' StableDiffusionXLImg2ImgPipeline refining a finished image with `strength`
on the tiny refiner: tests/fixtures/pipeline/refiner_img2img_euler.safetensors.

Run after make_fixtures.py (it reads the tiny refiner and base_euler's image). The two Gaussian
draws the pipeline makes (the VAE posterior sample, then the noise added at the first timestep)
are recorded in order as `draw_0`, `draw_1`, so the Rust side can replay them.
"""

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import diffusers.models.autoencoders.vae as vae_module
import diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img as img2img_module
from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
draws = []
original = vae_module.randn_tensor


def recorded(shape, generator=None, device=None, dtype=None, layout=None):
    value = original(shape, generator=generator, device=device, dtype=dtype, layout=layout)
    draws.append(value.clone())
    return value


vae_module.randn_tensor = recorded
img2img_module.randn_tensor = recorded

pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(
    FIXTURES / "tiny-sdxl-refiner", variant="fp16", torch_dtype=torch.float32
)
pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
pipe.set_progress_bar_config(disable=True)
image = load_file(FIXTURES / "pipeline/base_euler.safetensors")["image"]
with torch.no_grad():
    out = pipe(
        prompt="a photo of an astronaut riding a horse",
        image=image[None].permute(0, 3, 1, 2),
        strength=0.3,
        num_inference_steps=10,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images[0]
assert len(draws) == 2, len(draws)
save_file(
    {
        "image_in": image.contiguous(),
        "image": torch.from_numpy(out).float().contiguous(),
        "draw_0": draws[0].contiguous(),
        "draw_1": draws[1].contiguous(),
    },
    FIXTURES / "pipeline/refiner_img2img_euler.safetensors",
)
print("ok", out.shape, float(out.mean()))
