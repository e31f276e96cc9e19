"""Feature browser: what one SAE feature fires on, what it writes, whom it carries, and its ablation.

Search by feature index, person or word (:func:`locate.feature_search.search_features`) or
pick a feature; the browser shows its top-activating contexts from the world corpus with each
token shaded by its activation, the histogram of its non-zero activations, the tokens its
decoder direction promotes and suppresses, and the people it fires for most
(:func:`locate.feature_data.feature_data`). "Ablate" zeroes it (SAE spliced in, error term
kept) and shows what that does to those people's facts.
"""

from __future__ import annotations

import html
import traceback

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from locate.feature_data import feature_data
from locate.feature_search import ablation_effect, search_features
from locate.sae_splice import load_sae
from locate.sae_train import SaeSettings
from workbench.widgets.view import View, html_table, live, replace_figure


def contexts_html(data: dict) -> str:
    """The top contexts as text, each token's background as dark as its activation (HTML).

    Examples:
        >>> d = {"top_contexts": [{"tokens": ["<s>", "a", "cat"], "activations": [0.0, 1.0, 2.0], "max": 2.0}]}
        >>> contexts_html(d).count("<span"), "rgba(230,120,20,1.00)" in contexts_html(d)
        (3, True)
    """
    peak = max((c["max"] for c in data["top_contexts"]), default=0.0) or 1.0
    lines = []
    for c in data["top_contexts"]:
        spans = "".join(
            f'<span title="{a:.3f}" style="background:rgba(230,120,20,{min(a / peak, 1.0):.2f});'
            f'padding:0 2px">{html.escape(t)}</span>'
            for t, a in zip(c["tokens"], c["activations"], strict=True)
        )
        lines.append(f"<div><code>{c['max']:7.2f}</code> {spans}</div>")
    return "<div>" + "".join(lines) + "</div>"


def carried_facts(world, data: dict, people: int = 3) -> list:
    """The facts of the people the feature fires for most: what an ablation is measured on.

    Examples:
        >>> from workbench.core.world.facts import make_world
        >>> w = make_world()
        >>> len(carried_facts(w, {"people": {p: 1.0 for p in list(w.people)[:5]}}, people=2))
        12
    """
    return world.facts(list(data["people"])[:people]) if world is not None else []


def feature_figure(data: dict, effect: list[dict] | None = None, contexts: bool = True) -> go.Figure:
    """Top contexts (a token heatmap), histogram, promoted and suppressed tokens, and an ablation's effect.

    Examples:
        >>> d = {"feature": 3, "sae": "blocks.0.hook_resid_post", "fires_on_fraction": 0.1,
        ...      "top_contexts": [{"tokens": ["<s>", "cat"], "activations": [0.0, 2.0], "max": 2.0}],
        ...      "histogram": {"counts": [1, 2], "edges": [0.0, 1.0, 2.0]},
        ...      "promotes": [{"token": "cat", "logit": 1.0}], "suppresses": [{"token": "dog", "logit": -1.0}]}
        >>> [t.type for t in feature_figure(d, [{"subject": "A", "relation": "pet", "before": 1.0, "after": 0.5}]).data]
        ['heatmap', 'bar', 'bar', 'bar', 'bar', 'bar']

    Args:
        data: :func:`locate.feature_data.feature_data` of one feature.
        effect: :func:`locate.feature_search.ablation_effect` rows, if the feature was ablated.
        contexts: Include the contexts heatmap (the widget shows them as shaded text instead).
    """
    rows = [r for r, keep in (("contexts", contexts), ("stats", True), ("effect", bool(effect))) if keep]
    specs = {"contexts": [{"colspan": 3}, None, None], "stats": [{}, {}, {}], "effect": [{"colspan": 3}, None, None]}
    titles = {
        "contexts": ["top-activating contexts"],
        "effect": ["P(object) with the feature ablated"],
        "stats": ["activation histogram (non-zero)", "decoder promotes", "decoder suppresses"],
    }
    heights = {"contexts": 1.3, "stats": 1.0, "effect": 1.0}
    fig = make_subplots(
        len(rows),
        3,
        specs=[specs[r] for r in rows],
        vertical_spacing=0.12,
        subplot_titles=[t for r in rows for t in titles[r]],
        row_heights=[heights[r] for r in rows],
    )
    at = {r: i + 1 for i, r in enumerate(rows)}
    if contexts and data["top_contexts"]:
        ctx = data["top_contexts"]
        width = max(len(c["tokens"]) for c in ctx)
        z = [c["activations"] + [None] * (width - len(c["tokens"])) for c in ctx]
        text = [c["tokens"] + [""] * (width - len(c["tokens"])) for c in ctx]
        fig.add_trace(
            go.Heatmap(
                z=z,
                text=text,
                texttemplate="%{text}",
                colorscale="Oranges",
                showscale=False,
                y=[f"#{i + 1} ({c['max']:.1f})" for i, c in enumerate(ctx)],
                xgap=1,
                ygap=1,
                hovertemplate="%{text}: %{z:.3f}<extra></extra>",
            ),
            row=at["contexts"],
            col=1,
        )
        fig.update_yaxes(autorange="reversed", row=at["contexts"], col=1)
        fig.update_xaxes(showticklabels=False, row=at["contexts"], col=1)
    h = data["histogram"]
    mids = [(a + b) / 2 for a, b in zip(h["edges"][:-1], h["edges"][1:], strict=True)]
    fig.add_trace(go.Bar(x=mids, y=h["counts"], marker_color="#f58518", name="activations"), row=at["stats"], col=1)
    for col, key, colour in ((2, "promotes", "#54a24b"), (3, "suppresses", "#e45756")):
        items = data[key][::-1]
        fig.add_trace(
            go.Bar(
                x=[d["logit"] for d in items],
                y=[d["token"] for d in items],
                orientation="h",
                marker_color=colour,
                name=key,
            ),
            row=at["stats"],
            col=col,
        )
    if effect:
        labels = [f"{r['subject']} \u00b7 {r['relation']}" for r in effect]
        for key, colour in (("before", "#bab0ac"), ("after", "#4c78a8")):
            fig.add_trace(
                go.Bar(
                    x=labels, y=[r[key] for r in effect], name=f"P(object) {key}", marker_color=colour, showlegend=True
                ),
                row=at["effect"],
                col=1,
            )
    fig.update_layout(
        title=(
            f"SAE feature {data['feature']} of {data['sae']}: fires on {100 * data['fires_on_fraction']:.1f}% of tokens"
        ),
        template="plotly_white",
        showlegend=False,
        barmode="group",
        legend=dict(orientation="h"),
        height=260 + 300 * len(rows),
        width=1200,
    )
    return fig


class FeatureBrowser(View):
    """Search, pick and ablate SAE features of a shipped SAE.

    Examples:
        >>> import workbench
        >>> h = workbench.load("world", device="cpu")
        >>> b = FeatureBrowser(h, 176)
        >>> b.search("cat")[0]["why"], b.show(12)["feature"], len(b.ablate()) == 3 * 6
        ("promotes 'cat'", 12, True)

    Args:
        handle: A :class:`workbench.core.handle.ModelHandle` (the default world model: its SAEs ship).
        feature: The feature shown first; None shows none until one is picked.
        sae_settings: Which shipped SAE (default layer 0's residual stream).
        texts: The corpus searched for contexts; default one trained sentence per world fact.
        top: Contexts and tokens listed.
        people: How many of the people it fires for most have their facts ablated.
    """

    def __init__(
        self,
        handle,
        feature: int | None = None,
        sae_settings: SaeSettings | None = None,
        texts: list[str] | None = None,
        top: int = 8,
        people: int = 3,
    ):
        import ipywidgets as w

        self.handle, self.settings, self.top, self.people = handle, sae_settings or SaeSettings(), top, people
        self.sae = load_sae(self.settings)
        world = handle.world
        if texts is None and world is None:
            raise ValueError(f"model {handle.name!r} has no fact world: pass texts=... to search for contexts")
        self.texts = texts if texts is not None else [f.sentence(world.phrasings(f.relation)[0]) for f in world.facts()]
        self._cache: dict[int, dict] = {}
        self.data: dict | None = None
        self.effect: list[dict] | None = None
        self.query = w.Text(placeholder="feature number, person or word", description="search", continuous_update=False)
        self.results = w.Dropdown(options=[], description="features")
        self.number = w.BoundedIntText(value=feature or 0, min=0, max=self.sae.cfg.d_sae - 1, description="feature")
        self.ablate_button = w.Button(description="ablate", disabled=True, button_style="warning")
        self.query.observe(lambda ch: self._safely(lambda: self.search(ch["new"])), "value")
        self.results.observe(lambda ch: ch["new"] is not None and self._safely(lambda: self.show(ch["new"])), "value")
        self.number.observe(lambda ch: self._safely(lambda: self.show(ch["new"])), "value")
        self.ablate_button.on_click(lambda _: self._safely(self.ablate))
        self.summary, self.contexts, self.carried = w.HTML(), w.HTML(), w.HTML()
        self.plot = live(go.Figure())
        self.widget = w.VBox(
            [
                w.HBox([self.query, self.results, self.number, self.ablate_button]),
                self.summary,
                self.contexts,
                self.plot,
                self.carried,
            ]
        )
        self.widget.add_class("wb-feature-browser")
        if feature is not None:
            self.show(feature)

    def search(self, query: str) -> list[dict]:
        """Fill the feature list with the features for ``query`` (and show the first)."""
        found = search_features(self.handle, query, self.settings, sae=self.sae)
        self.results.options = [(f"{f['feature']}: {f['why']} ({f['score']:.2f})", f["feature"]) for f in found]
        if found:
            self.results.value = found[0]["feature"]  # its observer shows it
        return found

    def show(self, feature: int) -> dict:
        """Show one feature: contexts, histogram, promoted and suppressed tokens, the people it fires for."""
        if feature not in self._cache:
            self._cache[feature] = feature_data(self.handle, feature, self.settings, self.texts, self.top, sae=self.sae)
        self.data, self.effect = self._cache[feature], None
        if self.number.value != feature:
            self.number.value = feature
        self.summary.value = (
            f"<b>Feature {feature}</b> of {self.data['sae']}: fires on "
            f"{100 * self.data['fires_on_fraction']:.1f}% of tokens"
        )
        self.contexts.value = contexts_html(self.data)
        people = [{"person": p, "max activation": a} for p, a in self.data["people"].items()]
        self.carried.value = "<b>People it fires for most</b> (ablate to measure their facts)" + html_table(
            people, ["person", "max activation"], {"max activation": "{:.2f}"}
        )
        self.ablate_button.disabled = not people
        replace_figure(self.plot, feature_figure(self.data, contexts=False))
        return self.data

    def ablate(self) -> list[dict]:
        """Zero the shown feature and measure its top people's facts, before and after."""
        if self.data is None:
            raise ValueError("show a feature first")
        facts = carried_facts(self.handle.world, self.data, self.people)
        self.effect = ablation_effect(self.handle, self.data["feature"], facts, self.settings, sae=self.sae)
        rows = [dict(r, change=r["after"] - r["before"]) for r in self.effect]
        self.carried.value = f"<b>Ablating feature {self.data['feature']}</b>: P(object), SAE spliced in" + html_table(
            rows,
            ["subject", "relation", "object", "before", "after", "change"],
            {k: "{:.3f}" for k in ("before", "after", "change")},
        )
        replace_figure(self.plot, feature_figure(self.data, self.effect, contexts=False))
        return self.effect

    def figure(self) -> go.Figure:
        """The shown feature as one static figure, contexts as a token heatmap."""
        if self.data is None:
            raise ValueError("show a feature first")
        return feature_figure(self.data, self.effect)

    def _safely(self, fn):
        # Widget callbacks' exceptions go to a log nobody reads: show them in the summary line.
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - a bad query is the user's to see
            self.summary.value = f"<pre>{html.escape(''.join(traceback.format_exception_only(e)))}</pre>"


__all__ = ["FeatureBrowser", "carried_facts", "contexts_html", "feature_figure"]
