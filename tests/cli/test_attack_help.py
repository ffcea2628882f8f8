"""``dnnsafety attack --help`` names every registered attack with the norm of its budget."""

from __future__ import annotations

import re

from click.testing import CliRunner

from dnnsafety.adversarial import ATTACKS
from dnnsafety.cli.attack import command


def test_help_names_every_attack_and_the_norm_of_its_eps() -> None:
    out = CliRunner().invoke(command, ["--help"], terminal_width=1000).output
    text = " ".join(out.split())
    linf = re.search(r"L-inf for ([a-z, ]+);", text)
    l2 = re.search(r"L2 for ([a-z, ]+)\)", text)
    assert linf and l2, text
    named = {
        "linf": {n.strip() for n in linf.group(1).split(",")},
        "l2": {n.strip() for n in l2.group(1).split(",")},
    }
    summary = text.split("Options:")[0].lower()
    for name in ATTACKS.names():
        norm = ATTACKS.get(name).norm
        assert name in named[norm], (name, norm, named)
        assert name in summary.replace("cw-l2", "cw"), name
