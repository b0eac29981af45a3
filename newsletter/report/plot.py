"""``newsletter report --plot``: events per hour after each send, as a PNG or SVG chart.

One panel per send of the issue, hours since the send started on x (the whole hourly window, 72 h
by default, as the README promises), events per hour on y, one step line per event kind: each hour's
count is a flat step over that hour, so a sparse series reads as counts per hour rather than as
spikes. The y axis always ends on a tick at or above the busiest hour. Events after the hourly
window are named under the panel instead of drawn.

matplotlib is imported inside :func:`draw` (it takes most of a second), and through its
object-oriented API on an Agg canvas: no pyplot, no global backend or figure state, no display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.errors import BadInput
from newsletter.report.model import LABELS, SendReport
from newsletter.store.models import EventKind

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FORMATS", "chart", "draw", "plot_format"]

#: What ``--plot FILE`` may end in, and the format matplotlib writes for it.
FORMATS = {".png": "png", ".svg": "svg"}
#: A log scale once the busiest kind peaks this many times higher than the quietest, so a few
#: complaints stay visible next to thousands of deliveries (symlog: 0 is still drawn at 0).
LOG_SCALE_RATIO = 20
#: One colour per kind, the same in every chart: good news cool, trouble warm.
COLOURS = {
    EventKind.DELIVERED: "#7f8c8d",
    EventKind.OPENED: "#1f77b4",
    EventKind.CLICKED: "#2ca02c",
    EventKind.UNSUBSCRIBED: "#9467bd",
    EventKind.BOUNCED_SOFT: "#ff9f40",
    EventKind.BOUNCED_HARD: "#d62728",
    EventKind.COMPLAINED: "#8c1c13",
}
#: Drawing order: the big series first, so the rare ones are drawn on top of them.
ORDER = (
    EventKind.DELIVERED,
    EventKind.OPENED,
    EventKind.CLICKED,
    EventKind.UNSUBSCRIBED,
    EventKind.BOUNCED_SOFT,
    EventKind.BOUNCED_HARD,
    EventKind.COMPLAINED,
)


def plot_format(path: Path) -> str:
    """The format for ``path`` by its suffix; anything but .png or .svg is bad input."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BadInput(f"--plot writes PNG or SVG: {path.name!r} must end in .png or .svg")
    return fmt


def draw(reports: Sequence[SendReport], path: Path) -> None:
    """Write the chart of ``reports`` (the sends of one issue) to ``path``."""
    fmt = plot_format(path)
    figure = chart(reports)
    try:
        figure.savefig(path, format=fmt, metadata=_metadata(fmt))
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None


def chart(reports: Sequence[SendReport]) -> Figure:
    """The chart of ``reports`` as a matplotlib figure on an Agg canvas, one panel per send."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 1.2 + 3.6 * max(len(reports), 1)), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    issue = reports[0].figures.send.issue_date if reports else "?"
    figure.suptitle(f"Issue {issue}: events in the hours after each send", fontsize=13, weight="bold")
    for axes, report in zip(figure.subplots(len(reports), 1, squeeze=False)[:, 0], reports, strict=True):
        _panel(axes, report)
    return figure


def _panel(axes: Axes, report: SendReport) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator, MultipleLocator

    send, series = report.figures.send, report.figures.hourly
    audience = f"segment {send.segment!r}" if send.segment else "everyone"
    since = "started" if send.started_at else "created (not started)"
    start = series.start.strftime("%Y-%m-%d %H:%M UTC")
    axes.set_title(
        f"Send {send.id} ({audience}, via {send.provider}), {since} {start}",
        loc="left",
        fontsize=10,
        parse_math=False,  # a segment is the editor's text: "$...$" in it is not a formula
    )
    drawn = [kind for kind in ORDER if any(series.counts.get(kind, ()))]
    shown = series.hours
    edges = list(range(shown + 1))  # hour h is the step from h to h + 1
    for kind in drawn:
        axes.stairs(
            series.counts[kind][:shown],
            edges,
            label=LABELS[kind],
            color=COLOURS[kind],
            linewidth=1.8,
            baseline=None,  # no drop to 0 at either end: the zero hours are drawn as zero
        )
    axes.set_xlim(0, shown)
    peaks = [max(series.counts[kind]) for kind in drawn]
    peak = max(peaks, default=0)
    if peaks and peak >= LOG_SCALE_RATIO * min(peaks):
        axes.set_yscale("symlog", linthresh=1)
        axes.set_ylim(0, top_of_log_axis(peak))
        axes.set_ylabel("events per hour (log scale)")
    else:
        locator = MaxNLocator(integer=True)
        axes.yaxis.set_major_locator(locator)
        axes.set_ylim(0, top_of_linear_axis(locator, peak))
        axes.set_ylabel("events per hour")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.xaxis.set_major_locator(MultipleLocator(6 if shown > 24 else 2 if shown > 6 else 1))
    axes.set_xlabel("hours after the send started")
    axes.grid(True, color="#dddddd", linewidth=0.6)
    axes.spines[["top", "right"]].set_visible(False)
    if drawn:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=9)
    else:
        axes.text(
            0.5,
            0.5,
            "no events reported for this send",
            transform=axes.transAxes,
            ha="center",
            va="center",
            color="#777777",
        )
    later = [f"{series.later[k]:,} {LABELS[k].lower()}" for k in ORDER if series.later.get(k)]
    if later:
        axes.annotate(
            f"after {series.hours} h (not drawn): " + ", ".join(later),
            xy=(0, 0),
            xycoords="axes fraction",
            xytext=(0, -34),
            textcoords="offset points",
            fontsize=8,
            color="#555555",
        )


#: The busiest hour stays this far below the top of the axis, so its step is not drawn on the frame.
HEADROOM = 1.1


def top_of_log_axis(peak: int) -> int:
    """The first decade above ``peak`` with headroom: a log axis ends on a tick, above the data."""
    top = 10
    while top < peak * HEADROOM:
        top *= 10
    return top


def top_of_linear_axis(locator: Any, peak: int) -> float:
    """The first tick ``locator`` puts above ``peak`` with headroom (1 for an empty chart)."""
    wanted = max(peak * HEADROOM, 1)
    return float(min(tick for tick in locator.tick_values(0, wanted) if tick >= wanted))


def _metadata(fmt: str) -> dict[str, str | None]:
    """No creation date in the file: the same report draws the same bytes."""
    return {"Date": None} if fmt == "svg" else {}
