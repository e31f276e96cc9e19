"""Collateral-damage explorer: every fact's probability before vs after an edit, by group.

:func:`workbench.verify.collateral.collateral` scores each fact of the world's groups (edited,
paraphrase, same person, same object, same relation, other) with the edit reverted and
applied. Here each fact is a point, P(true) before across and after up, coloured by group and
named on hover; points on the diagonal did not move. A table lists the largest changes, sorted
by any column; filters keep one person or one relation.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.verify.collateral import GROUPS, Collateral
from workbench.widgets.view import View, html_table, live, replace_figure

COLOURS = {
    "edited": "#e45756",
    "paraphrase": "#f58518",
    "same_person": "#b279a2",
    "same_object": "#54a24b",
    "same_relation": "#4c78a8",
    "other": "#9d9da0",
}
COLUMNS = ["subject", "relation", "object", "group", "before", "after", "change"]
ALL = "(all)"


def filter_rows(rows: list[dict], person: str | None = None, relation: str | None = None) -> list[dict]:
    """The rows about ``person`` and ``relation`` (None or "(all)": any), each with its change.

    Examples:
        >>> rows = [{"subject": "A", "relation": "pet", "before": 1.0, "after": 0.25},
        ...         {"subject": "B", "relation": "pet", "before": 1.0, "after": 1.0}]
        >>> [(r["subject"], r["change"]) for r in filter_rows(rows, person="A")]
        [('A', -0.75)]
    """
    return [
        dict(r, change=r["after"] - r["before"])
        for r in rows
        if person in (None, ALL, r["subject"]) and relation in (None, ALL, r["relation"])
    ]


def largest_changes(rows: list[dict], n: int = 15, by: str = "change", descending: bool = True) -> list[dict]:
    """The ``n`` rows first by column ``by``; "change" sorts by its size, whichever the sign.

    Examples:
        >>> rows = filter_rows([{"subject": s, "relation": "pet", "before": 1.0, "after": a}
        ...                     for s, a in (("A", 0.9), ("B", 0.1), ("C", 1.0))])
        >>> [r["subject"] for r in largest_changes(rows, 2)]
        ['B', 'A']
        >>> [r["subject"] for r in largest_changes(rows, 1, "subject", False)]
        ['A']
    """

    def key(r):
        return abs(r["change"]) if by == "change" else r[by]

    return sorted(rows, key=key, reverse=descending)[:n]


def collateral_figure(
    rows: list[dict],
    person: str | None = None,
    relation: str | None = None,
    table: bool = True,
    n: int = 15,
    title: str | None = None,
) -> go.Figure:
    """P(true) before vs after for each fact, one colour per group, and a table of the largest changes.

    Examples:
        >>> rows = [
        ...     {"subject": "A", "relation": "pet", "object": "cat", "group": "edited", "before": 1.0, "after": 0.1},
        ...     {"subject": "B", "relation": "pet", "object": "dog", "group": "same_relation",
        ...      "before": 1.0, "after": 1.0},
        ... ]
        >>> fig = collateral_figure(rows)
        >>> [t.name for t in fig.data], fig.data[1].hovertext[0].split("<br>")[0]
        (['diagonal', 'edited', 'same_relation', 'largest changes'], 'A \u00b7 pet \u2192 cat')

    Args:
        rows: ``Collateral.facts``: subject, relation, object, group, before, after.
        person, relation: Filters (None: all).
        table: Add the table of the ``n`` largest changes beside the scatter.
        n: Rows in the table.
        title: The figure's title.
    """
    kept = filter_rows(rows, person, relation)
    fig = (
        make_subplots(
            1, 2, specs=[[{"type": "xy"}, {"type": "table"}]], column_widths=[0.5, 0.5], horizontal_spacing=0.06
        )
        if table
        else go.Figure()
    )
    where = dict(row=1, col=1) if table else {}
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="diagonal",
            hoverinfo="skip",
            line=dict(color="#cccccc", dash="dot"),
            showlegend=False,
        ),
        **where,
    )
    for g in GROUPS:
        pts = [r for r in kept if r["group"] == g]
        if pts:
            fig.add_trace(
                go.Scatter(
                    x=[r["before"] for r in pts],
                    y=[r["after"] for r in pts],
                    mode="markers",
                    name=g,
                    marker=dict(color=COLOURS[g], size=8, opacity=0.75, line=dict(width=0.5, color="white")),
                    hovertext=[
                        f"{r['subject']} \u00b7 {r['relation']} \u2192 {r['object']}<br>{g}<br>"
                        f"P {r['before']:.3f} \u2192 {r['after']:.3f}"
                        for r in pts
                    ],
                    hoverinfo="text",
                ),
                **where,
            )
    if table:
        top = largest_changes(kept, n)
        fmt = {"before": "{:.3f}", "after": "{:.3f}", "change": "{:+.3f}"}
        fig.add_trace(
            go.Table(
                name="largest changes",
                columnwidth=[2.6, 1.6, 2.6, 2.4, 1.1, 1.1, 1.2],
                header=dict(values=COLUMNS, fill_color="#eeeeee", align="left", font=dict(size=11)),
                cells=dict(
                    values=[[fmt[c].format(r[c]) if c in fmt else r[c] for r in top] for c in COLUMNS],
                    align="left",
                    font=dict(size=11),
                    height=24,
                ),
            ),
            row=1,
            col=2,
        )
    axes = dict(range=[-0.03, 1.03], zeroline=False)
    fig.update_xaxes(title_text="P(true) before the edit", **axes)
    fig.update_yaxes(title_text="P(true) after the edit", **axes)
    scope = ", ".join(x for x in (person, relation) if x not in (None, ALL)) or "all facts scored"
    fig.update_layout(
        title=title or f"Collateral damage ({scope}; {len(kept)} facts)",
        template="plotly_white",
        height=max(560, 200 + 28 * n) if table else 560,
        width=1400 if table else 700,
        legend=dict(title="group"),
    )
    return fig


def groups_html(c: Collateral) -> str:
    """Each group's mean P(true) and accuracy before and after, with the held-out loss and KL (HTML).

    Examples:
        >>> from workbench.verify.collateral import CollateralSettings, GroupChange
        >>> edited = GroupChange(1, 1.0, 0.1, -0.9, 1.0, 0.0)
        >>> c = Collateral({"edited": edited}, 2.0, 2.1, 0.01, [], CollateralSettings())
        >>> "held-out loss 2.000 \u2192 2.100" in groups_html(c)
        True
    """
    rows = [
        {
            "group": g,
            "n": ch.n,
            "P before": ch.prob_before,
            "P after": ch.prob_after,
            "accuracy before": ch.accuracy_before,
            "accuracy after": ch.accuracy_after,
        }
        for g, ch in c.groups.items()
        if ch.n
    ]
    cols = ["group", "n", "P before", "P after", "accuracy before", "accuracy after"]
    return (
        html_table(rows, cols, {k: "{:.3f}" for k in cols[2:]})
        + f"<div>held-out loss {c.heldout_loss_before:.3f} \u2192 {c.heldout_loss_after:.3f}; "
        f"next-token KL on other people's prompts {c.kl:.4f}</div>"
    )


class CollateralExplorer(View):
    """The collateral-damage explorer over one :class:`~workbench.verify.collateral.Collateral`.

    Examples:
        >>> rows = [
        ...     {"subject": "A", "relation": "pet", "object": "cat", "group": "edited", "before": 1.0, "after": 0.1},
        ...     {"subject": "B", "relation": "pet", "object": "dog", "group": "same_relation",
        ...      "before": 1.0, "after": 0.9},
        ... ]
        >>> x = CollateralExplorer(rows)
        >>> [r["subject"] for r in x.set_filter(person="B")], [r["subject"] for r in x.sort("subject", False)]
        (['B'], ['B'])

    Args:
        collateral: A :class:`~workbench.verify.collateral.Collateral`, or its per-fact rows.
        n: Rows in the table of largest changes.
        title: Title of the figure.
    """

    def __init__(self, collateral: Collateral | list[dict], n: int = 15, title: str | None = None):
        import ipywidgets as w

        self.collateral = collateral if isinstance(collateral, Collateral) else None
        self.rows = list(collateral.facts if isinstance(collateral, Collateral) else collateral)
        self.n, self.title = n, title
        self.person, self.relation, self.by, self.descending = ALL, ALL, "change", True
        self.person_box = w.Dropdown(options=[ALL] + sorted({r["subject"] for r in self.rows}), description="person")
        self.relation_box = w.Dropdown(
            options=[ALL] + sorted({r["relation"] for r in self.rows}), description="relation"
        )
        self.sort_box = w.Dropdown(options=COLUMNS, value="change", description="sort by")
        self.descending_box = w.Checkbox(value=True, description="descending")
        self.person_box.observe(lambda ch: self.set_filter(person=ch["new"]), "value")
        self.relation_box.observe(lambda ch: self.set_filter(relation=ch["new"]), "value")
        self.sort_box.observe(lambda ch: self.sort(ch["new"]), "value")
        self.descending_box.observe(lambda ch: self.sort(descending=ch["new"]), "value")
        self.plot = live(collateral_figure(self.rows, table=False, title=title))
        self.table = w.HTML()
        self.table.add_class("wb-collateral-table")
        summary = w.HTML(groups_html(self.collateral) if self.collateral else "")
        controls = w.HBox([self.person_box, self.relation_box, self.sort_box, self.descending_box])
        self.widget = w.VBox([summary, controls, self.plot, self.table])
        self.widget.add_class("wb-collateral-explorer")
        self._render_table()

    def set_filter(self, person: str | None = None, relation: str | None = None) -> list[dict]:
        """Keep one person and/or one relation ("(all)" for any); returns the rows kept."""
        self.person = person if person is not None else self.person
        self.relation = relation if relation is not None else self.relation
        replace_figure(
            self.plot, collateral_figure(self.rows, self.person, self.relation, table=False, title=self.title)
        )
        return self._render_table()

    def sort(self, by: str | None = None, descending: bool | None = None) -> list[dict]:
        """Sort the table by a column; returns the rows it shows."""
        self.by = by or self.by
        self.descending = self.descending if descending is None else descending
        return self._render_table()

    def figure(self) -> go.Figure:
        """Scatter and largest-changes table, with the current filters, as a static figure."""
        return collateral_figure(self.rows, self.person, self.relation, table=True, n=self.n, title=self.title)

    def _render_table(self) -> list[dict]:
        shown = largest_changes(filter_rows(self.rows, self.person, self.relation), self.n, self.by, self.descending)
        self.table.value = html_table(shown, COLUMNS, {"before": "{:.3f}", "after": "{:.3f}", "change": "{:+.3f}"})
        return shown


__all__ = ["COLOURS", "CollateralExplorer", "collateral_figure", "filter_rows", "groups_html", "largest_changes"]
