"""Alembic's environment (env.py) and the schema's history (versions/), at the repository's top level.

The build maps this folder into the package as ``newsletter.migrations`` (``package-dir`` in
pyproject.toml), so ``newsletter db upgrade`` finds it with ``importlib.resources`` in an installed
wheel as in a checkout, and ``alembic.ini`` beside it serves ``alembic`` run by hand.
"""
