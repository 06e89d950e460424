"""The one command table: every command round-trips the wire, and anything else is a clear refusal."""

from __future__ import annotations

import dataclasses

import pytest

from engine import commands as cmd
from engine import events as ev
from engine.protocol import ProtocolError, decode_command, encode_command, parse_line

EXAMPLES = (cmd.Pause(), cmd.Resume(), cmd.Step(3), cmd.SetHyperparams({"lr_g": 1e-4}), cmd.SaveCheckpoint(),
            cmd.ExportSamples("a.png"), cmd.SampleFresh(seed=7, digit=3, count=64), cmd.RollBack("best", 0.5),
            cmd.Stop(save=False))


def test_every_command_of_the_table_round_trips_the_wire_and_has_an_example():
    assert {type(c) for c in EXAMPLES} == {spec.record for spec in cmd.COMMANDS}
    for command in EXAMPLES:
        assert decode_command(parse_line(encode_command(command))) == command
        assert cmd.from_wire(cmd.to_wire(command)) == command


@pytest.mark.parametrize("message, says", [
    ({"command": "launch_missiles"}, "unknown command 'launch_missiles'; known: pause, resume"),
    ({"command": 7}, "unknown command 7"),
    ({}, "unknown command None"),
    ({"command": "pause", "now": True}, "pause takes no 'now'"),
    ({"command": "step", "count": 0}, "step count must be a whole number from 1 to 10000"),
    ({"command": "set_hyperparams", "values": {"lr_g": -1}}, "lr_g"),
    ({"command": "set_hyperparams", "values": {"batch_size": 8}}, "only lr_g, lr_d"),
    ({"command": "roll_back", "to": "yesterday"}, "roll_back 'to' must be"),
    ({"command": "export", "path": "../../etc/passwd"}, "must be a file name inside the run's exports/"),
    ({"command": "stop", "save": "yes"}, "stop 'save' must be true or false"),
])
def test_an_unknown_or_malformed_command_is_a_one_line_refusal(message, says):
    with pytest.raises(ProtocolError) as refused:
        decode_command(message)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def test_an_object_that_is_no_command_is_refused_by_the_sender_and_warned_about_by_the_runner(make_runner):
    @dataclasses.dataclass(frozen=True)
    class Launch:
        target: str = "moon"

    with pytest.raises(ProtocolError, match="Launch is not a gan-tui command"):
        encode_command(Launch())  # type: ignore[arg-type]
    runner, sink = make_runner()
    runner.submit(Launch())  # type: ignore[arg-type]
    assert runner.tick()
    warning = next(e for e in sink.drain() if isinstance(e, ev.WarningRaised))
    assert warning.kind == "command" and "unknown command" in warning.message and "Launch" in warning.message
    runner.abandon()


def test_commands_sent_before_a_stop_happen_and_pausing_before_it_is_moot(make_runner):
    runner, sink = make_runner(steps=10**6)
    runner.tick()
    for command in (cmd.Pause(), cmd.SetHyperparams({"lr_g": 3e-4}), cmd.Stop(), cmd.SetHyperparams({"lr_g": 1e-4})):
        runner.submit(command)
    assert not runner.tick()
    events = sink.drain()
    assert not any(isinstance(e, ev.StateChanged) and e.state == ev.RunState.PAUSED for e in events)
    assert [e.new["lr_g"] for e in events if isinstance(e, ev.HyperparamsChanged)] == [3e-4]
    assert runner.cfg.lr_g == 3e-4 and isinstance(events[-1], ev.RunFinished)
    assert events[-1].state == ev.RunState.STOPPED
