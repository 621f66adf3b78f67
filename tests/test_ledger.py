"""The seeds' claims ledger (book/data/seed_claims.yaml) and the page built from it."""

import html as html_lib
import re
import sys

import pytest

from .conftest import ROOT

sys.path.insert(0, str(ROOT / "book" / "_ext"))
from seed_ledger import SEEDS, VERDICTS, load_ledger  # noqa: E402

LEDGER = ROOT / "book" / "data" / "seed_claims.yaml"


def test_every_seed_file_contributes_and_every_entry_has_a_verdict_and_a_reason():
    entries = load_ledger(LEDGER)
    assert len(entries) >= 60
    seeds_on_disk = sorted(p.name[:3] for p in (ROOT.parent / "shared" / "seeds").glob("*.txt"))
    assert not seeds_on_disk or tuple(seeds_on_disk) == SEEDS
    assert {e["seed"] for e in entries} == set(SEEDS)
    for e in entries:
        assert e["verdict"] in VERDICTS and len(e["why"].strip()) > 20 and e["claim"].strip(), e
        if e["verdict"] != "untested":
            assert e["evidence"], e


@pytest.mark.parametrize("broken,message", [
    ({"verdict": "maybe"}, "verdict must be one of"),
    ({"seed": "007"}, "seed must be one of"),
    ({"evidence": []}, "without evidence"),
    ({"why": " "}, "empty 'why'"),
])
def test_a_malformed_entry_is_refused_naming_it(tmp_path, broken, message):
    import yaml

    entry = {"seed": "000", "where": "x", "claim": "A claim.", "verdict": "holds", "why": "Because.",
             "evidence": [{"section": "01_update_rule.md#one-step-by-hand"}]}
    path = tmp_path / "ledger.yaml"
    path.write_text(yaml.safe_dump([entry, {**entry, **broken}]))
    with pytest.raises(ValueError, match=rf"entry 2.*{re.escape(message)}|{re.escape(message)}"):
        load_ledger(path)


@pytest.mark.slow
def test_every_piece_of_evidence_exists_in_the_build_and_the_page_shows_every_entry(book_build):
    """Oracle: the build's own glue data, claim records and section ids."""
    page = html_lib.unescape((book_build.html / "book" / "seed_claims.html").read_text())
    for e in load_ledger(LEDGER):
        assert e["claim"] in page, e["claim"]
        for item in e["evidence"] or []:
            (kind, target), = item.items()
            if kind == "glue":
                chapter, key = target.split("::")
                assert key in book_build.glued(chapter), target
            elif kind == "claim":
                chapter, text = (s.strip() for s in target.split(":", 1))
                statements = [c["statement"] for c in book_build.claims(chapter)]
                assert sum(text in s for s in statements) == 1, target
            else:
                assert kind == "section", item
                chapter, anchor = target.split("#")
                html = (book_build.html / "book" / chapter.replace(".md", ".html")).read_text()
                assert f'id="{anchor}"' in html, target
    assert "[missing" not in page and "[unresolved" not in page
    n = len(load_ledger(LEDGER))
    assert re.search(rf"{n} entries from 5 notes files", page)
