"""Background processes of the server die with it.

MONAI Label runs training, batch inference and scoring as ``python -m
monailabel.interfaces.utils.app`` subprocesses of the server (``subprocess.Popen``, no process
group, no parent-death signal).  When the server is killed (``kill -9``, OOM killer, a closed
terminal), such a child kept running and kept writing labels and the datastore file with nobody
left to read its status.  The server exports its process id (:data:`SERVER_PID_ENV`); every app
instance created in a child process starts :func:`watch_server`, a daemon thread that ends the
child with ``SIGKILL`` as soon as its parent is no longer that server.  Each datastore write is a
single atomic transaction (:mod:`lib.datastore`), so a child killed at any point leaves nothing
half written.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

logger = logging.getLogger(__name__)

#: environment variable holding the server's process id (set in server mode, inherited by children)
SERVER_PID_ENV = "ROBUSTLABEL_SERVER_PID"
#: seconds between two checks of the parent
POLL_INTERVAL_S = 0.5

_started = False


def mark_server_process() -> None:
    """Record this process as the server whose children must not outlive it."""
    os.environ[SERVER_PID_ENV] = str(os.getpid())


def watch_server(poll_interval_s: float = POLL_INTERVAL_S) -> bool:
    """In a child of the server, start the watchdog thread (once); return whether it runs.

    Nothing happens in the server itself or in a process the server did not start.
    """
    global _started
    server_pid = os.environ.get(SERVER_PID_ENV)
    if _started or not server_pid or not server_pid.isdigit() or int(server_pid) == os.getpid():
        return _started
    if os.getppid() != int(server_pid):
        return False  # a grandchild or an unrelated process; its own parent owns it

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(poll_interval_s):
            if os.getppid() != int(server_pid):
                logger.error(f"The monailabel server (pid {server_pid}) is gone; stopping this background task")
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="robustlabel-server-watch", daemon=True).start()
    _started = True
    return True
