"""hubconf.py works the torch.hub way, from this checkout."""

from __future__ import annotations

from pathlib import Path

import torch

import dymos
from tests.tiny_pipelines import build_pipeline, call_kwargs

ROOT = Path(__file__).resolve().parents[1]


def test_hub_loads_a_denoiser() -> None:
    model = torch.hub.load(str(ROOT), "dymos_denoiser", source="local", checkpoint="tiny:wan22", strength=1.0)
    assert type(model).__name__ == "WanTransformer3DModel"
    assert model.dymos.strength == (1.0,)
    model.dymos.remove()


def test_hub_loads_a_local_pipeline_folder(tmp_path: Path) -> None:
    build_pipeline("ltx").save_pretrained(tmp_path)
    pipe = torch.hub.load(
        str(ROOT),
        "dymos_pipeline",
        source="local",
        path=str(tmp_path),
        strength=2.0,
        text_encoder=None,
        tokenizer=None,
    )
    assert isinstance(pipe.dymos, dymos.DyMoSPipeline)
    out = pipe(**call_kwargs("ltx")).frames
    assert torch.isfinite(torch.as_tensor(out)).all()
    pipe.dymos.disable()


def test_hub_pipeline_uses_a_component_passed_in() -> None:
    """A component object given to ``dymos_pipeline`` (e.g. another checkpoint's transformer) is the one the
    pipeline runs, not the folder's (diffusers' generic loader reloads it from disk)."""
    import diffusers

    from dymos.models import shipped_path

    config = diffusers.WanTransformer3DModel.load_config(shipped_path("sprites") / "transformer")
    transformer = diffusers.WanTransformer3DModel.from_config(config)
    pipe = torch.hub.load(str(ROOT), "dymos_pipeline", source="local", transformer=transformer)
    assert pipe.transformer is transformer
    pipe.dymos.disable()
