"""An application that stores an order and enqueues its confirmation in one transaction.

    PGJOBS_DATABASE_URL=... DB_PASSWORD=... python deploy/examples/order_app.py

Run after `make demo KEEP=1` (its printed exports), it writes an order into a table of its own
next to the pgjobs schema and enqueues a `sleep` job for it (the stand-in for "send the
confirmation e-mail"); a second order is rolled back and leaves no job behind.
"""

from __future__ import annotations

import os

import psycopg

import pgjobs


def main() -> None:
    with psycopg.connect(os.environ["PGJOBS_DATABASE_URL"], password=os.environ.get("DB_PASSWORD")) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS example_orders (id serial PRIMARY KEY, item text NOT NULL)")
        conn.commit()

        (order,) = conn.execute("INSERT INTO example_orders (item) VALUES ('book') RETURNING id").fetchone()
        job = pgjobs.enqueue(conn, "sleep", args={"seconds": 1, "order": order}, priority="High")
        conn.commit()  # the order and its job, together
        print(f"order {order}: confirmation job {job}")

        conn.execute("INSERT INTO example_orders (item) VALUES ('lamp')")
        pgjobs.enqueue(conn, "sleep", args={"seconds": 1})
        conn.rollback()  # neither the order nor its job
        print("second order rolled back: no job")


if __name__ == "__main__":
    main()
