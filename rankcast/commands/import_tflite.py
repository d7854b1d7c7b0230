"""`rankcast import-tflite`: what of a float32 .tflite file, made by any converter, updates can train and patch."""

from __future__ import annotations

import argparse
from pathlib import Path

#: Inputs of EVAL.npz run through both the imported module and the TFLite runtime to compare them.
_COMPARED = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-tflite",
        help="build a trainable torch module from a float32 .tflite file (Keras, TensorFlow, any converter)",
        description="Read the graph and weights of MODEL.tflite, build the torch module that computes what it "
        "computes (in the file's input layout, NHWC for Keras models), and list each operator and the weights "
        "updates can change. `rankcast update build --deployed MODEL.tflite` without --arch trains on this "
        "module, and devices patch the very file with no binding sent beside it.",
    )
    parser.add_argument("model", type=Path, metavar="MODEL.tflite")
    parser.add_argument("--eval", type=Path, metavar="EVAL.npz",
                        help="arrays x and y: print the module's accuracy and how far it is from the TFLite runtime")
    parser.add_argument("--out-weights", type=Path, metavar="FILE.pt",
                        help="also write the module's state_dict (the file's weights under their op<N> names)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from codec.tflite_graph import parse_graph
    from publisher.models.imported import import_tflite, operator_name

    data = args.model.read_bytes()
    model = import_tflite(data)
    parameters = dict(model.named_parameters())
    for operator in parse_graph(data).operators:
        names = [name for name in parameters if name.startswith(f"op{operator.index}.")]
        held = ", ".join(f"{name} {'x'.join(map(str, parameters[name].shape))}" for name in names)
        print(f"op{operator.index:<4} {operator_name(operator):<18} {held}")
    values = sum(value.numel() for value in parameters.values())
    print(f"imported {args.model}: input {'x'.join(map(str, model.input_shape))} (the file's layout), "
          f"{len(parameters)} parameters ({values:,} values) that updates train and devices patch in place"
          + ("; the final SOFTMAX is left out of training (the arg-max is the same)" if model.ends_in_softmax else ""))
    if args.eval is not None:
        print(_evaluation(model, data, args.eval))
    if args.out_weights is not None:
        torch.save(model.state_dict(), args.out_weights)
        print(f"wrote {args.out_weights}")
    return 0


def _evaluation(model, data: bytes, path: Path) -> str:
    """The module's accuracy on EVAL.npz, and its largest difference from the TFLite runtime's outputs."""
    import tempfile

    import numpy as np
    import torch

    from device_client.tflite_runtime import run as run_tflite
    from publisher.training.from_files import check_fits, load_data
    from publisher.training.loop import accuracy

    x, y = load_data(path)
    check_fits(model, (x, y), path)
    with torch.no_grad():
        outputs = model(x[:_COMPARED])
    if model.ends_in_softmax:
        outputs = torch.softmax(outputs, dim=-1)
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "model.tflite"
        copy.write_bytes(data)
        reference = run_tflite(copy, x[:_COMPARED].numpy())
    difference = float(np.max(np.abs(outputs.numpy() - reference)))
    return (f"  accuracy {accuracy(model, x, y):.1%} on {path}; largest difference from the TFLite runtime "
            f"{difference:.1e} on the first {min(_COMPARED, len(x))} inputs")
