"""One wrapper turns a command's failures into exit codes, by the exception's type."""

from __future__ import annotations

import pytest

from hpc_seaice.command import (
    EXIT_CTRL_C,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USER_ERROR,
    run_command,
)
from hpc_seaice.errors import PeerLost, UserError
from hpc_seaice.runtime import distributed as hdist


def _raise(exc: BaseException):
    def body() -> int:
        raise exc

    return body


@pytest.mark.parametrize(
    ("body", "code", "stderr"),
    [
        (lambda: None, EXIT_OK, ""),
        (lambda: EXIT_INTERRUPTED, EXIT_INTERRUPTED, ""),
        (_raise(UserError("config key 'x': bad")), EXIT_USER_ERROR, "hpc-seaice probe: error: config key 'x': bad\n"),
        (_raise(PeerLost("lost peer: n2")), EXIT_FAILED, "hpc-seaice probe: error: lost peer: n2\n"),
        (_raise(KeyboardInterrupt()), EXIT_CTRL_C, "hpc-seaice probe: interrupted\n"),
    ],
)
def test_failures_become_exit_codes_and_one_line(body, code, stderr, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert run_command("probe", body) == code
    assert capsys.readouterr().err == stderr


def test_a_bug_keeps_its_traceback(capsys):
    assert run_command("probe", _raise(ValueError("a bug"))) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: a bug" in err


def test_user_errors_are_said_by_rank_zero_only(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # a launched rank before its process group exists
    assert run_command("probe", _raise(UserError("bad"))) == EXIT_USER_ERROR
    assert capsys.readouterr().err == ""
    assert run_command("probe", _raise(PeerLost("lost peer"))) == EXIT_FAILED  # every rank says what it saw
    assert "lost peer" in capsys.readouterr().err


def test_a_collective_failure_is_peer_lost_only_in_a_process_group():
    with pytest.raises(RuntimeError) as info, hdist.collective("all-reduce"):
        raise RuntimeError("Connection closed by peer")
    assert type(info.value) is RuntimeError  # one process: nothing to lose, the error stays what it is
