"""Import DGL 2.1 on modern torch. Every DGL user imports ``dgl`` from here.

PyPI's newest DGL wheel (2.1.0) ships graphbolt and sparse libraries compiled only for
torch 2.0-2.2.1, and ``import dgl`` loads graphbolt eagerly, which fails on newer torch.
DGL's core exchanges tensors through DLPack and does not depend on torch's C++ ABI, so
registering an empty ``dgl.graphbolt`` before the import is enough for heterographs,
random walks and neighbour sampling (tests/test_graph_and_sampling.py proves the results).
DGL also imports ``setuptools.extern.packaging``, which setuptools 71 removed.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

os.environ.setdefault("DGLBACKEND", "pytorch")


def _load_dgl() -> types.ModuleType:
    if "dgl" in sys.modules:
        return sys.modules["dgl"]
    try:
        importlib.import_module("setuptools.extern.packaging")
    except ImportError:
        import packaging
        import packaging.version

        sys.modules.setdefault("setuptools.extern.packaging", packaging)
        sys.modules.setdefault("setuptools.extern.packaging.version", packaging.version)
    sys.modules.setdefault("dgl.graphbolt", types.ModuleType("dgl.graphbolt"))
    return importlib.import_module("dgl")


dgl = _load_dgl()

# PinSAGESampler's C kernel: per seed, count the visits in its block of walk samples and
# keep the top k (parallel, ties to the larger id). Private in name only: DGL 2.1 is the
# last release, pinned, and tests compare its output with exact expectations.
from dgl.sampling.pinsage import _select_pinsage_neighbors as select_top_visited  # noqa: E402

__all__ = ["dgl", "select_top_visited"]
