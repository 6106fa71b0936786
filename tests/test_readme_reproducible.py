"""README's and docs/reproduce.md's digits figures are one machine's, and they say what
reproduces: bit for bit on one machine and software stack, the claim across machines (issue
19, point 13)."""

import re

from helpers import ROOT


def _near_table(path, first_row):
    text = " ".join((ROOT / path).read_text().split())
    i = text.index(first_row)
    return text[max(0, i - 600):i + 1200]


def test_readme_says_what_reproduces():
    t = _near_table("README.md", "| SGD | 0.954 |")
    assert "What one machine measured" in t
    assert re.search(r"on one machine and software stack .* bit for bit", t)
    assert "Across machines it is the claim, not the digits" in t


def test_reproduce_doc_gives_the_figures_as_one_machines():
    t = _near_table("docs/reproduce.md", "| SGD | 0.954 |")
    assert "that machine measured" in t and "These are one machine's figures" in t
    assert "same machine and software stack" in t and "What carries across machines is the claim" in t
