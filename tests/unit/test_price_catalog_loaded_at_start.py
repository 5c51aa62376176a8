"""genai-prices' catalog is loaded when the gateway is built, before the runtime freezes
what lives as long as the process out of the collector's scans, not on the first priced
request (25 ms and some 16,000 objects on that request's path, scanned by every full
collection after). In a fresh interpreter: this one may have loaded it already."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROGRAM = """
import asyncio, gc, sys
from tollway.config import settings_from_dict
from tollway.server.app import create_app

async def main():
    runtime = create_app(settings_from_dict({"database_url": sys.argv[1]})).runtime
    assert "genai_prices.data" not in sys.modules, "loaded before the start"
    await runtime.start()
    try:
        assert "genai_prices.data" in sys.modules, "not loaded at the start"
        catalog = vars(sys.modules["genai_prices.data"])
        assert all(thing is not catalog for thing in gc.get_objects()), "loaded after the freeze"
    finally:
        await runtime.stop()
    print("ok")

asyncio.run(main())
"""


def test_the_price_catalog_is_loaded_and_frozen_when_the_gateway_starts(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'tollway.db'}"
    done = subprocess.run([sys.executable, "-c", PROGRAM, database], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
