"""The ``dymos`` command: subcommands over the library (``dymos probe``; more as they land).

Heavy imports (torch, diffusers) happen inside the subcommands so ``dymos --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from dymos import __version__


def _floats(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _layers(text: str) -> list[int | str]:
    return [int(x) if x.strip().lstrip("-").isdigit() else x.strip() for x in text.split(",") if x.strip()]


def _add_probe(sub: argparse._SubParsersAction) -> None:
    from dymos.models import DEFAULT_MODEL

    p = sub.add_parser(
        "probe",
        help="attention mass that non-reference queries give to reference keys, per layer and strength",
        description=(
            "Run the denoiser once per strength with DyMoS on every selected layer and report the mean attention "
            "probability that non-reference-frame queries put on reference-frame keys. Inputs are seeded random "
            "latents and conditioning of the model's shapes."
        ),
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"tiny:<case> or a local diffusers checkpoint dir (default {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--strengths", type=_floats, default=[0.0, 1.0, 2.0, 4.0], help="comma-separated strengths (default 0,1,2,4)"
    )
    p.add_argument("--frames", type=_positive_int, default=None, help="latent (token-)frames of the probe input")
    p.add_argument(
        "--height", type=_positive_int, default=None, help="latent height (default: the family's small default)"
    )
    p.add_argument("--width", type=_positive_int, default=None, help="latent width")
    p.add_argument("--batch", type=_positive_int, default=1, help="batch size (default 1)")
    p.add_argument(
        "--layers", type=_layers, default=None, help="comma-separated layer indices or module names (default all)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (and tiny weights)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=_run_probe)


def _run_probe(args: argparse.Namespace) -> int:
    from dymos.inputs import default_frames, example_inputs
    from dymos.layouts import layout_for
    from dymos.models import load_denoiser
    from dymos.probe import attention_mass
    from dymos.schedule import validate_strength

    validate_strength(args.strengths)
    model = load_denoiser(args.model, seed=args.seed)
    family = layout_for(model).family
    frames = args.frames or default_frames(model.config)
    inputs = example_inputs(
        family,
        dict(model.config),
        batch=args.batch,
        frames=frames,
        height=args.height,
        width=args.width,
        seed=args.seed,
    )
    report = attention_mass(model, inputs, args.strengths, layers=args.layers)
    if args.json:
        print(json.dumps({"model": args.model, "class": type(model).__name__, **report.as_dict()}, indent=2))
    else:
        print(f"{args.model} ({type(model).__name__}), {frames} frames, batch {args.batch}")
        print(report.table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dymos",
        description="DyMoS (Dynamic Motion Slider) for diffusers image-to-video models: probe, export, run.",
    )
    parser.add_argument("--version", action="version", version=f"dymos {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_probe(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        print(f"dymos {args.command}: error: {err}", file=sys.stderr)
        return 1
