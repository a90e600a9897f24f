"""log_preference calls per second over stdio (each a distinct explicit pair, so each is a real insert),
and pairs per second when they come in batches of 500 (`pairs=[...]`).

Baselines in the same run: raw sqlite-utils inserts of the same rows into a WAL database, one
transaction each, and the service layer called directly (no MCP): the gap between that and the tool
call is the MCP SDK's own per-call cost.
"""

from __future__ import annotations

import os
import tempfile
import time

import anyio
import sqlite_utils
from mcp import Client

from _common import stdio_server

CALLS = 300


def rows(n: int) -> list[dict]:
    return [{"prompt": f"task {i}", "chosen": f"def f():\n    return {i}\n", "rejected": f"def f():\n    return {-i - 1}\n",
             "chosen_reward": 0.9, "rejected_reward": 0.2} for i in range(n)]


async def main() -> None:
    db = sqlite_utils.Database(tempfile.mktemp(suffix=".db"))
    db.enable_wal()
    started = time.perf_counter()
    for row in rows(CALLS):
        db["preferences"].insert(row)
    raw_rate = CALLS / (time.perf_counter() - started)

    home = tempfile.mkdtemp(prefix="roopik-bench-")
    os.environ["ROOPIK_RL_HOME"] = home
    from roopik_rl_mcp.config import paths
    from roopik_rl_mcp.preferences import log_preference
    from roopik_rl_mcp.schemas import LogPreferenceInput
    from roopik_rl_mcp.store import Store

    store = Store(paths().db)
    started = time.perf_counter()
    for row in rows(CALLS):
        log_preference(store, LogPreferenceInput(**row))
    service_rate = CALLS / (time.perf_counter() - started)

    async with Client(stdio_server()) as client:
        await client.list_tools()
        started = time.perf_counter()
        for row in rows(CALLS):
            result = await client.call_tool("log_preference", row)
            assert not result.is_error and len(result.structured_content["created"]) == 1
        rate = CALLS / (time.perf_counter() - started)
        started = time.perf_counter()
        for row in rows(CALLS // 3):  # the same pairs again: all detected as duplicates
            result = await client.call_tool("log_preference", row)
            assert result.structured_content["skipped"][0]["reason"].startswith("duplicate")
        dup_rate = (CALLS // 3) / (time.perf_counter() - started)
        batch_rows = [{**row, "prompt": f"batch {row['prompt']}"} for row in rows(CALLS * 10)]
        started = time.perf_counter()
        for start in range(0, len(batch_rows), 500):
            result = await client.call_tool("log_preference", {"pairs": batch_rows[start:start + 500]})
            assert not result.is_error and len(result.structured_content["created"]) == 500
        batch_rate = len(batch_rows) / (time.perf_counter() - started)
    print(f"log_preference, {CALLS} distinct explicit pairs, sequential calls over stdio")
    print(f"  raw sqlite-utils insert (baseline) {raw_rate:9.0f} rows/s")
    print(f"  service layer, same process        {service_rate:9.0f} calls/s  (validation, dedup, insert)")
    print(f"  log_preference (new pairs)         {rate:9.0f} calls/s")
    print(f"  log_preference (duplicates)        {dup_rate:9.0f} calls/s")
    print(f"  log_preference(pairs=[500 x])      {batch_rate:9.0f} pairs/s  ({batch_rate / rate:.1f}x single calls)")


if __name__ == "__main__":
    anyio.run(main)
