"""Helpers for the shared public datasets (``../shared/data``) where a column mapping is not enough.

Every helper is pure: it takes a folder or a file, reads through `keyaccounts.io.read_frame`,
and returns *raw* frames whose columns already carry the canonical names. The values are the
files' own text (blanks are missing values); pass each frame through
`keyaccounts.schemas.prepare_table`, which applies the boundary policy (drop and count what
cannot be attributed or placed in time, fail on structural problems). Nothing here cleans
values behind the policy's back.

    from keyaccounts.datasets import SHARED_DATA, MAVEN_STAGES, maven_tables
    from keyaccounts.schemas import prepare_table
    raw = maven_tables(SHARED_DATA / "maven_crm_sales_opportunities")
    opps, report = prepare_table(raw["opportunities"], "opportunities", file="maven", stages=MAVEN_STAGES)

The folder is `SHARED_DATA` (a sibling ``shared/data`` of the repository), or the folder named
by the environment variable ``KEYACCOUNTS_SHARED_DATA``.

Pipelines cannot call Python, so ``python -m keyaccounts.datasets maven --out data/maven``
writes the Maven tables as canonical CSV files for ``pipelines/maven.yaml``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from .config import ReadOptions, StageConfig
from .io import read_frame


def shared_data() -> Path:
    """The shared data folder: $KEYACCOUNTS_SHARED_DATA, else ``<repo>/../shared/data``."""
    env = os.environ.get("KEYACCOUNTS_SHARED_DATA")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


#: The shared data folder as it was when this module was imported (see `shared_data`).
SHARED_DATA = shared_data()

# ---------------------------------------------------------------- CDNOW

#: CDNOW_master.txt maps by columns alone (customer_id already has its canonical name).
CDNOW_COLUMNS = {"timestamp": "date", "amount": "dollar_value", "quantity": "number_of_cds"}
CDNOW_DATE_FORMAT = "%Y%m%d"
CDNOW_SAMPLE_NAMES = ["customer_id", "sample_customer_id", "timestamp", "quantity", "amount"]


def cdnow_sample(path: str | Path) -> pd.DataFrame:
    """The header-less CDNOW 1/10 sample as a raw transactions frame.

    The file's five whitespace-separated columns are the master customer id (zero-padded, the
    same ids as CDNOW_master.txt), the sample's own id 1..2357, the date (YYYYMMDD, pass
    ``date_format=CDNOW_DATE_FORMAT``), the number of CDs and the dollar value. customer_id is
    the master id, so sample and master rows join; sample_customer_id is kept alongside.
    """
    return read_frame(path, ReadOptions(header=False, names=CDNOW_SAMPLE_NAMES))


# ---------------------------------------------------------------- Maven CRM

#: Maven's deal_stage vocabulary: Prospecting -> Engaging -> Won / Lost.
MAVEN_STAGES = StageConfig(open=["Prospecting", "Engaging"], won=["Won"], lost=["Lost"])
MAVEN_OPEN = ("Prospecting", "Engaging")


def product_key(names: pd.Series) -> pd.Series:
    """Product names compared without case or spaces: 'GTXPro' and 'GTX Pro' are one product."""
    return names.astype("str").str.replace(r"\s+", "", regex=True).str.lower().where(names.notna())


def _maven_opportunities(pipe: pd.DataFrame, products: pd.DataFrame, amount: str) -> pd.DataFrame:
    """sales_pipeline.csv as canonical opportunities (see `maven_tables`), products spelled as in
    products.csv and the amount chosen by `amount`."""
    by_key = products.assign(key=product_key(products["product"])).drop_duplicates("key").set_index("key")
    key = product_key(pipe["product"])
    product = key.map(by_key["product"]).fillna(pipe["product"])
    list_price = key.map(by_key["sales_price"])
    if amount == "list_price":
        deal_amount = list_price
    elif amount == "close_value":
        deal_amount = pipe["close_value"].where(~pipe["deal_stage"].isin(MAVEN_OPEN), list_price)
    else:
        raise ValueError(f"amount must be 'list_price' or 'close_value', not {amount!r}")
    return pd.DataFrame({
        "opportunity_id": pipe["opportunity_id"],
        "created_date": pipe["engage_date"],
        "stage": pipe["deal_stage"],
        "amount": deal_amount,
        "customer_id": pipe["account"],
        "owner": pipe["sales_agent"],
        "product": product,
        "closed_date": pipe["close_date"],
        "close_value": pipe["close_value"],
        "list_price": list_price,
    })


def maven_tables(folder: str | Path, *, amount: str = "list_price") -> dict[str, pd.DataFrame]:
    """The Maven CRM files as raw canonical frames: opportunities, stage_history, customers and
    transactions. Pass them to `prepare_table` with ``stages=MAVEN_STAGES``.

    opportunities (one row per row of sales_pipeline.csv, 8,800)
        opportunity_id; created_date = engage_date; stage = deal_stage; customer_id = account
        (blank on 1,425 open deals: an opportunity may lack a customer); owner = sales_agent;
        product, spelled as in products.csv (sales_pipeline says 'GTXPro', products.csv
        'GTX Pro'); closed_date = close_date (open deals: blank).
        amount, by the `amount` argument:
          'list_price' (default): the product's list price (products.csv sales_price) for
            every deal - a value known while the deal is open.
          'close_value': close_value for Won and Lost deals and the list price for deals
            still open at the end of the data. Beware: close_value is only known at the close
            and is 0 on every Lost deal, so as of any date before a deal's close its amount
            gives the outcome away (deal features would see amount 0 = will be lost).
        close_value and list_price ride along as extra (unread) columns.
        Prospecting deals (500) have no engage_date, so nothing places them in time: their
        created_date stays blank and `prepare_table` drops and counts them as
        ``blank_created_date``. No date is invented for them.
    stage_history (derived from the two dates; the data has no history of its own)
        (opportunity_id, 'Engaging', engage_date) for every deal with an engage_date, and
        (opportunity_id, 'Won'/'Lost', close_date) for closed deals. The Prospecting step before
        Engaging is never dated, so it has no rows; nor do the 500 Prospecting deals.
    customers (accounts.csv, 85)
        customer_id = name = account; industry = sector (as spelled: 'technolgy');
        region = office_location (a country, e.g. 'Philipines' as spelled). No owner: every
        account's deals are spread over 10-30 sales agents, so no single owner is derivable
        (the most frequent agent would also read deals after any as_of). revenue, employees,
        year_established and subsidiary_of ride along as extra (unread) columns; accounts.csv
        has no signup date (year_established is the company's founding year).
    transactions (the Won deals, 4,238): a won deal is a sale of close_value to the account
        at close_date; invoice_id = opportunity_id, product as above. Lost and open deals are
        not sales and are left out.
    """
    folder = Path(folder)
    pipe = read_frame(folder / "sales_pipeline.csv")
    accounts = read_frame(folder / "accounts.csv")
    opportunities = _maven_opportunities(pipe, read_frame(folder / "products.csv"), amount)
    product = opportunities["product"]

    engaged = pipe[pipe["engage_date"].notna()]
    closed = pipe[pipe["deal_stage"].isin(["Won", "Lost"])]
    stage_history = pd.concat([
        pd.DataFrame({"opportunity_id": engaged["opportunity_id"], "stage": "Engaging",
                      "changed_at": engaged["engage_date"]}),
        pd.DataFrame({"opportunity_id": closed["opportunity_id"], "stage": closed["deal_stage"],
                      "changed_at": closed["close_date"]}),
    ], ignore_index=True).sort_values(["opportunity_id", "changed_at"], kind="stable", ignore_index=True)

    customers = pd.DataFrame({
        "customer_id": accounts["account"],
        "name": accounts["account"],
        "industry": accounts["sector"],
        "region": accounts["office_location"],
    }).join(accounts[["revenue", "employees", "year_established", "subsidiary_of"]])

    won = pipe[pipe["deal_stage"] == "Won"]
    transactions = pd.DataFrame({
        "customer_id": won["account"],
        "timestamp": won["close_date"],
        "amount": won["close_value"],
        "invoice_id": won["opportunity_id"],
        "product": product[won.index],
    }).reset_index(drop=True)

    return {"opportunities": opportunities, "stage_history": stage_history, "customers": customers,
            "transactions": transactions}


# ---------------------------------------------------------------- IBM receivables

#: WA_Fn-UseC_-Accounts-Receivable.csv as invoices. DaysToSettle and DaysLate are derived from
#: the dates (leakage) and are not read; PaperlessDate/PaperlessBill/Disputed/countryCode neither.
IBM_RECEIVABLES_INVOICES = {"invoice_id": "invoiceNumber", "customer_id": "customerID",
                            "issue_date": "InvoiceDate", "due_date": "DueDate",
                            "paid_date": "SettledDate", "amount": "InvoiceAmount"}
#: The same file as transactions: each invoice is a sale billed on its invoice date.
IBM_RECEIVABLES_TRANSACTIONS = {"customer_id": "customerID", "timestamp": "InvoiceDate",
                                "amount": "InvoiceAmount", "invoice_id": "invoiceNumber"}
IBM_RECEIVABLES_DATE_FORMAT = "%m/%d/%Y"


# ---------------------------------------------------------------- Complete Journey, online grocer

def completejourney_transactions(folder: str | Path) -> pd.DataFrame:
    """dunnhumby's Complete Journey baskets as raw transactions: one row per basket.

    customer_id = household_id, timestamp = date_local (calendar mapped to 2017 by the R
    package; only the spacing is real), amount = sales_value (the net basket value; line
    quantities have outliers and are not read), invoice_id = basket_id."""
    b = read_frame(Path(folder) / "baskets.csv.gz")
    return pd.DataFrame({"customer_id": b["household_id"], "timestamp": b["date_local"],
                         "amount": b["sales_value"], "invoice_id": b["basket_id"]})


#: The online grocer's log has purchase days and no amounts: each purchase day becomes one
#: transaction of this many units, so counts and churn are modelled and spend is not a value.
GROCERY_UNIT_AMOUNT = 1.0


def grocery_transactions(folder: str | Path) -> pd.DataFrame:
    """BTYDplus' groceryElog (cust, date; no amounts) as raw transactions: customer_id = cust,
    timestamp = date, amount = GROCERY_UNIT_AMOUNT per row. Value metrics on it are counts of
    purchase days, not money: the suite reports churn only for this data set."""
    e = read_frame(Path(folder) / "groceryElog.csv")
    return pd.DataFrame({"customer_id": e["cust"], "timestamp": e["date"], "amount": GROCERY_UNIT_AMOUNT})


# ---------------------------------------------------------------- export for pipelines

def main(argv: list[str] | None = None) -> int:
    """``python -m keyaccounts.datasets maven [--source FOLDER] [--out data/maven]``"""
    from .io import write_tables
    ap = argparse.ArgumentParser(prog="python -m keyaccounts.datasets",
                                 description="Write shared-dataset tables as canonical CSV files for a pipeline.")
    ap.add_argument("dataset", choices=["maven"])
    ap.add_argument("--source", type=Path, default=None, help="the dataset folder (default: under the shared data)")
    ap.add_argument("--out", type=Path, default=Path("data/maven"), help="output folder (default: data/maven)")
    args = ap.parse_args(argv)
    source = args.source or shared_data() / "maven_crm_sales_opportunities"
    paths = write_tables(maven_tables(source), args.out, "csv")
    for p in paths.values():
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
