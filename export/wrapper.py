"""The exported module: a DyMoS-patched denoiser whose motion strength is a graph input.

:class:`StrengthInputDenoiser` takes the spec's tensors positionally plus ``motion_strength`` (float32
``[batch]``) and returns the noise prediction. Inside, the strength is handed to the patch through
:meth:`DyMoSDenoiser.strength_input`, so no Python code reads its value and the exporter keeps it a live input.
Family adapters (LTX's token packing, CogVideoX's RoPE tables, Wan 2.2 TI2V's per-token timesteps) are done here
from symbolic shapes, so frames and resolution stay dynamic in the graph.
"""

from __future__ import annotations

from typing import Any

import torch

from dymos.attention import DEFAULT_STRATEGY
from dymos.denoiser import DyMoSDenoiser
from dymos.inputs import cogvideox_rotary_embedding, first_frame_zero_timesteps
from dymos.layouts import layout_for, token_grid

from .specs import FAMILY_EXPORTS, ExportSpec


class StrengthInputDenoiser(torch.nn.Module):
    """``forward(*spec_inputs, motion_strength) -> noise_pred`` around a diffusers denoiser with DyMoS.

    ``dymos=False`` gives the stock model behind the same signature (the strength input is ignored): the
    baseline that benchmarks and parity checks compare against.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        spec: ExportSpec,
        *,
        strategy: str = DEFAULT_STRATEGY,
        dymos: bool = True,
        fold_pad_to: int = 1,
    ) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        self.layout = layout_for(model)
        self.family = FAMILY_EXPORTS[self.layout.family]
        self.tensor_names = [name for name in spec.input_names if name != "motion_strength"]
        self.handle = DyMoSDenoiser(model, 0.0, strategy=strategy, fold_pad_to=fold_pad_to) if dymos else None

    def model_kwargs(self, tensors: dict[str, torch.Tensor]) -> tuple[dict[str, Any], Any]:
        """The diffusers forward kwargs for the graph's tensors, and the output adapter (None or an unpacker)."""
        kwargs: dict[str, Any] = {**self.spec.fixed_kwargs, **tensors}
        unpack = None
        if self.family.packed_latents:
            latent = kwargs["hidden_states"]
            batch, channels, frames, height, width = latent.shape
            kwargs["hidden_states"] = latent.permute(0, 2, 3, 4, 1).reshape(batch, frames * height * width, channels)
            kwargs.update(num_frames=frames, height=height, width=width)
            for name in self.family.per_token_inputs:
                if not (name == "timestep" and self.spec.zero_timestep_first_frame):  # formed below
                    kwargs[name] = kwargs[name].reshape(batch, frames * height * width)

            def unpack(out: torch.Tensor) -> torch.Tensor:
                return out.reshape(batch, frames, height, width, -1).permute(0, 4, 1, 2, 3)

        if self.spec.zero_timestep_first_frame:
            grid = token_grid(self.layout, self.model.config, kwargs)
            kwargs["timestep"] = first_frame_zero_timesteps(kwargs["timestep"], grid.frames, grid.tokens_per_frame)
        if self.family.rotary_inputs and self.model.config.get("use_rotary_positional_embeddings"):
            latent = kwargs["hidden_states"]
            kwargs["image_rotary_emb"] = cogvideox_rotary_embedding(
                dict(self.model.config), latent.shape[1], latent.shape[3], latent.shape[4]
            )
        return kwargs, unpack

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *tensors, strength = inputs
        kwargs, unpack = self.model_kwargs(dict(zip(self.tensor_names, tensors)))
        if self.handle is None:
            out = self.model(**kwargs)[0]
        else:
            with self.handle.strength_input(strength):
                out = self.model(**kwargs)[0]
        return out if unpack is None else unpack(out)
