"""Collateral explorer: a point per fact, coloured by group and named, filters and a sorted table."""

import pytest
from static_figures import write_static

from edit.request import world_request
from edit.rome import RomeSettings, rome
from workbench.verify.collateral import GROUPS, CollateralSettings, collateral
from workbench.widgets.collateral_explorer import CollateralExplorer, collateral_figure, filter_rows, largest_changes

SMALL = CollateralSettings(max_facts=12, kl_prompts=16, heldout_texts=50)


@pytest.fixture(scope="module")
def damage(handle, world):
    person = list(world.people)[7]
    fact = world.fact(person, "employer")
    new = next(c for c in world.relation("employer").candidates if c != fact.object)
    edit = rome(handle, world_request(world, person, "employer", new), settings=RomeSettings(layer=0, token="last"))
    try:
        return fact, collateral(handle, edit, [fact], SMALL)
    finally:
        edit.revert(handle.model)


def test_every_fact_is_a_point_of_its_group_named_on_hover(damage):
    fact, c = damage
    fig = collateral_figure(c.facts, table=False)
    points = {t.name: t for t in fig.data if t.name in GROUPS}
    assert sum(len(t.x) for t in points.values()) == len(c.facts)
    for g, t in points.items():
        rows = [r for r in c.facts if r["group"] == g]
        assert list(t.x) == [r["before"] for r in rows] and list(t.y) == [r["after"] for r in rows]
        assert all(
            h.startswith(f"{r['subject']} \u00b7 {r['relation']} \u2192 {r['object']}<br>{g}")
            for h, r in zip(t.hovertext, rows, strict=True)
        )
    edited = points["edited"]
    assert edited.x[0] > 0.99 and edited.y[0] < 0.01  # ROME moved the edited fact away from its true object


def test_filters_and_sorting(damage):
    fact, c = damage
    mine = filter_rows(c.facts, person=fact.subject)
    assert mine and {r["subject"] for r in mine} == {fact.subject}
    assert {r["group"] for r in mine} == {"edited", "paraphrase", "same_person"}
    pets = filter_rows(c.facts, relation="pet")
    assert pets and all(r["relation"] == "pet" for r in pets)
    top = largest_changes(filter_rows(c.facts), 5)
    assert [abs(r["change"]) for r in top] == sorted((abs(r["after"] - r["before"]) for r in c.facts), reverse=True)[:5]
    assert {r["group"] for r in top[:2]} == {"edited", "paraphrase"}
    by_name = largest_changes(filter_rows(c.facts), 3, "subject", descending=False)
    assert [r["subject"] for r in by_name] == sorted(r["subject"] for r in c.facts)[:3]


def test_widget_controls_filter_the_plot_and_sort_the_table(damage):
    fact, c = damage
    x = CollateralExplorer(c, n=5)
    assert "held-out loss" in x.widget.children[0].value
    x.person_box.value = fact.subject
    shown = sum(len(t.x) for t in x.plot.data if t.name in GROUPS)
    assert shown == len(filter_rows(c.facts, person=fact.subject))
    assert x.table.value.count("<tr>") == 1 + min(5, shown) and fact.subject in x.table.value
    x.person_box.value = "(all)"
    x.relation_box.value = "employer"
    assert all(r["relation"] == "employer" for r in x.sort("before", descending=False))
    x.sort_box.value = "after"
    x.descending_box.value = False
    first = x.sort()[0]
    assert first["after"] == min(r["after"] for r in filter_rows(c.facts, relation="employer"))


def test_static_copy(damage):
    fact, c = damage
    x = CollateralExplorer(c, title=f"Collateral damage of a ROME edit of {fact.subject}'s employer")
    fig = x.figure()
    assert fig.data[-1].type == "table" and len(fig.data[-1].cells.values[0]) == 15
    write_static(x, "collateral_explorer")
