#!/usr/bin/env python3
"""Serve orders.parquet with datap-rs (DataPress) on the DataFusion backend.

Usage: serve_datap.py PARQUET PORT [WORKERS]

The wheel has no CLI; the server is started from Python and `run()` must be awaited inside
a running event loop. It binds before the dataset is built: poll
GET /api/v1/datasets/orders/status until "state":"published".
Configured as a datap-rs user serving these requests would: an equality index (`mode="list"`)
on the key and on the filter columns — id, category, country (Strata indexes the same: its key
index, and `index = "auto"` picks category and country).
"""

import asyncio
import sys

from datap_rs.datapress import DataPress, DataPressConfig, DatasetConfig


def main() -> None:
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    source, port = sys.argv[1], int(sys.argv[2])
    workers = int(sys.argv[3]) if len(sys.argv) == 4 else 2
    ds = DatasetConfig(
        name="orders",
        source=source,
        format="parquet",
        mode="list",
        index_columns=["id", "category", "country"],
    )
    cfg = DataPressConfig(
        backend="datafusion",
        listen="127.0.0.1",
        port=port,
        workers=workers,
        admin_token="bench",
    )

    async def run() -> None:
        await DataPress(cfg, datasets=[ds]).run()

    asyncio.run(run())


if __name__ == "__main__":
    main()
