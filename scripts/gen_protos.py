#!/usr/bin/env python
"""Generate the gRPC stubs in ``ndsc/wire/`` from ``proto/ndsc/v1/ndsc.proto``.

Also compiles ``proto/grpc/reflection/v1/reflection.proto`` into
``ndsc/wire/reflection_v1_pb2.py`` (messages only: ``ndsc.wire.reflection`` serves v1).

Usage::

    python scripts/gen_protos.py           # regenerate ndsc/wire/ndsc_pb2{,_grpc}.py(i), reflection_v1_pb2.py(i)
    python scripts/gen_protos.py --check   # exit 1 if the checked-in stubs are stale

protoc writes ``from ndsc.v1 import ndsc_pb2`` (the proto package path); the stubs live
in ``ndsc.wire``, so that import is rewritten. ``--check`` compares the descriptor
compiled from the .proto with the one embedded in the checked-in module and the
service's method names in the grpc module, so a newer grpcio-tools (different version
banner) does not make current stubs look stale.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "proto"
PROTO = "ndsc/v1/ndsc.proto"
REFLECTION_V1 = "grpc/reflection/v1/reflection.proto"
OUT = REPO / "ndsc" / "wire"
#: proto → (module written in ndsc/wire, with a grpc module)
MODULES = {PROTO: ("ndsc_pb2", True), REFLECTION_V1: ("reflection_v1_pb2", False)}
GENERATED = ("ndsc_pb2.py", "ndsc_pb2.pyi", "ndsc_pb2_grpc.py", "reflection_v1_pb2.py", "reflection_v1_pb2.pyi")


def _protoc(args: list[str], proto: str = PROTO) -> None:
    from grpc_tools import protoc
    import grpc_tools

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    code = protoc.main(["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}", *args, proto])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def generate(out: Path = OUT) -> list[Path]:
    """Compile the protos and write the rewritten stubs into ``out``."""
    written = []
    for proto, (module, with_grpc) in MODULES.items():
        with tempfile.TemporaryDirectory() as tmp:
            _protoc([f"--python_out={tmp}", f"--pyi_out={tmp}"] + ([f"--grpc_python_out={tmp}"] if with_grpc else []),
                    proto)
            stem = Path(proto).stem + "_pb2"
            for suffix in (".py", ".pyi") + (("_grpc.py",) if with_grpc else ()):
                text = (Path(tmp) / Path(proto).parent / (stem + suffix)).read_text()
                text = text.replace("from ndsc.v1 import ndsc_pb2", "from ndsc.wire import ndsc_pb2")
                (out / (module + suffix)).write_text(text)
                written.append(out / (module + suffix))
    return written


def _drop_json_names(file_proto) -> None:
    def visit(message) -> None:
        for f in message.field:
            f.ClearField("json_name")
        for nested in message.nested_type:
            visit(nested)

    for message in file_proto.message_type:
        visit(message)


def compiled(proto: str):
    """The FileDescriptorProto protoc compiles from ``proto/<proto>``, as a module embeds it."""
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        _protoc([f"--descriptor_set_out={out}"], proto)
        fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    _drop_json_names(fresh)  # protoc's descriptor set adds json_name; the embedded one omits it
    return fresh


def check() -> list[str]:
    """Differences between the .proto and the checked-in stubs (empty: current)."""
    from google.protobuf import descriptor_pb2

    problems = []
    for proto, (module, _) in MODULES.items():
        fresh = compiled(proto)
        try:
            pb2 = importlib.import_module(f"ndsc.wire.{module}")
        except ImportError:
            problems.append(f"ndsc/wire/{module}.py missing")
            continue
        if fresh != descriptor_pb2.FileDescriptorProto.FromString(pb2.DESCRIPTOR.serialized_pb):
            problems.append(f"ndsc/wire/{module}.py does not match proto/{proto}")
    fresh = compiled(PROTO)
    grpc_src = (OUT / "ndsc_pb2_grpc.py").read_text()
    for service in fresh.service:
        for method in service.method:
            if f"/{fresh.package}.{service.name}/{method.name}" not in grpc_src:
                problems.append(f"ndsc/wire/ndsc_pb2_grpc.py lacks {service.name}.{method.name}")
    for name in GENERATED:
        if not (OUT / name).is_file():
            problems.append(f"ndsc/wire/{name} missing")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the checked-in stubs are stale")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            print("run: python scripts/gen_protos.py", file=sys.stderr)
        return 1 if problems else 0
    for path in generate():
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
