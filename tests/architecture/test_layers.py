"""Who may import whom (docs/architecture.md): every module belongs to one layer, and imports only from the
layers below it, lazily imported modules included."""

from __future__ import annotations

PRODUCT = {"codec", "device_client", "broker_config", "publisher.errors", "publisher.release", "publisher.trust",
           "publisher.rollout", "publisher.dashboard", "publisher.tflite", "publisher.training", "publisher.models"}
HARNESS = {"simulator.testbed", "simulator.fleet", "simulator.bench", "simulator.reliability", "simulator"}

#: Layer -> the layers it may import. The canary (publisher.tflite) runs the device's own TFLite wrapper.
ALLOWED = {
    "codec": set(),
    "device_client": {"codec"},
    "broker_config": {"codec"},
    "publisher.errors": set(),
    "publisher.release": {"codec", "publisher.errors"},
    "publisher.trust": {"codec", "publisher.errors"},
    "publisher.rollout": {"codec", "publisher.errors", "publisher.release"},
    "publisher.dashboard": {"codec", "publisher.errors", "publisher.release", "publisher.rollout"},
    "publisher.models": {"codec", "publisher.errors"},
    "publisher.tflite": {"codec", "device_client", "publisher.errors", "publisher.models"},
    "publisher.training": {"codec", "publisher.errors", "publisher.models"},
    "simulator.testbed": PRODUCT,
    "simulator.fleet": PRODUCT | {"simulator.testbed"},
    "simulator.bench": PRODUCT | {"simulator.testbed", "simulator.fleet"},
    "simulator.reliability": PRODUCT | {"simulator.testbed", "simulator.fleet"},
    "simulator": PRODUCT | {"simulator.testbed", "simulator.fleet", "simulator.bench"},
    "rankcast": PRODUCT | HARNESS,
}


def layer(module: str) -> str:
    """The layer a module belongs to: its package, or its subpackage in publisher and simulator."""
    parts = module.split(".")
    if parts[0] in ("publisher", "simulator") and len(parts) > 1 and f"{parts[0]}.{parts[1]}" in ALLOWED:
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def test_every_module_belongs_to_a_known_layer(modules) -> None:
    assert {layer(m.name) for m in modules} <= set(ALLOWED) | {"publisher"}
    assert {m.name for m in modules if layer(m.name) == "publisher"} == {"publisher"}, "publisher/ holds subpackages"


def test_every_import_goes_to_the_same_layer_or_an_allowed_one(modules) -> None:
    wrong = [f"{m.name} imports {target}" for m in modules if m.name != "publisher" for target in sorted(m.imports)
             if layer(target) != layer(m.name) and layer(target) not in ALLOWED[layer(m.name)]]
    assert not wrong, "\n".join(wrong)


def test_the_rules_forbid_cycles_between_layers() -> None:
    def below(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        assert name not in seen, f"cycle through {name}"
        return set().union(*({other} | below(other, seen | {name}) for other in ALLOWED[name]))

    for name in ALLOWED:
        assert name not in below(name)


def test_every_folder_of_modules_is_a_package(modules) -> None:
    """A regular install (setuptools' find_packages) takes only folders with an __init__.py."""
    folders = {m.path.parent for m in modules}
    assert all((folder / "__init__.py").is_file() for folder in folders), sorted(
        str(folder) for folder in folders if not (folder / "__init__.py").is_file())
