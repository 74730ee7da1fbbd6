"""Dataset loaders on the real shared files, the BioASQ fixture, generic files and bad input."""

from __future__ import annotations

import collections
import datetime as dt
import json
from pathlib import Path

import pytest

from clinfo.eval import DatasetError, load_dataset
from clinfo.eval.datasets import detect_format


def test_pubmedqa_dev_has_labels_and_its_own_article_as_gold(shared_dir: Path) -> None:
    data = load_dataset(shared_dir / "data/pubmedqa/pqal_dev.json")
    assert data.format == "pubmedqa" and len(data) == 500
    assert collections.Counter(i.label for i in data.items) == {"yes": 276, "no": 169, "maybe": 55}
    first = data.items[0]
    assert first.id == "10808977"
    assert first.question == "Can tailored interventions increase mammography use among HMO women?"
    assert first.gold_pmids == ["10808977"] and first.ignore == []
    assert first.task == "yesno" and first.answer and first.answer.startswith("The effects of the intervention")
    assert len(data.sha256) == 64


def test_pubmedqa_test_file_has_no_labels(shared_dir: Path) -> None:
    data = load_dataset(shared_dir / "data/pubmedqa/pqal_test_unlabeled.json", "pubmedqa")
    assert len(data) == 500
    assert all(i.label is None and i.task == "yesno" and i.gold_pmids == [i.id] for i in data.items)


def test_pubmedrs_repairs_mojibake_parses_dates_and_ignores_the_review(shared_dir: Path) -> None:
    data = load_dataset(shared_dir / "data/pubmedrs200/PubMedRS-200.csv")
    assert data.format == "pubmedrs" and len(data) == 209
    by_id = {i.id: i for i in data.items}
    # "â‰¤" in the file is the UTF-8 of "≤" read as Latin-1
    assert (
        by_id["35501549"].question
        == "Is a Distal Resection Margin of ≤ 1 cm Safe in Patients with Intermediate- to Low-Lying Rectal Cancer?"
    )
    assert "tumor necrosis factor-α" in (by_id["25995176"].answer or "")
    for item in data.items:
        text = " ".join([item.question, item.answer or "", *map(str, item.meta.values())])
        assert "Â" not in text and "â€" not in text and "\u0080" not in text, item.id
        assert item.ignore == [item.id]  # the source review never answers its own question
        assert item.id not in item.gold_pmids
        assert item.restriction_date is not None and item.task == "free" and item.label is None
    first = by_id["34158009"]
    assert first.restriction_date == dt.date(2021, 11, 1)  # "11/1/2021"
    assert first.gold_pmids[:3] == ["18158379", "17932381", "21094921"]
    assert len(first.gold_pmids) == len(set(first.gold_pmids))  # the file lists 16935684 twice
    assert first.answer == "prenatal mental disorders increase the risk of childhood asthma."
    assert "" not in first.meta


def test_bioasq_documents_labels_and_ideal_answers(bioasq_file: Path) -> None:
    data = load_dataset(bioasq_file)
    assert data.format == "bioasq"
    yesno, factoid, summary, no = data.items
    assert yesno.task == "yesno" and yesno.label == "yes" and yesno.gold_pmids == ["20393934", "24847880"]
    assert yesno.answer and yesno.answer.startswith("Yes. Pooled trial")
    assert factoid.task == "free" and factoid.label is None and factoid.gold_pmids == ["16723213"]
    assert summary.gold_pmids == ["31209058"] and summary.answer and summary.answer.startswith("Trials show")
    assert no.label == "no" and no.gold_pmids == []


def test_generic_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "qs.jsonl"
    jsonl.write_text(
        json.dumps(
            {"question": "Do statins help?", "answer": "Yes.", "gold_pmids": [123, "0456"], "date": "2020-05-01"}
        )
        + "\n\n"
        + json.dumps({"id": "b", "question": "Is aspirin useful?", "label": "No", "ignore": "999"})
        + "\n"
    )
    a, b = load_dataset(jsonl).items
    assert (a.id, a.gold_pmids, a.restriction_date, a.task) == ("1", ["123", "456"], dt.date(2020, 5, 1), "free")
    assert (b.id, b.label, b.task, b.ignore) == ("b", "no", "yesno", ["999"])

    csv_file = tmp_path / "qs.csv"
    csv_file.write_text('question,answer,gold_pmids,date\n"Do statins help, really?",Yes,"1; 2",3/7/2019\n')
    (item,) = load_dataset(csv_file).items
    assert item.question == "Do statins help, really?" and item.gold_pmids == ["1", "2"]
    assert item.restriction_date == dt.date(2019, 3, 7)


def test_limit_is_a_seeded_sample(shared_dir: Path) -> None:
    data = load_dataset(shared_dir / "data/pubmedqa/pqal_dev.json")
    a = [i.id for i in data.select(5, seed=1)]
    assert a == [i.id for i in data.select(5, seed=1)]
    assert a != [i.id for i in data.select(5, seed=2)]
    order = [i.id for i in data.items]
    assert a == sorted(a, key=order.index)  # file order kept
    assert len(data.select(None)) == 500 and len(data.select(10_000)) == 500


@pytest.mark.parametrize(
    "name, content, fmt, message",
    [
        ("bad.jsonl", '{"question": "a?"}\n{"question": "b?"}\n{"question": \n', None, "bad.jsonl: not JSON at line 3"),
        ("noq.jsonl", '{"answer": "x"}\n', None, "noq.jsonl: line 1: empty or missing 'question'"),
        ("dup.jsonl", '{"id": "x", "question": "a?"}\n{"id": "x", "question": "b?"}\n', None, "duplicate id 'x'"),
        ("label.jsonl", '{"question": "a?", "label": "probably"}\n', None, "label 'probably' is not yes, no or maybe"),
        ("date.jsonl", '{"question": "a?", "date": "last year"}\n', None, "'last year' is not a date"),
        ("nocol.csv", "query,answer\nx,y\n", None, "nocol.csv: missing column 'question'"),
        ("rs.csv", "PMID,Ref_PMIDs,HumanAnswer\n1,2,x\n", "pubmedrs", "missing column 'PublishedDate'"),
        ("b.json", '{"items": []}', "bioasq", "'questions' list"),
        ("q.json", "[1, 2]", "pubmedqa", "keyed by PMID"),
        ("trunc.json", '{"1": {"QUESTION": "a?"', "pubmedqa", "trunc.json: not JSON at line 1"),
        ("x.txt", "question\n", None, "cannot tell the format of x.txt; pass --format"),
        ("empty.jsonl", "\n", None, "no questions found"),
        ("ok.jsonl", '{"question": "a?"}\n', "xml", "unknown dataset format 'xml'"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path: Path, name: str, content: str, fmt: str | None, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError) as info:
        load_dataset(path, fmt)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope.jsonl")


def test_format_detection(shared_dir: Path, bioasq_file: Path, tmp_path: Path) -> None:
    assert detect_format(shared_dir / "data/pubmedqa/pqal_dev.json") == "pubmedqa"
    assert detect_format(shared_dir / "data/pubmedrs200/PubMedRS-200.csv") == "pubmedrs"
    assert detect_format(bioasq_file) == "bioasq"
    (tmp_path / "g.csv").write_text("question\nx?\n")
    assert detect_format(tmp_path / "g.csv") == "csv"
