"""Read the constant tensors and op attributes out of a frozen TF1 GraphDef.

A frozen graph (`.pb`) stores every trained weight as a `Const` node. This module
parses the protobuf and hands those tensors to kpose's weight loaders as numpy
arrays; it never imports the foreign graph into TensorFlow or runs it, so nothing
the file contains is executed.

Weights are looked up through the op that consumes them ("input 1 of
`MobilenetV2/Conv/Conv2D`") rather than by the Const node's own name, because
freezing tools rename constants (`.../weights/read/_2__cf__2`) but keep op names.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from kpose._tf import tf

# Ops that only forward their first input; a weight may sit behind a chain of them.
_PASS_THROUGH = ("Identity", "Snapshot", "StopGradient")


def _clean(name: str) -> str:
    """'^ctrl' / 'node:0' -> 'node' (control-dependency marker and output index dropped)."""
    name = name.lstrip("^")
    base, _, index = name.rpartition(":")
    return base if base and index.isdigit() else name


def _attr_value(value) -> object:
    """A plain Python value for one AttrValue (lists, strings, numbers, shapes, dtypes)."""
    kind = value.WhichOneof("value")
    if kind == "list":
        lst = value.list
        for field in ("i", "f", "s", "b", "type"):
            items = list(getattr(lst, field))
            if items:
                return [v.decode() if isinstance(v, bytes) else v for v in items]
        return []
    if kind == "s":
        return value.s.decode()
    if kind == "shape":
        return None if value.shape.unknown_rank else [d.size for d in value.shape.dim]
    if kind == "type":
        return tf.dtypes.as_dtype(value.type).name
    if kind == "tensor":
        return tf.make_ndarray(value.tensor)
    return getattr(value, kind) if kind else None


class FrozenGraph:
    """A parsed frozen GraphDef: its nodes by name, their attributes and constant values."""

    def __init__(self, graph_def, source: str = "<GraphDef>") -> None:
        self.graph_def = graph_def
        self.source = source
        self.nodes = {n.name: n for n in graph_def.node}
        # Const nodes whose value a loader has read (to report what was left unused).
        self.used: set[str] = set()

    @classmethod
    def read(cls, path: str | Path) -> "FrozenGraph":
        """Parse the binary GraphDef at `path`."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file; pass the path of a frozen GraphDef (.pb)")
        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(p.read_bytes())
        except Exception as e:  # protobuf raises its own DecodeError type
            raise ValueError(f"{p}: not a binary TensorFlow GraphDef ({e}); pass a frozen .pb "
                             f"graph, not a SavedModel or a text .pbtxt") from None
        if not graph_def.node:
            raise ValueError(f"{p}: the GraphDef has no nodes; the file is empty or not a frozen graph")
        return cls(graph_def, str(p))

    def node(self, name: str) -> "tf.compat.v1.NodeDef":
        """The NodeDef called `name`; KeyError naming the file and the node when absent."""
        try:
            return self.nodes[_clean(name)]
        except KeyError:
            raise KeyError(f"{self.source}: node {name!r} not found; the graph is not the "
                           f"architecture this loader expects (compare its op names)") from None

    def attrs(self, name: str) -> dict:
        """Attributes of node `name` as plain values (strides, padding, epsilon, ...)."""
        node = self.node(name)
        return {k: _attr_value(v) for k, v in node.attr.items() if k != "value"}

    def op_counts(self) -> dict[str, int]:
        """How many nodes of each op type the graph holds."""
        return dict(Counter(n.op for n in self.graph_def.node))

    def const(self, name: str) -> np.ndarray:
        """The value of Const node `name`, following pass-through ops (Identity, ...)."""
        node = self.node(name)
        seen = []
        while node.op in _PASS_THROUGH and node.input:
            seen.append(node.name)
            node = self.node(node.input[0])
        if node.op != "Const":
            raise ValueError(f"{self.source}: node {name!r} is a {node.op}, not a constant "
                             f"(via {seen or 'no pass-through ops'}); the graph is not frozen")
        self.used.add(node.name)
        return tf.make_ndarray(node.attr["value"].tensor)

    def input_const(self, op_name: str, index: int, shape: tuple | None = None) -> np.ndarray:
        """The constant feeding input `index` of op `op_name`, checked against `shape`.

        Raises naming the op and the input when it is missing or has another shape.
        """
        node = self.node(op_name)
        inputs = [i for i in node.input if not i.startswith("^")]
        if index >= len(inputs):
            raise ValueError(f"{self.source}: op {op_name!r} ({node.op}) has {len(inputs)} inputs, "
                             f"no input {index}; the graph does not match the expected architecture")
        value = self.const(inputs[index])
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise ValueError(f"{self.source}: input {index} of {op_name!r} ({_clean(inputs[index])!r}) "
                             f"has shape {tuple(value.shape)}, expected {tuple(shape)}; the model "
                             f"was built with other channel counts than this graph holds")
        return value

    def unused_weights(self) -> list[str]:
        """Float Const nodes with values that no loader has read (should be empty)."""
        out = []
        for n in self.graph_def.node:
            if n.op != "Const" or n.name in self.used:
                continue
            t = n.attr["value"].tensor
            if t.dtype == tf.float32.as_datatype_enum and np.prod([d.size for d in t.tensor_shape.dim]) > 1:
                out.append(n.name)
        return out


__all__ = ["FrozenGraph"]
