"""TensorBoard event files are written without paying for a torch import."""

import subprocess
import sys
import textwrap


def test_metric_writer_writes_events_without_importing_torch(tmp_path):
    code = textwrap.dedent(
        f"""
        import pathlib, sys
        from rnnlab.train.metric_log import MetricWriter
        writer = MetricWriter({str(tmp_path)!r})
        writer._tb.add_scalar("train/loss", 1.5, 3)
        writer._tb.close()
        events = list(pathlib.Path({str(tmp_path)!r}, "tensorboard").glob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 0, events
        assert "torch" not in sys.modules, "tensorboardX pulled in torch"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
