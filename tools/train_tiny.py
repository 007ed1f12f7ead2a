"""Train the embedded default: a tiny Wan 2.2-style image-to-video pipeline on procedural sprite clips.

    python tools/train_tiny.py --out dymos/weights/sprites-wan      # 60 min on 2 CPU cores (the budget)

Two stages, both real diffusers classes, both seeded:
1. a tiny ``AutoencoderKLWan`` (2x spatial, 2x temporal compression, 16 latent channels, Wan 2.2's residual
   form) trained on reconstruction, first on 5-frame windows, then on whole clips (its third causal chunk), so
   32x32x9 videos become 16x5x16x16 latents;
2. a 4-layer ``WanTransformer3DModel`` in Wan 2.2 I2V form (latents + first-frame mask + VAE latents of
   ``[image, zeros...]`` concatenated on channels, exactly what ``WanImageToVideoPipeline.prepare_latents``
   builds; ``--form ti2v``: Wan 2.2 5B's form, the image's latent as latent frame 0 at timestep 0) trained with
   rectified flow (``x_t = (1-s) x0 + s noise``, target ``noise - x0``), noise levels drawn
   with the scheduler's flow shift so training sees what sampling sees. The text input is random noise each
   step: the model learns to ignore prompts (``--captions``, an experiment: each clip's caption embedding from
   ``dymos.captions`` instead, naming each sprite's pace and heading). Muon steps the blocks' weight matrices,
   AdamW the rest (``--optimizer``); an EMA of the weights is what ships. The transformer runs under
   ``torch.compile`` (``--kernels tuned``: math attention under max-autotune) and, where the CPU has bf16
   instructions, bf16 autocast (about 1.6x the steps per minute of plain fp32 eager on the previous run's
   machine; a 500-step pilot matched fp32's loss and shape score; ``--precision auto`` measures, since an
   AVX2-only CPU emulates bf16 at about a 12th of fp32's speed), and the stage stops when ``--max-minutes`` is
   spent. The VAE's window phase is compiled too (``--compile-vae``); ``--no-compile`` compiles neither unless
   ``--compile-vae`` is given.

The result is a ``WanImageToVideoPipeline`` folder (safetensors + configs, no text/image encoder) that
``from_pretrained`` and ``dymos export`` load, plus ``train_log.json`` (losses, timings, data prior, seeds).
Checkpoints are written along the way under ``build/train_tiny/`` (``--work``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dymos.prepare import wan_denoiser_input
from dymos.sprites import DEFAULT_PRIOR, ClipPrior, add_sprites_argument, clip_sprites, make_batch, to_model_range
from dymos.tiny import WAN_SCHEDULER, wan_i2v_pipeline

SIZE, FRAMES = 32, 9
Z_DIM = 16
VAE_CHANNELS = (4, 8, 16)
VAE_CONFIG = {
    "base_dim": 16,
    "z_dim": Z_DIM,
    "is_residual": True,  # Wan 2.2's VAE form: space/time-to-channel shortcuts around the resampling, learns fast
    "dim_mult": [1, 1],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [True],
    "dropout": 0.0,
    "scale_factor_temporal": 2,
    "scale_factor_spatial": 2,
}


def vae_config(spatial: int = 2, temporal: int = 2, channels: int = Z_DIM) -> dict[str, Any]:
    """``VAE_CONFIG`` at a spatial compression of 2 (the shipped model: 16x16 latents) or 4 (8x8 latents, 5.4x fewer
    latent values than pixels instead of 1.35x: a smaller space for the transformer to model, the decoder doing more
    of the work; one more resampling level). Temporal compression 2 (5 latent frames for 9) or, at spatial 4 only,
    4 as in the real Wan VAEs (3 latent frames: the decoder makes frames 1-4 and 5-8 from one latent frame each, so
    the transformer has fewer frames to keep consistent; each resampling level halves space, so 4x in time needs
    both levels). ``channels`` latent channels (16, as the real Wan 2.1 VAE, or fewer: a latent of fewer values per
    position for the transformer to model, the round trip then judged by its ceiling)."""
    if channels not in VAE_CHANNELS:
        raise ValueError(f"{channels} latent channels is not one of {VAE_CHANNELS}")
    if (spatial, temporal) == (2, 2):
        return {**VAE_CONFIG, "z_dim": channels}
    if spatial == 4 and temporal in (2, 4):
        downsample = [temporal == 4, True]
        return {
            **VAE_CONFIG,
            "z_dim": channels,
            "dim_mult": [1, 1, 1],
            "temperal_downsample": downsample,
            "scale_factor_spatial": 4,
            "scale_factor_temporal": temporal,
        }
    raise ValueError(f"compression {spatial}x spatial, {temporal}x temporal is not one of 2x2, 4x2, 4x4")


# the VAE's shape arguments and the config keys they set: defaults from VAE_CONFIG, or a reused VAE's (--vae-from)
VAE_SHAPE_ARGS = {
    "vae_spatial": "scale_factor_spatial",
    "vae_temporal": "scale_factor_temporal",
    "vae_channels": "z_dim",
}

TRANSFORMER_CONFIG = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 2,
    "attention_head_dim": 64,
    "in_channels": Z_DIM + 2 + Z_DIM,  # noisy latents + first-frame mask (a channel per temporal factor) + condition
    "out_channels": Z_DIM,
    "text_dim": 16,
    "freq_dim": 64,
    "ffn_dim": 256,
    "num_layers": 4,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 32,
}
TEXT_TOKENS = 16
PRECISIONS = ("auto", "bf16", "fp32")
AUTO_BF16_MIN_SPEEDUP = 1.1  # bf16 rounds the activations: take it only for a clear gain in speed


FORMS = ("i2v", "ti2v")


def transformer_config(args: argparse.Namespace) -> dict:
    """``TRANSFORMER_CONFIG`` with the command line's form, patch and size. A spatial patch of 4 gives 4x fewer
    tokens (80 for a 9x32x32 clip), so a model 2x as wide (4x the parameters) costs about what the patch-2 one
    does. The TI2V form takes the latents alone (the image's latent is their first frame)."""
    concat = args.vae_temporal + args.vae_channels if args.form == "i2v" else 0
    return {
        **TRANSFORMER_CONFIG,
        # noisy latents, then in I2V form the first-frame mask (a channel per temporal factor) + the condition
        "in_channels": args.vae_channels + concat,
        "out_channels": args.vae_channels,
        "patch_size": [1, args.patch, args.patch],
        "num_attention_heads": args.heads,
        "attention_head_dim": args.head_dim,
        "ffn_dim": args.ffn,
        "num_layers": args.layers,
    }


AUTO_PROBE_START, AUTO_PROBE_END = 20, 120  # steps timed for --steps auto (after compilation, inside the warmup)
AUTO_MARGIN = 0.95  # share of the remaining budget --steps auto plans for (the machine's speed drifts)


def fit_schedule(
    step: int, probe_seconds: float, args: argparse.Namespace, probe_steps: int = AUTO_PROBE_END - AUTO_PROBE_START
) -> int:
    """``--steps auto``: the schedule length that ends inside ``--max-minutes`` at the speed measured over the last
    ``probe_steps`` steps. A cosine schedule is fixed inside the warmup, whose learning rates do not depend on it; a
    WSD schedule when its decay starts, timed over the whole stable phase. Either way ``--steps N`` (and
    ``--decay-start M``) with the logged counts repeats the run's schedule step for step on any machine (the
    weights bit for bit only where the CPU kernels match: the VAE stage was seen to differ between machines)."""
    per_step = probe_seconds / probe_steps
    remaining = args.max_minutes * 60 - (time.perf_counter() - args.t0)
    total = step + max(1, int(AUTO_MARGIN * remaining / per_step))
    repeat = f"--steps {total}" + (f" --decay-start {step}" if args.schedule == "wsd" else "")
    log(f"--steps auto: {per_step:.3f} s/step, {remaining / 60:.1f} min left: {total} steps (repeat with {repeat})")
    return total


def bf16_speedup(tokens: int = 4096, width: int = 128, hidden: int = 256, repeats: int = 3) -> float:
    """fp32 time / bf16-autocast time of a linear layer of the transformer's width, forward and backward, on the
    threads set. bf16 pays only where the CPU has bf16 instructions (AVX512-BF16, AMX: about 1.6x a step); on an
    AVX2-only CPU oneDNN emulates it and a compiled step took about 10 s against 0.85 s in fp32)."""
    layer = torch.nn.Linear(width, hidden)
    x = torch.randn(tokens, width, requires_grad=True)

    def best_of(bf16: bool) -> float:
        times = []
        for _ in range(repeats + 1):  # the first call warms the kernels up
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = layer(x)
            y.float().sum().backward()
            times.append(time.perf_counter() - start)
        return min(times[1:])

    return best_of(False) / best_of(True)


def resolve_precision(requested: str, speedup: Callable[[], float] = bf16_speedup) -> tuple[str, float | None]:
    """``--precision``: ``bf16``/``fp32`` as asked, ``auto`` bf16 only where it measures at least
    ``AUTO_BF16_MIN_SPEEDUP`` times fp32's speed on this CPU. Returns the precision and the measured ratio (None
    where nothing was measured)."""
    if requested != "auto":
        return requested, None
    ratio = speedup()
    chosen = "bf16" if ratio >= AUTO_BF16_MIN_SPEEDUP else "fp32"
    log(f"--precision auto: bf16 autocast runs at {ratio:.2f}x fp32's speed on this CPU: training in {chosen}")
    return chosen, ratio


def machine() -> dict[str, Any]:
    """The CPU a run trained on, for its log: step times (and so ``--steps auto``) depend on it, and the bf16 and AMX
    instructions decide the transformer's speed."""
    import platform

    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return info
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    if names:
        info["cpu"] = names[0]
    info["isa_flags"] = sorted(f for f in flags if f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2"))
    return info


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def wsd_lr(step: int, peak: float, warmup: int, decay_start: int | None, total: int | None) -> float:
    """Warmup-stable-decay: the peak rate from the warmup's end until ``decay_start`` (None: not fixed yet, the
    rate stays at its peak), then a 1 - sqrt(progress) decay to zero at ``total``. The stable phase does not depend
    on the schedule's length, so the length can be fixed late, from the speed of the whole stable phase."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if decay_start is None or total is None or step < decay_start:
        return peak
    return peak * (1 - math.sqrt(min(1.0, (step - decay_start) / max(1, total - decay_start))))


def vae_losses(vae: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction (L1 + MSE) of ``x`` through the latent mode, and the mode's mean square: the VAE step's
    forward and loss in one function, the unit ``--compile-vae`` hands to ``torch.compile``."""
    mode = vae.encode(x).latent_dist.mode()
    y = vae.decode(mode).sample
    return (y - x).abs().mean() + (y - x).pow(2).mean(), mode.pow(2).mean()


def train_vae(pool: np.ndarray, args: argparse.Namespace, log_rows: list) -> torch.nn.Module:
    """Reconstruction (L1 + MSE) of the latent mode, plus a small penalty on the latent mean, in two phases.
    Wan's VAE encodes frame 0 alone and then causal 4-frame chunks that carry a cache from the chunk before, so a
    9-frame clip is three chunks. Phase 1 trains on ``--vae-frames``-frame windows at random offsets (5: frame 0
    plus one chunk, cheap, and every frame of a clip takes the first-frame path in some window); phase 2
    (``--vae-clip-steps``) fine-tunes on whole clips, because the third chunk, whose cache comes from a 4-frame
    chunk, is never seen in 5-frame windows: without it the round trip loses sprites in frames 5-8 (shape score
    0.78-0.80 in frames 1-4, 0.56 down to 0.16 in frames 5-8 for the VAE shipped before phase 2: README). The
    pipeline encodes its condition with the mode (``argmax``) and the transformer learns on modes too, so the
    decoder is trained on exactly what it will be given."""
    import diffusers

    torch.manual_seed(args.seed)
    config = vae_config(args.vae_spatial, args.vae_temporal, args.vae_channels)
    channels = config["z_dim"]
    vae = diffusers.AutoencoderKLWan(**config, latents_mean=[0.0] * channels, latents_std=[1.0] * channels)
    rng = np.random.default_rng([args.seed, 1])
    window_losses = torch.compile(vae_losses, dynamic=False) if args.compile_vae else vae_losses
    start = time.perf_counter()
    phases = [("vae", args.vae_frames, args.vae_steps, args.vae_lr, 50, window_losses)]
    if args.vae_clip_steps:
        # eager even with --compile-vae: a cold compile of whole clips took longer (2.7 min) than 400 steps save
        phases.append(("vae-clips", FRAMES, args.vae_clip_steps, args.vae_clip_lr, 20, vae_losses))
    for stage, frames, steps, peak, warmup, losses in phases:
        optimizer = torch.optim.AdamW(vae.parameters(), lr=peak, weight_decay=0.0)
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, steps, peak, warmup)
            index = rng.integers(0, len(pool), size=args.vae_batch)
            offset = int(rng.integers(0, FRAMES - frames + 1)) if frames < FRAMES else 0
            x = torch.from_numpy(to_model_range(pool[index, offset : offset + frames]))
            recon, kl = losses(vae, x)
            loss = recon + args.vae_kl * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            optimizer.step()
            if step % 100 == 0 or step + 1 == steps:
                elapsed = time.perf_counter() - start
                log(f"{stage} step {step}/{steps} recon {recon.item():.4f} mean^2 {kl.item():.3f} ({elapsed:.0f}s)")
                row = {"stage": stage, "step": step, "recon": recon.item(), "latent_sq": kl.item(), "s": elapsed}
                log_rows.append(row)
    return vae.eval()


@torch.no_grad()
def encode_pool(vae: torch.nn.Module, pool: np.ndarray, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (un-normalised) VAE modes of every clip and of its Wan condition video ``[frame 0, zeros...]``."""
    latents, conditions = [], []
    for i in range(0, len(pool), batch):
        x = torch.from_numpy(to_model_range(pool[i : i + batch]))
        latents.append(vae.encode(x).latent_dist.mode())
        condition = torch.cat([x[:, :, :1], torch.zeros_like(x[:, :, 1:])], dim=2)
        conditions.append(vae.encode(condition).latent_dist.mode())
    return torch.cat(latents), torch.cat(conditions)


def cached_encode(vae: torch.nn.Module, pool: np.ndarray, cache: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``encode_pool``, kept in ``cache`` under a key of the VAE's weights and the clips, so pilots that reuse a VAE
    (``--vae-from``) skip the encoding (minutes for 12,000 clips). A cache for other weights or clips is rebuilt."""
    if cache is None:
        return encode_pool(vae, pool)
    digest = hashlib.sha256(pool.tobytes())
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    key = digest.hexdigest()
    if cache.is_file():
        stored = torch.load(cache)
        if stored.get("key") == key:
            log(f"encoded latents from {cache}")
            return stored["latents"], stored["conditions"]
        log(f"{cache} holds another VAE's or pool's latents; encoding again")
    latents, conditions = encode_pool(vae, pool)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.name + ".partial")
    torch.save({"key": key, "latents": latents, "conditions": conditions}, partial)
    partial.replace(cache)  # atomic: an interrupted save leaves no cache that loads
    return latents, conditions


def normalize(latents: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Per-channel ``(x - mean) / std``: the scale the pipeline gives its condition and the transformer sees."""
    view = (1, -1, 1, 1, 1)
    return (latents - mean.view(view)) / std.view(view)


def first_frame_mask(batch: int, latent_frames: int, temporal: int, height: int, width: int) -> torch.Tensor:
    """Wan's mask channels: ``temporal`` channels, ones on latent frame 0 (as ``prepare_latents`` builds them)."""
    mask = torch.zeros(batch, temporal, latent_frames, height, width)
    mask[:, :, 0] = 1.0
    return mask


def model_inputs(
    form: str, x_t: torch.Tensor, condition: torch.Tensor, sigma: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The transformer's input and timestep as ``WanImageToVideoPipeline`` builds them, and the first latent frame
    the loss counts. I2V (Wan 2.2 A14B): noisy latents, the ``mask`` channels and condition latents on channels, one
    timestep per item, every frame in the loss. TI2V (Wan 2.2 5B, ``expand_timesteps``; ``mask`` unused): the
    image's clean latent replaces the first latent frame, whose tokens get timestep 0 (the pipeline puts the image's
    latent in every step's input and in the final latents, so that frame's prediction is never used and leaves the
    loss)."""
    if form == "i2v":
        return (*wan_denoiser_input(x_t, torch.cat([mask, condition], dim=1), sigma * 1000.0), 0)
    image_latent = condition[:, :, :1]  # the latent of [image, zeros...] starts with the image's: the VAE is causal
    return (*wan_denoiser_input(x_t, image_latent, sigma * 1000.0, expand_timesteps=True), 1)


def shifted_sigmas(u: torch.Tensor, shift: float) -> torch.Tensor:
    """The flow shift the sampler uses (sigma' = shift*s / (1 + (shift-1)*s)): training leans to high noise."""
    return shift * u / (1 + (shift - 1) * u)


KERNELS = ("stock", "tuned")


def compiled(model: torch.nn.Module, kernels: str) -> Callable:
    """``torch.compile`` of the transformer. ``stock``: diffusers' attention as it ships (PyTorch picks its fused CPU
    flash-attention kernel) and inductor's default mode, as the earlier shipped models. ``tuned`` (the shipped run's):
    attention as explicit matmuls and softmax (diffusers' math backend) under ``max-autotune``, which benchmarks GEMM
    templates for those matmuls while compiling: a bf16 training step of the shipped transformer took 0.405 s against
    0.490 s on an AVX-512-BF16 EPYC, where either change alone gained little (the README's pilots). Same model, other
    rounding."""
    if kernels == "stock":
        return torch.compile(model)
    if kernels != "tuned":
        raise ValueError(f"--kernels {kernels!r}: choose one of {KERNELS}")
    model.set_attention_backend("_native_math")
    return torch.compile(model, mode="max-autotune-no-cudagraphs")


OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd")


def optimizers(model: torch.nn.Module, name: str, lr: float) -> list[torch.optim.Optimizer]:
    """``--optimizer``: AdamW on every weight (the models shipped before), or Muon on the blocks' weight matrices
    (the shipped run) with AdamW on the rest (embeddings, norms, biases, modulation tables, the output head: Muon
    orthogonalises 2-D updates only, and its authors keep a model's ends on AdamW). Muon's step is scaled to
    AdamW's RMS (Moonshot's ``match_rms_adamw``), so one ``--lr`` and one schedule drive both."""
    adamw = {"lr": lr, "weight_decay": 0.01, "betas": (0.9, 0.99)}
    if name == "adamw":
        return [torch.optim.AdamW(model.parameters(), **adamw)]
    if name != "muon":
        raise ValueError(f"--optimizer {name!r}: choose one of {OPTIMIZERS}")
    matrices = [p for n, p in model.named_parameters() if n.startswith("blocks.") and p.ndim == 2]
    taken = {id(p) for p in matrices}
    rest = [p for p in model.parameters() if id(p) not in taken]
    muon = torch.optim.Muon(matrices, lr=lr, weight_decay=0.01, adjust_lr_fn="match_rms_adamw")
    return [muon, torch.optim.AdamW(rest, **adamw)]


def train_transformer(
    latents: torch.Tensor, conditions: torch.Tensor, args: argparse.Namespace, work: Path, log_rows: list
) -> torch.nn.Module:
    import diffusers

    torch.manual_seed(args.seed + 2)
    model = diffusers.WanTransformer3DModel(**transformer_config(args))
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    steppers = optimizers(model, args.optimizer, args.lr)
    forward = compiled(model, args.kernels) if args.compile else model  # same weights; fused kernels for the CPU
    rng = torch.Generator().manual_seed(args.seed + 3)
    shift = args.train_shift or float(WAN_SCHEDULER["config"]["flow_shift"])
    n, _, latent_frames, height, width = latents.shape
    mask = first_frame_mask(args.batch, latent_frames, args.vae_temporal, height, width)
    start = probe_start = time.perf_counter()
    stage_seconds = args.max_minutes * 60 - (start - args.t0)  # the transformer's share of the budget
    running = None
    total = args.steps  # None ('auto'): fixed from the measured speed (cosine: at AUTO_PROBE_END; wsd: decay start)
    decay_start = args.decay_start
    step = 0
    while total is None or step < total:
        if total is None and step >= AUTO_PROBE_END and (args.schedule == "cosine" or decay_due(args, stage_seconds)):
            total = fit_schedule(step, time.perf_counter() - probe_start, args, step - AUTO_PROBE_START)
            decay_start = step if args.schedule == "wsd" else None
            log_rows.append({"stage": "transformer", "auto_steps": total, "decay_start": decay_start})
        if step == AUTO_PROBE_START:
            probe_start = time.perf_counter()
        if args.schedule == "wsd":
            lr = wsd_lr(step, args.lr, args.warmup, decay_start, total)
        else:
            lr = cosine_lr(step, total or args.warmup, args.lr, args.warmup)
        for optimizer in steppers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        index = torch.randint(0, n, (args.batch,), generator=rng)
        x0, condition = latents[index], conditions[index]
        noise = torch.randn(x0.shape, generator=rng)
        sigma = shifted_sigmas(torch.rand(args.batch, generator=rng), shift)
        s = sigma.view(-1, 1, 1, 1, 1)
        x_t = (1 - s) * x0 + s * noise
        text = torch.randn(args.batch, TEXT_TOKENS, model.config.text_dim, generator=rng)  # drawn either way
        if args.caption_pool is not None:
            text = args.caption_pool[index]
        model_input, timestep, first_loss_frame = model_inputs(args.form, x_t, condition, sigma, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            prediction = forward(model_input, timestep, text, return_dict=False)[0]
        loss = (prediction.float() - (noise - x0))[:, :, first_loss_frame:].pow(2).mean()
        for optimizer in steppers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for optimizer in steppers:
            optimizer.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step + 1 == total:
            elapsed = time.perf_counter() - start
            eta = f"{elapsed / (step + 1) * (total - step - 1):.0f}s" if total else "?"
            log(f"dit step {step}/{total or 'auto'} loss {running:.4f} lr {lr:.2e} ({elapsed:.0f}s, eta {eta})")
            log_rows.append({"stage": "transformer", "step": step, "loss": running, "lr": lr, "s": elapsed})
        if (step + 1) % args.checkpoint_every == 0 and (total is None or step + 1 < total):
            ema.save_pretrained(work / f"transformer-step{step + 1}", safe_serialization=True)
        if args.stop_at and step + 1 >= args.stop_at:
            log(f"stopping at step {step + 1} (--stop-at)")
            log_rows.append({"stage": "transformer", "stopped_early_at": step + 1})
            break
        if args.max_minutes and (time.perf_counter() - args.t0) / 60 > args.max_minutes:
            log(f"stopping at step {step + 1}: the {args.max_minutes} min budget is spent")
            log_rows.append({"stage": "transformer", "stopped_early_at": step + 1})
            break
        step += 1
    args.steps_run, args.decay_start_run = total, decay_start
    return ema


def caption_pool(seed: int, clips: int, prior: ClipPrior) -> torch.Tensor:
    """``[clips, TEXT_TOKENS, text_dim]``: the training clips' caption embeddings (``--captions``)."""
    from dymos.captions import caption_embedding

    width = TRANSFORMER_CONFIG["text_dim"]
    embeddings = [
        caption_embedding(clip_sprites(seed, i, size=SIZE, prior=prior)[1], TEXT_TOKENS, width) for i in range(clips)
    ]
    return torch.from_numpy(np.stack(embeddings))


def decay_due(args: argparse.Namespace, stage_seconds: float) -> bool:
    """``--schedule wsd --steps auto``: whether the budget left has fallen to the decay's share of the stage's."""
    return args.max_minutes * 60 - (time.perf_counter() - args.t0) <= args.decay_share * stage_seconds


def save_pipeline(vae: torch.nn.Module, transformer: torch.nn.Module, out: Path, form: str = "i2v") -> None:
    """A ``WanImageToVideoPipeline`` folder without text/image encoders (prompts come as embeddings), in the form
    the transformer was trained in."""
    pipeline = wan_i2v_pipeline(transformer, vae, expand_timesteps=form == "ti2v")
    pipeline.save_pretrained(out, safe_serialization=True)
    write_defaults(out)


def write_defaults(out: Path) -> None:
    """The generation defaults ``dymos export`` / ``dymos run`` read: the trained video size, no CFG (the model
    ignores prompts, so guidance only doubles the cost) and 20 steps."""
    from dymos.models import DEFAULTS_FILE

    defaults = {
        "video": {"frames": FRAMES, "height": SIZE, "width": SIZE},
        "generation": {"guidance_scale": 1.0, "steps": 20},
    }
    (out / DEFAULTS_FILE).write_text(json.dumps(defaults, indent=2) + "\n")


def steps_arg(text: str) -> int | None:
    """``--steps``: a positive count, or ``auto`` (None)."""
    if text == "auto":
        return None
    steps = int(text)
    if steps < 1:
        raise argparse.ArgumentTypeError("--steps must be positive or 'auto'")
    return steps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        default="build/train_tiny/pipeline",
        help="pipeline folder to write (`make train` writes the shipped one, dymos/weights/sprites-wan; the default "
        "keeps pilots from overwriting it)",
    )
    parser.add_argument("--work", default="build/train_tiny", help="checkpoints along the way")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clips", type=int, default=12000, help="clips in the training pool")
    add_sprites_argument(parser, "training clip")
    parser.add_argument(
        "--captions",
        action="store_true",
        help="train on each clip's caption (dymos.captions: each sprite's colour, shape, pace and heading) as its "
        "text input instead of random noise; an experiment: the runtime does not yet make these embeddings",
    )
    parser.add_argument("--vae-steps", type=int, default=2500)
    parser.add_argument(
        "--vae-frames",
        type=int,
        default=5,
        choices=(5, FRAMES),
        help="frames per VAE training window in the first phase: 5 (frame 0 and one causal chunk) or 9 (whole clips)",
    )
    parser.add_argument(
        "--vae-clip-steps",
        type=int,
        default=400,
        help="VAE steps on whole clips after the windows (trains the third causal chunk; 0 skips the phase)",
    )
    parser.add_argument("--vae-clip-lr", type=float, default=1e-3, help="peak learning rate of the whole-clip phase")
    parser.add_argument("--vae-batch", type=int, default=8)
    parser.add_argument("--vae-lr", type=float, default=2e-3)
    parser.add_argument("--vae-kl", type=float, default=1e-4, help="weight of the latent mean's square")
    parser.add_argument(
        "--vae-from",
        default=None,
        help="a trained VAE folder (e.g. build/train_tiny/vae) to reuse instead of training one",
    )
    parser.add_argument(
        "--latents-cache",
        default=None,
        help="file keeping the encoded clips (keyed by VAE weights and clips), for pilots that reuse a VAE",
    )
    shipped = TRANSFORMER_CONFIG  # the size defaults are the shipped model's
    parser.add_argument(
        "--vae-spatial",
        type=int,
        default=None,
        choices=(2, 4),
        help="the VAE's spatial compression: 2 (16x16 latents; the default) or 4 (8x8; pair with --patch 1); with "
        "--vae-from, the reused VAE's (a different value is an error)",
    )
    parser.add_argument(
        "--vae-temporal",
        type=int,
        default=None,
        choices=(2, 4),
        help="the VAE's temporal compression: 2 (5 latent frames; the default) or 4 (3, as the real Wan VAEs; needs "
        "--vae-spatial 4); with --vae-from, the reused VAE's (a different value is an error)",
    )
    parser.add_argument(
        "--vae-channels",
        type=int,
        default=None,
        choices=VAE_CHANNELS,
        help=f"the VAE's latent channels ({Z_DIM}: the default, as the real Wan 2.1 VAE; fewer: a smaller latent for "
        "the transformer to model); with --vae-from, the reused VAE's (a different value is an error)",
    )
    parser.add_argument(
        "--patch",
        type=int,
        default=shipped["patch_size"][1],
        choices=(1, 2, 4),
        help="the transformer's spatial patch (latent pixels per token side)",
    )
    parser.add_argument(
        "--heads", type=int, default=shipped["num_attention_heads"], help="attention heads (width = heads x head dim)"
    )
    parser.add_argument(
        "--head-dim",
        type=int,
        default=shipped["attention_head_dim"],
        help="channels per attention head (even: Wan's rotary embedding splits it over time, height and width)",
    )
    parser.add_argument("--ffn", type=int, default=shipped["ffn_dim"], help="the transformer's feed-forward width")
    parser.add_argument("--layers", type=int, default=shipped["num_layers"], help="transformer blocks")
    parser.add_argument(
        "--steps",
        type=steps_arg,
        # the shipped transformer's schedule: --steps auto on a 2-core AVX-512-BF16 EPYC (run to its end in 41.6 min)
        default=5291,
        help="transformer steps (the cosine schedule's length), or 'auto': as many as fit --max-minutes at the speed "
        "measured in the warmup (the log names the number, for repeating the run)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the transformer's compute: bf16 autocast (the shipped run), fp32, or auto: bf16 only where this CPU "
        "runs a transformer-sized layer faster in bf16 than in fp32 (CPUs without bf16 instructions emulate it, "
        "10x slower; the choice and the measured speeds go to train_log.json)",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="torch.compile the transformer and (unless --no-compile-vae) the VAE's window phase; --no-compile "
        "compiles nothing unless --compile-vae is given (no C compiler needed)",
    )
    parser.add_argument(
        "--compile-vae",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the VAE's window phase (default: as --compile; the shipped run did: a 5-frame step took "
        "0.20 s there, 0.27-0.31 s eager on earlier machines, after 1-2.5 minutes of compiling; other rounding)",
    )
    parser.add_argument(
        "--kernels",
        choices=KERNELS,
        default=None,
        help="compiled kernels of the transformer: tuned (math attention under max-autotune, the shipped run's and "
        "the default with --compile: fewer seconds a step where measured, a longer compile) or stock (PyTorch's "
        "fused attention under inductor's default mode, the earlier models' run); needs --compile",
    )
    parser.add_argument(
        "--train-shift",
        type=float,
        default=None,
        help="flow shift of the training noise levels (default: the sampler's; higher leans to high noise)",
    )
    parser.add_argument(
        "--form",
        choices=FORMS,
        default="i2v",
        help="how the transformer takes the image: i2v (Wan 2.2 A14B: condition latents and mask on channels; the "
        "shipped model) or ti2v (Wan 2.2 5B: the image's latent as the first latent frame, at timestep 0)",
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=8e-3)
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default="muon",
        help="muon (the shipped run): Muon on the blocks' weight matrices, AdamW on the rest, one --lr; or adamw on "
        "every weight (the models shipped before it)",
    )
    parser.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="cosine",
        help="learning-rate schedule after the warmup: cosine to 5%% of the peak over --steps (the shipped run's), or "
        "wsd: the peak until --decay-start, then 1 - sqrt decay to zero; with --steps auto the decay starts when "
        "--decay-share of the stage's budget is left and its length is fitted from the stable phase's speed",
    )
    parser.add_argument(
        "--decay-share",
        type=float,
        default=0.2,
        help="--schedule wsd: share of the steps (or, with --steps auto, of the stage's minutes) spent decaying",
    )
    parser.add_argument(
        "--decay-start",
        type=int,
        default=None,
        help="--schedule wsd with --steps N: the step the decay starts at (repeats a --steps auto run's log)",
    )
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-minutes", type=float, default=60.0, help="stop the transformer stage past this")
    parser.add_argument(
        "--stop-at",
        type=int,
        default=None,
        help="stop the transformer stage after this step, the schedule still spanning --steps (repeats a run that "
        "--max-minutes stopped, on any machine)",
    )
    return parser


def checked_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed flags with the ones left unset resolved and contradictions refused (``parser.error``)."""
    args = parser.parse_args(argv)
    # unset compile options follow --compile: the shipped run's kernels and compiled VAE, or nothing compiled
    if args.kernels and not args.compile:
        parser.error(f"--kernels {args.kernels} names compiled kernels: it needs --compile")
    if args.compile:
        args.kernels = args.kernels or "tuned"
    if args.form == "ti2v" and args.patch != 2:
        parser.error("--form ti2v needs --patch 2: the TI2V pipeline forms its per-token timesteps for 2x2 tokens")
    if args.compile_vae and args.vae_from:
        parser.error("--compile-vae compiles the VAE stage, which --vae-from skips")
    if args.compile_vae is None:
        args.compile_vae = args.compile and not args.vae_from
    if args.steps is None and not args.max_minutes:
        parser.error("--steps auto needs --max-minutes: it fits the schedule to the budget")
    if args.steps is None and args.schedule == "cosine" and args.warmup <= AUTO_PROBE_END:
        parser.error(f"--steps auto times warmup steps {AUTO_PROBE_START}-{AUTO_PROBE_END}: it needs a longer --warmup")
    if not 0 < args.decay_share < 1:
        parser.error(f"--decay-share must lie between 0 and 1, got {args.decay_share}")
    if args.decay_start is not None and (args.schedule != "wsd" or args.steps is None):
        parser.error("--decay-start needs --schedule wsd and a fixed --steps N")
    if args.schedule == "wsd" and args.steps is not None:
        if args.decay_start is None:
            args.decay_start = args.steps - round(args.decay_share * args.steps)
        if not args.warmup <= args.decay_start < args.steps:
            parser.error(f"--decay-start {args.decay_start} must lie in [--warmup {args.warmup}, --steps {args.steps})")
    if not args.vae_from:
        for name, key in VAE_SHAPE_ARGS.items():
            setattr(args, name, getattr(args, name) or VAE_CONFIG[key])
        try:
            vae_config(args.vae_spatial, args.vae_temporal, args.vae_channels)
        except ValueError as error:
            parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = checked_args(parser, argv)
    args.t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log_rows: list = []

    args.precision, args.bf16_speedup = resolve_precision(args.precision)
    prior = dataclasses.replace(DEFAULT_PRIOR, sprites=args.sprites)
    log(f"rendering {args.clips} clips ({prior.describe(SIZE)})")
    pool = make_batch(args.seed, 0, args.clips, size=SIZE, frames=FRAMES, prior=prior)
    args.caption_pool = caption_pool(args.seed, args.clips, prior) if args.captions else None
    if args.vae_from:
        import diffusers

        log(f"reusing the trained VAE {args.vae_from} (no VAE stage)")
        vae = diffusers.AutoencoderKLWan.from_pretrained(args.vae_from).eval()
        for name, key in VAE_SHAPE_ARGS.items():
            reused, asked = int(vae.config[key]), getattr(args, name)
            if asked not in (None, reused):
                flag = "--" + name.replace("_", "-")
                parser.error(f"{flag} {asked}, but the VAE in {args.vae_from} has {key} = {reused}")
            setattr(args, name, reused)
    else:
        log("training the VAE")
        vae = train_vae(pool, args, log_rows)
    latents, conditions = cached_encode(vae, pool, Path(args.latents_cache) if args.latents_cache else None)
    mean = latents.mean(dim=(0, 2, 3, 4))
    std = latents.std(dim=(0, 2, 3, 4))
    vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())
    latents, conditions = normalize(latents, mean, std), normalize(conditions, mean, std)
    vae.save_pretrained(work / "vae", safe_serialization=True)
    log(f"encoded {len(pool)} clips to latents {tuple(latents.shape[1:])}; training the transformer")
    transformer = train_transformer(latents, conditions, args, work, log_rows)
    save_pipeline(vae, transformer, out, args.form)
    minutes = (time.perf_counter() - args.t0) / 60
    summary = {
        "seed": args.seed,
        "minutes": round(minutes, 1),
        "threads": args.threads,
        "machine": machine(),
        "data": {"clips": args.clips, "size": SIZE, "frames": FRAMES, "prior": prior.describe(SIZE)},
        "args": {k: v for k, v in vars(args).items() if k not in ("t0", "caption_pool")},
        "vae": {key: vae.config[key] for key in VAE_CONFIG},  # the VAE trained or reused
        "transformer": transformer_config(args),
        "text_tokens": TEXT_TOKENS,
        "log": log_rows,
    }
    (out / "train_log.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(f"wrote {out} in {minutes:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
