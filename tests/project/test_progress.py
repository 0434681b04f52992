"""Progress bars (a thin wrapper over tqdm.auto): rate and ETA on a non-terminal stream, the
last state always printed, and silence when disabled."""

import io
import re

from lst_jax.utils.progress import Progress


def test_progress_shows_count_rate_and_eta_on_a_non_tty_stream():
    stream = io.StringIO()                       # like pytest's capture or a CI log
    with Progress(4, desc="full eval: LST", unit="batch", stream=stream) as bar:
        for _ in range(4):
            bar.update(1)
    last = stream.getvalue().replace("\r", "\n").strip().splitlines()[-1]
    # e.g. "full eval: LST: 100%|##########| 4/4 [00:00<00:00, 1234.5batch/s]"
    assert re.search(r"^full eval: LST: 100%.*\| 4/4 \[\d\d:\d\d<\d\d:\d\d, "
                     r"\s*[\d.]+batch/s\]$", last), last
    assert stream.getvalue().endswith("\n")     # the finished bar keeps its line


def test_progress_partial_then_closed_shows_eta_and_written_lines():
    stream = io.StringIO()
    with Progress(10, desc="d", unit="img", stream=stream) as bar:
        bar.update(3)
        bar.write("a message")
    out = stream.getvalue()
    assert "a message\n" in out
    assert re.search(r"3/10 \[\d\d:\d\d<(\d\d:\d\d|\?), \s*([\d.]+|\?)img/s\]", out), out


def test_disabled_progress_prints_nothing(capsys):
    stream = io.StringIO()
    with Progress(5, desc="quiet", enabled=False, stream=stream) as bar:
        bar.update(5)
        bar.write("not shown")
    with Progress(5, desc="quiet", enabled=False) as bar:   # default stream: stderr
        bar.update(2)
    assert stream.getvalue() == ""
    assert capsys.readouterr() == ("", "")
