"""Which modules import without torch: a device install has none, the publisher's release tools need none,
and the device environment runs the MQTT suites on the testbed. Proved in a child process where
`import torch` fails."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import importlib, json, sys
sys.modules["torch"] = None
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed[name] = str(exc)
print(json.dumps(failed))
"""

#: The publisher's torch line (publisher/__init__.py, docs/architecture.md): these need torch ...
PUBLISHER_TORCH = ("publisher.training", "publisher.models", "publisher.tflite.export", "publisher.tflite.nodes")
#: ... except these plain-data modules.
PUBLISHER_TORCH_FREE = ("publisher.training.rank_policy",)
#: The harness's training parts need torch too; the device environment never imports them. The codec and
#: fleet-scale benchmarks, the plot and the zstd patch baseline do not.
HARNESS_TORCH = ("simulator.bench.scenarios", "simulator.bench.methods", "simulator.bench.updates",
                 "simulator.bench.datasets", "simulator.bench.models", "simulator.bench.cases",
                 "simulator.bench.tuning",
                 "simulator.bench.trained", "simulator.bench.baselines.full_finetune",
                 "simulator.bench.baselines.bitdelta", "simulator.bench.baselines.konecny",
                 "simulator.bench.baselines.topk", "simulator.bench.runtimes", "simulator.bench.architectures",
                 "simulator.bench.throughput", "simulator.bench.low_rank_path", "simulator.bench.record_overhead",
                 "simulator.demo")


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _publisher_torch(name: str) -> bool:
    return _under(name, PUBLISHER_TORCH) and name not in PUBLISHER_TORCH_FREE


def _failing_without_torch(names: list[str]) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *names], capture_output=True, text=True, timeout=300,
                          check=True)
    return json.loads(done.stdout)


def test_everything_outside_the_torch_line_imports_without_torch(modules) -> None:
    free = [m.name for m in modules if not _publisher_torch(m.name) and not _under(m.name, HARNESS_TORCH)
            and not m.name.endswith("__main__")]
    assert {"publisher.release.publish", "publisher.tflite.canary", "simulator.testbed.broker",
            "simulator.bench.codec"} <= set(free)
    assert _failing_without_torch(free) == {}


def test_the_torch_modules_really_need_it(modules) -> None:
    """The line is exact: a module that stopped needing torch belongs among the torch-free ones."""
    heavy = [m.name for m in modules if (_publisher_torch(m.name) or _under(m.name, HARNESS_TORCH))
             and m.path.name != "__init__.py"]
    assert {"publisher.training.update", "publisher.tflite.export", "simulator.bench.methods"} <= set(heavy)
    assert sorted(_failing_without_torch(heavy)) == sorted(heavy)
