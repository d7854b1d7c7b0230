"""Package contracts: a light import, and one error hierarchy with stable codes."""

from __future__ import annotations

import subprocess
import sys

from publisher import errors


def test_importing_publisher_does_not_import_torch():
    code = "import sys, publisher; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_error_is_a_publisher_error_and_a_value_error_with_a_distinct_code():
    classes = [errors.PublisherError, errors.ConfigError, errors.DataError, errors.ModelError, errors.BudgetError]
    assert all(issubclass(c, errors.PublisherError) and issubclass(c, ValueError) for c in classes)
    assert len({c.code for c in classes}) == len(classes)
