"""What an export directory holds, in a few lines a person can read (``dymos inspect``), without torch.

The manifest is the source: the model and export options, the strength contract, each graph's inputs with their
exported ranges, its artifacts with how they were validated, and the TensorRT version an engine needs against the
one installed here. Opening the directory through :class:`ExportDir` verifies sizes and hashes first, so a summary
is only printed for artifacts that are what the manifest says.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .artifacts import ExportDir


def installed_tensorrt_version() -> str | None:
    """The TensorRT version importable here, or None (CPU machines cannot install it)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt
    except (ImportError, OSError):  # the package without its CUDA libraries
        return None
    return str(tensorrt.__version__)


def _shape(tensor: dict[str, Any]) -> str:
    return f"{tensor['dtype']} [{', '.join(str(d) for d in tensor['shape'])}]"


def _ranges(dims: dict[str, dict[str, int]]) -> str:
    return ", ".join(f"{name} {d['min']}..{d['max']} (opt {d['opt']})" for name, d in dims.items())


def _artifact_line(kind: str, entry: dict[str, Any], export: ExportDir, tensorrt: str | None) -> str:
    files = entry.get("files") or [entry["file"]]
    size = sum(export.manifest["files"].get(f, {}).get("bytes", 0) for f in files)
    line = f"{kind:<12} {entry['file']} ({size / 1e6:.2f} MB"
    line += f", {len(files)} files)" if len(files) > 1 else ")"
    validated = entry.get("validated")
    if validated:
        tolerance = validated.get("tolerance", {})
        verdict = "passed" if validated.get("passed") else "FAILED"
        line += f"; parity vs PyTorch {verdict} ({validated.get('backend', '?')}"
        if tolerance:
            line += f", atol {tolerance.get('atol'):g}, rtol {tolerance.get('rtol'):g}"
        line += ")"
    if kind == "tensorrt":
        built = entry.get("tensorrt_version")
        if tensorrt is None:
            line += f"; built with TensorRT {built}, none installed here"
        else:
            line += f"; built with TensorRT {built}, {tensorrt} installed: " + (
                "usable" if built == tensorrt else "NOT usable, rebuild it"
            )
    return line


def describe_export(export: ExportDir, tensorrt: str | None = None) -> list[str]:
    """The summary's lines. ``tensorrt``: the installed TensorRT version (None: not installed)."""
    manifest = export.manifest
    model, options, strength = manifest["model"], manifest.get("export", {}), manifest.get("strength", {})
    files = manifest.get("files", {})
    lines = [
        f"{export.root}: {len(files)} files, {sum(f['bytes'] for f in files.values()) / 1e6:.2f} MB, sizes and "
        "sha256 verified",
        f"model     {model.get('class')} ({model.get('family')}) from {model.get('source')}",
        f"export    {options.get('precision')}, opset {options.get('opset')}, strategy {strength.get('strategy')}, "
        f"formats {', '.join(options.get('formats', []))}; created {manifest.get('created')}",
        f"strength  input `{strength.get('input')}` {strength.get('dtype')} [{', '.join(strength.get('shape', []))}]"
        f": 0 is the stock model; default schedule: the first {strength.get('default_schedule_fraction', 0):.0%} "
        "of steps",
    ]
    pipeline = manifest.get("pipeline")
    if pipeline:
        video, defaults = pipeline.get("video", {}), pipeline.get("defaults", {})
        runtime = "driven by `dymos run`" if pipeline.get("runtime_supported") else "not driven by the runtime"
        lines.append(
            f"pipeline  {pipeline.get('class')}, {pipeline.get('scheduler', {}).get('class')}; {runtime}; video "
            f"{video.get('frames')} frames {video.get('height')}x{video.get('width')} -> latents "
            f"{video.get('latent_frames')}x{video.get('latent_height')}x{video.get('latent_width')}"
            + (f"; defaults {', '.join(f'{k} {v}' for k, v in defaults.items())}" if defaults else "")
        )
    versions = manifest.get("versions", {})
    lines.append("versions  " + ", ".join(f"{k} {v}" for k, v in versions.items() if v is not None))
    for name, entry in manifest.get("submodels", {}).items():
        lines.append(f"graph {name}")
        for tensor in entry["inputs"]:
            lines.append(f"  in   {tensor['name']:<24} {_shape(tensor)}")
        for tensor in entry["outputs"]:
            lines.append(f"  out  {tensor['name']:<24} {_shape(tensor)}")
        if entry.get("dims"):
            lines.append(f"  dims {_ranges(entry['dims'])}")
        for kind, artifact in export.artifacts(name).items():
            if not isinstance(artifact, dict):
                continue
            if artifact.get("file"):
                lines.append(f"  {_artifact_line(kind, artifact, export, tensorrt)}")
            elif artifact.get("reason"):
                lines.append(f"  {kind:<12} not exported: {artifact['reason']}")
    return lines
