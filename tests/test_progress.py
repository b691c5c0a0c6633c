import io

from hsens_jax.progress import Progress


def test_progress_line_reports_steps_rate_and_time_left():
    buf = io.StringIO()
    bar = Progress(100, stream=buf)
    bar.update(100, configs=4)
    bar.close()
    text = buf.getvalue()
    assert "100/100 steps" in text and "runs/s" in text and "left" in text


def test_disabled_progress_is_silent():
    buf = io.StringIO()
    bar = Progress(10, stream=buf, enabled=False)
    bar.update(5)
    bar.close()
    assert buf.getvalue() == ""
