"""The ``rnnlab`` process ends without the interpreter's teardown (rnnlab.cli.teardown), yet
loses nothing Python's own exit would have done: a non-daemon thread's last write, the
atexit handlers, buffered standard output, an idle thread pool (which must not hang the
exit), and the exit status. Reference: a real child process, its files and status."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import atexit, concurrent.futures, sys, threading, time
    from pathlib import Path
    from rnnlab.cli import teardown

    out = Path(sys.argv[1])
    pool = concurrent.futures.ThreadPoolExecutor(2)
    pool.submit(lambda: None).result()  # its workers stay, idle, until the exit
    def late():
        time.sleep(0.5)
        (out / "thread.txt").write_text("written")
    threading.Thread(target=late).start()  # non-daemon: the exit waits for it
    atexit.register(lambda: (out / "atexit.txt").write_text("ran"))
    sys.stdout.write("buffered, no newline")
    teardown.exit_process(int(sys.argv[2]))
    """
)


def test_exit_waits_for_threads_runs_atexit_flushes_and_keeps_the_status(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), "3"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "buffered, no newline"
    assert (tmp_path / "thread.txt").read_text() == "written"
    assert (tmp_path / "atexit.txt").read_text() == "ran"


def test_the_command_exits_with_argparse_status(tmp_path):
    run = [sys.executable, "-m", "rnnlab.cli"]
    usage = subprocess.run(run + ["no-such-command"], capture_output=True, text=True, cwd=REPO)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    helped = subprocess.run(run + ["--help"], capture_output=True, text=True, cwd=REPO)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: rnnlab")
