"""The version stamp guards the cache: features may not change without a version bump."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from plgraph.config import FeaturizeConfig
from plgraph.featurize import DATA_PROCESSING_VERSION

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from make_golden import (  # noqa: E402
    GOLDEN_FILE,
    featurize_golden_complex,
    featurize_golden_paths,
    featurize_golden_posed_complex,
    summarize,
)

REGENERATE = ("bump DATA_PROCESSING_VERSION in src/plgraph/featurize/complex.py and regenerate "
              "the golden file: python tests/golden/make_golden.py")


def test_features_match_the_golden_file_of_this_version():
    golden = json.loads(GOLDEN_FILE.read_text())
    if golden["data_processing_version"] != DATA_PROCESSING_VERSION:
        raise AssertionError(f"golden file is for version {golden['data_processing_version']}, "
                             f"code is {DATA_PROCESSING_VERSION}: regenerate it with "
                             "python tests/golden/make_golden.py")
    assert golden["featurize"] == FeaturizeConfig().to_dict(), (
        f"the default featurization config changed: {REGENERATE}")
    expected = {"tensors": golden["tensors"], "posed_tensors": golden["posed_tensors"],
                **{f"paths/{name}": tensors for name, tensors in golden["paths"].items()}}
    graphs = {"tensors": featurize_golden_complex(),
              "posed_tensors": featurize_golden_posed_complex(),
              **{f"paths/{name}": graph for name, graph in featurize_golden_paths().items()}}
    assert expected.keys() == graphs.keys()
    for key, graph in graphs.items():
        actual = summarize(graph)
        changed = sorted(k for k in expected[key].keys() | actual.keys()
                         if expected[key].get(k) != actual.get(k))
        assert not changed, (f"{key}: features changed without a version bump ({changed}): "
                             f"{REGENERATE}")


def test_golden_check_notices_a_one_value_change():
    graph = featurize_golden_complex()
    graph["ligand"].x[0, 0] += 1
    golden = json.loads(GOLDEN_FILE.read_text())
    assert summarize(graph)["ligand/x"] != golden["tensors"]["ligand/x"]
