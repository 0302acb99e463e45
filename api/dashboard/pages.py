"""The dashboard's pages: one entry per URL shell (template fragment + page script).

Adding a page is one entry here (plus its fragment and script): the route is made
from the entry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    key: str
    path: str  # URL; a {job_id} in it is read by the page script from the address
    title: str
    template: str  # fragment in templates/, placed inside <main>
    script: str  # ES module in static/js/pages/
    nav: str = ""  # which navigation link is current ("" hides the navigation)
    charts: bool = False  # load the Plotly bundle


PAGES = {
    page.key: page
    for page in (
        Page("signin", "/signin", "Sign in", "signin.html", "signin.js"),
        Page("jobs", "/", "Jobs", "jobs.html", "jobs.js", nav="jobs"),
        Page("new", "/jobs/new", "New job", "new_job.html", "new_job.js", nav="new"),
        Page("job", "/jobs/{job_id}", "Job", "job.html", "job.js", nav="jobs", charts=True),
        Page("datasets", "/datasets", "Datasets", "datasets.html", "datasets.js", nav="datasets"),
        Page("models", "/models", "Your models", "models.html", "models.js", nav="models"),
        Page(
            "compare",
            "/compare",
            "Compare jobs",
            "compare.html",
            "compare.js",
            nav="compare",
            charts=True,
        ),
    )
}
