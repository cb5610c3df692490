"""A mixed table to try Fermion's tables on: numbers with blanks, categories, yes/no, a text label, a continuous spend.

    python examples/customers.py            # writes customers.csv (2,000 rows) and new_customers.csv (5 rows)

The standard library only (no pandas, no numpy): `outcome` (churn or stay) depends on tenure, plan,
support calls and membership; `spend` on tenure and plan. The new rows' columns come in another
order, with both labels still in them, as a real export would.
"""

from __future__ import annotations

import csv
import math
import random

COLUMNS = ["id", "tenure_months", "monthly_fee", "plan", "member", "support_calls", "region", "spend", "outcome"]
PLANS = {"basic": 0.0, "plus": 25.0, "pro": 60.0}


def customer(rng: random.Random, n: int) -> dict[str, object]:
    """One customer row; about one cell in twenty of the fee and tenure is left blank."""
    tenure = rng.randint(1, 72)
    plan = rng.choice(list(PLANS))
    member = rng.random() < 0.4
    calls = min(int(rng.expovariate(0.5)), 9)
    score = 1.5 - tenure / 20 + calls * 0.45 - member * 1.2 + (plan == "basic") * 0.8 + rng.gauss(0, 0.5)
    spend = 20 + 1.5 * tenure + PLANS[plan] + rng.gauss(0, 8)
    return {
        "id": n,
        "tenure_months": "" if rng.random() < 0.05 else tenure,
        "monthly_fee": "" if rng.random() < 0.05 else round(15 + PLANS[plan] / 2 + rng.gauss(0, 3), 2),
        "plan": plan,
        "member": "yes" if member else "no",
        "support_calls": calls,
        "region": rng.choice(["north", "south", "east", "west"]),
        "spend": round(spend, 2),
        "outcome": "churn" if 1 / (1 + math.exp(-score)) > 0.5 else "stay",
    }


def main() -> None:
    """Write both files in the current folder."""
    rng = random.Random(0)
    with open("customers.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(customer(rng, n) for n in range(1, 2001))
    with open("new_customers.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(reversed(COLUMNS)))  # any order: columns are matched by name
        writer.writeheader()
        writer.writerows(customer(rng, n) for n in range(2001, 2006))


if __name__ == "__main__":
    main()
