"""The PostgreSQL store: schema migrations, named queries, and the small API the rest is built on.

All SQL of pgjobs lives in this package (`queries.sql` and `migrations/`); other packages call
the functions of `jobs`, `workers` and `migrating` and never write SQL themselves.
"""
