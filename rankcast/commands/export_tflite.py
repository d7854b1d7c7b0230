"""`rankcast export-tflite`: write a PyTorch model as a float32 .tflite file that updates can patch."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-tflite",
        help="export a PyTorch model to a .tflite file with its weight binding",
        description="Build the model with FACTORY() from MODULE, load W.pt (a state_dict) and write a float32 "
        ".tflite file that takes inputs in PyTorch's layout. The file carries the binding from PyTorch "
        "parameter names to its weight buffers, so devices can apply updates to it in place.",
    )
    parser.add_argument("--arch", required=True, metavar="MODULE:FACTORY",
                        help="function of no arguments that builds the nn.Module; MODULE is looked for in the "
                        "current directory, then on PYTHONPATH")
    parser.add_argument("--weights", type=Path, metavar="W.pt",
                        help="state_dict saved with torch.save (default: the factory's own weights)")
    parser.add_argument("--input-shape", required=True, type=_shape, metavar="N,F|N,C,H,W",
                        help="the input shape, batch first, for example 1,64 or 1,3,32,32")
    parser.add_argument("--out", required=True, type=Path, metavar="MODEL.tflite")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from publisher.errors import ExportError

    try:
        from publisher.tflite.export import export_tflite
    except ImportError as exc:
        raise ExportError(f"export-tflite runs on the server install (pip install 'rankcast[server]'): {exc}") from None
    model = _load_model(args.arch, args.weights)
    binding = export_tflite(model, args.input_shape, args.out)
    print(binding.summary())
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes; {len(binding.tensors)} parameters bound)")
    return 0


def _load_model(arch: str, weights: Path | None) -> object:
    from publisher.training.user_model import load_architecture, load_state

    model = load_architecture(arch)
    return model.eval() if weights is None else load_state(model, weights, "--weights")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not shape or any(d < 1 for d in shape):
        raise argparse.ArgumentTypeError(f"{text!r}: every size must be at least 1")
    return shape
