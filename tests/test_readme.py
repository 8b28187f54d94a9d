"""The README's API example runs as written, using public names only."""
import re

from conftest import REPO_ROOT


def test_readme_api_example_runs(capsys):
  text = (REPO_ROOT / "README.md").read_text()
  section = text.split("## The functional API", 1)[1]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  exec(compile(code, "README.md", "exec"), {})  # pylint: disable=exec-used
  out = capsys.readouterr().out
  assert "step 100 meta-loss" in out
