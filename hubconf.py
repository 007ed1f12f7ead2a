"""torch.hub entrypoints: ``torch.hub.load("<clone dir>", "<name>", source="local", ...)``.

Keyword-only builders; heavy imports happen inside them so listing entrypoints stays cheap.
"""

dependencies = ["torch", "diffusers"]


def dymos_denoiser(*, checkpoint: str = "tiny:wan21", strength: float = 0.0, strategy: str = "auto", dtype=None):
    """A denoiser with DyMoS installed: ``checkpoint`` is ``tiny:<case>`` or a local diffusers checkpoint dir.

    Returns the model; its DyMoS handle (strength knob, ``remove()``) is ``model.dymos``.
    """
    import torch

    from dymos.denoiser import patch
    from dymos.models import load_denoiser

    denoiser = load_denoiser(checkpoint, dtype=dtype or torch.float32)
    denoiser.dymos = patch(denoiser, strength, strategy=strategy)
    return denoiser


def dymos_pipeline(
    *,
    path: str = "sprites",
    strength: float = 2.0,
    fraction: float = 0.2,
    strategy: str = "auto",
    dtype=None,
    **components,
):
    """A diffusers pipeline with DyMoS enabled; its handle is ``pipe.dymos``. ``path`` is a local pipeline folder or
    ``sprites`` (the shipped trained model, the default).

    Extra keyword arguments go to ``from_pretrained`` (e.g. ``text_encoder=None`` when embeddings are precomputed).
    """
    import torch

    from dymos.models import load_pipeline
    from dymos.pipeline import enable

    pipe = load_pipeline(path, dtype=dtype or torch.float32, **components)
    pipe.dymos = enable(pipe, strength, fraction=fraction, strategy=strategy)
    return pipe
