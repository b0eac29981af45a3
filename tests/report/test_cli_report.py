"""``newsletter report`` end to end through Typer, on both databases: numbers, JSON, plots, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy import insert

from newsletter.store.db import make_engine
from newsletter.store.models import Send, SendState
from tests.conftest import ROOT
from tests.report.conftest import ISSUE, START, Invoke

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def report_json(cli: Invoke, *args: str) -> list[dict]:
    result = cli("report", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_counts_recipients_once_and_events_each_time_with_rates(cli: Invoke, history: list[int]) -> None:
    (data,) = report_json(cli, f"issues/{ISSUE}")
    assert data["recipients"] == {
        "total": 8,
        "accepted": 6,
        "by_state": {"pending": 0, "sending": 0, "accepted": 6, "failed": 1, "suppressed": 1, "unknown": 0},
    }
    sixth, of_accepted = round(1 / 6, 6), "accepted"
    assert data["metrics"] == {
        "delivered": {"recipients": 4, "events": 4, "rate": round(4 / 6, 6), "of": of_accepted},
        "bounced_hard": {"recipients": 1, "events": 1, "rate": sixth, "of": of_accepted},
        "bounced_soft": {"recipients": 1, "events": 2, "rate": sixth, "of": of_accepted},
        "complained": {"recipients": 1, "events": 1, "rate": sixth, "of": of_accepted},
        "unsubscribed": {"recipients": 1, "events": 1, "rate": sixth, "of": of_accepted},
        # over the 4 delivered, since the provider reports deliveries
        "opened": {"recipients": 3, "events": 9, "rate": 0.75, "of": "delivered"},
        "clicked": {"recipients": 1, "events": 2, "rate": 0.25, "of": "delivered"},
    }
    assert data["complaints"] == {"level": "over_limit", "warning": 0.001, "limit": 0.003}


def test_hourly_series_buckets_by_hour_since_the_start(cli: Invoke, history: list[int]) -> None:
    (data,) = report_json(cli, "2026-11-20")  # the date names the same sends as the file
    hourly = data["hourly"]
    assert hourly["hours"] == 72 and hourly["start"] == START.isoformat()
    assert all(len(counts) == 72 for counts in hourly["counts"].values())
    head = {kind: counts[:6] for kind, counts in hourly["counts"].items()}
    assert head == {
        "bounced_hard": [1, 0, 0, 0, 0, 0],
        "bounced_soft": [1, 0, 1, 0, 0, 0],
        "clicked": [1, 0, 0, 0, 0, 0],
        "complained": [0, 0, 0, 0, 0, 1],
        "delivered": [4, 0, 0, 0, 0, 0],
        # before the start -> hour 0; 1.9 h -> hour 1; exactly 2 h -> hour 2
        "opened": [4, 2, 1, 1, 0, 0],
        "unsubscribed": [0, 1, 0, 0, 0, 0],
    }
    assert all(sum(counts[6:]) == 0 for counts in hourly["counts"].values())
    assert hourly["later"] == {
        "bounced_hard": 0,
        "bounced_soft": 0,
        "clicked": 1,
        "complained": 0,
        "delivered": 0,
        "opened": 1,
        "unsubscribed": 0,
    }


def test_json_structure_is_the_documented_one(cli: Invoke, history: list[int]) -> None:
    (data,) = report_json(cli, f"issues/{ISSUE}")
    assert list(data) == ["send", "recipients", "metrics", "complaints", "hard_bounces", "leaving", "hourly"]
    assert list(data["send"]) == [
        "id", "issue_file", "issue_date", "segment", "subject", "provider", "state", "started_at",
        "finished_at",
    ]  # fmt: skip
    assert data["send"]["issue_date"] == "2026-11-20" and data["send"]["provider"] == "outbox"
    assert data["send"]["state"] == "finished" and data["send"]["started_at"] == START.isoformat()
    assert list(data["metrics"]) == [
        "delivered", "bounced_hard", "bounced_soft", "complained", "unsubscribed", "opened", "clicked",
    ]  # fmt: skip
    assert list(data["hourly"]) == ["start", "hours", "counts", "later"]


def test_text_report_shows_rates_and_flags_complaints(cli: Invoke, history: list[int]) -> None:
    result = cli("report", f"issues/{ISSUE}")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Send 1  2026-11-20  finished  everyone  via outbox" in out
    assert "6 accepted, 1 failed, 1 suppressed" in out
    assert "66.67%" in out and "75.00%" in out and "9 opens, of delivered" in out
    assert "at or over the 0.3% bulk-sender limit" in out
    assert "not reported" not in out


def test_without_events_opens_and_clicks_are_not_reported(cli: Invoke, sent: list[int]) -> None:
    (data,) = report_json(cli, f"issues/{ISSUE}")
    metrics = data["metrics"]
    assert metrics["delivered"] is None and metrics["opened"] is None and metrics["clicked"] is None
    assert metrics["bounced_hard"] == {"recipients": 0, "events": 0, "rate": 0.0, "of": "accepted"}
    assert data["complaints"]["level"] == "ok"
    assert data["hourly"]["counts"] == {} and data["hourly"]["later"] == {}
    text = cli("report", f"issues/{ISSUE}").output
    assert text.count("not reported") == 3
    assert "opens and clicks are over accepted" in text


def test_a_send_with_no_recipients_has_no_rates_and_no_division_by_zero(
    cli: Invoke, db_url: str, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            insert(Send).values(
                issue_file=f"issues/{ISSUE}",
                issue_date=START.date(),
                segment="tag:nobody",
                subject="Nobody",
                content_hash="0" * 64,
                provider="outbox",
                state=SendState.FINISHED,
                recipients=0,
                created_at=START,
            )
        )
    engine.dispose()
    (data,) = report_json(cli, f"issues/{ISSUE}")
    assert data["recipients"]["total"] == 0 and data["send"]["started_at"] is None
    assert data["hourly"]["start"] == START.isoformat()  # not started: hours count from its creation
    assert data["metrics"]["complained"] == {"recipients": 0, "events": 0, "rate": None, "of": "accepted"}
    text = cli("report", f"issues/{ISSUE}", "--plot", "empty.png")
    assert text.exit_code == 0, text.output
    assert "segment 'tag:nobody'" in text.output and "not started" in text.output
    assert (tmp_path / "empty.png").read_bytes().startswith(PNG_MAGIC)


def test_plot_writes_a_png(cli: Invoke, history: list[int], tmp_path: Path) -> None:
    result = cli("report", f"issues/{ISSUE}", "--plot", "events.png")
    assert result.exit_code == 0, result.output
    assert "Plot  events.png" in result.output
    data = (tmp_path / "events.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_plot_writes_an_svg_that_is_xml(cli: Invoke, history: list[int], tmp_path: Path) -> None:
    result = cli("report", "2026-11-20", "--plot", "events.SVG", "--json")
    assert result.exit_code == 0, result.output
    json.loads(result.stdout)  # --json output stays pure JSON with --plot
    root = ET.parse(tmp_path / "events.SVG").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.parametrize("name", ["events.pdf", "events", "events.png.txt", "events.jpg"])
def test_plot_refuses_other_formats_before_any_work(cli: Invoke, tmp_path: Path, name: str) -> None:
    result = cli("report", "issues/missing.yaml", "--plot", name)  # the suffix is checked first
    assert result.exit_code == 2
    assert "must end in .png or .svg" in result.output
    assert not (tmp_path / name).exists()


def test_plot_into_a_missing_folder_is_a_clear_error(cli: Invoke, history: list[int]) -> None:
    result = cli("report", f"issues/{ISSUE}", "--plot", "no/such/folder/events.png")
    assert result.exit_code == 2 and "cannot write no/such/folder/events.png" in result.output


def test_an_issue_never_sent_is_an_error(cli: Invoke) -> None:
    result = cli("report", f"issues/{ISSUE}")
    assert result.exit_code == 2
    assert "issue 2026-11-20 has not been sent" in result.output


@pytest.mark.parametrize(
    "issue",
    ["issues/2026-01-01.yaml", "yesterday", "2026-13-40", "x" * 5000, "bad\x00name", "../../../etc"],
)
def test_an_unknown_issue_is_bad_input(cli: Invoke, sent: list[int], issue: str) -> None:
    result = cli("report", issue)
    assert result.exit_code == 2
    assert "neither an issue file nor a date" in result.output or "no sends" in result.output


def test_a_file_that_is_not_an_issue_is_bad_input(cli: Invoke, tmp_path: Path) -> None:
    (tmp_path / "junk.yaml").write_bytes(b"\xff\xfe\x00binary")
    result = cli("report", "junk.yaml")
    assert result.exit_code == 2 and "not UTF-8" in result.output


def test_a_folder_is_not_an_issue(cli: Invoke) -> None:
    result = cli("report", "issues")
    assert result.exit_code == 2 and result.output.startswith("error: issues")


def test_the_cli_starts_without_matplotlib() -> None:
    """The report package, and matplotlib with it, load only when ``report`` runs."""
    code = (
        "import sys, newsletter.cli\n"
        "print(sorted(n for n in sys.modules if n.startswith(('matplotlib', 'newsletter.report'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


def test_a_segment_that_looks_like_a_formula_or_markup_is_drawn_as_text(
    cli: Invoke, db_url: str, tmp_path: Path
) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            insert(Send).values(
                issue_file=f"issues/{ISSUE}",
                issue_date=START.date(),
                segment=r"tag:$\undefined{x}$ [b] tag:a--b -->x <&>",
                subject="[red]x[/]",
                content_hash="0" * 64,
                provider="outbox",
                state=SendState.FINISHED,
                recipients=0,
                created_at=START,
            )
        )
    engine.dispose()
    result = cli("report", f"issues/{ISSUE}", "--plot", "events.svg")
    assert result.exit_code == 0, result.output
    assert "[red]x[/]" in result.output and "undefined{x}$ [b]" in result.output
    assert "undefined" in (tmp_path / "events.svg").read_text()
    ET.parse(tmp_path / "events.svg")  # "--" and "<&" in the title leave the SVG well-formed
