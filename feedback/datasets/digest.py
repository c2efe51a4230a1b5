"""The content hash: a digest of an Arrow table's values that ignores how the rows are
batched, compressed or laid out in a file.

Every column (and every child of a list or struct column) feeds its own sha256 streams: one
for validity (a byte per value), one for the values in a fixed little-endian encoding
(nulls as 0 / empty), and for strings and lists one for the lengths. Each stream's bytes
are the concatenation over batches, so any split of the same rows into batches gives the
same digest. The table digest is a sha256 over the sorted (stream name, stream digest) pairs.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class TableDigest:
    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.streams: dict[str, Any] = {}

    def _feed(self, name: str, data: bytes) -> None:
        stream = self.streams.get(name)
        if stream is None:
            stream = self.streams[name] = hashlib.sha256()
        stream.update(data)

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        for field in self.schema:
            self._array(field.name, batch.column(field.name))

    def _array(self, path: str, array: Any) -> None:
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        self._feed(path + "#valid", array.is_valid().to_numpy(zero_copy_only=False).tobytes())
        kind = array.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False)
            self._feed(path + "#len", lengths.astype("<i8").tobytes())
            self._array(path + "[]", array.flatten())
        elif pa.types.is_struct(kind):
            for field, child in zip(kind, array.flatten()):
                self._array(f"{path}.{field.name}", child)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            filled = array.fill_null("").cast(pa.large_string())
            buffers = filled.buffers()
            offsets = np.frombuffer(buffers[1], dtype="<i8")[filled.offset:filled.offset + len(filled) + 1]
            self._feed(path + "#len", np.diff(offsets).astype("<i8").tobytes())
            if len(offsets) and buffers[2] is not None:
                self._feed(path, buffers[2].to_pybytes()[offsets[0]:offsets[-1]])
        elif pa.types.is_timestamp(kind) or pa.types.is_integer(kind):
            values = array.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
            self._feed(path, values.astype("<i8").tobytes())
        elif pa.types.is_floating(kind):
            values = array.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
            self._feed(path, values.astype("<f8").tobytes())
        elif pa.types.is_boolean(kind):
            self._feed(path, array.fill_null(False).to_numpy(zero_copy_only=False).astype(np.bool_).tobytes())
        else:
            raise TypeError(f"no canonical encoding for column {path} of type {kind}")

    def hexdigest(self) -> str:
        total = hashlib.sha256()
        for name in sorted(self.streams):
            total.update(name.encode() + b"\0" + self.streams[name].digest())
        return total.hexdigest()
