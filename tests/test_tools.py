"""The benchmark tools run end to end and report what the README quotes (numbers are not asserted: this machine
is noisy, and performance is measured by `make bench`, not by tests)."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_tools_refuse_bad_counts_before_any_work(capsys) -> None:
    """bench_runtime checks its counts before minutes of export; bench.py takes no abbreviated flags (--quick keeps
    the flags given, found by their exact spelling)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import bench
    import bench_runtime

    for bad in (["--repeats", "0"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            bench_runtime.main(bad)
        assert "need --steps >= 1 and --repeats >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--quick", "--rep", "5"])
    assert "unrecognized arguments: --rep" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_runtime_reports_every_thread_setup(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(ROOT / "tools" / "bench_runtime.py"),
        "--model",
        "tiny-pipeline:wan22",
        "--steps",
        "3",
        "--fraction",
        "0.34",
        "--repeats",
        "1",
        "--threading",
        "shared,per-session",
        "--json",
        str(out),
    ]
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "onnxruntime threads: shared" in run.stdout and "onnxruntime threads: per-session" in run.stdout
    rows = json.loads(out.read_text())
    assert rows["threading"] == "shared" and set(rows["thread_setups"]) == {"shared", "per-session"}
    for setup in rows["thread_setups"].values():
        for key in ("dymos_vs_strength0", "runtime_vs_diffusers", "runtime_overhead_share_of_step"):
            assert math.isfinite(setup[key]) and setup[key] > 0
        # one repeat is too few for a 95 % interval: the bench says so instead of claiming the target
        assert setup["dymos_vs_strength0_ci95"] is None
        assert setup["whole_run_target_verdict"].startswith("undecided")


def other_wan_form(pipe):
    """``pipe`` in the other Wan 2.2 image-to-video form (I2V's channel concat or TI2V's ``expand_timesteps``) with
    a random transformer of the same size: code that runs the transformer by hand is checked in both forms."""
    import diffusers
    import torch

    from dymos.tiny import wan_i2v_pipeline

    ti2v = not pipe.config.get("expand_timesteps")
    z_dim = int(pipe.vae.config.z_dim)
    config = {**pipe.transformer.config, "in_channels": z_dim if ti2v else 2 * z_dim + pipe.vae_scale_factor_temporal}
    torch.manual_seed(0)
    transformer = diffusers.WanTransformer3DModel.from_config(config)
    return wan_i2v_pipeline(transformer, pipe.vae, expand_timesteps=ti2v)


@pytest.mark.parametrize("form", ["shipped", "other"])
def test_wan_denoiser_input_is_what_the_pipeline_feeds_its_transformer(form: str) -> None:
    """dymos.prepare.wan_denoiser_input (the sweep's attention probe, tools/sdedit_probe.py) builds exactly the
    transformer input and timesteps of WanImageToVideoPipeline's first step, in both Wan 2.2 forms."""
    import torch
    from PIL import Image

    from dymos.models import load_pipeline
    from dymos.prepare import pipeline_denoiser_input, prepare_conditioning
    from dymos.sprites import make_clip

    pipe = load_pipeline("sprites")
    if form == "other":
        pipe = other_wan_form(pipe)
    image = Image.fromarray(make_clip(1, 3)[0])
    cond = prepare_conditioning(pipe, image, height=32, width=32, num_frames=9, text_shape=(16, 16))
    seen: list[dict] = []
    hook = pipe.transformer.register_forward_pre_hook(lambda _, args, kwargs: seen.append(kwargs), with_kwargs=True)
    latents = torch.randn(1, 16, 5, 16, 16, generator=torch.Generator().manual_seed(0))
    pipe(
        image=image,
        prompt_embeds=torch.from_numpy(cond["prompt_embeds"]),
        height=32,
        width=32,
        num_frames=9,
        num_inference_steps=2,
        guidance_scale=1.0,
        latents=latents,
        output_type="latent",
    )
    hook.remove()
    first = pipe.scheduler.timesteps[:1]
    hidden_states, timestep = pipeline_denoiser_input(pipe, latents, torch.from_numpy(cond["condition"]), first)
    assert torch.equal(hidden_states, seen[0]["hidden_states"])
    assert torch.equal(timestep, seen[0]["timestep"])
    assert timestep.shape == ((1, 5 * 8 * 8) if pipe.config.get("expand_timesteps") else (1,))


@pytest.mark.parametrize("form", ["shipped", "other"])
def test_sweep_attention_probe_runs_in_both_wan_forms(form: str) -> None:
    """The sweep's first-step attention probe builds the pipeline's inputs in either Wan 2.2 form (TI2V's condition
    is one latent frame: the video's latent frames come from its frame count) and the bias lowers the mass."""
    from PIL import Image

    from dymos.models import load_pipeline
    from dymos.prepare import prepare_conditioning
    from dymos.sprites import make_clip
    from dymos.sweep import probe_first_step

    pipe = load_pipeline("sprites")
    if form == "other":
        pipe = other_wan_form(pipe)
    images = [Image.fromarray(make_clip(1, i)[0]) for i in range(2)]
    conditions = [
        prepare_conditioning(pipe, image, height=32, width=32, num_frames=9, text_shape=(16, 16)) for image in images
    ]
    probe = probe_first_step(pipe, conditions, [0.0, 4.0], steps=4, frames=9)
    assert probe["clips"] == 2 and probe["uniform_mass"] == pytest.approx(64 / 320)  # 5 latent frames of 8x8 tokens
    masses = [row["mean_mass"] for row in probe["strengths"]]
    assert 0 < masses[1] < masses[0] < 1


@pytest.mark.parametrize("form", ["shipped", "other"])
def test_sdedit_probe_from_pure_noise_is_the_pipelines_own_generation(form: str) -> None:
    """tools/sdedit_probe.py's loop, started at sigma 1, is the diffusers pipeline's generation (same noise, same
    steps): only its starting latents differ, so its other rows measure the model, not a different sampler. In
    the shipped model's Wan 2.2 form and the other (random weights)."""
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(ROOT / "tools"))
    from sdedit_probe import FRAMES, SIZE, sample_from

    from dymos.models import load_pipeline
    from dymos.prepare import prepare_conditioning
    from dymos.sprites import make_clip

    pipe = load_pipeline("sprites")
    if form == "other":
        pipe = other_wan_form(pipe)
    clip = make_clip(1, 3)
    image = Image.fromarray(clip[0])
    text = prepare_conditioning(pipe, image, height=SIZE, width=SIZE, num_frames=FRAMES, text_shape=(16, 16))
    embeds = torch.from_numpy(text["prompt_embeds"])
    ours = sample_from(pipe, clip, 1.0, steps=4, seed=5, prompt_embeds=embeds)
    frames = pipe(
        image=image,
        prompt_embeds=embeds,
        height=SIZE,
        width=SIZE,
        num_frames=FRAMES,
        num_inference_steps=4,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(5),
        output_type="np",
    ).frames[0]
    theirs = (np.asarray(frames) * 255).round().astype(np.int16)
    assert ours.shape == theirs.shape
    assert np.abs(ours.astype(np.int16) - theirs).max() <= 1  # float rounding of the [-1, 1] -> uint8 mapping
    noised = sample_from(pipe, clip, 0.5, steps=4, seed=5, prompt_embeds=embeds)
    assert np.abs(noised.astype(np.int16) - theirs).max() > 1  # a later start is a different video


def test_train_tiny_writes_a_loadable_pipeline_and_reuses_its_latent_cache(tmp_path: Path, capsys) -> None:
    """A few steps of each stage of tools/train_tiny.py (the shipped model's recipe, tiny counts): the folder it
    writes loads with plain ``from_pretrained``, and a pilot that reuses the VAE takes the encoded clips from the
    cache instead of encoding again."""

    sys.path.insert(0, str(ROOT / "tools"))
    import train_tiny

    common = ["--clips", "4", "--steps", "2", "--batch", "2", "--warmup", "1", "--checkpoint-every", "1"]
    common += ["--no-compile", "--threads", "1", "--latents-cache", str(tmp_path / "latents.pt")]
    first = ["--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--vae-steps", "1", "--vae-batch", "1"]
    first += ["--vae-clip-steps", "2"]
    assert train_tiny.main(common + first) == 0
    pipe = _plain_from_pretrained(tmp_path / "out")
    assert pipe.transformer.config.num_layers == train_tiny.TRANSFORMER_CONFIG["num_layers"]
    log = json.loads((tmp_path / "out" / "train_log.json").read_text())
    assert [row["step"] for row in log["log"] if row["stage"] == "transformer"] == [0, 1]
    assert [row["step"] for row in log["log"] if row["stage"] == "vae-clips"] == [0, 1]  # the whole-clip phase
    assert log["machine"]["cpu"] and log["machine"]["cores"] >= 1  # the machine the step times belong to
    assert (tmp_path / "work" / "transformer-step1").is_dir()
    capsys.readouterr()
    again = [
        "--out",
        str(tmp_path / "again"),
        "--work",
        str(tmp_path / "work2"),
        "--vae-from",
        str(tmp_path / "work" / "vae"),
        "--heads",
        "4",
        "--head-dim",
        "32",
    ]
    assert train_tiny.main(common + again) == 0
    assert "encoded latents from" in capsys.readouterr().out
    config = json.loads((tmp_path / "again" / "transformer" / "config.json").read_text())
    assert (config["num_attention_heads"], config["attention_head_dim"]) == (4, 32)  # same width, more heads
    ti2v = [
        "--out",
        str(tmp_path / "ti2v"),
        "--work",
        str(tmp_path / "work3"),
        "--form",
        "ti2v",
        "--optimizer",
        "adamw",
    ]
    assert train_tiny.main([*common, *ti2v, "--vae-from", str(tmp_path / "work" / "vae")]) == 0
    pipe = _plain_from_pretrained(tmp_path / "ti2v")
    assert pipe.config.expand_timesteps and pipe.transformer.config.in_channels == 16  # the latents alone
    assert _two_step_video(pipe).shape == (9, 32, 32, 3)  # diffusers' own TI2V loop runs it


def test_train_tiny_muon_takes_the_blocks_matrices_and_adamw_the_rest() -> None:
    """``--optimizer muon``: every parameter is stepped by exactly one optimizer, Muon by the blocks' 2-D weights
    only (the patch embedding, condition embedder, output head, norms and biases stay on AdamW), and one step of
    each moves the weights."""
    import diffusers
    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    import train_tiny

    config = {**train_tiny.TRANSFORMER_CONFIG, "num_layers": 1}
    model = diffusers.WanTransformer3DModel(**config)
    muon, adamw = train_tiny.optimizers(model, "muon", 1e-3)
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    on_muon = {names[id(p)] for p in muon.param_groups[0]["params"]}
    on_adamw = {names[id(p)] for p in adamw.param_groups[0]["params"]}
    assert on_muon.isdisjoint(on_adamw) and on_muon | on_adamw == set(names.values())
    assert on_muon and all(n.startswith("blocks.") and model.get_parameter(n).ndim == 2 for n in on_muon)
    assert "blocks.0.attn1.to_q.weight" in on_muon and "proj_out.weight" in on_adamw
    before = model.blocks[0].attn1.to_q.weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    muon.step()
    assert not torch.equal(before, model.blocks[0].attn1.to_q.weight)
    assert [type(o) for o in train_tiny.optimizers(model, "adamw", 1e-3)] == [torch.optim.AdamW]
    with pytest.raises(ValueError, match="--optimizer"):
        train_tiny.optimizers(model, "sgd", 1e-3)


def _plain_from_pretrained(folder: Path) -> Any:
    """A pipeline folder train_tiny wrote, loaded with diffusers' own ``from_pretrained`` (no dymos loader): it has
    no text or image encoder."""
    import diffusers

    return diffusers.WanImageToVideoPipeline.from_pretrained(
        folder, text_encoder=None, tokenizer=None, image_encoder=None, image_processor=None
    )


def _two_step_video(pipe) -> Any:
    """Two denoising steps of a sprite pipeline at the trained 9x32x32 size (a black input image, no prompt)."""
    import torch
    from PIL import Image

    return pipe(
        image=Image.new("RGB", (32, 32)),
        prompt_embeds=torch.zeros(1, 16, 16),
        height=32,
        width=32,
        num_frames=9,
        num_inference_steps=2,
        guidance_scale=1.0,
        output_type="np",
    ).frames[0]


@pytest.mark.parametrize("temporal", [2, 4])
def test_train_tiny_vae_spatial_4_gives_8x8_latents_and_a_patch_1_transformer(tmp_path: Path, temporal: int) -> None:
    """``--vae-spatial 4 --patch 1``: a VAE with one more resampling level (8x8 latents for 32x32 clips) and a
    transformer with a token per latent pixel; ``--vae-temporal 4`` also halves time there (3 latent frames, a
    4-channel first-frame mask as in the real Wan I2V models); the pipeline it writes generates at the trained
    size."""

    sys.path.insert(0, str(ROOT / "tools"))
    import train_tiny

    command = ["--clips", "4", "--steps", "2", "--batch", "2", "--warmup", "1", "--checkpoint-every", "10"]
    command += ["--no-compile", "--threads", "1", "--vae-steps", "1", "--vae-batch", "1", "--vae-clip-steps", "1"]
    command += ["--vae-spatial", "4", "--vae-temporal", str(temporal), "--patch", "1"]
    command += ["--out", str(tmp_path / "out"), "--work", str(tmp_path / "w")]
    assert train_tiny.main(command) == 0
    pipe = _plain_from_pretrained(tmp_path / "out")
    assert pipe.vae.config.scale_factor_spatial == 4 and list(pipe.transformer.config.patch_size) == [1, 1, 1]
    log = json.loads((tmp_path / "out" / "train_log.json").read_text())
    assert log["vae"]["dim_mult"] == [1, 1, 1] and log["vae"]["scale_factor_spatial"] == 4
    assert log["vae"]["scale_factor_temporal"] == temporal
    assert pipe.transformer.config.in_channels == 16 + temporal + 16  # latents, mask, condition
    assert _two_step_video(pipe).shape == (9, 32, 32, 3)  # generates at the trained size
    reuse = ["--vae-from", str(tmp_path / "w" / "vae"), "--clips", "4", "--no-compile"]
    reuse += ["--out", str(tmp_path / "again"), "--work", str(tmp_path / "w2")]
    with pytest.raises(SystemExit):  # the reused VAE compresses 4x: asking for 2x is refused, not ignored
        train_tiny.main([*reuse, "--vae-spatial", "2"])
    with pytest.raises(SystemExit):
        train_tiny.main([*reuse, "--vae-temporal", str(6 - temporal)])
    with pytest.raises(SystemExit):  # each resampling level halves space: 4x in time needs 4x in space
        train_tiny.main(["--vae-temporal", "4", "--out", str(tmp_path / "no"), "--work", str(tmp_path / "w3")])


def test_train_tiny_vae_channels_sizes_the_latent_and_the_transformer_around_it(tmp_path: Path) -> None:
    """``--vae-channels 4``: a VAE with 4 latent channels and a transformer whose input (latents, mask, condition)
    and output follow it; the pipeline it writes generates at the trained size, and a pilot reusing that VAE takes
    its channel count from the VAE's config (asking for another is refused, not ignored)."""

    sys.path.insert(0, str(ROOT / "tools"))
    import train_tiny

    command = ["--clips", "4", "--steps", "2", "--batch", "2", "--warmup", "1", "--checkpoint-every", "10"]
    command += ["--no-compile", "--threads", "1", "--vae-steps", "1", "--vae-batch", "1", "--vae-clip-steps", "1"]
    command += ["--layers", "1", "--vae-channels", "4", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "w")]
    assert train_tiny.main(command) == 0
    pipe = _plain_from_pretrained(tmp_path / "out")
    assert pipe.vae.config.z_dim == 4 and len(pipe.vae.config.latents_mean) == 4
    assert (pipe.transformer.config.in_channels, pipe.transformer.config.out_channels) == (4 + 2 + 4, 4)
    assert _two_step_video(pipe).shape == (9, 32, 32, 3)  # generates at the trained size
    reuse = ["--vae-from", str(tmp_path / "w" / "vae"), "--clips", "4", "--steps", "1", "--batch", "2"]
    reuse += ["--warmup", "1", "--no-compile", "--threads", "1", "--layers", "1"]
    assert train_tiny.main([*reuse, "--out", str(tmp_path / "again"), "--work", str(tmp_path / "w2")]) == 0
    config = json.loads((tmp_path / "again" / "transformer" / "config.json").read_text())
    assert (config["in_channels"], config["out_channels"]) == (10, 4)
    with pytest.raises(SystemExit):
        train_tiny.main([*reuse, "--vae-channels", "16", "--out", str(tmp_path / "no"), "--work", str(tmp_path / "w3")])
    with pytest.raises(SystemExit):  # argparse refuses a count the VAE recipe does not offer
        train_tiny.main(["--vae-channels", "5", "--out", str(tmp_path / "no"), "--work", str(tmp_path / "w3")])


def _one_layer_run(tmp_path: Path) -> list[str]:
    """train_tiny flags for the smallest whole run: a one-layer transformer, one step per VAE phase."""
    command = ["--layers", "1", "--heads", "1", "--ffn", "16", "--no-compile", "--threads", "1"]
    command += ["--vae-steps", "1", "--vae-clip-steps", "1", "--vae-batch", "1", "--checkpoint-every", "1000"]
    return [*command, "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]


def test_train_tiny_auto_steps_fits_the_budget_and_names_the_count(tmp_path: Path, monkeypatch, capsys) -> None:
    """``--steps auto`` fixes the schedule's length inside the warmup from the measured speed, logs it (so
    ``--steps N`` repeats the run), and the run ends at that step or at the budget; bad values are refused."""
    import time

    sys.path.insert(0, str(ROOT / "tools"))
    import train_tiny

    # the arithmetic: 100 probe steps in 10 s with 1 minute left -> 0.95 * 60 s / 0.1 s = 570 more steps
    args = train_tiny.argparse.Namespace(max_minutes=1.0, t0=time.perf_counter(), schedule="cosine")
    assert 120 + 569 <= train_tiny.fit_schedule(120, 10.0, args) <= 120 + 570

    monkeypatch.setattr(train_tiny, "AUTO_PROBE_START", 1)
    monkeypatch.setattr(train_tiny, "AUTO_PROBE_END", 3)
    command = ["--clips", "4", "--steps", "auto", "--batch", "2", "--warmup", "4", "--max-minutes", "0.15"]
    command += _one_layer_run(tmp_path)
    assert train_tiny.main(command) == 0
    log = json.loads((tmp_path / "out" / "train_log.json").read_text())
    planned = [row["auto_steps"] for row in log["log"] if "auto_steps" in row]
    assert len(planned) == 1 and planned[0] > 3
    assert log["args"]["steps_run"] == planned[0]
    assert f"repeat with --steps {planned[0]}" in capsys.readouterr().out
    transformer = json.loads((tmp_path / "out" / "transformer" / "config.json").read_text())
    assert (transformer["num_layers"], transformer["num_attention_heads"], transformer["ffn_dim"]) == (1, 1, 16)

    bad_args = (["--steps", "0"], ["--steps", "auto", "--warmup", "2"], ["--steps", "auto", "--max-minutes", "0"])
    for bad in (*bad_args, ["--form", "ti2v", "--patch", "1"]):
        with pytest.raises(SystemExit):
            train_tiny.main(bad)


def test_train_tiny_wsd_holds_the_peak_then_decays_to_zero_fitted_late(tmp_path: Path, monkeypatch, capsys) -> None:
    """``--schedule wsd``: warmup, the peak rate, then a 1 - sqrt decay to zero. With ``--steps auto`` the decay
    starts when ``--decay-share`` of the stage's budget is left, its length fitted then and logged with the step
    it started at (so ``--steps N --decay-start M`` repeats the run); with ``--steps N`` it starts at
    N - share x N; contradictory flags are refused."""
    sys.path.insert(0, str(ROOT / "tools"))
    import train_tiny

    rates = [train_tiny.wsd_lr(step, 1.0, 10, 60, 100) for step in range(100)]
    assert rates[0] == 0.1 and rates[9] == 1.0 and set(rates[10:61]) == {1.0}
    assert all(a >= b for a, b in itertools.pairwise(rates[9:])) and 0 < rates[99] < 0.2
    assert abs(rates[70] - (1 - (10 / 40) ** 0.5)) < 1e-12
    assert train_tiny.wsd_lr(5000, 1.0, 10, None, None) == 1.0  # decay not fixed yet: the peak

    monkeypatch.setattr(train_tiny, "AUTO_PROBE_START", 1)
    monkeypatch.setattr(train_tiny, "AUTO_PROBE_END", 3)
    command = ["--clips", "4", "--steps", "auto", "--schedule", "wsd", "--decay-share", "0.5", "--batch", "2"]
    command += ["--warmup", "2", "--max-minutes", "0.15", "--sprites", "2", "--captions", *_one_layer_run(tmp_path)]
    assert train_tiny.main(command) == 0
    log = json.loads((tmp_path / "out" / "train_log.json").read_text())
    assert log["data"]["prior"].startswith("2-2 sprites")  # --sprites: the training clips' count, recorded
    assert log["args"]["captions"] is True  # trained on the clips' caption embeddings
    (planned,) = [row for row in log["log"] if "auto_steps" in row]
    assert 3 <= planned["decay_start"] < planned["auto_steps"] == log["args"]["steps_run"]
    assert log["args"]["decay_start_run"] == planned["decay_start"]
    repeat = f"repeat with --steps {planned['auto_steps']} --decay-start {planned['decay_start']}"
    assert repeat in capsys.readouterr().out
    rates = {row["step"]: row["lr"] for row in log["log"] if "lr" in row}
    assert rates[0] == pytest.approx(0.5 * log["args"]["lr"])  # warmup; the rest is logged every 100 steps

    fixed = train_tiny.checked_args(train_tiny.build_parser(), ["--schedule", "wsd", "--steps", "1000"])
    assert fixed.decay_start == 800  # the default share, 0.2: the decay takes the last fifth of the steps
    bad = (
        ["--schedule", "wsd", "--decay-share", "1.5"],
        ["--schedule", "cosine", "--steps", "100", "--decay-start", "50"],
        ["--schedule", "wsd", "--steps", "auto", "--decay-start", "50"],
        ["--schedule", "wsd", "--steps", "100", "--decay-start", "100"],
        ["--schedule", "wsd", "--steps", "100", "--warmup", "200"],
    )
    for flags in bad:
        with pytest.raises(SystemExit):
            train_tiny.main(flags)


def test_train_tiny_precision_auto_takes_bf16_only_where_it_measures_faster(tmp_path: Path) -> None:
    """``--precision auto`` measures bf16 autocast against fp32 and takes bf16 only for a clear gain (an AVX2-only
    CPU emulates bf16 at about a 12th of fp32's speed); an explicit choice measures nothing; the log records both."""
    sys.path.insert(0, str(ROOT / "tools"))
    import train_tiny

    def never() -> float:
        raise AssertionError("an explicit precision must not be measured")

    assert train_tiny.resolve_precision("fp32", never) == ("fp32", None)
    assert train_tiny.resolve_precision("bf16", never) == ("bf16", None)
    assert train_tiny.resolve_precision("auto", lambda: 1.6) == ("bf16", 1.6)  # AMX / AVX512-BF16 machines
    assert train_tiny.resolve_precision("auto", lambda: 1.05) == ("fp32", 1.05)  # no clear gain: keep fp32
    assert train_tiny.resolve_precision("auto", lambda: 0.07) == ("fp32", 0.07)  # emulated bf16
    ratio = train_tiny.bf16_speedup(tokens=64, width=8, hidden=16, repeats=1)
    assert 0 < ratio < float("inf")

    command = ["--clips", "4", "--steps", "1", "--batch", "2", "--warmup", "1", "--precision", "fp32"]
    command += _one_layer_run(tmp_path)
    assert train_tiny.main(command) == 0
    log = json.loads((tmp_path / "out" / "train_log.json").read_text())
    assert (log["args"]["precision"], log["args"]["bf16_speedup"]) == ("fp32", None)
    with pytest.raises(SystemExit):
        train_tiny.main(["--precision", "fp16"])


def test_train_tiny_tuned_kernels_run_the_same_model_through_math_attention() -> None:
    """``--kernels tuned`` switches the transformer's attention to explicit matmuls (diffusers' math backend) before
    compiling: the same function as the stock kernels, within fp32 rounding; an unknown name is refused."""
    import copy

    import diffusers
    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    import train_tiny

    torch.manual_seed(0)
    config = {**train_tiny.TRANSFORMER_CONFIG, "num_layers": 1, "ffn_dim": 16}
    stock = diffusers.WanTransformer3DModel(**config).eval()
    tuned = copy.deepcopy(stock)
    train_tiny.compiled(tuned, "tuned")  # compiles lazily: the eager module below runs with the backend it set
    backends = {getattr(m.processor, "_attention_backend", None) for m in tuned.modules() if hasattr(m, "processor")}
    assert {str(getattr(b, "value", b)) for b in backends} == {"_native_math"}
    inputs = (torch.randn(2, config["in_channels"], 3, 8, 8), torch.tensor([999.0, 10.0]), torch.randn(2, 4, 16))
    with torch.no_grad():
        expected, actual = (m(*inputs, return_dict=False)[0] for m in (stock, tuned))
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="--kernels"):
        train_tiny.compiled(stock, "fast")
    with pytest.raises(SystemExit):
        train_tiny.main(["--kernels", "tuned", "--no-compile"])


def test_train_tiny_compiles_as_the_shipped_run_by_default(tmp_path: Path, monkeypatch) -> None:
    """By default the VAE's window phase goes through ``torch.compile`` (static shapes), the whole-clip phase stays
    eager (its compile took longer than it saved), and the transformer compiles with the tuned kernels, as the
    shipped run did; ``--no-compile-vae`` leaves the VAE eager and ``--no-compile`` compiles nothing. torch.compile
    is replaced by a recorder here (a real compile of the VAE takes minutes) that runs the transformer eager."""
    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    import train_tiny

    calls: list[tuple[int, ...]] = []
    compiled: list[dict] = []
    transformer_modes: list[dict] = []

    def recording_compile(fn, **options):
        if fn is not train_tiny.vae_losses:
            transformer_modes.append(options)
            return fn
        compiled.append(options)

        def run(vae, x):
            calls.append(tuple(x.shape))
            return fn(vae, x)

        return run

    monkeypatch.setattr(torch, "compile", recording_compile)
    command = ["--clips", "4", "--steps", "1", "--batch", "2", "--warmup", "1", "--precision", "fp32"]
    command += _one_layer_run(tmp_path)
    command.remove("--no-compile")
    command[command.index("--vae-steps") + 1] = "2"
    assert train_tiny.main(command) == 0
    assert compiled == [{"dynamic": False}]
    assert calls == [(1, 3, 5, 32, 32)] * 2  # the two window steps; the whole-clip step ran eager:
    stages = [row["stage"] for row in json.loads((tmp_path / "out" / "train_log.json").read_text())["log"]]
    assert "vae-clips" in stages
    tuned = [{"mode": "max-autotune-no-cudagraphs"}]
    assert transformer_modes == tuned  # --kernels tuned
    reuse = ["--vae-from", str(tmp_path / "work" / "vae")]
    for refused in (["--compile-vae", *reuse], ["--kernels", "stock", "--no-compile"]):
        with pytest.raises(SystemExit):
            train_tiny.main(refused)
    for flags, vae_compiled, transformer in (
        (["--no-compile-vae"], False, tuned),
        (["--no-compile"], False, []),
        (["--no-compile", "--compile-vae"], True, []),  # the VAE alone
        (reuse, False, tuned),  # no VAE stage to compile
    ):
        compiled.clear()
        calls.clear()
        transformer_modes.clear()
        assert train_tiny.main([*command, *flags]) == 0
        assert bool(compiled) == vae_compiled and transformer_modes == transformer


def test_median_interval_covers_the_median_at_the_stated_level() -> None:
    """The order-statistic interval of tools/bench_runtime.py: exact ranks for small n (checked against the binomial
    table), None below 6 values at 95 %, and at least 95 % coverage of a skewed distribution's true median."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tools"))
    from bench_runtime import median_confidence_interval, target_verdict

    assert median_confidence_interval([1.0, 2.0, 3.0, 4.0, 5.0]) is None  # 2 / 2**5 = 0.0625 > 0.05
    assert median_confidence_interval([6.0, 1.0, 2.0, 5.0, 3.0, 4.0]) == (1.0, 6.0)  # 2 / 2**6 = 0.031
    # n = 20: P(B <= 5) = 0.0207 <= 0.025 < P(B <= 6) = 0.0577, so ranks 6 and 15
    assert median_confidence_interval(np.arange(1.0, 21.0)) == (6.0, 15.0)
    rng = np.random.default_rng(0)
    true_median = 1.0 + math.log(2)  # of 1 + Exp(1), skewed like timings
    trials = 2000
    covered = 0
    for _ in range(trials):
        low, high = median_confidence_interval(1.0 + rng.exponential(size=61))
        covered += low <= true_median <= high
    assert covered / trials >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / trials)
    assert target_verdict((0.99, 1.005), 1.01) == "met"
    assert target_verdict((1.02, 1.03), 1.01) == "missed"
    assert target_verdict((1.0, 1.02), 1.01).startswith("undecided")
    assert target_verdict(None, 1.01).startswith("undecided")
