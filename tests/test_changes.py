"""`score --compare-to`: what changed between two account lists (keyaccounts.changes)."""
from __future__ import annotations

import pandas as pd
import pytest
from deploy_support import deployed, ka  # noqa: F401 - deployed: the session's trained workspace

from keyaccounts.changes import CHANGE_KINDS, COLUMNS, changes_path, compare_lists, previous_list
from keyaccounts.errors import InputError


def _list(rows, as_of):
    """A score list as score_accounts returns it: customer_id index, rank, as_of, ..."""
    df = pd.DataFrame(rows, columns=["customer_id", "rank", "churn_probability", "composite_tier"])
    df["as_of"] = pd.Timestamp(as_of)
    return df.set_index("customer_id")


def _previous(rows, as_of="2025-09-01"):
    """The same as io.read_frame gives it back from the CSV: every value a string."""
    df = _list(rows, as_of).reset_index().astype(str)
    return previous_list(df, file="prev.csv")


def test_each_kind_of_change_with_both_dates():
    before = _previous([("a", 1, 0.1, "key"), ("b", 2, 0.6, "key"), ("c", 3, 0.2, "standard"),
                        ("gone", 4, 0.1, "standard")] + [(f"x{i}", 5 + i, 0.1, "standard") for i in range(16)])
    now = _list([("c", 1, 0.7, "strategic"), ("a", 2, 0.1, "key"), ("b", 3, 0.9, "key"), ("new", 4, 0.3, "key")]
                + [(f"x{i}", 5 + i, 0.1, "standard") for i in range(16)], "2025-10-01")
    ch = compare_lists(now, before, risk_high=0.5)
    rows = ch.rows
    assert ch.min_move == 1  # 19 accounts on both lists: 5 % rounds up to 1 place
    got = {(r.customer_id, r.change) for r in rows.itertuples()}
    assert ("new", "new") in got and ("gone", "gone") in got
    assert ("c", "newly_at_risk") in got and ("b", "newly_at_risk") not in got  # b was at risk already
    assert ("c", "moved_up") in got and ("a", "moved_down") in got and ("b", "moved_down") in got
    tier = rows[(rows["customer_id"] == "c") & (rows["change"] == "tier_changed")]
    assert list(tier["detail"]) == ["composite_tier: standard -> strategic"]
    assert (rows["as_of_before"] == "2025-09-01").all() and (rows["as_of_now"] == "2025-10-01").all()
    assert not any(c.startswith("x") for c in rows["customer_id"])  # unchanged accounts are not listed
    c_up = rows[(rows["customer_id"] == "c") & (rows["change"] == "moved_up")].iloc[0]
    assert (c_up.rank_before, c_up.rank_now, c_up.rank_change) == (3, 1, 2)
    # kinds in their fixed order; counts match the rows
    assert list(dict.fromkeys(rows["change"])) == [k for k in CHANGE_KINDS if ch.counts[k]]
    assert sum(ch.counts.values()) == len(rows)


def test_small_moves_on_a_long_list_are_not_movers_and_order_is_free():
    ids = [f"c{i:03d}" for i in range(100)]
    before = _previous([(c, i + 1, 0.1, "key") for i, c in enumerate(ids)])
    swapped = ids[:]
    swapped[0], swapped[1] = swapped[1], swapped[0]  # one place: below 5 of 100
    swapped.insert(20, swapped.pop(90))  # 70 places up
    now = _list([(c, i + 1, 0.1, "key") for i, c in enumerate(swapped)], "2025-10-01")
    ch = compare_lists(now, before)
    assert ch.min_move == 5
    assert {"c000", "c001"}.isdisjoint(ch.rows["customer_id"])
    assert ("c090", "moved_up") in {(r.customer_id, r.change) for r in ch.rows.itertuples()}
    shuffled = compare_lists(now.sample(frac=1, random_state=1), before.sample(frac=1, random_state=2))
    pd.testing.assert_frame_equal(ch.rows, shuffled.rows)


def test_previous_list_is_validated_with_file_column_and_rows():
    good = _list([("a", 1, 0.1, "key")], "2025-09-01").reset_index().astype(str)
    with pytest.raises(InputError, match="no column rank") as e:
        previous_list(good.drop(columns="rank"), file="prev.csv")
    assert "prev.csv" in str(e.value)
    bad = pd.concat([good, good.assign(customer_id="b", rank="first")])
    with pytest.raises(InputError, match="not numbers") as e:
        previous_list(bad.reset_index(drop=True), file="prev.csv")
    assert "column 'rank'" in str(e.value) and "first" in str(e.value)
    with pytest.raises(InputError, match="repeated"):
        previous_list(pd.concat([good, good]), file="prev.csv")
    with pytest.raises(InputError, match="one as_of"):
        previous_list(pd.concat([good, good.assign(customer_id="b", as_of="2025-01-01")]), file="prev.csv")


def test_changes_path_sits_beside_the_list():
    assert changes_path("out/scores.csv") == "out/scores_changes.csv"
    assert changes_path("out/scores.csv.gz") == "out/scores_changes.csv"
    assert changes_path("/tmp/a.b.parquet") == "/tmp/a.b_changes.csv"


@pytest.mark.slow
def test_score_and_report_compare_to_the_previous_list(deployed):
    root = deployed
    prev = root / "cmp_before.csv"
    res = ka(root, "score", "-t", "d/tx.csv", "--as-of", "2025-09-01", "--out", str(prev), "--top", "60",
             "--reasons", "none")
    assert res.returncode == 0, res.stdout
    res = ka(root, "score", "-t", "d/transactions.csv", "--as-of", "2025-12-01", "--out", "cmp_now.csv",
             "--top", "60", "--reasons", "none", "--compare-to", str(prev))
    assert res.returncode == 0, res.stdout
    ch = pd.read_csv(root / "cmp_now_changes.csv", keep_default_na=False)
    assert list(ch.columns) == COLUMNS
    assert set(ch["as_of_before"]) == {"2025-09-01"} and set(ch["as_of_now"]) == {"2025-12-01"}
    before = pd.read_csv(prev, dtype={"customer_id": str})
    now = pd.read_csv(root / "cmp_now.csv", dtype={"customer_id": str})
    new = set(now["customer_id"]) - set(before["customer_id"])
    assert new and set(ch.loc[ch["change"] == "new", "customer_id"]) == new
    assert set(ch.loc[ch["change"] == "gone", "customer_id"]) == set(before["customer_id"]) - set(now["customer_id"])
    assert "changes since 2025-09-01" in res.stdout
    # the report's section, from the same comparison
    res = ka(root, "report", "-t", "d/transactions.csv", "--as-of", "2025-12-01", "--out", "cmp.html",
             "--compare-to", str(prev))
    assert res.returncode == 0, res.stdout
    html = (root / "cmp.html").read_text()
    assert 'id="what-changed"' in html and "Against the list as of 2025-09-01" in html
    # a list that is not a score output: exit 2 before anything is scored or written
    res = ka(root, "score", "-t", "d/tx.csv", "--as-of", "2025-12-01", "--out", "never.csv",
             "--compare-to", "d/customers.csv")
    assert res.returncode == 2 and "no column rank" in res.stdout and "Traceback" not in res.stdout, res.stdout
    assert not (root / "never.csv").exists() and not (root / "never_changes.csv").exists()
