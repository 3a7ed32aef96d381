"""The README's configuration table says what the twistd options are: every option of
arbiter/app/tap.py's Options is in the table with its default, and every option the table
names exists."""

import os
import re

import pytest

from arbiter.app.tap import Options

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def table():
    """{option: default cell} from the table under '## Configuration'."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    header_seen = False
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header_seen:
            assert cells[:2] == ["option", "default"], line
            header_seen = True
            continue
        if set(cells[0]) <= set("-: "):
            continue                               # the |---|---| line
        options = re.findall(r"`--([a-z0-9-]+)`", cells[0])
        assert options, "a row without an option: %r" % line
        defaults = [d.strip() for d in cells[1].split(",")] if len(options) > 1 else [cells[1]]
        assert len(defaults) == len(options), \
            "row %r: %d options but %d defaults" % (cells[0], len(options), len(defaults))
        for option, default in zip(options, defaults):
            assert option not in rows, "--%s is in the table twice" % option
            rows[option] = default
    assert rows, "no configuration table in the README"
    return rows


def options():
    """{option: default} of the twistd options; flags default to off (False)."""
    out = {p[0]: p[2] for p in Options.optParameters}
    out.update((f[0], False) for f in Options.optFlags)
    return out


def documented(cell):
    """A default cell's value: a number or a word, without its '(meaning)' note."""
    value = re.sub(r"\s*\(.*\)$", "", cell).strip()
    try:
        return float(value)
    except ValueError:
        return value


def test_the_table_parses():
    """The parser sees the rows it should (a guard on the tests below)."""
    rows = table()
    assert rows["port"] == "8080" and rows["interface"] == "127.0.0.1"
    assert rows["lockstep-drop-after"] == "0 (pause)"


@pytest.mark.parametrize("option", sorted(options()))
def test_every_option_is_in_the_table_with_its_default(option):
    rows = table()
    assert option in rows, "--%s is not in README.md's configuration table" % option
    default, cell = options()[option], documented(rows[option])
    if default is False:                                  # a flag: off unless given
        assert cell in ("", "off"), "--%s is a flag; its default is off, README says %r" \
            % (option, rows[option])
    elif default is None:                                 # no value: the README says what then
        assert isinstance(cell, str) and cell, \
            "--%s has no default value; README should say what happens (it says %r)" \
            % (option, rows[option])
    elif isinstance(default, (int, float)) and not isinstance(default, bool):
        assert cell == float(default), "--%s: the default is %r, README says %r" \
            % (option, default, rows[option])
    else:
        assert cell == str(default), "--%s: the default is %r, README says %r" \
            % (option, default, rows[option])


def test_every_option_in_the_table_exists():
    unknown = sorted(set(table()) - set(options()))
    assert not unknown, "README.md's table names options twistd does not have: %s" % unknown
