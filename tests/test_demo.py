"""`machpay demo` end to end: every component as its own process, a real broker,
a real Solana runtime, and the report's checks (conservation, one proof and one
slash per cheat, bans at the gateways, balances moved by exactly what settled)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from machpay.cli import cli


@pytest.mark.integration
@pytest.mark.slow
def test_the_demo_accounts_for_every_payment(kafka_broker: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "demo",
            "--bootstrap",
            kafka_broker,
            "--agents",
            "3",
            "--calls",
            "90",
            "--workers",
            "2",
            "--run-dir",
            str(tmp_path),
        ],
        env={"MACHPAY_KAFKA__CLIENT_ID": "machpay-test"},
    )
    assert result.exit_code == 0, f"machpay demo failed:\n{result.output}"
    assert "RESULT: every payment accounted for, on Kafka and on-chain" in result.output
    assert "FAILED" not in result.output, result.output
    # The settler pays the vendors the cheats' served calls before slashing their bonds
    # (settle.slash_grace_seconds): some of those calls settled, not all went to the slash.
    (line,) = [x for x in result.output.splitlines() if "the cheats' calls:" in x]
    print(line)
    cheats_settled = int(line.split(" lamports, ")[1].split(" settled")[0].replace(",", ""))
    assert cheats_settled > 0, line
