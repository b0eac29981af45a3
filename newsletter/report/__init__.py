"""What became of a send: the last stop of the data path, after the provider's events are stored.

issue file -> model -> render -> audience -> deliveries -> ESP -> events -> *report*. The counting is
SQL in ``newsletter.store.reports``; this package turns the counts into rates and judgements and
shows them:

- ``collect``: an issue (file or date) -> its sends -> their figures, from the database;
- ``model``: :class:`~newsletter.report.model.SendReport`: rates, their denominators, the
  complaint-rate verdict, and the ``--json`` document;
- ``table``: the rich tables ``newsletter report`` prints;
- ``plot``: the ``--plot`` chart (matplotlib, imported only when drawing).
"""
