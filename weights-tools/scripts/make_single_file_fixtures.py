"""Lays the tiny fixture models out as Stability's single-file checkpoints are
(`sd_xl_base_1.0.safetensors`, `sd_xl_refiner_1.0.safetensors`), proves the layout right by
converting it back with diffusers' own single-file converters (`from_single_file`'s), which must
reproduce the diffusers weights exactly, and writes the proven key table to
tests/fixtures/single-file/<model>.keys.json: every single-file key with its shape and the
diffusers (component, key)s it holds. The Rust tests build the single-file checkpoint from the
diffusers fixture with this table (committing the checkpoint itself would double the fixtures).

Usage: python weights-tools/scripts/make_single_file_fixtures.py [--save-checkpoints]
"""

import json
import sys
from pathlib import Path

import torch
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

FIXTURES = Path(__file__).resolve().parents[2] / "tests/fixtures"

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
          ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
UNET_FIXED = [("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"),
              ("add_embedding.linear_1", "label_emb.0.0"), ("add_embedding.linear_2", "label_emb.0.2"),
              ("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"), ("conv_out", "out.2")]


def replace_first(key, table):
    for new, old in table:
        if key.startswith(new + "."):
            return old + key[len(new):]
    raise KeyError(key)


def unet_to_ldm(key, config):
    layers = config["layers_per_block"]
    parts = key.split(".")
    if parts[0] in ("down_blocks", "up_blocks"):
        block, kind = int(parts[1]), parts[2]
        rest = ".".join(parts[4:])
        if parts[0] == "down_blocks":
            if kind == "downsamplers":
                return f"input_blocks.{(block + 1) * (layers + 1)}.0.op.{'.'.join(parts[5:])}"
            index = 1 + block * (layers + 1) + int(parts[3])
            prefix = "input_blocks"
        else:
            if kind == "upsamplers":
                position = 2 if "CrossAttn" in config["up_block_types"][block] else 1
                return f"output_blocks.{block * (layers + 1) + layers}.{position}.conv.{'.'.join(parts[5:])}"
            index = block * (layers + 1) + int(parts[3])
            prefix = "output_blocks"
        if kind == "resnets":
            return f"{prefix}.{index}.0.{replace_first(rest, RESNET)}"
        return f"{prefix}.{index}.1.{rest}"
    if parts[0] == "mid_block":
        rest = ".".join(parts[3:])
        if parts[1] == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{0 if parts[2] == '0' else 2}.{replace_first(rest, RESNET)}"
    return replace_first(key, UNET_FIXED)


def vae_to_ldm(key, value, blocks):
    key = key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
    parts = key.split(".")
    if len(parts) > 2 and parts[1] in ("down_blocks", "up_blocks"):
        coder, index = parts[0], int(parts[2])
        if parts[1] == "up_blocks":
            index = blocks - 1 - index
        direction = "down" if parts[1] == "down_blocks" else "up"
        if parts[3] == "resnets":
            return f"{coder}.{direction}.{index}.block.{'.'.join(parts[4:])}", value
        sampler = "downsample" if direction == "down" else "upsample"
        return f"{coder}.{direction}.{index}.{sampler}.{'.'.join(parts[5:])}", value
    if len(parts) > 2 and parts[1] == "mid_block":
        if parts[2] == "resnets":
            return f"{parts[0]}.mid.block_{int(parts[3]) + 1}.{'.'.join(parts[4:])}", value
        layer = ".".join(parts[4:-1])
        layer = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}[layer]
        if layer != "norm" and parts[-1] == "weight":
            value = value[:, :, None, None]
        return f"{parts[0]}.mid.attn_1.{layer}.{parts[-1]}", value
    return key, value


OPEN_CLIP_FIXED = {"text_model.embeddings.token_embedding.weight": "token_embedding.weight",
                   "text_model.embeddings.position_embedding.weight": "positional_embedding",
                   "text_model.final_layer_norm.weight": "ln_final.weight",
                   "text_model.final_layer_norm.bias": "ln_final.bias"}
OPEN_CLIP_LAYER = [("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("self_attn.out_proj", "attn.out_proj"),
                   ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]


def open_clip_to_ldm(weights, prefix):
    out = {}
    for key, value in weights.items():
        if key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous(), [key]
        elif key in OPEN_CLIP_FIXED:
            out[prefix + OPEN_CLIP_FIXED[key]] = value, [key]
        else:
            parts = key.split(".")
            layer, rest = parts[3], ".".join(parts[4:])
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                leaf = rest.split(".")[2]
                if rest.startswith("self_attn.q_proj"):
                    keys = [f"text_model.encoder.layers.{layer}.self_attn.{p}.{leaf}" for p in ("q_proj", "k_proj", "v_proj")]
                    out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{leaf}"] = torch.cat([weights[k] for k in keys]), keys
                continue
            out[f"{prefix}transformer.resblocks.{layer}.{replace_first(rest, OPEN_CLIP_LAYER)}"] = value, [key]
    return out


def weights(model, component):
    folder = FIXTURES / model / component
    return load_file(next(folder.glob("*.safetensors"))), json.loads((folder / "config.json").read_text())


def same(ours, theirs, what):
    assert set(ours) == set(theirs), f"{what}: keys differ: {sorted(set(ours) ^ set(theirs))[:5]}"
    for key in ours:
        assert ours[key].shape == theirs[key].shape and torch.equal(ours[key], theirs[key]), f"{what}: {key} differs"


def main():
    for model, embedders in [("tiny-sdxl-base", ["text_encoder", "text_encoder_2"]), ("tiny-sdxl-refiner", ["text_encoder_2"])]:
        checkpoint, origin = {}, {}
        unet, unet_config = weights(model, "unet")
        for k, v in unet.items():
            key = "model.diffusion_model." + unet_to_ldm(k, unet_config)
            checkpoint[key], origin[key] = v, [["unet", k]]
        vae, vae_config = weights(model, "vae")
        blocks = len(vae_config["block_out_channels"])
        for k, v in vae.items():
            key, value = vae_to_ldm(k, v, blocks)
            checkpoint["first_stage_model." + key], origin["first_stage_model." + key] = value, [["vae", k]]
        encoders = {}
        for index, component in enumerate(embedders):
            encoders[component] = weights(model, component)
            encoder, _ = encoders[component]
            if component == "text_encoder":
                # transformers 5 saves CLIPTextModel without the `text_model.` prefix that
                # Stability's checkpoint and our module paths have; the table uses the prefixed key.
                encoder = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in encoder.items()}
                encoders[component] = encoder, encoders[component][1]
                for k, v in encoder.items():
                    key = f"conditioner.embedders.{index}.transformer.{k}"
                    checkpoint[key], origin[key] = v, [["text_encoder", k]]
            else:
                for key, (value, keys) in open_clip_to_ldm(encoder, f"conditioner.embedders.{index}.model.").items():
                    checkpoint[key], origin[key] = value, [["text_encoder_2", k] for k in keys]

        # diffusers' own single-file converters must give the diffusers weights back exactly.
        same(convert_ldm_unet_checkpoint(checkpoint, unet_config), unet, f"{model} unet")
        same(convert_ldm_vae_checkpoint(checkpoint, vae_config), vae, f"{model} vae")
        if "text_encoder" in encoders:
            clip = {k: v for k, v in convert_ldm_clip_checkpoint(checkpoint).items()
                    if not k.startswith("conditioner.")}
            same(clip, encoders["text_encoder"][0], f"{model} text_encoder")
        prefix = f"conditioner.embedders.{len(embedders) - 1}.model."
        config = CLIPTextConfig(**encoders["text_encoder_2"][1])
        with torch.device("meta"):
            text_model = CLIPTextModelWithProjection(config)
        same(convert_open_clip_checkpoint(text_model, checkpoint, prefix=prefix), encoders["text_encoder_2"][0],
             f"{model} text_encoder_2")

        table = {key: {"shape": list(checkpoint[key].shape), "diffusers": origin[key]} for key in sorted(checkpoint)}
        out = FIXTURES / "single-file" / f"{model}.keys.json"
        lines = (f"{json.dumps(key)}: {json.dumps(entry)}" for key, entry in table.items())
        out.write_text("{\n" + ",\n".join(lines) + "\n}\n")
        print(out, len(table), "single-file keys, verified with diffusers' converters")
        if "--save-checkpoints" in sys.argv:
            save_file({k: v.contiguous() for k, v in checkpoint.items()}, out.with_suffix("").with_suffix(".safetensors"))


if __name__ == "__main__":
    main()
