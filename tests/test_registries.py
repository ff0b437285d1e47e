"""gaze/registries.py: the decorator factory behind the schedule and protocol registries."""

from __future__ import annotations

import pytest

from gaze.registries import registrar


def test_registrar_adds_under_the_name_and_refuses_a_second():
    table = {}
    register = registrar(table, "widget")

    @register("one")
    def one():
        return 1

    assert table == {"one": one} and one() == 1 and "widget" in register.__doc__
    with pytest.raises(ValueError, match="widget 'one' is already registered"):
        register("one")(lambda: 2)
    assert table["one"] is one
