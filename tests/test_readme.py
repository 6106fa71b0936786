"""README.md's two commands stay true: the test command is what CI runs, the main job's flags exist."""

import re

from helpers import ROOT, run_dyn


def commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, re.S)


def test_readme_starts_with_two_commands_and_ci_runs_the_second():
    first, second = commands()[:2]
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = re.search(r'^TEST_COMMAND="(.*)"$', ci, re.M).group(1)
    assert second.endswith(f"&& {test_command}")
    assert '-e ".[train,test]"' in second and '-e ".[train,test]"' in ci
    assert "dyn train --dataset digits" in first


def test_main_job_flags_are_accepted():
    first = commands()[0]
    for part in first.split(" && "):
        if part.startswith("dyn "):
            words = part.split()
            # every flag the README uses is one the command knows (its --help lists it)
            help_text = run_dyn(*words[1:3] if words[1] == "analyze" else words[1:2], "--help").stdout
            for flag in (w for w in words if w.startswith("--")):
                assert flag in help_text, f"{flag} of `{part}` is not in its --help"
