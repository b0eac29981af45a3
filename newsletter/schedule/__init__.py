"""Scheduled sends: ``newsletter schedule`` records them, ``newsletter worker`` starts them on time.

The send row is the truth; APScheduler (3.x, its SQLAlchemy job store in the service's own database)
is the alarm clock. A job carries only an id (``send:ID`` for a one-off send, ``rule:ID`` for a
standing weekly rule), never rendered content, so what goes out is the issue file as it is at send
time, checked and rendered then. Because the row is the truth:

* the worker reconciles on start (and every few seconds): a scheduled send without a job gets one,
  a job whose send is gone, cancelled or started is removed; a lost job store loses no send;
* lateness is judged against the row's ``scheduled_at``, not APScheduler's misfire handling: within
  ``[schedule] misfire_grace_seconds`` a late send still goes, past it the send becomes ``missed``;
* two workers on one database may both fire a job; the send's ``scheduled -> sending`` update (and a
  rule's ``last_occurrence``) decides which one acts, so nothing starts twice.

Modules: ``times`` (local times, zones, weekly triggers), ``firing`` (what a due job does),
``jobs`` (the APScheduler side: job store, job ids, reconcile), ``service`` (what the CLI calls),
``worker`` (the foreground worker).
"""
