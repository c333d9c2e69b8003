#!/usr/bin/env python3
"""Generate the reference fixtures under tests/fixtures/ (see tests/parity/README.md).

    python3 tests/parity/make_fixtures.py [--check-slow-tokenizer PYTHON]

Deterministic: fixed seeds, one CPU thread, deterministic torch algorithms; re-running regenerates
every file byte-identically on the same library versions (recorded in tests/fixtures/versions.json).
Everything is built locally (no model hub): the CLIP BPE vocabulary comes from open_clip_torch, the
models are tiny random-weight SDXL-family models built from configs.

Weights are stored in float16 (`variant="fp16"`); every reference is computed in float32 from the
models loaded back from the saved folders (fp16 upcast to f32), exactly what a Rust loader that
upcasts fp16 -> f32 sees.

--check-slow-tokenizer PYTHON: also run PYTHON (an interpreter with transformers<5 and ftfy) to
check that this script's re-implementation of transformers 4's slow CLIPTokenizer (the `ids_*_ftfy`
fields of tokenizer_cases.json) equals the real one. Checks only; writes nothing.
"""

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import diffusers  # noqa: E402
import ftfy  # noqa: E402
import numpy as np  # noqa: E402
import open_clip  # noqa: E402
import regex  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (  # noqa: E402
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
transformers.logging.set_verbosity_error()
diffusers.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
BASE = FIX / "tiny-sdxl-base"
REFINER = FIX / "tiny-sdxl-refiner"
PARITY = FIX / "parity"
PIPE = FIX / "pipeline"

BOS, EOS = 49406, 49407
MAX_LEN = 77

# --------------------------------------------------------------------------------------------
# 1. Tokenizer
# --------------------------------------------------------------------------------------------


@lru_cache()
def bytes_to_unicode():
    """GPT-2 / CLIP byte -> printable unicode table (same as open_clip and transformers)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


@lru_cache()
def load_bpe(num_merges=None):
    """CLIP's vocabulary and merges; with `num_merges`, only the first merges (a smaller but
    complete byte-level BPE: every byte still has a token, the specials follow the merges)."""
    gz = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(gz).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1][:num_merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split(" ")) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    encoder = {v: i for i, v in enumerate(vocab)}
    assert len(encoder) == len(vocab) == 512 + len(merges) + 2, len(encoder)
    if num_merges is None:
        assert len(vocab) == 49408 and encoder["<|startoftext|>"] == BOS and encoder["<|endoftext|>"] == EOS
    return encoder, merges


def special_token(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def write_tokenizer(dst, pad_token, num_merges=None):
    """vocab.json + merges.txt + tokenizer_config.json + special_tokens_map.json, laid out like
    stabilityai/stable-diffusion-xl-base-1.0's tokenizer/ and tokenizer_2/."""
    encoder, merges = load_bpe(num_merges)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "vocab.json").write_text(json.dumps(encoder, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    (dst / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    added = lambda c: {"__type": "AddedToken", **special_token(c)}  # noqa: E731
    config = {
        "add_prefix_space": False,
        "bos_token": added("<|startoftext|>"),
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": added("<|endoftext|>"),
        "errors": "replace",
        "model_max_length": MAX_LEN,
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": added("<|endoftext|>"),
    }
    write_json(dst / "tokenizer_config.json", config)
    stmap = {
        "bos_token": special_token("<|startoftext|>"),
        "eos_token": special_token("<|endoftext|>"),
        "pad_token": pad_token,
        "unk_token": special_token("<|endoftext|>"),
    }
    write_json(dst / "special_tokens_map.json", stmap)


class SlowClipTokenizer:
    """transformers 4.x slow `CLIPTokenizer` as used by diffusers with transformers<5 and ftfy
    installed: the text is first split on the special tokens (<|startoftext|>, <|endoftext|> and
    the pad token, so tokenizer_2's "!" always becomes id 0 on its own); each other piece gets
    whitespace_clean(ftfy.fix_text(piece)).lower(), the CLIP regex and byte-level BPE."""

    PAT = regex.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
        regex.IGNORECASE,
    )

    def __init__(self, pad_token):
        self.encoder, merges = load_bpe()
        self.pad_id = self.encoder[pad_token]
        specials = sorted({"<|startoftext|>", "<|endoftext|>", pad_token}, key=len, reverse=True)
        self.specials = set(specials)
        self.split = regex.compile("(" + "|".join(regex.escape(t) for t in specials) + ")")
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            first, second = best
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        self.cache[token] = " ".join(word)
        return self.cache[token]

    def encode(self, text):
        ids = []
        for piece in self.split.split(text):
            if piece in self.specials:
                ids.append(self.encoder[piece])
                continue
            piece = " ".join(ftfy.fix_text(piece).split()).strip().lower()
            for tok in self.PAT.findall(piece):
                tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
                ids += [self.encoder[t] for t in self.bpe(tok).split(" ")]
        return ids

    def __call__(self, text):
        ids = [BOS] + self.encode(text)[: MAX_LEN - 2] + [EOS]
        return ids + [self.pad_id] * (MAX_LEN - len(ids))


PROMPTS = [
    "a photo of a cat",
    "a photo of an astronaut riding a horse",
    "café au lait, naïve art, résumé, crème brûlée",
    "Ünïcödé ÀÉÎÕÜ ÇÑ straße",
    "東京の夜景、ネオンの光",
    "一只猫坐在桌子上",
    "🐱🔥 cat on fire 🚀✨",
    "1024x1024, 3.14 apples, year 2023, 100%",
    "don't stop, it's fine, I'll go, we're here, they've, I'm, you'd",
    "WOW!!!??? really... --- ***",
    "\"quoted text\" and 'single quotes' and rock'n'roll",
    "a/b c\\d e_f g-h (i) [j] {k} <l> @m #n $o",
    "MiXeD CaSe PhOtO oF a DoG",
    "multiple   spaces\tand\ttabs\nand\nnewlines  ",
    "fish &amp; chips &lt;3 &quot;yum&quot;",
    "cafÃ© mojibake naÃ¯ve",
    "\u201ccurly quotes\u201d and \u2018apostrophes\u2019 don\u2019t",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ １２３",
    "\ufb01ne ligature \ufb02ower",
    "cafe\u0301 with a combining accent",
    "zero\u200bwidth and non\u00a0breaking space",
    "masterpiece, best quality, (detailed:1.2), [sharp], 8k uhd",
    "مرحبا بالعالم नमस्ते",
    "<|startoftext|> literal special tokens <|endoftext|>",
    ", ".join(f"word{i} photo" for i in range(40)),
    "",
    "     ",
]


def tokenizer_cases():
    tok1 = CLIPTokenizer.from_pretrained(BASE / "tokenizer")
    tok2 = CLIPTokenizer.from_pretrained(BASE / "tokenizer_2")
    assert tok1.pad_token_id == EOS and tok2.pad_token_id == 0, (tok1.pad_token_id, tok2.pad_token_id)
    assert tok1.model_max_length == MAX_LEN and tok2.model_max_length == MAX_LEN

    def call(tok, p):
        return tok(p, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids

    cat = call(tok1, "a photo of a cat")
    assert cat == [BOS, 320, 1125, 539, 320, 2368, EOS] + [EOS] * 70, cat
    assert call(tok2, "a photo of a cat") == [BOS, 320, 1125, 539, 320, 2368, EOS] + [0] * 70

    # vocab ids agree with open_clip's own tokenizer (which adds html.unescape; avoid entities here)
    oc = open_clip.tokenizer.SimpleTokenizer()
    slow1, slow2 = SlowClipTokenizer("<|endoftext|>"), SlowClipTokenizer("!")
    for words in ["a photo of a cat", "astronaut riding a horse", "café naïve 東京 🐱🔥 1024x1024 don't ???"]:
        assert oc.encode(words) == tok1(words).input_ids[1:-1] == slow1.encode(words), words

    cases = []
    for p in PROMPTS:
        ids_1, ids_2 = call(tok1, p), call(tok2, p)
        assert len(ids_1) == len(ids_2) == MAX_LEN
        s1, s2 = slow1(p), slow2(p)
        cases.append(
            {
                "prompt": p,
                "ids_1": ids_1,
                "ids_2": ids_2,
                "untruncated_len": len(tok1(p).input_ids),
                "ids_1_ftfy": s1,
                "ids_2_ftfy": s2,
                "ftfy_differs": s1 != ids_1 or s2 != ids_2,
            }
        )
    doc = {
        "ftfy": False,
        "ftfy_importable": True,
        "reference": (
            f"ids_1/ids_2: transformers {transformers.__version__} CLIPTokenizer, which diffusers "
            f"{diffusers.__version__} loads for tokenizer/ and tokenizer_2/. Since transformers 5 it is "
            "the tokenizers-library tokenizer: normalizer NFC, Replace(\\s+ -> ' '), Lowercase; pre-tokenizer "
            "Split(CLIP regex, keep matches) then ByteLevel(add_prefix_space=false, use_regex=true); BPE with "
            "end_of_word_suffix '</w>'; special tokens <|startoftext|>/<|endoftext|> matched as added tokens. "
            "ftfy is NOT applied even though it is importable. Called as diffusers does: "
            "padding='max_length', max_length=77, truncation=True. untruncated_len: ids with BOS/EOS, no "
            "padding/truncation."
        ),
        "reference_ftfy": (
            "ids_1_ftfy/ids_2_ftfy: transformers<5 slow CLIPTokenizer with ftfy installed (what diffusers "
            "users on transformers 4.x get): whitespace_clean(ftfy.fix_text(text)).lower(), same regex, "
            "byte-level BPE, truncation to 75 + BOS/EOS, padding to 77. ftfy_differs marks prompts where "
            f"the two behaviours differ. ftfy {ftfy.__version__}."
        ),
        "pad_id_1": EOS,
        "pad_id_2": 0,
        "cases": cases,
    }
    write_json(FIX / "tokenizer_cases.json", doc)
    return cases


def check_slow_tokenizer(python):
    """Compare SlowClipTokenizer with the real transformers<5 CLIPTokenizer run by `python`."""
    script = r"""
import json, sys
from transformers import CLIPTokenizer
import transformers
cases = json.load(open(sys.argv[1]))["cases"]
t1 = CLIPTokenizer.from_pretrained(sys.argv[2] + "/tokenizer")
t2 = CLIPTokenizer.from_pretrained(sys.argv[2] + "/tokenizer_2")
print("transformers", transformers.__version__, type(t1).__name__, "fix_text", t1.fix_text is not None)
bad = 0
for c in cases:
    for t, k in ((t1, "ids_1_ftfy"), (t2, "ids_2_ftfy")):
        ids = t(c["prompt"], padding="max_length", max_length=77, truncation=True).input_ids
        if ids != c[k]:
            bad += 1
            print("MISMATCH", k, repr(c["prompt"]), ids, c[k])
print("slow-tokenizer check:", len(cases) * 2 - bad, "ok,", bad, "mismatched")
sys.exit(1 if bad else 0)
"""
    subprocess.run([python, "-c", script, str(FIX / "tokenizer_cases.json"), str(BASE)], check=True)


# --------------------------------------------------------------------------------------------
# 2. Tiny models
# --------------------------------------------------------------------------------------------

# Published stabilityai/stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json (the keys
# that only other schedulers read, e.g. set_alpha_to_one / clip_sample for DDIM, matter for
# `XScheduler.from_config(pipe.scheduler.config)`).
SDXL_SCHEDULER_CONFIG = {
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.19.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}


def text_config(act, vocab_size=49408):
    # bos/eos/pad as in the published SDXL text_encoder and text_encoder_2 configs (0 / 2 / 1).
    # eos_token_id == 2 selects transformers' legacy pooling: the EOS position is
    # input_ids.argmax(-1), i.e. the first occurrence of the largest id (<|endoftext|>).
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=32,
        layer_norm_eps=1e-5,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
        attention_dropout=0.0,
        dropout=0.0,
        initializer_range=0.02,
        initializer_factor=1.0,
    )


UNET_COMMON = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    mid_block_type="UNetMidBlock2DCrossAttn",
    only_cross_attention=False,
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=8,
    norm_eps=1e-5,
    encoder_hid_dim=None,
    encoder_hid_dim_type=None,
    dual_cross_attention=False,
    use_linear_projection=True,
    class_embed_type=None,
    addition_embed_type="text_time",
    addition_time_embed_dim=8,
    num_class_embeds=None,
    upcast_attention=False,
    resnet_time_scale_shift="default",
    resnet_skip_time_act=False,
    resnet_out_scale_factor=1.0,
    time_embedding_type="positional",
    time_embedding_dim=None,
    time_embedding_act_fn=None,
    timestep_post_act=None,
    time_cond_proj_dim=None,
    conv_in_kernel=3,
    conv_out_kernel=3,
    attention_type="default",
    class_embeddings_concat=False,
    mid_block_only_cross_attention=None,
    cross_attention_norm=None,
    addition_embed_type_num_heads=64,
)

BASE_UNET = dict(
    UNET_COMMON,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(16, 32, 32),
    transformer_layers_per_block=(1, 1, 2),
    attention_head_dim=(1, 2, 2),  # diffusers' SDXL naming: these are head COUNTS (16 ch/head)
    num_attention_heads=None,
    cross_attention_dim=64,
    projection_class_embeddings_input_dim=32 + 6 * 8,
)

REFINER_UNET = dict(
    UNET_COMMON,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(16, 32, 32, 32),
    transformer_layers_per_block=2,
    attention_head_dim=(1, 2, 2, 2),  # published refiner: [6,12,24,24] = channels/64; here channels/16
    num_attention_heads=None,
    cross_attention_dim=32,
    projection_class_embeddings_input_dim=32 + 5 * 8,
)

VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 16, 16, 16),
    layers_per_block=1,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=4,
    sample_size=64,
    scaling_factor=0.13025,
    force_upcast=True,
)


@torch.no_grad()
def perturb_and_round(model, seed):
    """Default init, then norms get weight 1+0.1·N, bias 0.1·N; every other parameter += 0.02·N.
    Finally round every float tensor to fp16 and back, so f32 references use the stored values."""
    g = torch.Generator().manual_seed(seed)
    norm_params = set()
    for _, m in model.named_modules():
        if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
            if m.weight is not None:
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                norm_params.add(id(m.weight))
            if m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                norm_params.add(id(m.bias))
    for _, p in model.named_parameters():
        if id(p) not in norm_params:
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            t.copy_(t.half().float())
    return model


def build(cls, seed, *args, **kwargs):
    torch.manual_seed(seed)
    model = cls(*args, **kwargs).eval()
    return perturb_and_round(model, seed + 1)


def save_fp16(model, dst):
    if dst.exists():
        shutil.rmtree(dst)
    model.to(torch.float16).save_pretrained(dst, variant="fp16", safe_serialization=True)
    model.to(torch.float32)


def strict_json(obj):
    """Non-finite floats (e.g. DPMSolver's lambda_min_clipped = -inf) become the strings
    "inf" / "-inf" / "nan", so every file is strict JSON."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return "nan" if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(strict_json(obj), indent=2, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


def write_scheduler(dst):
    write_json(dst / "scheduler" / "scheduler_config.json", SDXL_SCHEDULER_CONFIG)


def make_models(base_dir=BASE, refiner_dir=REFINER, num_merges=None):
    """The tiny base and refiner as diffusers folders; `num_merges` shortens the vocabulary
    (see load_bpe), which only the text encoders' token embeddings depend on."""
    for d in (base_dir, refiner_dir):
        if d.exists():
            shutil.rmtree(d)
    vocab_size = len(load_bpe(num_merges)[0])
    te1 = build(CLIPTextModel, 100, text_config("quick_gelu", vocab_size))
    te2 = build(CLIPTextModelWithProjection, 200, text_config("gelu", vocab_size))
    unet = build(UNet2DConditionModel, 300, **BASE_UNET)
    unet_r = build(UNet2DConditionModel, 400, **REFINER_UNET)
    vae = build(AutoencoderKL, 500, **VAE)

    lib = lambda c: ["transformers", c]  # noqa: E731
    dif = lambda c: ["diffusers", c]  # noqa: E731
    version = diffusers.__version__
    write_json(
        base_dir / "model_index.json",
        {
            "_class_name": "StableDiffusionXLPipeline",
            "_diffusers_version": version,
            "force_zeros_for_empty_prompt": True,
            "add_watermarker": None,
            "scheduler": dif("EulerDiscreteScheduler"),
            "text_encoder": lib("CLIPTextModel"),
            "text_encoder_2": lib("CLIPTextModelWithProjection"),
            "tokenizer": lib("CLIPTokenizer"),
            "tokenizer_2": lib("CLIPTokenizer"),
            "unet": dif("UNet2DConditionModel"),
            "vae": dif("AutoencoderKL"),
        },
    )
    write_scheduler(base_dir)
    write_tokenizer(base_dir / "tokenizer", "<|endoftext|>", num_merges)
    write_tokenizer(base_dir / "tokenizer_2", "!", num_merges)
    save_fp16(te1, base_dir / "text_encoder")
    save_fp16(te2, base_dir / "text_encoder_2")
    save_fp16(unet, base_dir / "unet")
    save_fp16(vae, base_dir / "vae")

    write_json(
        refiner_dir / "model_index.json",
        {
            "_class_name": "StableDiffusionXLImg2ImgPipeline",
            "_diffusers_version": version,
            "force_zeros_for_empty_prompt": False,
            "add_watermarker": None,
            "requires_aesthetics_score": True,
            "scheduler": dif("EulerDiscreteScheduler"),
            "text_encoder": [None, None],
            "text_encoder_2": lib("CLIPTextModelWithProjection"),
            "tokenizer": [None, None],
            "tokenizer_2": lib("CLIPTokenizer"),
            "unet": dif("UNet2DConditionModel"),
            "vae": dif("AutoencoderKL"),
        },
    )
    write_scheduler(refiner_dir)
    write_tokenizer(refiner_dir / "tokenizer_2", "!", num_merges)
    save_fp16(te2, refiner_dir / "text_encoder_2")
    save_fp16(unet_r, refiner_dir / "unet")
    save_fp16(vae, refiner_dir / "vae")
    return dict(te1=te1, te2=te2, unet=unet, unet_r=unet_r, vae=vae)


def load_pipes(built, base_dir=BASE, refiner_dir=REFINER):
    kw = dict(variant="fp16", dtype=torch.float32, add_watermarker=False)
    base = StableDiffusionXLPipeline.from_pretrained(base_dir, **kw)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(refiner_dir, **kw)
    for p in (base, refiner):
        p.set_progress_bar_config(disable=True)
    # the loaded (fp16 -> f32) weights are exactly the in-memory rounded ones
    pairs = [
        (base.text_encoder, built["te1"]),
        (base.text_encoder_2, built["te2"]),
        (refiner.text_encoder_2, built["te2"]),
        (base.unet, built["unet"]),
        (refiner.unet, built["unet_r"]),
        (base.vae, built["vae"]),
        (refiner.vae, built["vae"]),
    ]
    for loaded, ref in pairs:
        a, b = loaded.state_dict(), ref.state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert isinstance(base.scheduler, EulerDiscreteScheduler)
    return base, refiner


# --------------------------------------------------------------------------------------------
# 3. Per-component parity fixtures
# --------------------------------------------------------------------------------------------


def save_pair(name, inputs, outputs):
    PARITY.mkdir(parents=True, exist_ok=True)
    c = lambda d: {k: v.detach().contiguous() for k, v in d.items()}  # noqa: E731
    save_file(c(inputs), PARITY / f"{name}.in.safetensors")
    save_file(c(outputs), PARITY / f"{name}.out.safetensors")


PARITY_PROMPTS = ["a photo of an astronaut riding a horse", "Café 🐱 don't stop!!! 1024x1024, (detailed:1.2)"]


@torch.no_grad()
def make_parity(base, refiner):
    if PARITY.exists():
        shutil.rmtree(PARITY)
    g = torch.Generator().manual_seed(7)

    for name, tok, enc in (
        ("text_encoder", base.tokenizer, base.text_encoder),
        ("text_encoder_2", base.tokenizer_2, base.text_encoder_2),
    ):
        ids = tok(PARITY_PROMPTS, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        out = enc(ids, output_hidden_states=True)
        outs = {"penultimate": out.hidden_states[-2], "last_hidden_state": out.last_hidden_state}
        if name == "text_encoder_2":
            outs["text_embeds"] = out.text_embeds
            # legacy (eos_token_id=2) pooling == first-EOS pooling for tokenized input
            first_eos = (ids == EOS).int().argmax(-1)
            pooled = out.last_hidden_state[torch.arange(2), first_eos]
            assert torch.equal(enc.text_projection(pooled), out.text_embeds)
        save_pair(name, {"input_ids": ids.to(torch.int64)}, outs)

    def unet_case(name, unet, ctx_dim, time_ids):
        sample = torch.randn(2, 4, 8, 8, generator=g)
        timestep = torch.tensor([999.0, 521.0])
        ehs = torch.randn(2, 77, ctx_dim, generator=g)
        text_embeds = torch.randn(2, 32, generator=g)
        time_ids = torch.tensor(time_ids, dtype=torch.float32)
        cond = {"text_embeds": text_embeds, "time_ids": time_ids}
        captured = {}

        def hook_fn(module, inputs, output):
            captured.setdefault("silu_emb", inputs[0].clone())

        hook = unet.down_blocks[0].resnets[0].time_emb_proj.register_forward_hook(hook_fn)
        out = unet(sample, timestep, encoder_hidden_states=ehs, added_cond_kwargs=cond).sample
        hook.remove()
        # time embedding, recomputed with the model's own modules
        t_emb = unet.time_proj(timestep).to(sample.dtype)
        emb = unet.time_embedding(t_emb)
        time_embeds = unet.add_time_proj(time_ids.flatten()).reshape(2, -1)
        add_embeds = torch.cat([text_embeds, time_embeds], dim=-1)
        emb = emb + unet.add_embedding(add_embeds)
        assert torch.allclose(torch.nn.functional.silu(emb), captured["silu_emb"], atol=0, rtol=0)
        save_pair(
            name,
            {"sample": sample, "timestep": timestep, "encoder_hidden_states": ehs, "text_embeds": text_embeds, "time_ids": time_ids},
            {"out": out, "emb": emb, "t_emb": t_emb, "time_embeds": time_embeds, "add_embeds": add_embeds},
        )
        return out

    o = unet_case("unet", base.unet, 64, [[1024, 1024, 0, 0, 1024, 1024], [512, 768, 16, 32, 768, 512]])
    o_r = unet_case("unet_refiner", refiner.unet, 32, [[1024, 1024, 0, 0, 6.0], [768, 512, 0, 0, 2.5]])

    vae = base.vae
    latents = torch.randn(1, 4, 8, 8, generator=g)
    dec = vae.decode(latents).sample
    save_pair("vae_decoder", {"latents": latents}, {"sample": dec})
    img = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    mean = vae.encode(img).latent_dist.mean
    save_pair("vae_encoder", {"sample": img}, {"mean": mean})
    return {"unet_out_std": o.std().item(), "unet_refiner_out_std": o_r.std().item(), "vae_dec_std": dec.std().item()}


# --------------------------------------------------------------------------------------------
# 4. Schedulers
# --------------------------------------------------------------------------------------------

SCHEDULERS = {
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "ddim": (DDIMScheduler, {}),
}


def make_scheduler(name, base_config):
    cls, kw = SCHEDULERS[name]
    return cls.from_config(base_config, **kw)


class NoiseRecorder:
    """Wraps diffusers' randn_tensor where a scheduler module imported it, recording every draw."""

    def __init__(self, module):
        self.module, self.orig, self.draws = module, module.randn_tensor, []

    def __enter__(self):
        def rec(*a, **k):
            t = self.orig(*a, **k)
            self.draws.append(t.clone())
            return t

        self.module.randn_tensor = rec
        return self

    def __exit__(self, *exc):
        self.module.randn_tensor = self.orig


def tl(t):
    return t.detach().cpu().double().numpy().tolist() if isinstance(t, torch.Tensor) else t


def make_schedulers(base_config):
    import diffusers.schedulers.scheduling_euler_ancestral_discrete as ea_mod

    g = torch.Generator().manual_seed(11)
    runs = []
    for name, steps in [("euler", 10), ("euler", 40), ("euler_a", 10), ("dpmpp_2m", 10), ("dpmpp_2m_karras", 10), ("ddim", 10)]:
        s = make_scheduler(name, base_config)
        s.set_timesteps(steps)
        sample0 = torch.randn(1, 4, 2, 2, generator=g)
        model_outputs = [torch.randn(1, 4, 2, 2, generator=g) for _ in range(steps)]
        step_gen = torch.Generator().manual_seed(0)
        sample = sample0 * s.init_noise_sigma
        scaled, prev = [], []
        with NoiseRecorder(ea_mod) as rec:
            for i, t in enumerate(s.timesteps):
                scaled.append(tl(s.scale_model_input(sample, t)))
                sample = s.step(model_outputs[i], t, sample, generator=step_gen).prev_sample
                prev.append(tl(sample))
        run = {
            "name": name,
            "class": type(s).__name__,
            "config": {k: v for k, v in dict(s.config).items() if not k.startswith("_")},
            "num_inference_steps": steps,
            "timesteps": tl(s.timesteps),
            "sigmas": tl(s.sigmas) if hasattr(s, "sigmas") else None,
            "init_noise_sigma": float(s.init_noise_sigma),
            "order": s.order,
            "step_test": {
                "description": "sample = sample0 * init_noise_sigma; for i, t in enumerate(timesteps): "
                "scaled_inputs[i] = scale_model_input(sample, t); sample = step(model_outputs[i], t, sample, "
                "generator=torch.Generator().manual_seed(0)).prev_sample; prev_samples[i] = sample",
                "sample0": tl(sample0),
                "model_outputs": [tl(m) for m in model_outputs],
                "scaled_inputs": scaled,
                "prev_samples": prev,
                "noise": [tl(n) for n in rec.draws],
            },
        }
        runs.append(run)
    s = EulerDiscreteScheduler.from_config(base_config)
    write_json(
        FIX / "schedulers.json",
        {
            "base_config": {k: v for k, v in dict(base_config).items() if not k.startswith("_")},
            "alphas_cumprod": tl(s.alphas_cumprod),
            "runs": runs,
        },
    )


# --------------------------------------------------------------------------------------------
# 5. Pipelines
# --------------------------------------------------------------------------------------------

PROMPT = "a photo of an astronaut riding a horse"
STEPS, GUIDANCE, SIZE = 10, 5.0, 64


class StepRecorder:
    """callback_on_step_end: latents after each step, and the timesteps actually used."""

    def __init__(self, prefix=""):
        self.prefix, self.tensors, self.ts = prefix, {}, []

    def __call__(self, pipe, i, t, kw):
        self.tensors[f"{self.prefix}latents_step_{i}"] = kw["latents"].clone()
        self.ts.append(float(t))
        return kw

    def timesteps(self):
        return {f"{self.prefix}timesteps": torch.tensor(self.ts, dtype=torch.float32)}


@torch.no_grad()
def encode_intermediates(pipe, negative_prompt, prefix=""):
    pe, npe, ppe, nppe = pipe.encode_prompt(
        PROMPT, device=torch.device("cpu"), num_images_per_prompt=1, do_classifier_free_guidance=True, negative_prompt=negative_prompt
    )
    return {
        f"{prefix}prompt_embeds": pe,
        f"{prefix}negative_prompt_embeds": npe,
        f"{prefix}pooled_prompt_embeds": ppe,
        f"{prefix}negative_pooled_prompt_embeds": nppe,
    }


@torch.no_grad()
def make_pipelines(base, refiner):
    import diffusers.schedulers.scheduling_euler_ancestral_discrete as ea_mod

    if PIPE.exists():
        shutil.rmtree(PIPE)
    PIPE.mkdir(parents=True)
    noise = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(1234))
    save_file({"noise": noise.contiguous()}, PIPE / "noise.safetensors")
    base_config = base.scheduler.config
    te2_dim = base.text_encoder_2.config.projection_dim
    add_time_ids = base._get_add_time_ids((SIZE, SIZE), (0, 0), (SIZE, SIZE), torch.float32, text_encoder_projection_dim=te2_dim)

    cases = []

    def save(file, tensors):
        save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, PIPE / file)
        return {k: list(v.shape) for k, v in sorted(tensors.items())}

    base_cases = [
        ("base_euler.safetensors", "euler", ""),
        ("base_euler_negative.safetensors", "euler", "blurry, low quality"),
        ("base_euler_negative_none.safetensors", "euler", None),
        ("base_euler_a.safetensors", "euler_a", ""),
        ("base_dpmpp_2m.safetensors", "dpmpp_2m", ""),
        ("base_dpmpp_2m_karras.safetensors", "dpmpp_2m_karras", ""),
        ("base_ddim.safetensors", "ddim", ""),
    ]
    for file, sched, neg in base_cases:
        base.scheduler = make_scheduler(sched, base_config)
        rec = StepRecorder()
        with NoiseRecorder(ea_mod) as nrec:
            image = base(
                PROMPT,
                negative_prompt=neg,
                height=SIZE,
                width=SIZE,
                num_inference_steps=STEPS,
                guidance_scale=GUIDANCE,
                latents=noise.clone(),
                generator=torch.Generator().manual_seed(0),
                output_type="np",
                callback_on_step_end=rec,
            ).images
        tensors = {"image": torch.from_numpy(image[0])}
        tensors.update(rec.timesteps())
        tensors.update(rec.tensors)
        tensors.update({f"step_noise_{i}": n for i, n in enumerate(nrec.draws)})
        tensors.update(encode_intermediates(base, neg))
        tensors["add_time_ids"] = add_time_ids
        shapes = save(file, tensors)
        cases.append(
            {
                "file": file,
                "pipeline": "StableDiffusionXLPipeline",
                "model": "tiny-sdxl-base",
                "scheduler": {"name": sched, "class": type(base.scheduler).__name__, "from_config_overrides": SCHEDULERS[sched][1]},
                "prompt": PROMPT,
                "negative_prompt": neg,
                "height": SIZE,
                "width": SIZE,
                "num_inference_steps": STEPS,
                "guidance_scale": GUIDANCE,
                "latents": "noise.safetensors:noise (passed as latents=; the pipeline multiplies by init_noise_sigma)",
                "generator": "torch.Generator().manual_seed(0)" + (" (ancestral noise recorded as step_noise_<i>)" if nrec.draws else " (unused)"),
                "output_type": "np",
                "tensors": shapes,
            }
        )

    # ensemble of experts: base to 0.8 (latent) then refiner from 0.8
    base.scheduler = make_scheduler("euler", base_config)
    refiner.scheduler = EulerDiscreteScheduler.from_config(refiner.scheduler.config)
    rec_b, rec_r = StepRecorder("base_"), StepRecorder("refiner_")
    handover = base(
        PROMPT,
        negative_prompt="",
        height=SIZE,
        width=SIZE,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        denoising_end=0.8,
        latents=noise.clone(),
        output_type="latent",
        callback_on_step_end=rec_b,
    ).images
    image = refiner(
        PROMPT,
        negative_prompt="",
        image=handover.clone(),
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        denoising_start=0.8,
        output_type="np",
        callback_on_step_end=rec_r,
    ).images
    tensors = {"image": torch.from_numpy(image[0]), "latents_handover": handover}
    tensors.update(rec_b.timesteps())
    tensors.update(rec_r.timesteps())
    tensors.update(rec_b.tensors)
    tensors.update(rec_r.tensors)
    tensors.update(encode_intermediates(base, "", prefix="base_"))
    tensors.update(encode_intermediates(refiner, "", prefix="refiner_"))
    tensors["base_add_time_ids"] = add_time_ids
    r_ids, r_neg_ids = refiner._get_add_time_ids(
        (SIZE, SIZE), (0, 0), (SIZE, SIZE), 6.0, 2.5, (SIZE, SIZE), (0, 0), (SIZE, SIZE), torch.float32, text_encoder_projection_dim=te2_dim
    )
    tensors["refiner_add_time_ids"], tensors["refiner_negative_add_time_ids"] = r_ids, r_neg_ids
    shapes = save("base_refiner_euler.safetensors", tensors)
    cases.append(
        {
            "file": "base_refiner_euler.safetensors",
            "pipeline": "StableDiffusionXLPipeline (denoising_end=0.8, output_type='latent') -> StableDiffusionXLImg2ImgPipeline (denoising_start=0.8, image=latents)",
            "model": ["tiny-sdxl-base", "tiny-sdxl-refiner"],
            "scheduler": {"name": "euler", "class": "EulerDiscreteScheduler", "from_config_overrides": {}},
            "prompt": PROMPT,
            "negative_prompt": "",
            "height": SIZE,
            "width": SIZE,
            "num_inference_steps": STEPS,
            "guidance_scale": GUIDANCE,
            "denoising_end": 0.8,
            "denoising_start": 0.8,
            "aesthetic_score": 6.0,
            "negative_aesthetic_score": 2.5,
            "latents": "noise.safetensors:noise for the base; the refiner gets latents_handover (no noise added)",
            "output_type": "np",
            "tensors": shapes,
        }
    )
    write_json(
        PIPE / "cases.json",
        {
            "notes": [
                "All tensors float32. image = output_type='np' image [H,W,3] in [0,1] (before any uint8 conversion).",
                "[prefix]latents_step_<i> = latents after scheduler step i (callback_on_step_end); [prefix]timesteps = the t of each step actually run.",
                "prompt_embeds etc. = pipe.encode_prompt(prompt, do_classifier_free_guidance=True, negative_prompt=...).",
                "negative_prompt '' is ENCODED on the base; only negative_prompt=None gives zeros (force_zeros_for_empty_prompt).",
                "add_time_ids = pipe._get_add_time_ids((64,64),(0,0),(64,64)); the pipeline uses the same for the negative branch.",
            ],
            "cases": cases,
        },
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-slow-tokenizer", metavar="PYTHON")
    args = ap.parse_args()

    FIX.mkdir(parents=True, exist_ok=True)
    built = make_models()
    tokenizer_cases()
    if args.check_slow_tokenizer:
        check_slow_tokenizer(args.check_slow_tokenizer)
    base, refiner = load_pipes(built)
    sched_config = base.scheduler.config
    stats = make_parity(base, refiner)
    print("parity stats", stats)
    make_pipelines(base, refiner)
    make_schedulers(sched_config)
    write_json(
        FIX / "versions.json",
        {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "safetensors": safetensors.__version__,
            "open_clip_torch": open_clip.__version__,
            "ftfy": ftfy.__version__,
            "numpy": np.__version__,
        },
    )
    print("done")


if __name__ == "__main__":
    main()
