"""The package list, which pyproject.toml cannot state on its own.

``templates/`` and ``migrations/`` live at the repository's top level but ship inside the package as
``newsletter.templates`` and ``newsletter.migrations`` (the ``package-dir`` table in pyproject.toml
maps them); automatic discovery would not see them under those names, so they are listed here,
beside everything found under ``newsletter/``. All other metadata is in pyproject.toml.
"""

from setuptools import find_packages, setup

SHIPPED_FROM_THE_TOP = ["newsletter.templates", "newsletter.migrations"]

setup(packages=[*find_packages(include=["newsletter", "newsletter.*"]), *SHIPPED_FROM_THE_TOP])
