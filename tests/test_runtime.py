"""The torch-free runtime on exported pipelines (tiny random Wan / CogVideoX / SVD ones and the shipped trained
sprite model), against the diffusers pipeline with DyMoS."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dymos
from dymos.catalog import SHIPPED_MODELS
from dymos.export.build import ExportOptions, run_export
from dymos.manifest import ManifestError
from dymos.models import load_pipeline
from dymos.prepare import TEXT_MASK_ENTRIES, prepare
from dymos.runtime.artifacts import ExportDir, FeedError, SubmodelSpec
from dymos.runtime.loop import RunError, RunRequest, RunResult, load_conditioning, sample
from dymos.schedule import StrengthSchedule
from tests.conftest import SharedExports

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4
# Stated tolerances, runtime (onnxruntime, numpy scheduler) vs diffusers (PyTorch), fp32, 4 UniPC steps:
LATENT_ATOL = 1e-4  # final latents
FRAME_ATOL = 2  # decoded uint8 frames (1 = one rounding step)
PREPARE_SEED = 5  # CogVideoX samples its image latents: prepare and the pipeline use the same torch seed
# Wan 2.2 A14B at 4 steps: timesteps 999, 900 run the high-noise expert, 750, 500 the low-noise one (boundary 900);
# DyMoS on for 3 steps so both experts see a strength, and a second guidance scale so its use is checked.
FIRST_STEPS = {"wan22-a14b": 3}
GUIDANCE_2 = {"wan22-a14b": 3.0}


# `dymos run` called inside the pytest process: onnxruntime's shared thread pool (the CLI's default) would make every
# later per-session onnxruntime session in this process fail (polygraphy's included), so these runs opt out; the
# default is exercised in a subprocess (test_sampling_loop_runs_with_torch_unimportable)
IN_PROCESS = ["--threading", "per-session"]


def _quiet(line: str) -> None:
    pass


def _model_spec(name: str) -> str:
    return name if name in SHIPPED_MODELS else f"tiny-pipeline:{name}"


def _prepare(export: Path, factory: pytest.TempPathFactory, prompt: str = "a red ball bouncing") -> Path:
    folder = factory.mktemp("cond")
    image = Image.fromarray((np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8))
    image.save(folder / "input.png")
    return prepare(export, folder / "input.png", prompt, folder / "cond.npz", seed=PREPARE_SEED)


class TinyExports:
    """The pipelines these tests run (tiny random ones and the shipped model), each exported once per test session
    (``SharedExports``: the expensive part) and conditioned through `dymos prepare` once per module, on first use."""

    def __init__(self, factory: pytest.TempPathFactory, shared: SharedExports) -> None:
        self._factory = factory
        self._shared = shared
        self._conditioning: dict[str, Path] = {}

    def export(self, name: str) -> Path:
        return self._shared.get(_model_spec(name))

    def conditioning(self, name: str) -> Path:
        if name not in self._conditioning:
            prompt = "" if name == "svd" else "a red ball bouncing"  # SVD conditions on the image alone
            self._conditioning[name] = _prepare(self.export(name), self._factory, prompt)
        return self._conditioning[name]


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory, shared_exports: SharedExports) -> TinyExports:
    return TinyExports(tmp_path_factory, shared_exports)


@pytest.fixture(scope="module")
def exported(pipelines: TinyExports) -> Path:
    """The tiny Wan 2.2 I2V pipeline's export, which most tests use."""
    return pipelines.export("wan22")


@pytest.fixture(scope="module")
def conditioning(pipelines: TinyExports) -> Path:
    return pipelines.conditioning("wan22")


def _pipeline_run(
    name: str,
    image: Path,
    cond: dict[str, np.ndarray],
    latents: np.ndarray,
    strengths: list[float],
    video: dict,
    model: str | None = None,
    embedded_guidance: float = 1.0,
) -> tuple:
    """The same generation through the diffusers pipeline with DyMoS enabled (``model``: a pipeline folder of
    ``name``'s kind instead of ``name`` itself; ``embedded_guidance``: HunyuanVideo's ``guidance_scale``)."""
    pipe = load_pipeline(model or _model_spec(name))
    batch = len(strengths)
    kwargs = dict(
        height=video["height"],
        width=video["width"],
        num_frames=video["frames"],
        num_inference_steps=STEPS,
        latents=torch.from_numpy(latents),
    )
    if name == "svd":  # image-only conditioning; guidance ramps per frame from 1 to max_guidance_scale
        kwargs.update(image=Image.open(image).convert("RGB"), num_videos_per_prompt=batch, max_guidance_scale=5.0)
    elif name == "ltx":  # packed latents; given latents, the pipeline skips the image: its latent is put in frame 0
        first = np.broadcast_to(cond["condition"], (batch, *cond["condition"].shape[1:]))
        start = torch.from_numpy(np.concatenate([first, latents[:, :, 1:]], axis=2))
        kwargs.update(
            latents=start.permute(0, 2, 3, 4, 1).reshape(batch, -1, start.shape[1]),  # patch size 1
            **{k: torch.from_numpy(cond[k]).repeat(batch, 1, 1) for k in ("prompt_embeds", "negative_prompt_embeds")},
            **{k: torch.from_numpy(cond[k]).long().repeat(batch, 1) for k in TEXT_MASK_ENTRIES},
            guidance_scale=5.0,
        )
    elif name.startswith("hunyuanvideo"):  # CFG is its true CFG; a guidance embedding keeps the runtime's default 1
        kwargs.update(
            image=Image.open(image).convert("RGB"),
            **{k: torch.from_numpy(cond[k]).repeat(batch, 1, 1) for k in ("prompt_embeds", "negative_prompt_embeds")},
            **{k: torch.from_numpy(cond[k]).long().repeat(batch, 1) for k in TEXT_MASK_ENTRIES},
            pooled_prompt_embeds=torch.from_numpy(cond["pooled_prompt_embeds"]).repeat(batch, 1),
            negative_pooled_prompt_embeds=torch.from_numpy(cond["negative_pooled_prompt_embeds"]).repeat(batch, 1),
            true_cfg_scale=5.0,
            guidance_scale=embedded_guidance,
        )
    else:
        kwargs.update(
            image=Image.open(image).convert("RGB"),
            prompt_embeds=torch.from_numpy(cond["prompt_embeds"]).repeat(batch, 1, 1),
            negative_prompt_embeds=torch.from_numpy(cond["negative_prompt_embeds"]).repeat(batch, 1, 1),
            guidance_scale=5.0,
        )
        if name in GUIDANCE_2:
            kwargs.update(guidance_scale_2=GUIDANCE_2[name])
    with dymos.enable(pipe, strength=strengths, first_steps=FIRST_STEPS.get(name, 2)):
        generator = torch.Generator().manual_seed(PREPARE_SEED)
        latent_out = pipe(**kwargs, output_type="latent", generator=generator).frames
        generator = torch.Generator().manual_seed(PREPARE_SEED)
        frames = pipe(**kwargs, output_type="np", generator=generator).frames
    if latent_out.ndim == 3:  # LTX's packed tokens -> [B, C, F, H, W]
        f, h, w = video["latent_frames"], video["latent_height"], video["latent_width"]
        latent_out = latent_out.reshape(batch, f, h, w, -1).permute(0, 4, 1, 2, 3)
    return latent_out.numpy(), (np.asarray(frames) * 255).round().astype(np.uint8)


def _assert_one_run_equals_the_pipeline(
    name: str,
    export: ExportDir,
    cond: dict[str, np.ndarray],
    image: Path,
    latents: np.ndarray,
    *,
    model: str | None = None,
    embedded_guidance: float | None = None,
) -> RunResult:
    """One video at s = 2.5 (DyMoS on for 2 of the steps, CFG 5), the runtime against the pipeline on the same
    latents and conditioning: final latents and frames within the stated tolerances."""
    request_ = RunRequest(
        strength=[2.5],
        steps=STEPS,
        guidance_scale=5.0,
        embedded_guidance=embedded_guidance,
        latents=latents,
        schedule=StrengthSchedule(first_steps=2),
    )
    result = sample(export, cond, request_)
    video = export.manifest["pipeline"]["video"]
    guidance = {} if embedded_guidance is None else {"embedded_guidance": embedded_guidance}
    ref_latents, ref_frames = _pipeline_run(name, image, cond, latents, [2.5], video, model=model, **guidance)
    np.testing.assert_allclose(result.latents, ref_latents, atol=LATENT_ATOL, rtol=0)
    assert np.abs(result.frames.astype(int) - ref_frames.astype(int)).max() <= FRAME_ATOL
    return result


RUNTIME_PIPELINES = [
    *("wan22", "wan21", "wan22-a14b", "wan22-ti2v", "cogvideox", "cogvideox15", "svd", "ltx", "hunyuanvideo"),
    *("hunyuanvideo-33ch", "sprites"),
]


@pytest.mark.parametrize("name", RUNTIME_PIPELINES)
@pytest.mark.parametrize("strengths", [[0.0], [2.5], [0.0, 2.5]], ids=["s0", "s2.5", "mixed"])
def test_runtime_matches_the_diffusers_pipeline(pipelines: TinyExports, name: str, strengths: list[float]) -> None:
    exported, conditioning = pipelines.export(name), pipelines.conditioning(name)
    export = ExportDir.open(exported)
    cond = load_conditioning(str(conditioning))
    pipeline = export.manifest["pipeline"]
    video = pipeline["video"]
    sizes = {
        "C": pipeline["vae"]["latent_channels"],
        "F": video["latent_frames"],
        "H": video["latent_height"],
        "W": video["latent_width"],
    }
    shape = (len(strengths), *(sizes[a] for a in pipeline["recipe"]["latent_layout"][1:]))
    latents = np.random.default_rng(3).standard_normal(shape, dtype=np.float32)
    first_steps = FIRST_STEPS.get(name, 2)
    request_ = RunRequest(
        strength=strengths,
        steps=STEPS,
        guidance_scale=5.0,
        guidance_scale_2=GUIDANCE_2.get(name),
        latents=latents,
        schedule=StrengthSchedule(first_steps=first_steps),
    )
    result = sample(export, cond, request_)
    assert result.strengths == [strengths] * first_steps + [[0.0] * len(strengths)] * (STEPS - first_steps)
    image = conditioning.parent / "input.png"
    if name.startswith(("cogvideox", "hunyuanvideo")) and len(strengths) > 1:
        # diffusers' CogVideoX and HunyuanVideo I2V cannot batch one image (CogVideoX wants one image per item and
        # draws a separate image latent for each; HunyuanVideo concatenates its one image latent to the batch's
        # latents): compare every item of the runtime's mixed batch with its own single-item pipeline run.
        runs = [_pipeline_run(name, image, cond, latents[i : i + 1], [s], video) for i, s in enumerate(strengths)]
        ref_latents, ref_frames = (np.concatenate(parts) for parts in zip(*runs))
    else:
        ref_latents, ref_frames = _pipeline_run(name, image, cond, latents, strengths, video)
    np.testing.assert_allclose(result.latents, ref_latents, atol=LATENT_ATOL, rtol=0)
    assert np.abs(result.frames.astype(int) - ref_frames.astype(int)).max() <= FRAME_ATOL


def test_strength_changes_the_video(exported: Path, conditioning: Path) -> None:
    export = ExportDir.open(exported)
    cond = load_conditioning(str(conditioning))
    result = sample(
        export, cond, RunRequest(strength=[0.0, 4.0], steps=STEPS, schedule=StrengthSchedule(first_steps=2))
    )
    assert np.abs(result.latents[0] - result.latents[1]).max() > 1e-3


def test_fp16_pipeline_export_runs_the_whole_loop(exported: Path, conditioning: Path, tmp_path: Path) -> None:
    """An fp16 export takes fp16 inputs everywhere, the VAE decoder's latents included (it used to be fed float32
    and failed after the whole sampling loop); its video stays within fp16's error of the fp32 export's. A bf16
    export is refused before any work."""
    fp16 = ExportDir.open(
        run_export(ExportOptions(model="tiny-pipeline:wan22", out=tmp_path, precision="fp16"), log=_quiet).directory
    )
    assert fp16.submodel("vae_decoder").inputs[0]["dtype"] == "float16"
    cond = load_conditioning(str(conditioning))
    request_ = RunRequest(strength=[0.0, 2.5], steps=STEPS, guidance_scale=5.0)
    half, full = sample(fp16, cond, request_), sample(ExportDir.open(exported), cond, request_)
    assert half.frames.dtype == np.uint8 and half.frames.shape == full.frames.shape
    # fp16 graphs vs fp32, 4 steps: measured 1.1e-3 and 1 grey level
    np.testing.assert_allclose(half.latents, full.latents, atol=1e-2, rtol=0)
    assert np.abs(half.frames.astype(int) - full.frames.astype(int)).max() <= 3
    bf16 = ExportDir.open(exported)
    bf16.manifest["export"]["precision"] = "bf16"  # numpy has no bf16: refused up front, not mid-run
    with pytest.raises(RunError, match="bf16 exports"):
        sample(bf16, cond, request_)


def test_sampling_loop_runs_with_torch_unimportable(exported: Path, conditioning: Path, tmp_path: Path) -> None:
    image = conditioning.parent / "input.png"
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        sys.path.insert(0, {str(ROOT)!r})
        from dymos.runtime.artifacts import ExportDir
        from dymos.runtime.loop import RunRequest, load_conditioning, sample
        from dymos.runtime.video import write_video
        export = ExportDir.open({str(exported)!r})
        from dymos.runtime.conditioning import image_conditioning
        result = sample(export, load_conditioning({str(conditioning)!r}), RunRequest(strength=2.0, steps=3))
        write_video(result.frames[0], {str(tmp_path / "out.mp4")!r})
        from_image = sample(export, image_conditioning(export, {str(image)!r}), RunRequest(strength=2.0, steps=3))
        from dymos.cli import main
        argv = ["run", "--export", {str(exported)!r}, "--image", {str(image)!r}, "--steps", "2"]
        assert main([*argv, "--out", {str(tmp_path / "cli.gif")!r}]) == 0  # the CLI too: parser and all
        assert main(["inspect", {str(exported)!r}]) == 0
        assert "diffusers" not in sys.modules and sys.modules["torch"] is None
        assert from_image.frames.shape == result.frames.shape
        print("frames", result.frames.shape)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "frames (1, 9," in out.stdout
    assert (tmp_path / "out.mp4").stat().st_size > 0 and (tmp_path / "cli.gif").stat().st_size > 0
    assert "with the exported condition encoder" in out.stdout


# what each pipeline's torch-free conditioning takes and gives: (prompt, the entry the CLIP image encoder fills)
TORCH_FREE = {
    "wan21": ("a green square moves left", "encoder_hidden_states_image"),
    "cogvideox": ("a red ball bounces", None),
    "cogvideox15": ("a red ball bounces", None),
    "svd": ("", "prompt_embeds"),
    "ltx": ("a red ball bounces", None),  # its T5 with the tokenizer's attention masks
    "hunyuanvideo": ("a red ball bounces", None),  # LLaVA with the image, and CLIP's pooled embedding
}


@pytest.mark.parametrize("name", sorted(TORCH_FREE))
def test_conditions_on_an_image_with_torch_unimportable(pipelines: TinyExports, name: str, tmp_path: Path) -> None:
    """End to end from an image (and a prompt where the pipeline has a text encoder) without torch: the image
    preprocessing, the condition encoder with its numpy-drawn noise (CogVideoX, SVD), the CLIP image encoder (Wan
    2.1, SVD), the tokenizer and text encoder (Wan 2.1, CogVideoX, LTX; HunyuanVideo's LLaVA and CLIP), the sampling
    loop and the decode; the CLI too."""
    exported = pipelines.export(name)
    image = pipelines.conditioning(name).parent / "input.png"
    prompt, image_entry = TORCH_FREE[name]
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        sys.path.insert(0, {str(ROOT)!r})
        from dymos.runtime.artifacts import ExportDir
        from dymos.runtime.conditioning import image_conditioning
        from dymos.runtime.loop import RunRequest, sample
        export = ExportDir.open({str(exported)!r})
        image = {str(image)!r}
        cond = image_conditioning(export, image, prompt={prompt!r})
        result = sample(export, cond, RunRequest(strength=[0.0, 2.0], steps=2))
        from dymos.cli import main
        argv = ["run", "--export", str(export.root), "--image", image, "--prompt", {prompt!r}, "--steps", "2"]
        assert main([*argv, "--out", {str(tmp_path / "cli.gif")!r}]) == 0
        assert "diffusers" not in sys.modules and "transformers" not in sys.modules and sys.modules["torch"] is None
        print("entries", sorted(cond), "frames", result.frames.shape)
        image_entry = {image_entry!r}
        if image_entry:
            print("image", cond[image_entry].shape)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "conditioned on" in out.stdout and "exported condition encoder" in out.stdout
    assert (tmp_path / "cli.gif").stat().st_size > 0
    frames = int(ExportDir.open(exported).manifest["pipeline"]["video"]["frames"])
    assert f"frames (2, {frames}," in out.stdout
    if prompt:
        assert f"the prompt {prompt!r} (exported text encoder)" in out.stdout
    if name == "wan21":
        assert "image (1, 257, 16)" in out.stdout  # 257 CLIP tokens, as the real 224 px CLIP gives
    if name == "svd":
        assert "'added_time_ids'" in out.stdout and "'negative_condition'" in out.stdout
        assert "image (1, 1," in out.stdout  # one projected CLIP embedding


@pytest.mark.parametrize("name", ["wan22", "wan21", "wan22-ti2v", "hunyuanvideo"])
def test_image_conditioning_without_torch_equals_prepare(pipelines: TinyExports, name: str) -> None:
    """The exported condition encoder on the runtime's image preprocessing gives what the pipeline's own
    ``prepare_latents`` gives (``dymos prepare``); for Wan 2.1 the exported CLIP image encoder on the runtime's
    CLIP preprocessing gives what ``encode_image`` gives; the stored embeddings are the empty prompt's."""
    from dymos.images import clip_pixels, load_image, preprocess_image
    from dymos.prepare import prepare_conditioning, text_shape
    from dymos.runtime.conditioning import image_conditioning

    export = ExportDir.open(pipelines.export(name))
    image_path = pipelines.conditioning(name).parent / "input.png"
    video = export.manifest["pipeline"]["video"]
    pipe = load_pipeline(f"tiny-pipeline:{name}")
    pixels = pipe.video_processor.preprocess(load_image(image_path), height=video["height"], width=video["width"])
    assert np.array_equal(preprocess_image(load_image(image_path), video["height"], video["width"]), pixels.numpy())
    reference = prepare_conditioning(
        pipe,
        load_image(image_path),
        height=video["height"],
        width=video["width"],
        num_frames=video["frames"],
        text_shape=text_shape(export.manifest),
    )
    ours = image_conditioning(export, image_path)
    assert set(ours) == set(reference)
    np.testing.assert_allclose(ours["condition"], reference["condition"], atol=1e-5, rtol=0)  # fp32 graph vs torch
    llava = "llava_prompts" in export.manifest["pipeline"]  # HunyuanVideo: even the empty prompt is a graph's output
    for key in set(reference) - {"condition", "encoder_hidden_states_image"}:  # embeddings, masks, pooled
        if llava and ours[key].dtype == np.float32:
            np.testing.assert_allclose(ours[key], reference[key], atol=1e-5, rtol=0, err_msg=key)
        else:  # the stored empty prompt's embeddings, and every attention mask
            assert np.array_equal(ours[key], reference[key]), key
    if name == "wan21":  # 48x80 input: the processor resizes the short edge and centre-crops
        clip = pipe.image_processor(images=load_image(image_path), return_tensors="np")["pixel_values"]
        assert np.array_equal(clip_pixels(load_image(image_path), export.manifest["pipeline"]["image_processor"]), clip)
        image_context = ours["encoder_hidden_states_image"]
        np.testing.assert_allclose(image_context, reference["encoder_hidden_states_image"], atol=1e-5, rtol=0)
        # Wan 2.1's tiny pipeline has a text encoder: prompts go through the exported tokenizer and text encoder
        prompts = {"prompt": "a red ball  bounces &amp; rotates", "negative_prompt": "static, blurry"}
        reference = prepare_conditioning(
            pipe,
            load_image(image_path),
            **prompts,
            height=video["height"],
            width=video["width"],
            num_frames=video["frames"],
            text_shape=text_shape(export.manifest),
        )
        ours = image_conditioning(export, image_path, **prompts)
        for key in ("prompt_embeds", "negative_prompt_embeds"):
            np.testing.assert_allclose(ours[key], reference[key], atol=1e-5, rtol=0)  # fp32 graph vs torch


@pytest.mark.parametrize("name", ["cogvideox", "svd", "ltx"])
def test_drawn_conditioning_equals_the_pipeline_code_on_the_same_noise(pipelines: TinyExports, name: str) -> None:
    """CogVideoX and LTX sample their image latents from the VAE posterior and SVD augments its image with noise; the
    runtime
    draws that noise in numpy from the seed and feeds it to the exported condition encoder. Fed the same noise, the
    pipeline's own code (``dymos.prepare``'s condition functions, which ``dymos prepare`` runs with torch's draw)
    gives the same condition; SVD's CLIP embedding equals ``_encode_image`` and its time ids ``_get_add_time_ids``.
    The seed decides the draw."""
    from dymos.images import load_image
    from dymos.prepare import cogvideox_condition, condition_noise_shapes, ltx_condition, svd_condition, text_shape
    from dymos.runtime.conditioning import CONDITIONING_STREAM, MicroConditioning, image_conditioning

    export = ExportDir.open(pipelines.export(name))
    image_path = pipelines.conditioning(name).parent / "input.png"
    video = export.manifest["pipeline"]["video"]
    pipe = load_pipeline(f"tiny-pipeline:{name}")
    pixels = pipe.video_processor.preprocess(load_image(image_path), height=video["height"], width=video["width"])
    shapes = condition_noise_shapes(pipe, video["height"], video["width"])
    micro = MicroConditioning(fps=9, motion_bucket_id=40, noise_aug_strength=0.07)
    ours = image_conditioning(export, image_path, seed=11, micro=micro)
    noise = torch.from_numpy(
        np.random.default_rng([11, CONDITIONING_STREAM]).standard_normal(shapes["noise"], dtype=np.float32)
    )
    with torch.no_grad():
        if name == "cogvideox":
            reference = cogvideox_condition(pipe, pixels.float(), video["frames"], noise.float())
            assert set(ours) == {"condition", "prompt_embeds", "negative_prompt_embeds"}
            # its tiny pipeline has a T5 text encoder: prompts go through the exported tokenizer and text encoder
            prompts = {"prompt": "a red ball bounces", "negative_prompt": "static"}
            texts = image_conditioning(export, image_path, **prompts)
            expected = pipe.encode_prompt(**prompts, max_sequence_length=text_shape(export.manifest)[0])
            for key, embeddings in zip(("prompt_embeds", "negative_prompt_embeds"), expected):
                np.testing.assert_allclose(texts[key], embeddings.numpy(), atol=1e-5, rtol=0)
        elif name == "ltx":
            reference = ltx_condition(pipe, pixels.float(), video["frames"], noise.float())
            # the stored empty prompt's embeddings and the prompts' through the exported T5, with attention masks
            assert set(ours) == {"condition", "prompt_embeds", "negative_prompt_embeds", *TEXT_MASK_ENTRIES}
            prompts = {"prompt": "a red ball bounces", "negative_prompt": "static"}
            texts = image_conditioning(export, image_path, **prompts)
            expected = pipe.encode_prompt(**prompts, max_sequence_length=text_shape(export.manifest)[0])
            keys = (
                "prompt_embeds",
                "prompt_attention_mask",
                "negative_prompt_embeds",
                "negative_prompt_attention_mask",
            )
            for key, value in zip(keys, expected):
                if key in TEXT_MASK_ENTRIES:
                    assert np.array_equal(texts[key], value.long().numpy()), key
                else:
                    np.testing.assert_allclose(texts[key], value.numpy(), atol=1e-5, rtol=0)
        else:
            aug = torch.tensor([micro.noise_aug_strength])
            reference = svd_condition(pipe, pixels.float(), video["frames"], noise.float(), aug)
            # the entries `dymos prepare` writes for SVD
            assert set(ours) == {"condition", "negative_condition", "prompt_embeds", "negative_prompt_embeds",
                                 "added_time_ids"}  # fmt: skip
            embeddings = pipe._encode_image(load_image(image_path), torch.device("cpu"), 1, False)
            np.testing.assert_allclose(ours["prompt_embeds"], embeddings.numpy(), atol=1e-5, rtol=0)
            time_ids = pipe._get_add_time_ids(8, 40, 0.07, torch.float32, 1, 1, False)
            assert np.array_equal(ours["added_time_ids"], time_ids.numpy())
            assert not ours["negative_condition"].any() and not ours["negative_prompt_embeds"].any()
            with pytest.raises(ValueError, match="takes no prompt"):
                image_conditioning(export, image_path, prompt="a ball")
    np.testing.assert_allclose(ours["condition"], reference.numpy(), atol=1e-5, rtol=0)  # fp32 graph vs torch
    again = image_conditioning(export, image_path, seed=11, micro=micro)["condition"]
    other = image_conditioning(export, image_path, seed=12, micro=micro)["condition"]
    assert np.array_equal(again, ours["condition"]) and np.abs(other - ours["condition"]).max() > 1e-3


def test_prepare_draws_what_the_pipeline_generator_draws() -> None:
    """``dymos prepare`` runs CogVideoX's ``prepare_latents`` with the seed's noise given through
    ``posterior_noise``: bit-equal to the pipeline drawing it from a generator of that seed."""
    from dymos.prepare import prepare_conditioning

    pipe = load_pipeline("tiny-pipeline:cogvideox")
    image = Image.fromarray((np.random.default_rng(2).random((40, 56, 3)) * 255).astype(np.uint8))
    ours = prepare_conditioning(pipe, image, height=64, width=64, num_frames=9, text_shape=(6, 16), seed=4)
    channels = int(pipe.transformer.config.in_channels) // 2  # the image latents' share of the input channels
    pixels = pipe.video_processor.preprocess(image, height=64, width=64).float()
    with torch.no_grad():
        _, theirs = pipe.prepare_latents(
            pixels, 1, channels, 9, 64, 64, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(4),
            latents=torch.zeros(1, 3, channels, 8, 8),
        )  # fmt: skip
    assert np.array_equal(ours["condition"], theirs.numpy())


def test_prepare_draws_what_the_ltx_pipeline_generator_draws() -> None:
    """LTX's first latent frame is the image's posterior sample, the generator's first draw: ``dymos prepare``'s
    condition is bit-equal to it (``prepare_latents`` with a generator of the seed, unpacked, frame 0)."""
    from dymos.prepare import prepare_conditioning

    pipe = load_pipeline("tiny-pipeline:ltx")
    image = Image.fromarray((np.random.default_rng(2).random((40, 56, 3)) * 255).astype(np.uint8))
    ours = prepare_conditioning(pipe, image, height=64, width=96, num_frames=9, text_shape=(6, 16), seed=4)
    pixels = pipe.video_processor.preprocess(image, height=64, width=96).float()
    with torch.no_grad():
        packed, _ = pipe.prepare_latents(
            pixels, 1, 8, 64, 96, 9, torch.float32, torch.device("cpu"), torch.Generator().manual_seed(4)
        )
    first_frame = packed.reshape(1, 2, 2, 3, 8)[:, 0].permute(0, 3, 1, 2)  # 2 latent frames of 2 x 3 tokens
    assert ours["condition"].shape == (1, 8, 1, 2, 3)
    assert np.array_equal(ours["condition"][:, :, 0], first_frame.numpy())


def test_exports_from_before_the_conditioning_recipe_still_condition(pipelines: TinyExports, tmp_path: Path) -> None:
    """A manifest written before the recipe named the image encoder, the unconditional pass and the text encoder's
    masking (Wan 2.1 then) conditions exactly as a current one."""
    from dymos.runtime.conditioning import image_conditioning, supports_image_conditioning

    exported_wan21 = pipelines.export("wan21")
    conditioning_wan21 = pipelines.conditioning("wan21")
    old = tmp_path / "old"
    shutil.copytree(exported_wan21, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for key in ("image_encoder", "unconditional", "text_encoder"):
        del manifest["pipeline"]["recipe"][key]
    del manifest["pipeline"]["text_encoder"]["masked"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    image = str(conditioning_wan21.parent / "input.png")
    assert supports_image_conditioning(ExportDir.open(old))
    theirs = image_conditioning(ExportDir.open(old), image, prompt="a ball")
    ours = image_conditioning(ExportDir.open(exported_wan21), image, prompt="a ball")
    assert set(theirs) == set(ours) and all(np.array_equal(theirs[k], ours[k]) for k in ours)


def test_a_wan_pipeline_folder_with_a_text_encoder_takes_whole_prompts(tmp_path: Path) -> None:
    """A local Wan 2.2-form pipeline folder with a text encoder (the form of a real Wan 2.2 I2V checkpoint) exports
    the pipeline's 512-token text length, not the family sample's 16: the denoiser, the text encoder graph and the
    tokenizer settings all take 512, and the runtime's prompt embeddings equal the reloaded pipeline's
    ``encode_prompt`` at that length."""
    from dymos.runtime.conditioning import prompt_embeddings
    from dymos.tiny import _tiny_text_encoder, build_tiny_pipeline

    pipe = build_tiny_pipeline("wan22")
    pipe.register_modules(**_tiny_text_encoder(int(pipe.transformer.config.text_dim), umt5=True))
    folder = tmp_path / "wan22-with-text-encoder"
    pipe.save_pretrained(folder, safe_serialization=True)
    exported = run_export(ExportOptions(model=str(folder), out=tmp_path / "out"), log=_quiet).directory
    export = ExportDir.open(exported)
    text = next(t for t in export.submodel("denoiser").inputs if t["name"] == "encoder_hidden_states")
    assert text["shape"][1] == 512 and export.manifest["pipeline"]["text_encoder"]["max_length"] == 512
    prompt = "a red ball bounces over a blue square " * 4  # 33 tokens: more than the sample's 16
    ours = prompt_embeddings(export, prompt)
    reloaded = load_pipeline(str(folder))
    with torch.no_grad():
        theirs, _ = reloaded.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=512)
    assert ours.shape == (1, 512, pipe.transformer.config.text_dim)
    assert np.abs(ours[0, 16:33]).max() > 0  # tokens past the 16th are encoded, not truncated
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [(48, 80), (576, 1024), (300, 517), (224, 224), (33, 47)])
def test_svd_clip_pixels_equal_the_pipeline(size: tuple[int, int]) -> None:
    """SVD's CLIP input without torch: the antialiased resize (Gaussian blur + bicubic with aligned corners) equals
    diffusers' ``_resize_with_antialiasing`` and the normalised pixels equal what ``_encode_image`` hands its
    image encoder, within float rounding (stated: 1e-5), at downsizing, upsizing, square and odd sizes."""
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing
    from diffusers.video_processor import VideoProcessor
    from transformers import CLIPImageProcessor

    from dymos.images import antialias_resize, clip_pixel_shape, clip_pixels, svd_image_settings

    rng = np.random.default_rng(size[0])
    values = rng.random((1, 3, *size), dtype=np.float32) * 2 - 1
    reference = _resize_with_antialiasing(torch.from_numpy(values), (224, 224)).numpy()
    np.testing.assert_allclose(antialias_resize(values, (224, 224)), reference, atol=1e-5, rtol=0)
    image = Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8))
    processor, videos = CLIPImageProcessor(), VideoProcessor()
    unit = videos.numpy_to_pt(videos.pil_to_numpy(image))
    unit = (_resize_with_antialiasing(unit * 2.0 - 1.0, (224, 224)) + 1.0) / 2.0
    expected = processor(
        images=unit, do_normalize=True, do_center_crop=False, do_resize=False, do_rescale=False, return_tensors="np"
    )["pixel_values"]
    settings = svd_image_settings(processor)
    ours = clip_pixels(image, settings)
    assert ours.shape[2:] == clip_pixel_shape(settings) == (224, 224)
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "prompt",
    [
        "a red ball bounces",
        "  A Red BALL   bounces\tleft &amp;amp; right  ",  # case, whitespace runs, doubly escaped HTML
        "caf\u00e9 \u00fcber na\u00efve",  # NFKC/unknown characters
        "the ball moves " * 80,  # longer than the export's text length: truncated with </s> kept
        "",
    ],
    ids=["plain", "messy", "unicode", "too-long", "empty"],
)
@pytest.mark.parametrize("name", ["wan21", "cogvideox"])
def test_runtime_tokenizer_equals_the_pipelines(pipelines: TinyExports, name: str, prompt: str) -> None:
    """The exported tokenizer.json through ``tokenizers`` (no torch, no transformers) gives the token ids the
    pipeline's tokenizer gives after its prompt cleaning (Wan's; CogVideoX takes prompts as given), padded and
    truncated to the export's text length (512 for the tiny Wan 2.1, 6 for the tiny CogVideoX)."""
    from diffusers.pipelines.wan.pipeline_wan_i2v import prompt_clean

    from dymos.runtime.conditioning import tokenize_prompt

    export = ExportDir.open(pipelines.export(name))
    length = export.manifest["pipeline"]["text_encoder"]["max_length"]
    pipe = load_pipeline(f"tiny-pipeline:{name}")
    cleaned = prompt_clean(prompt) if name == "wan21" else prompt
    expected = pipe.tokenizer(
        [cleaned], padding="max_length", max_length=length, truncation=True, add_special_tokens=True
    ).input_ids
    assert np.array_equal(tokenize_prompt(export, prompt), np.asarray(expected, dtype=np.int64))


def test_a_prompt_spelling_the_pad_token_is_refused(pipelines: TinyExports) -> None:
    from dymos.runtime.conditioning import tokenize_prompt

    exported_wan21 = pipelines.export("wan21")
    with pytest.raises(ValueError, match="contains the pad token '<pad>'"):
        tokenize_prompt(ExportDir.open(exported_wan21), "a ball <pad> bouncing")


@pytest.mark.parametrize("size", [(48, 80), (300, 200), (224, 224), (31, 97)])
def test_clip_pixels_equal_the_image_processor(size: tuple[int, int]) -> None:
    """The runtime's torch-free CLIP preprocessing is bit-equal to transformers' PIL image processor, at the real
    checkpoints' 224 px and at the tiny pipeline's 32 px, for landscape, portrait, square and odd sizes."""
    from transformers import CLIPImageProcessor

    from dymos.images import clip_pixel_shape, clip_pixels, image_processor_settings

    image = Image.fromarray((np.random.default_rng(size[0]).random((*size, 3)) * 255).astype(np.uint8))
    for processor in (
        CLIPImageProcessor(),
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
    ):
        settings = image_processor_settings(processor)
        ours = clip_pixels(image, settings)
        assert ours.shape[2:] == clip_pixel_shape(settings)
        assert np.array_equal(ours, processor(images=image, return_tensors="np")["pixel_values"])


def test_dymos_run_writes_a_playable_mp4(exported: Path, conditioning: Path, tmp_path: Path) -> None:
    from dymos.cli import main

    target = tmp_path / "video.mp4"
    argv = ["run", "--export", str(exported), "--cond", str(conditioning), "--steps", "3", *IN_PROCESS]
    assert main([*argv, "--out", str(target)]) == 0
    import imageio_ffmpeg

    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(target), "-f", "null", "-"], capture_output=True
    )
    assert probe.returncode == 0 and target.stat().st_size > 0
    frames = imageio_ffmpeg.count_frames_and_secs(str(target))[0]
    assert frames == ExportDir.open(exported).manifest["pipeline"]["video"]["frames"]


def test_same_noise_for_every_strength_unless_seeds_differ(exported: Path, conditioning: Path) -> None:
    export = ExportDir.open(exported)
    cond = load_conditioning(str(conditioning))
    off = StrengthSchedule(first_steps=0)  # strengths differ but never apply: only the noise can tell items apart
    same = sample(export, cond, RunRequest(strength=[0.0, 3.0], steps=2, seed=4, schedule=off))
    assert np.array_equal(same.latents[0], same.latents[1])
    replicas = sample(export, cond, RunRequest(strength=0.0, batch=2, steps=2, seed=4))  # seeds 4 and 5
    assert np.array_equal(replicas.latents[0], same.latents[0])
    assert not np.allclose(replicas.latents[0], replicas.latents[1])
    explicit = sample(export, cond, RunRequest(strength=[0.0, 3.0], steps=2, seeds=[5, 4], schedule=off))
    assert np.array_equal(explicit.latents[0], replicas.latents[1])
    with pytest.raises(RunError, match="1 seeds for a batch of 2"):
        sample(export, cond, RunRequest(strength=[0.0, 1.0], seeds=[1]))


# -- the shipped sprite model: its export, `dymos run` defaults and `dymos sweep` -----------------------------------


def test_shipped_model_exports_at_its_trained_size_with_its_defaults(pipelines: TinyExports) -> None:
    exported_sprites = pipelines.export("sprites")
    manifest = ExportDir.open(exported_sprites).manifest
    assert exported_sprites.name == "sprites" and manifest["model"]["source"] == "sprites"
    video = manifest["pipeline"]["video"]
    assert (video["frames"], video["height"], video["width"]) == (9, 32, 32)
    assert (video["latent_frames"], video["latent_height"], video["latent_width"]) == (5, 16, 16)
    assert manifest["pipeline"]["defaults"] == {"guidance_scale": 1.0, "steps": 20, "fps": 16}
    assert Path(manifest["model"]["folder"]).name == "sprites-wan" and len(manifest["model"]["fingerprint"]) == 64


def test_dymos_run_with_an_image_on_the_shipped_model(pipelines: TinyExports, tmp_path: Path, capsys) -> None:
    from dymos.cli import main
    from dymos.sprites import make_clip

    exported_sprites = pipelines.export("sprites")
    Image.fromarray(make_clip(1, 0)[0]).save(tmp_path / "sprites.png")
    argv = ["run", "--export", str(exported_sprites), "--image", str(tmp_path / "sprites.png"), *IN_PROCESS]
    assert main([*argv, "--strength", "0,4", "--out", str(tmp_path / "video.gif")]) == 0
    out = capsys.readouterr().out
    assert "20 steps, guidance 1," in out  # the model's defaults from the manifest
    assert (tmp_path / "video_s0.gif").stat().st_size > 0 and (tmp_path / "video_s4.gif").stat().st_size > 0


def test_a_prompt_the_export_cannot_encode_without_torch_is_a_clear_error(
    pipelines: TinyExports, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The shipped model's export has no text encoder: a prompt there needs `dymos prepare` (torch). Where torch's
    side cannot be imported, `dymos run` says so and how to go on, and writes nothing."""
    from dymos.cli import main
    from dymos.sprites import make_clip

    exported_sprites = pipelines.export("sprites")  # first: the shared export may be made here, and needs torch
    monkeypatch.setitem(sys.modules, "dymos.prepare", None)  # `from dymos.prepare import ...` raises ImportError
    Image.fromarray(make_clip(1, 0)[0]).save(tmp_path / "sprites.png")
    argv = ["run", "--export", str(exported_sprites), "--image", str(tmp_path / "sprites.png")]
    assert main([*argv, "--prompt", "a red ball", "--out", str(tmp_path / "video.gif"), *IN_PROCESS]) == 1
    error = capsys.readouterr().err
    assert "cannot encode the prompt without torch" in error and "run `dymos prepare` where it is" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sprites.png"]
    # a negative prompt at the model's guidance 1 has no pass to reach: dropped with a note, no torch needed
    assert main([*argv, "--negative-prompt", "static", "--out", str(tmp_path / "video.gif"), *IN_PROCESS]) == 0
    assert "note: --negative-prompt does nothing at guidance 1 (no CFG): dropped" in capsys.readouterr().err


def test_dymos_run_takes_a_negative_prompt(pipelines: TinyExports, tmp_path: Path, capsys) -> None:
    """`dymos run --negative-prompt` reaches the unconditional pass (HunyuanVideo's true CFG, through its exported
    LLaVA): the video differs from the one with the empty negative prompt."""
    from dymos.cli import main

    image = str(pipelines.conditioning("hunyuanvideo").parent / "input.png")
    argv = ["run", "--export", str(pipelines.export("hunyuanvideo")), "--image", image, "--prompt", "a red ball"]
    argv += ["--steps", "2", "--guidance", "3", *IN_PROCESS]
    assert main([*argv, "--out", str(tmp_path / "plain.png")]) == 0
    assert main([*argv, "--negative-prompt", "static", "--out", str(tmp_path / "negative.png")]) == 0
    assert "the prompt 'a red ball' (exported text encoder), negative prompt 'static'" in capsys.readouterr().out
    plain, negative = (
        np.stack([np.asarray(Image.open(f)) for f in sorted(tmp_path.glob(f"{name}_*.png"))])
        for name in ("plain", "negative")
    )
    assert plain.shape == negative.shape and np.abs(plain.astype(int) - negative.astype(int)).max() > 0


def test_dymos_sweep_writes_tables_json_and_strip(pipelines: TinyExports, tmp_path: Path, capsys) -> None:
    from dymos.cli import main

    exported_sprites = pipelines.export("sprites")
    out = tmp_path / "sweep"
    argv = ["sweep", "--export", str(exported_sprites), "--clips", "2", "--seeds", "0", "--strengths", "0,4"]
    assert main([*argv, "--steps", "6", "--sprites", "2", "--out", str(out)]) == 0
    document = json.loads((out / "sweep.json").read_text())
    kinds = [row["kind"] for row in document["videos"]]
    assert kinds.count("generated") == 4 and kinds.count("data") == 2 and kinds.count("vae") == 2
    assert document["config"]["prior"].startswith("2-2 sprites")  # --sprites: the clips' count, recorded
    assert [row["sprites"] for row in document["videos"] if row["kind"] == "data"] == [2, 2]
    labels = [entry["label"] for entry in document["summary"]]
    assert labels == ["real clips", "real clips, VAE round trip", "s=0", "s=4, first 20%"]
    assert 0.0 <= document["summary"][-1]["win_motion"] <= 1.0
    masses = [entry["mean_mass"] for entry in document["probe"]["strengths"]]
    assert masses[1] < masses[0]  # the bias lowers the reference-key mass on real inputs
    assert "| run | motion px/frame |" in (out / "sweep.md").read_text()
    strip = Image.open(out / "strip.png")
    assert strip.width > 2 * 9 * 32 and strip.height > 2 * 32
    with pytest.raises(ValueError, match="include 0"):
        from dymos.sweep import SweepConfig, run_sweep

        run_sweep(exported_sprites, out, SweepConfig(strengths=[1.0, 2.0]))
    # --model: the checkpoint where it moved; a folder that holds none is refused before any video is made
    capsys.readouterr()
    assert main([*argv, "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "moved")]) == 1
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "moved" / "sweep.json").exists()


# -- bad input: clear errors before any heavy work ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"steps": 0}, "positive integer"),
        ({"strength": float("nan")}, "finite"),
        ({"strength": [1.0, 2.0], "batch": 3}, "2 strengths for a batch of 3"),
        ({"strength": [1.0] * 5}, "outside the exported range"),
        ({"embedded_guidance": 6.0}, "has none"),  # Wan has no guidance embedding
        ({"seed": -1}, "non-negative"),
        ({"strength": [0.0, 2.0], "seeds": [0, -3]}, "non-negative"),
    ],
)
def test_bad_requests_fail_fast(exported: Path, conditioning: Path, request_kwargs: dict, message: str) -> None:
    export = ExportDir.open(exported)
    cond = load_conditioning(str(conditioning))
    with pytest.raises((RunError, FeedError), match=message):
        sample(export, cond, RunRequest(**request_kwargs))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strength", "nan"], "finite"),
        (["--strength", "1,1,1,1,1"], "outside the exported range"),
        (["--out", "video.avi"], r"unsupported --out 'video\.avi'"),
    ],
)
def test_dymos_run_refuses_bad_settings_before_conditioning(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, extra: list[str], message: str
) -> None:
    from dymos.cli import main
    from dymos.runtime import conditioning

    def no_conditioning(*args, **kwargs):
        raise AssertionError("conditioning ran before the settings were checked")

    monkeypatch.setattr(conditioning, "image_conditioning", no_conditioning)
    monkeypatch.setattr("dymos.prepare.prepare", no_conditioning)
    argv = ["run", "--export", str(exported), "--image", str(tmp_path / "any.png"), "--out", str(tmp_path / "v.gif")]
    assert main([*argv, *extra]) == 1
    assert re.search(message, capsys.readouterr().err)


def test_bad_conditioning_fails_fast(exported: Path, conditioning: Path, tmp_path: Path) -> None:
    export = ExportDir.open(exported)
    cond = load_conditioning(str(conditioning), export)
    with pytest.raises(RunError, match="lacks"):
        sample(export, {k: v for k, v in cond.items() if k != "prompt_embeds"}, RunRequest())
    with pytest.raises(RunError, match="this export needs"):
        sample(export, {**cond, "condition": cond["condition"][:, :, :2]}, RunRequest())
    with pytest.raises(RunError, match="this export needs"):  # two items where the conditioning holds one
        sample(export, {**cond, "condition": np.concatenate([cond["condition"]] * 2)}, RunRequest())
    with pytest.raises(RunError, match="prompt_embeds has shape"):
        sample(export, {**cond, "prompt_embeds": cond["prompt_embeds"][..., :3]}, RunRequest())
    (tmp_path / "broken.npz").write_bytes(b"not an npz")
    truncated = conditioning.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(truncated[: len(truncated) // 2])
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("broken.npz", "truncated.npz", "array.npy", "missing.npz"):
        with pytest.raises(RunError, match="cannot read conditioning"):
            load_conditioning(str(tmp_path / name))


def test_conditioning_prepared_for_another_export_is_refused(
    exported: Path, conditioning: Path, tmp_path: Path
) -> None:
    """Same shapes, other model or size: the arrays would fit the graph and give a wrong video silently."""
    export = ExportDir.open(exported)
    with np.load(conditioning) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(arrays["meta"].tobytes())
    for changed in ({**meta, "model": "/elsewhere/other-model"}, {**meta, "video": {**meta["video"], "frames": 99}}):
        np.savez(tmp_path / "other.npz", **{**arrays, "meta": np.frombuffer(json.dumps(changed).encode(), np.uint8)})
        load_conditioning(str(tmp_path / "other.npz"))  # without an export to check against: read as it is
        with pytest.raises(RunError, match="prepare it again for this export"):
            load_conditioning(str(tmp_path / "other.npz"), export)


def test_dymos_run_checks_the_conditioning_before_loading_engines(
    exported: Path, conditioning: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from dymos.cli import main
    from dymos.runtime import backends

    def no_engines(*args, **kwargs):
        raise AssertionError("an engine was loaded before the conditioning was checked")

    monkeypatch.setattr(backends, "open_backend", no_engines)
    with np.load(conditioning) as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(tmp_path / "two.npz", **{**arrays, "condition": np.concatenate([arrays["condition"]] * 2)})
    argv = ["run", "--export", str(exported), "--cond", str(tmp_path / "two.npz"), "--out", str(tmp_path / "v.gif")]
    assert main(argv) == 1
    assert "condition has shape" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", "-1"], "non-negative integer"),
        (["--fps", "0"], "positive integer"),
        (["--noise-aug-strength", "nan"], "finite number"),
        (["--cond-fps", "0"], "positive integer"),
        (["--steps", "0"], "positive integer"),
        (["--guidance", "nan"], "finite number"),
        (["--first-steps", "-1"], "non-negative integer"),
        (["--fraction", "0.5", "--first-steps", "2"], "not allowed with argument --fraction"),
    ],
)
def test_dymos_run_refuses_bad_numbers_while_parsing(exported: Path, tmp_path: Path, capsys, extra, message) -> None:
    from dymos.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--export", str(exported), "--image", str(tmp_path / "any.png"), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_each_video_of_a_run_gets_its_own_file() -> None:
    from dymos.cli import _video_paths

    out = Path("out/video.mp4")
    assert _video_paths(out, [2.0]) == [out]
    assert [p.name for p in _video_paths(out, [0, 2, 4.5])] == ["video_s0.mp4", "video_s2.mp4", "video_s4.5.mp4"]
    assert [p.name for p in _video_paths(out, [2, 2, 0])] == ["video_s2_0.mp4", "video_s2_1.mp4", "video_s0_2.mp4"]


def test_scheduler_limits_are_checked_with_the_request(pipelines: TinyExports) -> None:
    """CogVideoX's DDIM/DPM takes at most num_train_timesteps steps: refused before conditioning, not mid-run."""
    from dymos.runtime.loop import check_request

    export = ExportDir.open(pipelines.export("cogvideox"))
    with pytest.raises(RunError, match=r"cannot run 1001 steps.*exceeds num_train_timesteps"):
        check_request(export, RunRequest(steps=1001))


def test_svd_refuses_a_prompt_before_running_any_encoder(
    pipelines: TinyExports, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dymos.runtime import conditioning

    def no_encoder(*args, **kwargs):
        raise AssertionError("an encoder ran before the prompt was refused")

    monkeypatch.setattr(conditioning, "condition", no_encoder)
    monkeypatch.setattr(conditioning, "_run_encoder", no_encoder)
    with pytest.raises(ValueError, match="takes no prompt"):
        conditioning.image_conditioning(ExportDir.open(pipelines.export("svd")), "any.png", prompt="a cat")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"fps": 0}, "fps"), ({"motion_bucket_id": -1}, "motion_bucket_id"), ({"noise_aug_strength": np.nan}, "noise")],
)
def test_svd_micro_conditioning_is_checked(kwargs: dict, message: str) -> None:
    from dymos.runtime.conditioning import MicroConditioning

    with pytest.raises(ValueError, match=message):
        MicroConditioning(**kwargs)


def test_stock_graph_only_beside_an_onnxruntime_denoiser(exported: Path) -> None:
    """The stock graph is ONNX: beside a TensorRT/AOTI denoiser the strength-0 steps stay on that engine."""
    from dymos.runtime.backends import OnnxRuntimeBackend, open_backend, open_stock_backend

    export = ExportDir.open(exported)
    ort_denoiser = open_backend(export, "denoiser", prefer=("onnxruntime",))
    assert isinstance(open_stock_backend(export, beside=ort_denoiser), OnnxRuntimeBackend)

    class OtherEngine:
        name, spec = "tensorrt (stand-in)", ort_denoiser.spec

    assert open_stock_backend(export, beside=OtherEngine()) is None


def test_an_engine_whose_inputs_differ_from_the_manifest_is_refused(exported: Path) -> None:
    from dymos.runtime.backends import engine_mismatch

    spec = ExportDir.open(exported).submodel("denoiser")
    inputs = {t["name"]: np.dtype(t["dtype"]) for t in spec.inputs}
    assert engine_mismatch(inputs, spec) is None
    renamed = {("latents" if name == "hidden_states" else name): d for name, d in inputs.items()}
    assert "differ from the manifest" in engine_mismatch(renamed, spec)
    half = {**inputs, "hidden_states": np.dtype(np.float16)}
    assert "hidden_states: engine float16, manifest float32" in engine_mismatch(half, spec)


def test_artifact_dir_with_missing_or_modified_files_is_refused(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    with open(copy / "vae_decoder.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ManifestError, match="bytes"):
        ExportDir.open(copy)
    (copy / "vae_decoder.onnx").unlink()
    with pytest.raises(ManifestError, match="missing"):
        ExportDir.open(copy)
    with pytest.raises(ManifestError, match="not a directory"):
        ExportDir.open(tmp_path / "nope")


def test_dymos_inspect_verifies_and_summarises_an_export(exported: Path, tmp_path: Path, capsys) -> None:
    from dymos.cli import main

    assert main(["inspect", str(exported)]) == 0
    out = capsys.readouterr().out
    assert "sizes and sha256 verified" in out and "input `motion_strength` float32 [batch]" in out
    for graph in ("graph denoiser", "graph vae_decoder", "  in   motion_strength", "dims batch 1..4"):
        assert graph in out, graph
    assert "denoiser_stock.onnx" in out and "parity vs PyTorch passed" in out
    assert main(["inspect", str(exported), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((exported / "manifest.json").read_text())
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    data = copy / "denoiser.onnx.data"
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\1")  # same size, other bytes
    assert main(["inspect", str(copy), "--no-verify-hashes"]) == 0
    assert "sha256 not checked" in capsys.readouterr().out
    assert main(["inspect", str(copy)]) == 1
    assert "does not match its sha256" in capsys.readouterr().err
    assert main(["run", "--export", str(copy)]) == 1  # run verifies too, unless told to check sizes only
    assert "does not match its sha256" in capsys.readouterr().err
    assert main(["run", "--export", str(copy), "--no-verify-hashes"]) == 1
    assert "give --cond (from `dymos prepare`) or --image" in capsys.readouterr().err  # past the manifest


def test_inspect_says_whether_an_engine_fits_the_installed_tensorrt(tmp_path: Path) -> None:
    from dymos.runtime.summary import describe_export

    manifest = {
        "model": {"class": "WanTransformer3DModel", "family": "wan", "source": "x"},
        "files": {"denoiser.plan": {"bytes": 2_000_000, "sha256": "0"}},
        "submodels": {"denoiser": {"inputs": [], "outputs": [], "dims": {}}},
        "artifacts": {
            "tensorrt": {"file": "denoiser.plan", "tensorrt_version": "10.14.0"},
            # the PyTorch 2 artifacts' form: `validated: true`, the numbers under `parity`; TorchScript may be absent
            "pt2": {
                "file": "denoiser.pt2",
                "validated": True,
                "parity": {"backend": "torch.export", "passed": True, "tolerance": {"atol": 1e-5, "rtol": 1e-4}},
            },
            "torchscript": {"file": None, "validated": False, "reason": "TypeError: does not trace"},
        },
    }
    export = ExportDir(tmp_path, manifest)
    lines = describe_export(export, tensorrt="10.14.0", hashes_verified=False)
    assert lines[0].endswith("sizes verified (sha256 not checked)")
    line = next(line for line in lines if "denoiser.plan" in line)
    assert "2.00 MB" in line and "built with TensorRT 10.14.0, 10.14.0 installed: usable" in line
    assert "denoiser.pt2 (0.00 MB); parity vs PyTorch passed (torch.export, atol 1e-05, rtol 0.0001)" in lines[-2]
    assert lines[-1].split() == ["torchscript", "not", "exported:", "TypeError:", "does", "not", "trace"]
    assert "NOT usable, rebuild it" in "\n".join(describe_export(export, tensorrt="10.15.1"))
    assert "none installed here" in "\n".join(describe_export(export, tensorrt=None))
    del manifest["artifacts"]["tensorrt"]["tensorrt_version"]
    assert "TensorRT version not recorded (10.14.0 installed)" in "\n".join(describe_export(export, tensorrt="10.14.0"))
    del manifest["submodels"]["denoiser"]["inputs"]
    with pytest.raises(ManifestError, match="'denoiser' graph lacks its inputs"):
        describe_export(export)


def test_prepare_rejects_an_unreadable_image(exported: Path, tmp_path: Path) -> None:
    (tmp_path / "image.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        prepare(exported, tmp_path / "image.png", "prompt", tmp_path / "cond.npz")
    assert not (tmp_path / "cond.npz").exists()


def test_manifest_records_the_pipeline_contract(exported: Path) -> None:
    manifest = json.loads((exported / "manifest.json").read_text())
    pipeline = manifest["pipeline"]
    assert pipeline["class"] == "WanImageToVideoPipeline" and pipeline["runtime_supported"]
    assert pipeline["scheduler"]["class"] == "UniPCMultistepScheduler"
    assert set(manifest["submodels"]) == {"denoiser", "vae_decoder", "condition_encoder"}


def test_cogvideox15_export_decodes_what_the_pipeline_decodes(pipelines: TinyExports) -> None:
    """CogVideoX 1.5 pads its latent frames to whole temporal patches and drops the padding before decoding: the
    export denoises 6 latent frames, decodes the last 5 and says the video has 17 frames (the pipeline's
    ``num_frames``; the loop test above checks the runtime's frames against the pipeline's at that count)."""
    exported_cogvideox15 = pipelines.export("cogvideox15")
    export = ExportDir.open(exported_cogvideox15)
    video = export.manifest["pipeline"]["video"]
    assert (video["latent_frames"], video["decoded_latent_frames"], video["frames"]) == (6, 5, 17)
    assert export.submodel("vae_decoder").inputs[0]["shape"][2] == 5
    assert export.manifest["pipeline"]["recipe"]["constant_inputs"] == {"ofs": 2.0}


def test_ltx_vae_with_timestep_conditioning_decodes_as_the_pipeline(
    pipelines: TinyExports, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """LTX 0.9.1+'s VAE decodes at a timestep: its decoder graph is exported at the pipeline's default decode
    timestep (0, where no decode noise is mixed in; the recipe says so only for such a VAE), and the runtime's video
    equals the pipeline's."""
    import diffusers

    assert "decode_timestep" not in ExportDir.open(pipelines.export("ltx")).manifest["pipeline"]["recipe"]

    pipe = load_pipeline("tiny-pipeline:ltx")
    config = {k: v for k, v in dict(pipe.vae.config).items() if not k.startswith("_")}
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLLTXVideo(**{**config, "timestep_conditioning": True}).eval()
    vae.load_state_dict(pipe.vae.state_dict(), strict=False)  # the shared weights; the time embedder stays seeded
    pipe.register_modules(vae=vae)
    folder = tmp_path / "ltx-timestep-vae"
    pipe.save_pretrained(folder)
    exported = run_export(ExportOptions(model=str(folder), out=tmp_path / "out"), log=_quiet).directory
    export = ExportDir.open(exported)
    assert export.manifest["pipeline"]["recipe"]["decode_timestep"] == 0.0
    conditioning = _prepare(exported, tmp_path_factory)
    cond = load_conditioning(str(conditioning))
    latents = np.random.default_rng(3).standard_normal((1, 8, 3, 4, 4), dtype=np.float32)
    image = conditioning.parent / "input.png"
    _assert_one_run_equals_the_pipeline("ltx", export, cond, image, latents, model=str(folder))


def test_hunyuanvideo_embedded_guidance_is_fed_and_matters(pipelines: TinyExports, tmp_path: Path, capsys) -> None:
    """HunyuanVideo's guidance embedding is an input the loop feeds (guidance * 1000): at another value than the
    default the video changes and still equals the pipeline's at that ``guidance_scale``; the CLI takes it as
    --embedded-guidance; the export's defaults keep true CFG off, as the pipeline does."""
    from dymos.cli import main

    exported = pipelines.export("hunyuanvideo")
    export = ExportDir.open(exported)
    assert export.manifest["pipeline"]["defaults"] == {"guidance_scale": 1.0, "steps": 50, "fps": 15}
    conditioning = pipelines.conditioning("hunyuanvideo")
    cond = load_conditioning(str(conditioning))
    latents = np.random.default_rng(3).standard_normal((1, 4, 3, 8, 8), dtype=np.float32)
    image = conditioning.parent / "input.png"
    at_6 = _assert_one_run_equals_the_pipeline("hunyuanvideo", export, cond, image, latents, embedded_guidance=6.0)
    schedule = StrengthSchedule(first_steps=2)
    request_ = RunRequest(strength=2.5, steps=STEPS, guidance_scale=5.0, latents=latents, schedule=schedule)
    assert np.abs(at_6.latents - sample(export, cond, request_).latents).max() > 1e-4  # vs the default, 1
    with pytest.raises(RunError, match="finite"):
        sample(export, cond, RunRequest(embedded_guidance=float("inf")))
    image = str(pipelines.conditioning("hunyuanvideo").parent / "input.png")
    argv = ["run", "--export", str(exported), "--image", image, "--steps", "2", "--embedded-guidance", "6"]
    assert main([*argv, *IN_PROCESS, "--out", str(tmp_path / "hy.gif")]) == 0
    assert "guidance 1, embedded guidance 6" in capsys.readouterr().out


def test_hunyuanvideo_negative_prompt_of_another_length(pipelines: TinyExports) -> None:
    """The real HunyuanVideo-I2V pipeline encodes its negative prompt at another length than its prompt (540 vs 396
    tokens): the graph's text length is dynamic, the loop runs the two guidance halves as separate engine calls, and
    the result equals the pipeline's on the same embeddings."""
    export = ExportDir.open(pipelines.export("hunyuanvideo"))
    text = next(t for t in export.submodel("denoiser").inputs if t["name"] == "encoder_hidden_states")
    assert text["shape"][1] == "text" and export.submodel("denoiser").dims["text"]["max"] >= 540
    conditioning = pipelines.conditioning("hunyuanvideo")
    cond = load_conditioning(str(conditioning))
    cond["negative_prompt_embeds"] = np.random.default_rng(7).standard_normal((1, 9, 16), dtype=np.float32)
    cond["negative_prompt_attention_mask"] = (np.arange(9) < 7).astype(np.int64)[None]
    assert cond["negative_prompt_embeds"].shape[1] != cond["prompt_embeds"].shape[1]
    latents = np.random.default_rng(3).standard_normal((1, 4, 3, 8, 8), dtype=np.float32)
    _assert_one_run_equals_the_pipeline("hunyuanvideo", export, cond, conditioning.parent / "input.png", latents)


def test_hunyuanvideo_prompts_through_llava_equal_the_pipeline(pipelines: TinyExports, tmp_path: Path) -> None:
    """HunyuanVideo-I2V's real prompt encoding without torch: the prompt in the pipeline's template through the
    exported tokenizer, LLaVA (with the image's 576 tokens) and the pipeline's crop, CLIP's pooled embedding, the
    negative prompt with a black image and another interleave (540 vs 396 tokens). The runtime's video from the
    image and prompt strings equals the pipeline's from the same strings (true CFG, DyMoS at s = 2.5); a prompt
    longer than the template's budget is cut as the pipeline cuts it; one holding the image placeholder is
    refused."""
    from dymos.images import load_image
    from dymos.prepare import llava_text_embeddings
    from dymos.runtime.conditioning import image_conditioning

    export = ExportDir.open(pipelines.export("hunyuanvideo"))
    assert {"text_encoder", "text_encoder_2"} <= set(export.manifest["submodels"])
    image = pipelines.conditioning("hunyuanvideo").parent / "input.png"
    video = export.manifest["pipeline"]["video"]
    prompts = {"prompt": "a red ball bounces", "negative_prompt": "static"}
    cond = image_conditioning(export, image, **prompts)
    assert cond["prompt_embeds"].shape == (1, 396, 16) and cond["negative_prompt_embeds"].shape == (1, 540, 16)
    latents = np.random.default_rng(3).standard_normal((1, 4, 3, 8, 8), dtype=np.float32)
    request_ = RunRequest(
        strength=[2.5], steps=STEPS, guidance_scale=5.0, latents=latents, schedule=StrengthSchedule(first_steps=2)
    )
    result = sample(export, cond, request_)
    pipe = load_pipeline("tiny-pipeline:hunyuanvideo")
    kwargs = dict(
        image=Image.open(image).convert("RGB"),
        **prompts,
        height=video["height"],
        width=video["width"],
        num_frames=video["frames"],
        num_inference_steps=STEPS,
        latents=torch.from_numpy(latents),
        true_cfg_scale=5.0,
        guidance_scale=1.0,
    )
    with dymos.enable(pipe, strength=2.5, first_steps=2):
        ref_latents = pipe(**kwargs, output_type="latent").frames
        ref_frames = pipe(**kwargs, output_type="np").frames
    np.testing.assert_allclose(result.latents, ref_latents.numpy(), atol=LATENT_ATOL, rtol=0)
    ref_frames = (np.asarray(ref_frames) * 255).round().astype(np.uint8)
    assert np.abs(result.frames.astype(int) - ref_frames.astype(int)).max() <= FRAME_ATOL

    long_prompt = "a red ball bounces over the green square " * 60  # past the 256 prompt tokens
    ours = image_conditioning(export, image, prompt=long_prompt)
    with torch.no_grad():
        reference = llava_text_embeddings(pipe, load_image(image), long_prompt, "", video["height"], video["width"])
    np.testing.assert_allclose(ours["prompt_embeds"], reference["prompt_embeds"].numpy(), atol=1e-5, rtol=0)
    assert np.array_equal(ours["prompt_attention_mask"], reference["prompt_attention_mask"].numpy())
    with pytest.raises(ValueError, match="image placeholder"):
        image_conditioning(export, image, prompt="a red ball <image>")


def test_ti2v_export_conditions_the_first_latent_frame(pipelines: TinyExports) -> None:
    """Wan 2.2 TI2V (``expand_timesteps``): the condition is the image's one latent frame, which stands in for the
    first latent frame, and the denoiser graph takes one timestep per item (per-token inside); the loop test above
    checks the runtime against the pipeline."""
    export = ExportDir.open(pipelines.export("wan22-ti2v"))
    recipe = export.manifest["pipeline"]["recipe"]
    assert (recipe["condition"], recipe["timestep"]) == ("first_frame", "zero_on_first_frame")
    assert export.submodel("condition_encoder").outputs[0]["shape"] == [1, 8, 1, 8, 8]  # z=8, one frame, 128 px / 16
    denoiser = export.manifest["submodels"]["denoiser"]
    assert denoiser["timestep"] == "zero_on_first_frame"
    inputs = {t["name"]: t["shape"] for t in denoiser["inputs"]}
    assert inputs["timestep"] == ["batch"] and inputs["hidden_states"][1] == 8  # no mask or condition channels


def test_two_expert_export_records_both_graphs_and_the_switch(
    pipelines: TinyExports, exported: Path, conditioning: Path
) -> None:
    exported_wan22_a14b = pipelines.export("wan22-a14b")
    export = ExportDir.open(exported_wan22_a14b)
    manifest = export.manifest
    assert set(manifest["submodels"]) == {"denoiser", "denoiser_2", "vae_decoder", "condition_encoder"}
    assert manifest["pipeline"]["experts"] == {
        "high_noise": "denoiser",
        "low_noise": "denoiser_2",
        "boundary_timestep": 900.0,
    }
    expert = export.artifacts("denoiser_2")
    assert expert["onnx"]["file"] == "denoiser_2.onnx" and expert["onnx_stock"]["file"] == "denoiser_2_stock.onnx"
    assert expert["onnx"]["validated"]["passed"] and expert["onnx"]["tensorrt_parser_check"]["ok"]
    with pytest.raises(RunError, match="one denoiser"):  # a second guidance scale needs a second expert
        sample(ExportDir.open(exported), load_conditioning(str(conditioning)), RunRequest(guidance_scale_2=2.0))


def test_dymos_run_on_a_two_expert_export(
    pipelines: TinyExports, exported: Path, conditioning: Path, tmp_path: Path, capsys
) -> None:
    from dymos.cli import main

    exported_wan22_a14b = pipelines.export("wan22-a14b")
    image = str(conditioning.parent / "input.png")
    argv = ["run", "--export", str(exported_wan22_a14b), "--image", image, "--steps", "4", "--guidance-2", "3"]
    argv += IN_PROCESS
    assert main([*argv, "--out", str(tmp_path / "a14b.gif")]) == 0
    assert "(low-noise expert 3)" in capsys.readouterr().out and (tmp_path / "a14b.gif").stat().st_size > 0
    argv = ["run", "--export", str(exported), "--image", image, "--guidance-2", "3", "--out", str(tmp_path / "x.gif")]
    assert main([*argv, *IN_PROCESS]) == 1  # one expert: a clear error, nothing written
    assert "one denoiser" in capsys.readouterr().err and not (tmp_path / "x.gif").exists()


def test_two_expert_pipeline_saved_and_reloaded_still_exports_both(tmp_path: Path) -> None:
    """from_pretrained records each expert's own folder in its config (_name_or_path): not an architecture
    difference."""
    from dymos.export.build import _experts

    load_pipeline("tiny-pipeline:wan22-a14b").save_pretrained(tmp_path / "a14b")
    pipe = load_pipeline(str(tmp_path / "a14b"))
    assert pipe.transformer.config["_name_or_path"] != pipe.transformer_2.config["_name_or_path"]
    assert list(_experts(pipe)) == ["denoiser_2"]


def test_stock_graph_shares_the_weights_file(exported: Path) -> None:
    import onnx
    from onnx.external_data_helper import ExternalDataInfo

    def placements(name: str) -> dict[tuple[int, int], str]:
        model = onnx.load(str(exported / name), load_external_data=False)
        info = [ExternalDataInfo(t) for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        assert {i.location for i in info} == {"denoiser.onnx.data"}
        return {(i.offset, i.length): i.location for i in info}

    main, stock = placements("denoiser.onnx"), placements("denoiser_stock.onnx")
    shared = sum(length for (offset, length) in stock if (offset, length) in main)
    assert shared >= 0.9 * sum(length for (_, length) in stock)  # the weights are stored once
    manifest = ExportDir.open(exported).manifest
    assert manifest["artifacts"]["onnx_stock"]["validated"]["passed"]


def test_steps_at_strength_zero_run_the_stock_graph(exported: Path, conditioning: Path) -> None:
    from dymos.runtime.backends import open_backend, open_stock_backend

    export = ExportDir.open(exported)
    calls = {"dymos": 0, "stock": 0}

    class Counting:
        def __init__(self, inner, key):
            self.inner, self.key, self.name, self.spec = inner, key, inner.name, inner.spec

        def run(self, feed):
            calls[self.key] += 1
            return self.inner.run(feed)

    request = RunRequest(strength=2.0, steps=STEPS, schedule=StrengthSchedule(first_steps=1))
    sample(
        export,
        load_conditioning(str(conditioning)),
        request,
        denoiser=Counting(open_backend(export), "dymos"),
        stock=Counting(open_stock_backend(export), "stock"),
    )
    assert calls == {"dymos": 1, "stock": STEPS - 1}  # CFG batched: one engine call per step


def test_onnxruntime_thread_setups_give_the_same_video(exported: Path, conditioning: Path, tmp_path: Path) -> None:
    """Per-session pools, no spinning and the shared process-wide pool (``dymos run``'s default) change where
    threads wait, not what is computed. The shared pool is sized once per process, and onnxruntime refuses
    per-session pools after it: both are clear errors."""
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from dymos.runtime.artifacts import ExportDir
        from dymos.runtime.backends import OnnxRuntimeBackend, open_backend, open_stock_backend
        from dymos.runtime.loop import RunRequest, load_conditioning, sample
        export = ExportDir.open({str(exported)!r})
        cond = load_conditioning({str(conditioning)!r})
        frames = {{}}
        for setup in ("per-session", "no-spin", "shared"):  # the shared pool last: nothing per-session after it
            engines = dict(
                denoiser=open_backend(export, threading=setup),
                decoder=open_backend(export, "vae_decoder", threading=setup),
                stock=open_stock_backend(export, threading=setup),
            )
            frames[setup] = sample(export, cond, RunRequest(strength=2.0, steps=3), **engines).frames
        assert np.array_equal(frames["shared"], frames["per-session"])
        assert np.array_equal(frames["shared"], frames["no-spin"])
        spec = export.submodel("denoiser")
        onnx = export.path(export.artifacts("denoiser")["onnx"]["file"])
        for kwargs in (dict(threads=1, threading="shared"), dict(threading="per-session"), dict(threading="spin")):
            try:
                OnnxRuntimeBackend(onnx, spec, **kwargs)
            except ValueError as err:
                print("refused:", err)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "refused: onnxruntime's shared thread pool already has default threads" in out.stdout
    assert "refused: threading='per-session': this process already runs onnxruntime on its shared" in out.stdout
    assert "refused: unknown threading 'spin'" in out.stdout


def _tensorrt_missing() -> str | None:
    """Why the TensorRT loop test cannot run here (checked before its fixtures export anything), or None."""
    import importlib.util

    for module, package in (("tensorrt", "TensorRT"), ("cuda", "cuda-python")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (make setup GPU=1)"
    return None if torch.cuda.is_available() else "no CUDA GPU"


@pytest.mark.gpu
@pytest.mark.skipif(_tensorrt_missing() is not None, reason=_tensorrt_missing() or "")
def test_tensorrt_backend_matches_onnxruntime(conditioning: Path, tmp_path: Path) -> None:
    """GPU only: an fp16 engine built by `dymos export --formats onnx,trt` drives the same loop."""
    import tensorrt as trt

    from dymos.runtime.backends import open_backend

    result = run_export(ExportOptions(model="tiny-pipeline:wan22", out=tmp_path, formats=("onnx", "trt")), log=_quiet)
    export = ExportDir.open(result.directory, tensorrt_version=trt.__version__)
    cond = load_conditioning(str(conditioning))
    request = RunRequest(strength=[0.0, 2.5], steps=STEPS, schedule=StrengthSchedule(first_steps=2))
    ort_result = sample(export, cond, request, denoiser=open_backend(export, prefer=("onnxruntime",)), stock=None)
    trt_result = sample(export, cond, request, denoiser=open_backend(export, prefer=("tensorrt",)), stock=None)
    np.testing.assert_allclose(trt_result.latents, ort_result.latents, atol=5e-2, rtol=0)  # fp16 engine vs fp32


def test_feed_structure_is_checked_once_per_signature_and_the_strength_every_call() -> None:
    spec = SubmodelSpec(
        "denoiser",
        [
            {"name": "x", "dtype": "float32", "shape": ["batch", 4]},
            {"name": "motion_strength", "dtype": "float32", "shape": ["batch"]},
        ],
        [],
        {"batch": {"min": 1, "max": 2}},
    )
    feed = {"x": np.zeros((2, 4), np.float32), "motion_strength": np.zeros(2, np.float32)}
    assert spec.check_feed(feed) == {"batch": 2}
    spec.check_feed(feed)["batch"] = 5  # the sizes handed out are copies: the cache stays as checked
    assert spec.check_feed(feed) == {"batch": 2} and len(spec._checked) == 1
    with pytest.raises(FeedError, match="must be finite"):
        spec.check_feed({**feed, "motion_strength": np.array([0.0, np.nan], np.float32)})
    with pytest.raises(FeedError, match="dtype float64"):
        spec.check_feed({**feed, "x": np.zeros((2, 4), np.float64)})
    with pytest.raises(FeedError, match="outside the exported range"):
        spec.check_feed({"x": np.zeros((3, 4), np.float32), "motion_strength": np.zeros(3, np.float32)})
    with pytest.raises(FeedError, match="expected a numpy array"):
        spec.check_feed({**feed, "x": [[0.0] * 4] * 2})


def test_fp16_svd_condition_view_copies_the_vae_once_per_weights() -> None:
    """The fp32 VAE an fp16 SVD pipeline encodes with is copied once and reused across requests; changed weights
    (a tensor written in place, the module moved) get a fresh copy, and the pipeline's own VAE stays fp16."""
    from dymos.prepare import condition_view

    pipe = load_pipeline("tiny-pipeline:svd", dtype=torch.float16)
    first, again = condition_view(pipe), condition_view(pipe)
    assert first.vae is again.vae and first.vae.dtype == torch.float32 and pipe.vae.dtype == torch.float16
    weight = next(pipe.vae.parameters())
    with torch.no_grad():
        weight.mul_(2)  # in place: same storage, a new version
    written = condition_view(pipe).vae
    assert written is not first.vae
    torch.testing.assert_close(next(written.parameters()), weight.float())
    pipe.vae.to(torch.float32).to(torch.float16)  # moved and back: new storage
    assert condition_view(pipe).vae is not written


def test_fp16_svd_encodes_the_image_in_fp32_as_its_pipeline_does(tmp_path: Path) -> None:
    """``StableVideoDiffusionPipeline.__call__`` moves an fp16 VAE with ``force_upcast`` to fp32 for the image
    encode (its ``needs_upcasting``) and casts the latents to the embeddings' dtype. The exported condition encoder
    does the same: fp32 inputs, an fp32 VAE inside, fp16 out; within one fp16 rounding of the pipeline's own
    sequence of calls (measured 1e-6; asserted 1e-3, an fp16 ulp near 1)."""
    import onnxruntime as ort

    directory = run_export(
        ExportOptions(model="tiny-pipeline:svd", out=tmp_path, precision="fp16"), log=_quiet
    ).directory
    spec = ExportDir.open(directory).submodel("condition_encoder")
    assert {t["name"]: t["dtype"] for t in spec.inputs} == {
        "pixels": "float32",
        "noise": "float32",
        "noise_aug_strength": "float32",
    }
    assert spec.outputs[0]["dtype"] == "float16"
    g = torch.Generator().manual_seed(3)
    shape = tuple(next(t for t in spec.inputs if t["name"] == "pixels")["shape"])
    pixels = torch.rand(*shape, generator=g) * 2 - 1
    noise, aug = torch.randn(*shape, generator=g), torch.tensor([0.02])
    session = ort.InferenceSession(str(directory / "condition_encoder.onnx"), providers=["CPUExecutionProvider"])
    feed = {"pixels": pixels.numpy(), "noise": noise.numpy(), "noise_aug_strength": aug.numpy()}
    (out,) = session.run(None, feed)
    pipe = load_pipeline("tiny-pipeline:svd", dtype=torch.float16)
    assert pipe.vae.config.force_upcast
    frames = spec.outputs[0]["shape"][1]
    with torch.no_grad():  # the pipeline's own calls, in its order
        pipe.vae.to(dtype=torch.float32)
        latents = pipe._encode_vae_image(pixels + aug * noise, torch.device("cpu"), 1, False)
        pipe.vae.to(dtype=torch.float16)
        reference = latents.to(pipe.image_encoder.dtype).unsqueeze(1).repeat(1, frames, 1, 1, 1)
    assert out.dtype == np.float16 and out.shape == tuple(reference.shape)
    np.testing.assert_allclose(out.astype(np.float32), reference.float().numpy(), atol=1e-3, rtol=1e-3)


def test_onnxruntime_failures_are_named_errors_not_library_exceptions(tmp_path: Path) -> None:
    """onnxruntime's own exceptions derive from Exception only, past `dymos`'s error handling: a file it cannot
    load is an unavailable backend (so `auto` falls back and says why), a run that fails on a feed that fits the
    spec (out of memory, a provider error; here a reshape the values cannot take) an EngineError."""
    import onnx
    from onnx import TensorProto, helper

    from dymos.runtime.artifacts import SubmodelSpec
    from dymos.runtime.backends import BackendUnavailable, EngineError, OnnxRuntimeBackend

    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [3])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape_to_3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [shape],
    )
    path = tmp_path / "reshape.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    spec = SubmodelSpec("g", [{"name": "x", "dtype": "float32", "shape": ["n"]}], [{"name": "y"}], {})
    backend = OnnxRuntimeBackend(path, spec)
    assert backend.run({"x": np.ones(3, np.float32)})["y"].shape == (3,)
    with pytest.raises(EngineError, match=r"onnxruntime \(CPUExecutionProvider\) failed running g"):
        backend.run({"x": np.ones(4, np.float32)})
    path.write_bytes(b"not an onnx file")
    with pytest.raises(BackendUnavailable, match=r"onnxruntime cannot load reshape\.onnx"):
        OnnxRuntimeBackend(path, spec)
