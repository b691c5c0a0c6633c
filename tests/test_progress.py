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


def test_estimate_moves_within_running_work_and_never_passes_it():
    import time

    buf = io.StringIO()
    bar = Progress(1000, stream=buf)
    bar.expect(100, 2)
    time.sleep(0.02)
    bar.update(100, 2)  # 100 units in ~20 ms: the measured rate
    bar.expect(900, 18)
    time.sleep(0.05)
    line = bar._line()
    assert line.split()[2].startswith("~") and "100/1000" in line  # the estimate, marked, beyond the done part
    shown = float(line.split()[2].strip("~%"))
    assert 10.0 < shown <= 100 * (100 + 0.99 * 900) / 1000
    bar.close()


def test_sweep_progress_says_what_it_does(small_digits, capsys):
    from hsens_jax.engine.sweep import run_sweep
    from hsens_jax.space import Float, Space

    space = Space([Float("learning_rate", 1e-3, 0.1, log=True)])
    run_sweep(small_digits, space, space.sample(2), fixed={"steps": 3, "width": 4, "depth": 1}, n_evals=1,
              progress=True)
    err = capsys.readouterr().err
    assert "[planning]" in err and "compiling group 1/1" in err and "runs/s" in err and "100.0%" in err
