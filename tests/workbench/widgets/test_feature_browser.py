"""Feature browser: search, show and ablate a shipped SAE's features; the panels hold what the data says."""

import pytest
from static_figures import write_static

from locate.features import locate_features
from workbench.widgets.feature_browser import FeatureBrowser, carried_facts, contexts_html, feature_figure


@pytest.fixture(scope="module")
def fact_and_feature(handle, world):
    person = list(world.people)[7]
    fact = world.fact(person, "pet")
    loc = locate_features(handle, world.phrasings("pet")[0].prompt(person), person, fact.object)
    return fact, loc


@pytest.fixture(scope="module")
def browser(handle, fact_and_feature):
    return FeatureBrowser(handle, fact_and_feature[1].best().feature)


def test_contexts_are_shaded_by_activation(browser):
    d = browser.data
    text = contexts_html(d)
    assert text.count("<div><code>") == len(d["top_contexts"]) == browser.top
    peak = d["top_contexts"][0]
    assert peak["max"] == max(c["max"] for c in d["top_contexts"])
    assert "background:rgba(230,120,20,1.00)" in text  # the strongest token is fully shaded


def test_figure_holds_contexts_histogram_and_decoder_tokens(browser):
    d = browser.data
    fig = feature_figure(d)
    heat, hist, promotes, suppresses = fig.data
    assert heat.type == "heatmap" and len(heat.z) == len(d["top_contexts"])
    assert list(heat.text[0][: len(d["top_contexts"][0]["tokens"])]) == d["top_contexts"][0]["tokens"]
    assert list(hist.y) == d["histogram"]["counts"]
    assert list(promotes.y)[::-1] == [t["token"] for t in d["promotes"]]
    assert list(suppresses.x)[::-1] == [t["logit"] for t in d["suppresses"]]
    assert [t.type for t in feature_figure(d, contexts=False).data] == ["bar"] * 3


def test_search_fills_the_list_and_shows_the_first(handle, world, browser):
    person = list(world.people)[7]
    found = browser.search(person)
    assert all(f["why"] == f"carries {person}'s facts" for f in found)
    assert browser.results.value == found[0]["feature"] == browser.data["feature"] == browser.number.value
    browser.search("cat")
    assert "promotes 'cat'" in browser.results.options[0][0]
    browser.query.value = "Nobody Atall"
    browser._safely(lambda: browser.search(browser.query.value))
    assert "SaeError" in browser.summary.value and "2 tokens" in browser.summary.value


def test_typing_a_number_shows_that_feature(browser):
    browser.number.value = 12
    assert browser.data["feature"] == 12 and "<b>Feature 12</b>" in browser.summary.value
    assert [t.name for t in browser.plot.data] == ["activations", "promotes", "suppresses"]


def test_ablation_measures_the_people_it_fires_for(handle, world, browser, fact_and_feature):
    fact, loc = fact_and_feature
    feature = loc.best().feature
    browser.show(feature)
    rows = browser.ablate()
    facts = carried_facts(world, browser.data, browser.people)
    assert [(r["subject"], r["relation"]) for r in rows] == [(f.subject, f.relation) for f in facts]
    assert len(rows) == 6 * browser.people and all(r["before"] > 0.9 for r in rows)
    assert "Ablating feature" in browser.carried.value and len(browser.plot.data) == 5
    # The same measurement as the locator's own confirmation by ablation, on the located fact.
    from locate.feature_search import ablation_effect

    (own,) = ablation_effect(handle, feature, [fact])
    assert abs(own["after"] - loc.extras["ablation"][0]["prob_after"]) < 1e-5 and own["after"] < own["before"]


def test_static_copy(browser, fact_and_feature):
    browser.show(fact_and_feature[1].best().feature)
    browser.ablate()
    write_static(browser, "feature_browser")
