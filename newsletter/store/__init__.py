"""Subscribers and (later) the send ledger in SQL: the only package that talks to the database.

- ``db``: engines (SQLite pragmas), sessions, Alembic upgrade and the newest-revision gate.
- ``models``: the tables; ``subscribers``: ``SubscriberRepository`` and ``audience()`` for sends.
- ``importer`` (``rows``, ``rejects``, ``chunks``; + ``bulk``): streaming CSV import;
  ``segments``: tag expressions compiled to SQL.
- ``addresses`` and ``privacy``: address normalisation and suppression hashes.
- ``reports``: a send's deliveries, events and events per hour, counted for ``newsletter report``.
"""
