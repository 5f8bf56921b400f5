"""An --app module that fails while importing, as a user's module with a bug would."""

from __future__ import annotations

import conveyor_module_that_does_not_exist  # type: ignore[import-not-found]  # noqa: F401
