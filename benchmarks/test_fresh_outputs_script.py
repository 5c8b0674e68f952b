"""The output-allocation script (``benchmarks/fresh_outputs.py``) runs, checks that fresh and reused outputs
hold the same numbers before it reports them, and writes every case: here once, quick, so that its command
keeps working."""

import importlib.util
import json
from pathlib import Path


def test_fresh_outputs_script_runs(tmp_path):
    path = Path(__file__).with_name("fresh_outputs.py")
    spec = importlib.util.spec_from_file_location("fresh_outputs_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "r.json"
    assert module.main(["--quick", "--repeat", "2", "--json", str(out)]) == 0
    cases = json.loads(out.read_text())["cases"]
    assert [c["case"] for c in cases] == [c[0] for c in module._cases(True)]
    assert all(set(c["median_s"]) == {"fresh", "reused"} and c["ratio"] > 0 for c in cases)
