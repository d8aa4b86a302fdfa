"""The side-by-side summary browser of notebook 05 (ipywidgets), built and tested here."""

from __future__ import annotations

import html
from typing import Any, Mapping

from trsr_utils.method.compare import content_words, highlight

_PANE = "border:1px solid #ccc;border-radius:4px;padding:6px;margin:2px;"


def _steps_html(steps: Any, label: str) -> str:
    """A method's intermediate summaries, oldest first, with their flags."""
    rows = []
    for r in steps.itertuples(index=False):
        flag = f' <b style="color:#b35900">[{r.flag}{": " + r.problem if r.problem else ""}]</b>' if r.flag else ""
        # "level 1, part 0" for the hierarchical method (several summaries per level), "step 1" for the recurrent one;
        # parts count from 0 as blocks and steps do, so level 0's part i is block i's summary
        where = f"{label} {r.level}" + (f", part {r.index}" if label == "level" else "")
        rows.append(f"<li><small>{where} ({len(r.item_ids)} item{'s' if len(r.item_ids) != 1 else ''}){flag}</small><br>"
                    f"{html.escape(r.summary)}</li>")
    # unnumbered: a list's own 1, 2, 3 would be a second count beside the 0-based levels and steps
    return "<ul style='padding-left:1.2em'>" + "".join(rows) + "</ul>"


def _pct(x: float) -> str:
    return "-" if x != x else f"{x:.0%}"  # NaN (nothing named, nothing to cover) shows as "-"


class SummaryComparison:
    """User selector, the user's blocks, and two methods' summaries side by side.

    Words the two final summaries share are marked green, words only one of
    them uses orange. ``show(user_id)`` (or picking a user in the dropdown)
    fills every pane; the panes are plain ``HTML`` widgets so tests can read them.
    """

    def __init__(self, blocks: Any, steps: Mapping[str, Any], summaries: Mapping[str, Any], audit: Any = None):
        """``audit``: the per-user audit table (:func:`trsr_utils.method.audit.audit`); shown beside the summaries."""
        import ipywidgets as w

        if len(steps) != 2 or set(steps) != set(summaries):
            raise ValueError("SummaryComparison compares exactly two methods, with steps and summaries for both")
        self.methods = list(steps)
        self.blocks, self.steps, self.summaries, self.audit = blocks, steps, summaries, audit
        users = sorted(set(summaries[self.methods[0]]["user_id"]) & set(summaries[self.methods[1]]["user_id"]),
                       key=lambda u: (len(u), u))
        if not users:
            raise ValueError("no user has summaries from both methods")
        self.user = w.Dropdown(options=users, description="user")
        self.history = w.HTML()
        self.panes = {m: w.HTML(layout=w.Layout(width="50%")) for m in self.methods}
        self.stats = w.HTML()
        self.user.observe(lambda change: self.show(change["new"]), names="value")
        self.widget = w.VBox([self.user, self.stats, w.HBox([self.panes[m] for m in self.methods]),
                              w.HTML("<b>History blocks (oldest first)</b>"), self.history])
        self.show(users[0])

    def _summary(self, method: str, user: str) -> Any:
        df = self.summaries[method]
        return df[df["user_id"] == user].iloc[0]

    def show(self, user: str) -> None:
        a, b = self.methods
        row = {m: self._summary(m, user) for m in self.methods}
        for m, other in ((a, b), (b, a)):
            steps = self.steps[m]
            flag = f" <b style='color:#b35900'>[{row[m]['flag']}]</b>" if row[m]["flag"] else ""
            self.panes[m].value = (
                f"<div style='{_PANE}'><h4>{html.escape(m)}{flag}</h4>"
                f"<p>{highlight(row[m]['summary'], row[other]['summary'])}</p>"
                f"<details><summary>intermediate summaries</summary>"
                f"{_steps_html(steps[steps['user_id'] == user], 'level' if m == 'hierarchical' else 'step')}"
                f"</details></div>")
        wa, wb = content_words(row[a]["summary"]), content_words(row[b]["summary"])
        self.stats.value = (
            f"<div style='{_PANE}'>user {html.escape(user)}: {a} {len(row[a]['summary'].split())} words, "
            f"{b} {len(row[b]['summary'].split())} words; content words shared {len(wa & wb)}, "
            f"only {a} {len(wa - wb)}, only {b} {len(wb - wa)}{self._audit_html(user)}</div>")
        mine = self.blocks[self.blocks["user_id"] == user].sort_values("block")
        self.history.value = "".join(
            f"<div style='{_PANE}'><small>block {r.block}: {r.n_items} item{'s' if r.n_items != 1 else ''}, "
            f"{r.n_tokens} tokens</small>"
            f"<pre style='white-space:pre-wrap;margin:0'>{html.escape(r.text)}</pre></div>"
            for r in mine.itertuples(index=False))
        if self.user.value != user:
            self.user.value = user

    def _audit_html(self, user: str) -> str:
        """The user's audit rows: what each summary names, invents and covers of the history's top attributes."""
        if self.audit is None:
            return ""
        mine = self.audit[self.audit["user_id"] == user]
        if mine.empty:
            return ""
        rows = "".join(
            f"<tr><td>{html.escape(r.method)}</td><td>{r.named}</td><td>{html.escape(r.invented_names) or 'none'}</td>"
            f"<td>{_pct(r.coverage)}</td><td>{_pct(r.coverage_others)}</td><td>{_pct(r.faithfulness)}</td>"
            f"<td>{r.invented_titles}</td></tr>" for r in mine.itertuples(index=False))
        return (f"<br><b>Audit</b> (history's top attributes: {html.escape(mine['top'].iloc[0])})"
                "<table class='audit'><tr><th>summary</th><th>names</th><th>invented</th><th>covers top</th>"
                "<th>covers others' top</th><th>faithful</th><th>invented titles</th></tr>" + rows + "</table>")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def kernel_free(self) -> tuple[Any, Any]:
        """The browser with every user's view built in: a dropdown linked in the browser itself (``jslink``) to a
        ``Stack`` of one static view per user, so its saved widget state (an exported page, the course website)
        browses without a kernel. Returns ``(widget, link)``: the link is a widget of its own, to be saved too."""
        import ipywidgets as w

        users, current = list(self.user.options), self.user.value
        pages = []
        for user in users:
            self.show(user)
            panes = [w.HTML(self.panes[m].value, layout=w.Layout(width="50%")) for m in self.methods]
            pages.append(w.VBox([w.HTML(self.stats.value), w.HBox(panes),
                                 w.HTML("<b>History blocks (oldest first)</b>"), w.HTML(self.history.value)]))
        self.show(current)
        dropdown = w.Dropdown(options=users, value=current, description="user")
        stack = w.Stack(pages, selected_index=users.index(current))
        link = w.jslink((dropdown, "index"), (stack, "selected_index"))
        return w.VBox([dropdown, stack]), link

    def static_html(self) -> str:
        """The current view as plain HTML (renders in executed notebooks and exported pages)."""
        return self.stats.value + "<div style='display:flex'>" + "".join(
            p.value for p in self.panes.values()) + "</div>" + self.history.value
