"""Which files an ONNX graph file makes ONNX Runtime open: its external data locations.

A graph keeps large weights in files beside it (ONNX external data), named by each tensor's
``external_data`` entry ``location``. The bundle lists and hashes every such file; to check that
a graph loads nothing unlisted, the runtime reads the locations here from the protobuf wire
format, without onnx (not a runtime dependency) and without reading the weights themselves.

Walked: the model's graph and functions; a graph's initializers, sparse initializers and nodes;
a node's attributes, with their tensors and subgraphs (a merged decoder's ``If`` branches).

>>> external_data_locations(b"")   # an empty model names nothing
set()
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from .errors import GraphLoadError

# Field numbers of onnx.proto3 that lead to a TensorProto.
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE = 1, 5, 15
_NODE_ATTRIBUTE, _FUNCTION_NODE = 5, 7
_ATTR_T, _ATTR_G, _ATTR_GRAPHS, _ATTR_TENSORS = 5, 6, 10, 11
_ATTR_SPARSE, _ATTR_SPARSES = 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL = 13
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_MAX_NESTING = 64


class _Malformed(Exception):
    pass


def _varint(data, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise _Malformed
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(data):
    """(field number, bytes) of each length-delimited field of one message; others skipped."""
    at, end = 0, len(data)
    while at < end:
        key, at = _varint(data, at)
        number, kind = key >> 3, key & 7
        if kind == 0:
            _, at = _varint(data, at)
        elif kind == 1:
            at += 8
        elif kind == 5:
            at += 4
        elif kind == 2:
            length, at = _varint(data, at)
            if at + length > end:
                raise _Malformed
            yield number, data[at:at + length]
            at += length
        else:
            raise _Malformed
        if at > end:
            raise _Malformed


def _tensor(data, found: set) -> None:
    for number, entry in _fields(data):
        if number == _TENSOR_EXTERNAL:
            key = value = None
            for field, text in _fields(entry):
                if field == _ENTRY_KEY:
                    key = bytes(text)
                elif field == _ENTRY_VALUE:
                    value = bytes(text)
            if key == b"location" and value is not None:
                found.add(value.decode("utf-8", "surrogateescape"))


def _sparse(data, found: set) -> None:
    for number, part in _fields(data):
        if number in (_SPARSE_VALUES, _SPARSE_INDICES):
            _tensor(part, found)


def _nodes_attributes(node, found: set, depth: int) -> None:
    for number, attribute in _fields(node):
        if number != _NODE_ATTRIBUTE:
            continue
        for field, part in _fields(attribute):
            if field in (_ATTR_T, _ATTR_TENSORS):
                _tensor(part, found)
            elif field in (_ATTR_G, _ATTR_GRAPHS):
                _graph(part, found, depth + 1)
            elif field in (_ATTR_SPARSE, _ATTR_SPARSES):
                _sparse(part, found)


def _graph(data, found: set, depth: int) -> None:
    if depth > _MAX_NESTING:
        raise _Malformed
    for number, part in _fields(data):
        if number == _GRAPH_INITIALIZER:
            _tensor(part, found)
        elif number == _GRAPH_SPARSE:
            _sparse(part, found)
        elif number == _GRAPH_NODE:
            _nodes_attributes(part, found, depth)


def external_data_locations(model: bytes | memoryview | mmap.mmap) -> set[str]:
    """The ``location`` of every external tensor in a serialized ModelProto."""
    found: set[str] = set()
    data = memoryview(model)
    try:
        for number, part in _fields(data):
            if number == _MODEL_GRAPH:
                _graph(part, found, 0)
            elif number == _MODEL_FUNCTIONS:
                for field, node in _fields(part):
                    if field == _FUNCTION_NODE:
                        _nodes_attributes(node, found, 0)
    except _Malformed:
        raise GraphLoadError("The graph is not a valid ONNX protobuf.") from None
    finally:
        data.release()
    return found


def graph_file_locations(path: str | os.PathLike) -> set[str]:
    """``external_data_locations`` of a graph file. A file that does not hold the bytes of a
    ``location`` key cannot name external data: that is checked first, at memory speed."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return set()
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                if mapped.find(b"location") < 0:
                    return set()
                try:
                    return external_data_locations(mapped)
                except GraphLoadError:
                    raise GraphLoadError(
                        f"{path} is not a valid ONNX graph (its protobuf is malformed). Note: "
                        "the file is corrupt or truncated; export the bundle again.") from None
    except OSError as exc:
        raise GraphLoadError(f"Cannot read {path}: {exc.strerror}.") from None
