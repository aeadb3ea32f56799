"""The README's notebook example runs as written."""

import pathlib
import re


def test_readme_notebook_example_runs():
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"## Composing a loss in a notebook\n\n```python\n(.*?)```", text, re.S).group(1)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert abs(float(namespace["my"].rl_weight(0.3)) - 1.764) < 1e-5
