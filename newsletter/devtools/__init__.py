"""Tools for developing, testing and benchmarking the newsletter, never part of a real send.

:mod:`newsletter.devtools.fake_esp` serves loopback fakes of the providers' sending APIs. Tests,
benchmarks and ``newsletter dev`` import it; nothing in the data path does (``tests/test_layers.py``).
"""
