"""The email, draft and web templates (``email/``, ``draft/``, ...), kept at the repository's top level.

The build maps this folder into the package as ``newsletter.templates`` (``package-dir`` in
pyproject.toml), so an installed wheel and an editable checkout both find it with
``importlib.resources.files("newsletter.templates")``. It holds no code.
"""
