"""Report view over a real verification: the table, figure buttons, one person's evidence, the static copy."""

import pytest
from static_figures import write_static

from workbench.verify import ConstructedSuppression, VerifySettings, verify
from workbench.widgets import ReportView


@pytest.fixture(scope="module")
def report(handle, world):
    person = world.split("forget01").forget[0]
    return verify(
        handle, ConstructedSuppression(handle, world.facts([person])), settings=VerifySettings.quick(), progress=False
    )


def test_the_table_shows_the_verdict_and_every_check(report):
    v = ReportView(report)
    assert "suppressed" in v.table.value and all(c.check in v.table.value for c in report.checks)
    assert v.chooser.options == ("checks", "layers", "truth_ratios") and v.shown == "checks"
    assert [t.name for t in v.plot.data] == ["edited", "original", "retain"]


def test_buttons_switch_the_figure_and_the_drop_down_the_evidence(report):
    v = ReportView(report)
    v.chooser.value = "layers"
    assert v.shown == "layers" and v.plot.layout.xaxis.title.text == "layer"
    person = report.verdict.items[0].item
    assert v.items.value == person and person in v.evidence.value
    assert "lens" in v.select(person) or "probe" in v.select(person)
    with pytest.raises(KeyError, match="no figure"):
        v.show("nothing")


def test_static_copy(report):
    v = ReportView(report)
    v.show("checks")
    write_static(v, "report_view")
