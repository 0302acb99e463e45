"""The dashboard's pages: one entry per URL shell (template fragment + page script)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    key: str
    title: str
    template: str  # fragment in templates/, placed inside <main>
    script: str  # ES module in static/js/pages/
    nav: str = ""  # which navigation link is current ("" hides the navigation)
    charts: bool = False  # load the Plotly bundle


PAGES = {
    page.key: page
    for page in (
        Page("signin", "Sign in", "signin.html", "signin.js"),
        Page("jobs", "Jobs", "jobs.html", "jobs.js", nav="jobs"),
        Page("new", "New job", "new_job.html", "new_job.js", nav="new"),
        Page("job", "Job", "job.html", "job.js", nav="jobs", charts=True),
        Page("datasets", "Datasets", "datasets.html", "datasets.js", nav="datasets"),
        Page("compare", "Compare jobs", "compare.html", "compare.js", nav="compare", charts=True),
    )
}
