"""Question sets for batch evaluation: PubMedQA, PubMedRS-200, BioASQ task B, generic JSONL/CSV.

Every loader returns :class:`EvalItem`s with the same fields, so the runner and the metrics never
look at a dataset's own format. Structural problems (missing column, bad JSON, duplicate ids)
raise :class:`DatasetError` with the file and line, before any LLM call is made.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import random
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from clinfo.dates import parse_date
from clinfo.errors import InvalidArgument

Label = Literal["yes", "no", "maybe"]
LABELS: tuple[str, ...] = ("yes", "no", "maybe")
FORMATS: tuple[str, ...] = ("pubmedqa", "pubmedrs", "bioasq", "jsonl", "csv")


class DatasetError(InvalidArgument):
    """A question file cannot be read as the format asked for (one line, names file and place)."""


class EvalItem(BaseModel):
    id: str
    question: str
    answer: str | None = None  # gold free-text answer
    label: Label | None = None  # gold yes/no/maybe, when the dataset has one
    gold_pmids: list[str] = Field(default_factory=list)  # articles that answer it, best first when known
    restriction_date: dt.date | None = None  # search cut-off: only literature up to this date
    ignore: list[str] = Field(default_factory=list)  # PMIDs that must not be retrieved (leakage)
    # "yesno": the runner also extracts a yes/no/maybe answer; "free": text answer only
    task: Literal["yesno", "free"] = "free"
    meta: dict[str, Any] = Field(default_factory=dict)


class Dataset(BaseModel):
    path: str
    format: str
    sha256: str
    items: list[EvalItem]

    def __len__(self) -> int:
        return len(self.items)

    def select(self, limit: int | None = None, seed: int = 0) -> list[EvalItem]:
        """A reproducible sample of ``limit`` items (seeded), kept in file order; all items without a limit."""
        if limit is None or limit >= len(self.items):
            return list(self.items)
        if limit < 1:
            raise InvalidArgument(f"limit must be at least 1, got {limit}")
        chosen = sorted(random.Random(seed).sample(range(len(self.items)), limit))
        return [self.items[i] for i in chosen]


# ---------------------------------------------------------------- helpers

_DIGITS = re.compile(r"\d+")


def _pmids(value: Any) -> list[str]:
    """PMIDs from a list, or from text in any separator style ("1, 2", "['1', '2']", "1;2");
    order kept, duplicates dropped."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        raw = [str(v) for v in value]
    else:
        raw = _DIGITS.findall(str(value))
    out: list[str] = []
    for item in raw:
        text = item.strip()
        if not text:
            continue
        if not text.isdigit():
            raise ValueError(f"{item!r} is not a PMID")
        pmid = str(int(text))
        if pmid not in out:
            out.append(pmid)
    return out


def _label(value: Any) -> Label | None:
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip().lower()
    if text not in LABELS:
        raise ValueError(f"label {value!r} is not yes, no or maybe")
    return text  # type: ignore[return-value]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):  # BioASQ ideal answers come as a list of alternatives
        value = next((v for v in value if str(v).strip()), "")
    text = " ".join(str(value).split())
    return text or None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_unique(items: list[EvalItem], name: str) -> list[EvalItem]:
    # ids key the predictions file: a duplicate would make resuming ambiguous
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DatasetError(f"{name}: duplicate id {item.id!r}")
        seen.add(item.id)
    if not items:
        raise DatasetError(f"{name}: no questions found")
    return items


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"dataset file {path} does not exist") from None
    except IsADirectoryError:
        raise DatasetError(f"{path} is a directory, not a dataset file") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path.name}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path.name}: not JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header (empty trailing columns dropped) and (line number, row) pairs."""
    text = _read_text(path)
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path.name}: empty CSV file") from None
    except csv.Error as exc:
        raise DatasetError(f"{path.name}: not CSV: {exc}") from None
    names = [h.strip() for h in header]
    keep = [i for i, h in enumerate(names) if h]  # PubMedRS-200 has 20 unnamed empty columns
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            rows.append((reader.line_num, {names[i]: (values[i] if i < len(values) else "") for i in keep}))
    except csv.Error as exc:
        raise DatasetError(f"{path.name}: not CSV at line {reader.line_num}: {exc}") from None
    return [names[i] for i in keep], rows


def _require(columns: Iterable[str], needed: Iterable[str], name: str) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DatasetError(
            f"{name}: missing column {', '.join(repr(m) for m in missing)} (found: {', '.join(columns) or 'none'})"
        )


# ---------------------------------------------------------------- loaders


def load_pubmedqa(path: Path) -> list[EvalItem]:
    """PubMedQA original format: ``{pmid: {QUESTION, LONG_ANSWER, final_decision, YEAR, ...}}``.

    The item's own article is its gold document (known-item retrieval). The official test file
    has no ``final_decision``: items then carry no label, and accuracy is not computed.
    """
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path.name}: PubMedQA files are a JSON object keyed by PMID")
    items = []
    for key, value in data.items():
        where = f"{path.name}: item {key}"
        if not isinstance(value, dict) or not str(value.get("QUESTION", "")).strip():
            raise DatasetError(f"{where}: no QUESTION")
        if not str(key).strip().isdigit():
            raise DatasetError(f"{where}: key is not a PMID")
        try:
            label = _label(value.get("final_decision"))
        except ValueError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        items.append(
            EvalItem(
                id=str(key).strip(),
                question=_text(value["QUESTION"]) or "",
                answer=_text(value.get("LONG_ANSWER")),
                label=label,
                gold_pmids=[str(int(key))],
                task="yesno",
                meta={"year": value.get("YEAR"), "meshes": value.get("MESHES", [])},
            )
        )
    return items


def _fix_mojibake(text: str) -> str:
    # The CSV is UTF-8 that was once decoded as Latin-1/cp1252 and re-encoded ("Â\xa0", "â\x80\x89").
    # ftfy.fix_encoding undoes exactly that, segment by segment, and leaves correct text alone;
    # a blanket encode("cp1252").decode() would fail on the C1 bytes and on genuine accents.
    try:
        import ftfy
    except ImportError:  # pragma: no cover - ftfy comes with the [eval] extra
        raise DatasetError("reading PubMedRS-200 needs ftfy: pip install 'clinfo[eval]'") from None
    return ftfy.fix_encoding(text)


def load_pubmedrs(path: Path) -> list[EvalItem]:
    """PubMedRS-200: questions derived from systematic reviews.

    The review's own ``PMID`` always goes into ``ignore`` (otherwise the review answers its own
    question), ``PublishedDate`` is the search cut-off and ``Ref_PMIDs`` (the review's included
    references) are the gold documents.
    """
    columns, rows = _csv_rows(path)
    _require(columns, ("PMID", "Ref_PMIDs", "PublishedDate", "HumanAnswer"), path.name)
    if "HumanQuestions" not in columns and "questions" not in columns:
        _require(columns, ("HumanQuestions",), path.name)
    items = []
    for line, row in rows:
        where = f"{path.name}: line {line}"
        review = row["PMID"].strip()
        if not review.isdigit():
            raise DatasetError(f"{where}: PMID {review!r} is not a PMID")
        review = str(int(review))
        question = _text(_fix_mojibake(row.get("HumanQuestions") or row.get("questions") or ""))
        if not question:
            raise DatasetError(f"{where}: empty question")
        try:
            cut_off = parse_date(row["PublishedDate"], us_dates=True)  # written 11/1/2021
            refs = [p for p in _pmids(row["Ref_PMIDs"]) if p != review]
        except ValueError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        items.append(
            EvalItem(
                id=review,
                question=question,
                answer=_text(_fix_mojibake(row["HumanAnswer"])),
                gold_pmids=refs,
                restriction_date=cut_off,
                ignore=[review],
                task="free",
                meta={k: _text(_fix_mojibake(row.get(k, ""))) for k in ("specialty", "SubTopic", "Title") if k in row},
            )
        )
    return items


_BIOASQ_PMID = re.compile(r"(\d+)\s*/?\s*$")


def load_bioasq(path: Path) -> list[EvalItem]:
    """BioASQ task B: ``{"questions": [{id, body, type, documents, snippets, exact_answer, ideal_answer}]}``.

    ``documents`` are PubMed URLs; yes/no questions carry their ``exact_answer`` as the label.
    """
    data = _load_json(path)
    questions = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(questions, list):
        raise DatasetError(f"{path.name}: BioASQ files are a JSON object with a 'questions' list")
    items = []
    for i, q in enumerate(questions):
        where = f"{path.name}: question {i + 1}"
        if not isinstance(q, dict) or not str(q.get("body", "")).strip():
            raise DatasetError(f"{where}: no 'body'")
        qtype = str(q.get("type", "")).strip().lower()
        docs = []
        for url in q.get("documents") or []:
            match = _BIOASQ_PMID.search(str(url))
            if not match:
                raise DatasetError(f"{where}: document {url!r} is not a PubMed URL")
            pmid = str(int(match.group(1)))
            if pmid not in docs:
                docs.append(pmid)
        label = None
        if qtype == "yesno":
            exact = q.get("exact_answer")
            try:
                label = _label(exact[0] if isinstance(exact, list) and exact else exact)
            except ValueError as exc:
                raise DatasetError(f"{where}: {exc}") from None
        items.append(
            EvalItem(
                id=str(q.get("id") or i + 1),
                question=_text(q["body"]) or "",
                answer=_text(q.get("ideal_answer")),
                label=label,
                gold_pmids=docs,
                task="yesno" if qtype == "yesno" else "free",
                meta={"type": qtype, "snippets": len(q.get("snippets") or [])},
            )
        )
    return items


def _generic_item(row: dict[str, Any], default_id: str, where: str) -> EvalItem:
    question = _text(row.get("question"))
    if not question:
        raise DatasetError(f"{where}: empty or missing 'question'")
    try:
        label = _label(row.get("label"))
        task = str(row.get("task") or ("yesno" if label else "free")).strip().lower()
        if task not in ("yesno", "free"):
            raise ValueError(f"task {task!r} is not 'yesno' or 'free'")
        return EvalItem(
            id=str(row.get("id") or default_id).strip(),
            question=question,
            answer=_text(row.get("answer")),
            label=label,
            gold_pmids=_pmids(row.get("gold_pmids")),
            restriction_date=parse_date(row.get("date"), us_dates=True),
            ignore=_pmids(row.get("ignore")),
            task=task,  # type: ignore[arg-type]
        )
    except ValueError as exc:
        raise DatasetError(f"{where}: {exc}") from None


def load_jsonl(path: Path) -> list[EvalItem]:
    """One JSON object per line: ``question`` and optional ``id``, ``answer``, ``label``, ``gold_pmids``,
    ``date``, ``ignore``."""
    items = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path.name}: not JSON at line {n}: {exc.msg}") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path.name}: line {n} is not a JSON object")
        items.append(_generic_item(row, str(n), f"{path.name}: line {n}"))
    return items


def load_csv(path: Path) -> list[EvalItem]:
    """A CSV with a ``question`` column and the optional columns of :func:`load_jsonl`."""
    columns, rows = _csv_rows(path)
    _require(columns, ("question",), path.name)
    return [_generic_item(row, str(i), f"{path.name}: line {line}") for i, (line, row) in enumerate(rows, start=1)]


LOADERS: dict[str, Callable[[Path], list[EvalItem]]] = {
    "pubmedqa": load_pubmedqa,
    "pubmedrs": load_pubmedrs,
    "bioasq": load_bioasq,
    "jsonl": load_jsonl,
    "csv": load_csv,
}


def detect_format(path: Path) -> str:
    """The format from the extension and a look at the start of the file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    try:
        with path.open("r", encoding="utf-8-sig", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        head = ""
    if suffix == ".csv":
        first = head.splitlines()[0] if head else ""
        return "pubmedrs" if "Ref_PMIDs" in first and "HumanAnswer" in first else "csv"
    if suffix == ".json":
        if re.match(r'\s*\{\s*"questions"', head):
            return "bioasq"
        if re.match(r'\s*\{\s*"\d+"\s*:', head):
            return "pubmedqa"
    raise DatasetError(f"cannot tell the format of {path.name}; pass --format ({'|'.join(FORMATS)})")


def load_dataset(path: str | Path, format: str | None = None) -> Dataset:
    """Load a question file; ``format`` is one of :data:`FORMATS` (guessed when omitted)."""
    path = Path(path).expanduser()
    if format is not None and format not in LOADERS:
        raise DatasetError(f"unknown dataset format {format!r}; use one of {', '.join(FORMATS)}")
    if not path.exists():
        raise DatasetError(f"dataset file {path} does not exist")
    fmt = format or detect_format(path)
    items = _check_unique(LOADERS[fmt](path), path.name)
    return Dataset(path=str(path.resolve()), format=fmt, sha256=_sha256(path), items=items)
