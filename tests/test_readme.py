"""Every Python example in the README runs as written."""

import pathlib
import re

import pytest

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(BLOCKS[index], f"README.md[{index}]", "exec"), namespace)
    if "my" in namespace:
        assert abs(float(namespace["my"].rl_weight(0.3)) - 1.764) < 1e-5
