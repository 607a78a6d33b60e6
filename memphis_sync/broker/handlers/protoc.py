"""Compiling a protobuf schema to the descriptor the SDKs load (``memphis-wire.md`` §10.1).

The Memphis broker runs ``protoc --descriptor_set_out=<name>_1_desc <name>_1.proto`` (no
``--include_imports``) and stores the result, base64, as the version's ``descriptor``; the SDKs
parse it as a ``FileDescriptorSet`` and load ``file[0]``. Its ``message_struct_name`` is the
first top-level message of the file. This module does the same with a real compiler:

* the ``grpcio-tools`` package (the ``broker-protobuf`` extra), which bundles ``protoc`` and the
  well-known ``google/protobuf/*.proto`` files; run as ``python -m grpc_tools.protoc``;
* otherwise a ``protoc`` on ``PATH``.

With neither, :func:`compile_proto` raises :exc:`NoProtobufCompiler` and the schema is refused:
an empty descriptor would make every producer and consumer of a station using it fail.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import List, Optional, Tuple

__all__ = ["NoProtobufCompiler", "ProtoCompileError", "NO_COMPILER_TEXT", "COMPILE_TIMEOUT", "protobuf_compiler", "compile_proto"]

#: The error text of a protobuf schema refused for want of a compiler.
NO_COMPILER_TEXT = (
    "cannot compile the Proto file: the broker has no protobuf compiler "
    "(install memphis-sync[broker-protobuf], or put protoc on PATH)"
)
#: Seconds one compilation may take.
COMPILE_TIMEOUT = 30.0
_MESSAGE_RE = re.compile(r"\bmessage\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")


class NoProtobufCompiler(Exception):
    """No usable protobuf compiler: none is installed (the text is :data:`NO_COMPILER_TEXT`), it
    cannot be run, or it did not finish in time."""


class ProtoCompileError(Exception):
    """The compiler refused the file (the text is what it said)."""


def protobuf_compiler() -> Optional[Tuple[List[str], List[str]]]:
    """The compiler to run, as ``(command, include paths)``, or None when none is installed."""
    try:
        import grpc_tools  # the broker-protobuf extra
    except ImportError:
        pass
    else:
        well_known = os.path.join(os.path.dirname(os.path.abspath(grpc_tools.__file__)), "_proto")
        return [sys.executable, "-m", "grpc_tools.protoc"], [well_known] if os.path.isdir(well_known) else []
    protoc = shutil.which("protoc")
    return ([protoc], []) if protoc else None


def _first_message(descriptor_set: bytes, content: str) -> Optional[str]:
    """The first top-level message of the compiled file (from the descriptor when the protobuf
    package is there to read it, else from the text)."""
    try:
        from google.protobuf import descriptor_pb2
    except ImportError:
        match = _MESSAGE_RE.search(content)
        return match.group(1) if match else None
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file
    return files[0].message_type[0].name if files and files[0].message_type else None


def compile_proto(schema_name: str, content: str) -> Tuple[str, str]:
    """Compile a .proto text; return ``(message_struct_name, base64 FileDescriptorSet)``.

    Args:
        schema_name: the (validated) schema name; the file is ``<name>_1.proto`` as on the broker.
        content: the .proto text.

    Raises:
        NoProtobufCompiler: no compiler is installed, or it cannot be run or timed out.
        ProtoCompileError: the compiler refused the file, or the file has no message.
    """
    compiler = protobuf_compiler()
    if compiler is None:
        raise NoProtobufCompiler(NO_COMPILER_TEXT)
    command, includes = compiler
    with tempfile.TemporaryDirectory(prefix="memphis-sync-proto-") as tmp:
        source, out = f"{schema_name}_1.proto", os.path.join(tmp, f"{schema_name}_1_desc")
        with open(os.path.join(tmp, source), "w", encoding="utf-8") as fh:
            fh.write(content)
        args = [*command, f"--proto_path={tmp}", *(f"--proto_path={p}" for p in includes), f"--descriptor_set_out={out}", source]
        try:
            result = subprocess.run(args, cwd=tmp, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise NoProtobufCompiler(
                f"cannot compile the Proto file: the protobuf compiler did not finish within {COMPILE_TIMEOUT:g} s"
            ) from None
        except OSError as exc:
            raise NoProtobufCompiler(f"cannot compile the Proto file: cannot run {command[0]}: {exc}") from None
        if result.returncode != 0:
            said = " ".join(result.stderr.strip().replace(tmp + os.sep, "").split())
            raise ProtoCompileError(said or f"the protobuf compiler exited with status {result.returncode}")
        with open(out, "rb") as fh:
            descriptor_set = fh.read()
    struct_name = _first_message(descriptor_set, content)
    if not struct_name:
        raise ProtoCompileError("no message definition found")
    return struct_name, base64.b64encode(descriptor_set).decode("ascii")
