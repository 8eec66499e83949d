"""Foreground commands: logging that is undone when the command returns, and SIGTERM
turned into a clean stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from controlplane.cli.running import logging_to_stderr, run_until_signalled
from tests.cli.conftest import shoal


def test_logging_is_undone_when_the_block_ends() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with logging_to_stderr(logging.DEBUG):
        assert root.level == logging.DEBUG
        assert len(root.handlers) == len(handlers) + 1
        logging.getLogger("shoal.test").debug("while running")
    assert (root.handlers, root.level) == (handlers, level)


def test_a_command_run_in_process_leaves_no_handler_behind() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    result = shoal("manager", "--discovery", "nope://x", "--listen", "127.0.0.1:0")
    assert result.exit_code == 2, result.output
    assert "nope" in result.stderr
    assert (root.handlers, root.level) == (handlers, level)
    logging.getLogger("shoal.test").error("after the command: no closed stream to write to")


def test_sigterm_asks_for_a_clean_stop_and_the_handlers_go_afterwards() -> None:
    async def main() -> str:
        stop = asyncio.Event()

        async def serve() -> str:
            os.kill(os.getpid(), signal.SIGTERM)
            await stop.wait()
            return "stopped cleanly"

        return await run_until_signalled(serve(), on_signal=stop.set)

    assert asyncio.run(main()) == "stopped cleanly"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
