"""A worker pool never outlives, nor hangs, the interpreter that started it: real worker
processes of the MiniLM GGUF, in a real child interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

# Starts a pool and leaves without stopping it, as a library user who forgets to close
# the engine does; multiprocessing then terminates the workers and waits for them.
SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from embellama.backends.pool import WorkerPool
    from embellama.config import ModelConfig

    async def main() -> None:
        pool = WorkerPool(ModelConfig(path=sys.argv[1], n_threads=1), 1)

        async def feeder(runner: object) -> None:
            await asyncio.Event().wait()

        await pool.start(feeder)
        print(*pool.pids(), flush=True)

    if __name__ == "__main__":
        asyncio.new_event_loop().run_until_complete(main())
    """
)


def test_interpreter_exit_ends_a_pool_nobody_stopped(minilm_gguf: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(minilm_gguf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [worker] = map(int, done.stdout.split())
    assert not Path(f"/proc/{worker}").exists()
    assert time.monotonic() - started < 30
