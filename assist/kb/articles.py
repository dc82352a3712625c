"""Knowledge articles from files, and the passages they are searched by.

Sources (`load_articles`):

- a folder of Markdown or text files (`.md`, `.markdown`, `.txt`, searched recursively), each
  one article, with an optional front matter of `key: value` lines between two `---` lines
  (`id`, `title`, `tags` comma-separated, `url`). Without an `id` the path relative to the
  folder (without suffix) is the id; without a `title` the first heading or line is;
- a JSON Lines file (`.jsonl`): one object per line with `id`, `title`, `body`, optional
  `tags` (a list or a comma-separated string) and `url`;
- a CSV file (`.csv`) with a header row holding the same columns.

A file (or line, or row) that cannot be an article is skipped with a reason, and loading goes
on: empty, binary (a NUL byte), over the size limit, not UTF-8, missing fields, a duplicate id.

Passages (`split_passages`): the body's paragraphs are packed into windows of about
`words` words, and consecutive windows share `overlap` words, so a sentence cut at a boundary
is whole in one of them. The title is put in front of every passage's searchable text.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
DEFAULT_MAX_FILE_BYTES = 2 * 1024 * 1024
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*)$")


class Article(BaseModel):
    # Stripped before the length checks, so "   " is an empty (refused) id, title or body.
    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=500)
    body: str = Field(min_length=1)
    tags: tuple[str, ...] = ()
    url: str = ""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(tag.strip().lower() for tag in value.split(",") if tag.strip())
        if isinstance(value, list | tuple):
            return tuple(str(tag).strip().lower() for tag in value if str(tag).strip())
        return value

    def fingerprint(self, *, words: int, overlap: int) -> str:
        """Changes when anything that goes into the article's passages changes."""
        material = json.dumps(
            [self.id, self.title, self.body, list(self.tags), self.url, words, overlap],
            ensure_ascii=False,
        )
        return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class Skipped:
    """Something that was not loaded, and why (shown to the operator, never fatal)."""

    source: str
    reason: str


@dataclass
class Loaded:
    articles: list[Article] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class Passage:
    article_id: str
    number: int
    title: str
    text: str
    url: str
    tags: tuple[str, ...]

    @property
    def searchable(self) -> str:
        return f"{self.title}. {self.text}"

    def as_json(self) -> dict[str, Any]:
        return {
            "article_id": self.article_id,
            "number": self.number,
            "title": self.title,
            "text": self.text,
            "url": self.url,
            "tags": list(self.tags),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Passage:
        return cls(
            article_id=str(data["article_id"]),
            number=int(data["number"]),
            title=str(data["title"]),
            text=str(data["text"]),
            url=str(data.get("url", "")),
            tags=tuple(data.get("tags", ())),
        )


class ArticleSourceError(ValueError):
    """The source itself cannot be read (missing path, unknown kind)."""


def _read_text(path: Path, max_bytes: int) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason)."""
    try:
        size = path.stat().st_size
        if size == 0:
            return None, "empty file"
        if size > max_bytes:
            return None, f"file too large ({size} bytes, limit {max_bytes})"
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    if b"\x00" in data:
        return None, "binary file (contains NUL bytes)"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (byte {exc.start})"
    if not text.strip():
        return None, "empty file"
    return text, None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'article'}: {error['msg']}"
        for error in exc.errors()
    )


def parse_markdown(text: str, *, default_id: str) -> dict[str, Any]:
    """Front matter and body of one text/Markdown article, as Article fields."""
    fields: dict[str, Any] = {}
    match = _FRONT_MATTER.match(text)
    body = text
    if match:
        for line in match.group(1).splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip():
                fields[key.strip().lower()] = value.strip()
        body = text[match.end() :]
    body = body.strip()
    fields.setdefault("id", default_id)
    if "title" not in fields:
        for line in body.splitlines():
            if line.strip():
                heading = _HEADING.match(line)
                fields["title"] = (heading.group(1) if heading else line).strip()[:500]
                break
    fields["body"] = body
    return fields


def _from_folder(root: Path, max_bytes: int, loaded: Loaded) -> Iterator[tuple[str, Any]]:
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    for path in paths:
        relative = path.relative_to(root)
        text, reason = _read_text(path, max_bytes)
        if text is None:
            loaded.skipped.append(Skipped(str(relative), reason or "unreadable"))
            continue
        yield str(relative), parse_markdown(text, default_id=str(relative.with_suffix("")))


def _from_jsonl(path: Path, max_bytes: int, loaded: Loaded) -> Iterator[tuple[str, Any]]:
    text, reason = _read_text(path, max_bytes)
    if text is None:
        loaded.skipped.append(Skipped(path.name, reason or "unreadable"))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            loaded.skipped.append(Skipped(where, f"invalid JSON: {exc}"))
            continue
        if not isinstance(data, dict):
            loaded.skipped.append(Skipped(where, "not a JSON object"))
            continue
        yield where, data


def _from_csv(path: Path, max_bytes: int, loaded: Loaded) -> Iterator[tuple[str, Any]]:
    text, reason = _read_text(path, max_bytes)
    if text is None:
        loaded.skipped.append(Skipped(path.name, reason or "unreadable"))
        return
    reader = csv.DictReader(io.StringIO(text))
    missing = {"id", "title", "body"} - {name.strip().lower() for name in reader.fieldnames or []}
    if missing:
        loaded.skipped.append(Skipped(path.name, f"CSV header lacks {', '.join(sorted(missing))}"))
        return
    for number, row in enumerate(reader, start=2):
        yield f"{path.name}:{number}", {(k or "").strip().lower(): v for k, v in row.items()}


def load_articles(source: str | Path, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Loaded:
    """Every article of a folder, `.jsonl` or `.csv` file; what could not be loaded is listed."""
    path = Path(source)
    loaded = Loaded()
    if path.is_dir():
        entries: Iterator[tuple[str, Any]] = _from_folder(path, max_file_bytes, loaded)
    # A JSONL or CSV file holds a whole knowledge base: its limit is that of many articles.
    elif path.is_file() and path.suffix.lower() == ".jsonl":
        entries = _from_jsonl(path, max_file_bytes * 256, loaded)
    elif path.is_file() and path.suffix.lower() == ".csv":
        entries = _from_csv(path, max_file_bytes * 256, loaded)
    elif path.exists():
        raise ArticleSourceError(f"{path}: expected a folder, a .jsonl or a .csv file")
    else:
        raise ArticleSourceError(f"{path}: no such file or folder")
    seen: set[str] = set()
    for where, data in entries:
        try:
            article = Article.model_validate(data)
        except ValidationError as exc:
            loaded.skipped.append(Skipped(where, _describe(exc)))
            continue
        if article.id in seen:
            loaded.skipped.append(Skipped(where, f"duplicate article id {article.id!r}"))
            continue
        seen.add(article.id)
        loaded.articles.append(article)
    return loaded


def split_passages(article: Article, *, words: int = 120, overlap: int = 30) -> list[Passage]:
    """The article's passages: paragraphs packed into ~`words`-word windows sharing `overlap`."""
    if overlap >= words:
        raise ValueError("overlap must be smaller than the passage length")
    tokens: list[str] = []
    for paragraph in re.split(r"\n\s*\n", article.body):
        # Markdown heading marks and list bullets are layout, not words.
        cleaned = re.sub(r"(?m)^\s{0,3}(?:#{1,6}|[-*+]|\d+[.)])\s+", "", paragraph)
        tokens.extend(cleaned.split())
    passages: list[Passage] = []
    start = 0
    step = words - overlap
    while True:
        chunk = tokens[start : start + words]
        if not chunk:
            break
        passages.append(
            Passage(
                article_id=article.id,
                number=len(passages),
                title=article.title,
                text=" ".join(chunk),
                url=article.url,
                tags=article.tags,
            )
        )
        if start + words >= len(tokens):
            break
        start += step
    return passages


__all__ = [
    "Article",
    "ArticleSourceError",
    "Loaded",
    "Passage",
    "Skipped",
    "load_articles",
    "parse_markdown",
    "split_passages",
]
