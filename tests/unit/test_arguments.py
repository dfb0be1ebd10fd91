"""Arguments are judged before anything runs, alike on the command line and in pyproject.toml: timeouts, ranks,
sizes, the script, and an output path that must not overwrite what the script reads."""

from __future__ import annotations

import io
import json

import pytest

from ftdoctor.entry.cli import main
from ftdoctor.entry.settings import ConfigError, from_table, output_problem, parse_gpu_memory, parse_seconds


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "-inf", "abc", ""])
@pytest.mark.parametrize("option", ["--timeout", "--walk-timeout", "--collective-timeout"])
def test_a_timeout_that_is_not_positive_and_finite_is_refused_on_the_command_line(option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "train.py", f"{option}={value}"])
    assert exc.value.code == 2
    assert "positive number of seconds" in capsys.readouterr().err


@pytest.mark.parametrize("value", [-5, 0, float("nan"), float("inf"), "0", True])
@pytest.mark.parametrize("key", ["timeout", "walk-timeout"])
def test_the_same_timeouts_are_refused_in_pyproject(key, value):
    with pytest.raises(ConfigError, match="positive number of seconds"):
        from_table({key: value}, "pyproject.toml")


def test_a_valid_timeout_is_kept():
    assert parse_seconds("2.5", "timeout", "x") == 2.5
    assert from_table({"timeout": 30}, "pyproject.toml").timeout == 30.0


@pytest.mark.parametrize("value", ["0", "9", "-1", "two"])
def test_ranks_are_judged_on_the_command_line_as_in_pyproject(value, capsys):
    with pytest.raises(SystemExit):
        main(["check", "train.py", "--nproc", value])
    assert "number of ranks from 1 to 8" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="from 1 to 8"):
        from_table({"nproc": value}, "pyproject.toml")


def test_a_memory_size_of_nothing_is_refused_alike():
    with pytest.raises(ValueError, match="more than 0"):
        parse_gpu_memory("0GiB")
    with pytest.raises(ConfigError, match="more than 0"):
        from_table({"gpu-memory": 0}, "pyproject.toml")
    assert from_table({"gpu-memory": 1024}, "pyproject.toml").gpu_memory == (1024, None)


def test_a_directory_named_as_script_is_said_to_be_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "project").mkdir()
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert main(["check", "project", "--json"]) == 2
    err = capsys.readouterr().err
    assert "project is a directory, not a script" in err and "no such script" not in err


def _script(tmp_path, body="import helper\nDATA = 'data.html'\n"):
    script = tmp_path / "train.py"
    script.write_text(body)
    (tmp_path / "helper.py").write_text("X = 1\n")
    (tmp_path / "data.html").write_text("<html><body>rows</body></html>\n")
    return str(script)


def test_an_output_over_the_script_or_what_it_reads_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = _script(tmp_path)
    targets = [(script, ["--data", "args.html"])]
    (tmp_path / "args.html").write_text("<html></html>")
    assert "is the script being checked" in output_problem("train.py", targets)
    assert "is a module that train.py imports" in output_problem("helper.py", targets)
    assert "is a file that train.py names" in output_problem("data.html", targets)  # an HTML input, too
    assert "is a file that train.py names" in output_problem("args.html", targets)
    (tmp_path / "notes.txt").write_text("mine")
    assert "is not an HTML page" in output_problem("notes.txt", targets)
    assert "does not exist" in output_problem("missing/report.html", targets)
    assert "is a directory" in output_problem(str(tmp_path), targets)


def test_an_earlier_report_or_a_new_file_may_be_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    targets = [(_script(tmp_path), [])]
    assert output_problem("report.html", targets) is None
    (tmp_path / "report.html").write_text("<!DOCTYPE html>\n<html>earlier report</html>")
    assert output_problem("report.html", targets) is None
    (tmp_path / "empty.html").write_text("")
    assert output_problem("empty.html", targets) is None


def test_html_over_the_script_exits_2_before_running_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = _script(tmp_path, "open('ran', 'w').write('the script ran')\n")
    before = open(script).read()
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    assert main(["check", "train.py", "--json", "--html", "train.py"]) == 2
    assert open(script).read() == before and not (tmp_path / "ran").exists()
    assert "would overwrite it" in json.loads(out.getvalue())["error"]
    assert main(["check", "train.py", "--json", "--html", "nowhere/report.html"]) == 2
    assert not (tmp_path / "ran").exists()
    assert "does not exist" in capsys.readouterr().err


def test_pytest_refuses_a_configured_script_that_is_a_directory(pytester):
    (pytester.path / "project").mkdir()
    pytester.makeini("[pytest]\nftdoctor_scripts = project\nftdoctor_timeout = inf\n")
    result = pytester.runpytest("--ftdoctor")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ftdoctor_timeout* must be a positive number of seconds*"])
    pytester.makeini("[pytest]\nftdoctor_scripts = project\n")
    result = pytester.runpytest("--ftdoctor")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*project is a directory, not a script*"])
