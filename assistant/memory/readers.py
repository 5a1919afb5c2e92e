"""Reading what the user imports into plain records: text, date, kind.

Each reader checks its input and names the file, and the line or record, when something is
wrong; nothing is stored until a whole file has been read without error.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import html
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from assistant import input_text
from assistant.errors import MynaError

TEXT_SUFFIXES = {".txt", ".text", ".md", ".markdown", ".rst", ".org"}
SUFFIXES = TEXT_SUFFIXES | {".eml", ".jsonl", ".json"}
DEFAULT_MAX_MB = 16


@dataclass(frozen=True)
class Record:
    text: str
    kind: str
    date: str | None = None


@dataclass
class Document:
    path: Path
    kind: str
    title: str
    content_hash: str
    records: list[Record]
    notes: list[str] = field(default_factory=list)  # e.g. "read as Windows-1252"


def read(path: Path, *, max_mb: float = DEFAULT_MAX_MB) -> Document:
    """Read one file of a supported kind; MynaError says what is wrong with it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise MynaError(f"{path}: Myna imports {', '.join(sorted(SUFFIXES))} files, not '{suffix or 'no extension'}'.")
    size = path.stat().st_size
    if size > max_mb * 2**20:
        raise MynaError(
            f"{path} is {size / 2**20:.0f} MB, more than the {max_mb:g} MB Myna imports from one file; "
            f"split it, or raise the limit with --max-size {int(size / 2**20) + 1}."
        )
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    text, notes = decode(data, path)
    if suffix == ".eml":
        records, title = _email(text, path)
        kind = "email"
    elif suffix == ".jsonl":
        records, title, kind = _jsonl(text, path), path.name, "jsonl"
    elif suffix == ".json":
        records, title, kind = _lamp(text, path), path.name, "lamp"
    else:
        kind = "markdown" if suffix in (".md", ".markdown") else "text"
        title = _first_line(text) or path.name
        date = _file_date(path)
        records = [Record(note, "note", date) for note in notes_of(text)]
    records, replaced = _cleaned(records)
    if replaced:
        notes.append(f"{path}: {input_text.notice(replaced, 'it')}")
    return Document(
        path=path.resolve(),
        kind=kind,
        title=input_text.text(title)[:120],
        content_hash=digest,
        records=records,
        notes=notes,
    )


def _cleaned(records: list[Record]) -> tuple[list[Record], int]:
    """Records as text every part of Myna accepts (assistant/input_text.py)."""
    out, replaced = [], 0
    for record in records:
        cleaned = input_text.clean(record.text)
        replaced += cleaned.replaced
        out.append(Record(cleaned.text, input_text.text(record.kind), record.date and input_text.text(record.date)))
    return out, replaced


def decode(data: bytes, path: Path) -> tuple[str, list[str]]:
    """Bytes to text: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), []
    if b"\x00" in data[:8192] or _looks_binary(data[:8192]):
        raise MynaError(
            f"{path} looks like a binary file, not text; Myna imports text, Markdown, e-mail and JSON files."
        )
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    note = f"{path.name} is not UTF-8; it was read as Windows-1252 (Western European)."
    try:
        return data.decode("cp1252"), [note]
    except UnicodeDecodeError:
        return data.decode("latin-1"), [note.replace("Windows-1252 (Western European)", "Latin-1")]


def _looks_binary(head: bytes) -> bool:
    if not head:
        return False
    control = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 12, 13))
    return control / len(head) > 0.1


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line
    return ""


_BLOCKS = re.compile(r"\n\s*\n")
_BULLET = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+")


def notes_of(text: str) -> list[str]:
    """A text file as the notes it holds: each paragraph, and each item of a bulleted list, is
    one record, so "the basil moved" and "the dentist on Tuesday" in one file are found, and
    given to an answer, apart. A heading (a "#" line, or a line ending in a colon) stays with
    what follows it."""
    notes: list[str] = []
    heading = ""
    for block in _BLOCKS.split(text):
        lines = [line.rstrip() for line in block.strip().splitlines() if line.strip()]
        if not lines:
            continue
        while lines and _is_heading(lines[0]):
            heading = f"{heading}\n{lines.pop(0)}" if heading else lines.pop(0)
        if not lines:
            continue
        if _BULLET.match(lines[0]) and sum(bool(_BULLET.match(line)) for line in lines) >= 2:
            items: list[str] = []
            for line in lines:
                if _BULLET.match(line) or not items:
                    items.append(line.strip())
                else:
                    items[-1] += " " + line.strip()  # a wrapped item
            found = items
        else:
            found = ["\n".join(lines)]
        if heading:
            found[0] = f"{heading}\n{found[0]}"
            heading = ""
        notes.extend(found)
    if heading:
        notes.append(heading)
    return notes


def _is_heading(line: str) -> bool:
    line = line.strip()
    return line.startswith("#") or line.endswith(":")


def _file_date(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).date().isoformat()


def _email(text: str, path: Path) -> tuple[list[Record], str]:
    message = email.message_from_string(text, policy=email.policy.default)
    if not message.keys():
        raise MynaError(f"{path} is not an e-mail message (no headers); save e-mails as .eml, or rename it to .txt.")
    subject = str(message.get("subject", "")).strip()
    date = None
    if message.get("date"):
        try:
            date = parsedate_to_datetime(str(message["date"])).date().isoformat()
        except (TypeError, ValueError):
            date = None
    body_part = message.get_body(preferencelist=("plain", "html"))
    body = body_part.get_content() if body_part is not None else ""
    if body_part is not None and body_part.get_content_type() == "text/html":
        body = html.unescape(re.sub(r"<[^>]+>", " ", body))
    body = "\n".join(line for line in body.splitlines() if not line.startswith(">"))  # drop quoted replies
    text = f"Subject: {subject}\n\n{body.strip()}" if subject else body.strip()
    return ([Record(text, "email", date)] if text.strip() else []), subject or path.name


def _jsonl(text: str, path: Path) -> list[Record]:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MynaError(f"{path}, line {number}: not valid JSON ({exc.msg}); fix or remove that line.") from None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise MynaError(f'{path}, line {number}: each line must be an object with a "text" string.')
        date = item.get("date")
        if date is not None and not _valid_date(date):
            raise MynaError(f"{path}, line {number}: date {date!r} is not an ISO date like 2024-05-31.")
        if item["text"].strip():
            records.append(Record(item["text"], str(item.get("kind") or "note"), date))
    return records


# The text of a LaMP profile item, by the fields each task's items carry (the LaMP benchmark's formats), with
# the title, subject or headline first (assistant/records.py reads records in that form).
def _lamp_item_text(item: dict) -> tuple[str, str] | None:
    fields = {key for key, value in item.items() if isinstance(value, str)} - {"id", "date"}
    if isinstance(item.get("score"), (int, float)) and not isinstance(item.get("score"), bool):
        fields.add("score")  # a rating may be a number
    if {"title", "abstract"} <= fields:
        return f"{item['title']}\n\n{item['abstract']}", "lamp paper"
    if {"description", "tag"} <= fields:
        return f"{item['description']}\n\nTag: {item['tag']}", "lamp movie tag"
    if {"text", "score"} <= fields:
        return f"{item['text']}\n\nRating: {item['score']}", "lamp review"
    if {"title", "text"} <= fields:
        return f"{item['title']}\n\n{item['text']}", "lamp article"
    if "text" in fields:
        return item["text"], "lamp post"
    return None


def _lamp_task(data: list) -> str | None:
    """The task a LaMP questions file is for, told by how its questions are phrased."""
    from assistant.tasks import task_of

    for question in data[:20]:
        if isinstance(question, dict) and isinstance(question.get("input"), str):
            task = task_of(question["input"])
            if task:
                return task
    return None


def _lamp(text: str, path: Path) -> list[Record]:
    from assistant.records import LAMP_KINDS

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MynaError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); it may be truncated."
        ) from None
    if isinstance(data, dict) and "golds" in data:
        raise MynaError(f"{path} is a LaMP outputs file; import the questions file, which holds the profiles.")
    if not isinstance(data, list):
        raise MynaError(f"{path} is not a LaMP questions file: expected a list of {{id, input, profile}} records.")
    # LaMP_6's e-mails carry the same fields as LaMP_4's articles: the questions tell them apart.
    task = _lamp_task(data)
    records, seen = [], set()
    for number, question in enumerate(data, start=1):
        label = f"record {number}" + (
            f" (id {question.get('id')})" if isinstance(question, dict) and "id" in question else ""
        )
        if not isinstance(question, dict) or not isinstance(question.get("profile"), list):
            raise MynaError(f"{path}, {label}: has no 'profile' list; is this a LaMP questions file?")
        for item in question["profile"]:
            found = _lamp_item_text(item) if isinstance(item, dict) else None
            if found is None:
                raise MynaError(
                    f"{path}, {label}: a profile item has none of the LaMP fields as text "
                    "(text, title, abstract, description); fix that item or remove it."
                )
            item_text, kind = found
            key = str(item.get("id") or item_text)
            if key in seen:
                continue  # LaMP repeats a user's profile under each of their questions
            seen.add(key)
            date = item.get("date")
            records.append(
                Record(str(item_text), LAMP_KINDS.get(task, kind) if task else kind, str(date) if date else None)
            )
    return records


def _valid_date(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def discover(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The importable files under `paths` (folders recursively), and notes on what was skipped."""
    found, skipped = [], []
    for path in paths:
        path = Path(path).expanduser()
        if not path.exists():
            raise MynaError(f"{path} does not exist; give files or folders to import.")
        if path.is_file():
            found.append(path)
            continue
        inside = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        usable = [p for p in inside if p.suffix.lower() in SUFFIXES]
        if inside and not usable:
            skipped.append(
                f"{path}: none of its {len(inside)} files is of a kind Myna imports ({', '.join(sorted(SUFFIXES))})."
            )
        elif len(inside) > len(usable):
            skipped.append(f"{path}: skipped {len(inside) - len(usable)} files of other kinds.")
        found.extend(usable)
    if not found:
        raise MynaError(
            "There is nothing to import there: no "
            + ", ".join(sorted(SUFFIXES))
            + " files."
            + (" " + " ".join(skipped) if skipped else "")
        )
    return found, skipped
