"""Writes a full-size SDXL base model with random weights as a diffusers folder (fp16 variant):
UNet, both text encoders and VAE, for measuring sdxl-weights' memory on a real-sized input; with
`--refiner`, the refiner instead: its UNet alone (it runs beside the base, whose second text
encoder and VAE it shares; convert it with `--components unet`).

The base gets the tiny fixture's tokenizers and scheduler (tests/fixtures/tiny-sdxl-base: the
published tokenizer files and scheduler config), so the folder converts and runs as it is.
Tensors are generated and written one at a time (architectures are built on the meta device), so
this needs ~7 GB of disk (the refiner ~4.5 GB) and little memory.
Usage: python random_full_size.py OUT_DIR [--refiner]
"""

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import torch

PRESETS = Path(__file__).resolve().parents[2] / "crate/src/models/presets"
TINY_BASE = Path(__file__).resolve().parents[2] / "tests/fixtures/tiny-sdxl-base"
# Copied from the tiny fixture into the base: (folder, library, class).
BASE_FILES = [
    ("scheduler", "diffusers", "EulerDiscreteScheduler"),
    ("tokenizer", "transformers", "CLIPTokenizer"),
    ("tokenizer_2", "transformers", "CLIPTokenizer"),
]


def shapes(component):
    config = json.loads((PRESETS / f"sdxl_{component}.json").read_text())
    with torch.device("meta"):
        if component.startswith("text_encoder"):
            from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

            cls = CLIPTextModelWithProjection if component.endswith("_2") else CLIPTextModel
            model = cls(CLIPTextConfig(**config))
        elif component.endswith("_unet"):
            from diffusers import UNet2DConditionModel

            model = UNet2DConditionModel.from_config(config)
        else:
            from diffusers import AutoencoderKL

            model = AutoencoderKL.from_config(config)
    return config, {name: tuple(t.shape) for name, t in model.state_dict().items() if t.is_floating_point()}


def write(path, tensors, seed):
    """A safetensors file of random f16 tensors, written tensor by tensor."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 2 * int(np.prod(shape))
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)) + encoded)
        for shape in tensors.values():
            out.write((rng.standard_normal(shape, dtype=np.float32) * 0.02).astype("<f2").tobytes())


BASE = [
    ("text_encoder", "text_encoder", "transformers", "CLIPTextModel", "model"),
    ("text_encoder_2", "text_encoder_2", "transformers", "CLIPTextModelWithProjection", "model"),
    ("unet", "base_unet", "diffusers", "UNet2DConditionModel", "diffusion_pytorch_model"),
    ("vae", "vae", "diffusers", "AutoencoderKL", "diffusion_pytorch_model"),
]
REFINER = [("unet", "refiner_unet", "diffusers", "UNet2DConditionModel", "diffusion_pytorch_model")]


def main(out, refiner=False):
    out = Path(out)
    if refiner:
        index = {
            "_class_name": "StableDiffusionXLImg2ImgPipeline",
            "_diffusers_version": "0.42.1",
            "force_zeros_for_empty_prompt": False,
            "requires_aesthetics_score": True,
        }
    else:
        index = {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.1"}
    # The refiner's UNet gets a seed of its own (10), not the base UNet's.
    for seed, (folder, preset, lib, cls, stem) in enumerate(REFINER if refiner else BASE, start=10 if refiner else 0):
        config, tensors = shapes(preset)
        (out / folder).mkdir(parents=True, exist_ok=True)
        (out / folder / "config.json").write_text(json.dumps(config, indent=2))
        write(out / folder / f"{stem}.fp16.safetensors", tensors, seed)
        index[folder] = [lib, cls]
        print(folder, len(tensors), "tensors", flush=True)
    for folder, lib, cls in [] if refiner else BASE_FILES:
        shutil.copytree(TINY_BASE / folder, out / folder, dirs_exist_ok=True)
        index[folder] = [lib, cls]
    (out / "model_index.json").write_text(json.dumps(index, indent=2))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[2:] not in ([], ["--refiner"]):
        sys.exit(__doc__)
    main(sys.argv[1], refiner=sys.argv[2:] == ["--refiner"])
