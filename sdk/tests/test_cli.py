"""`machpay agent keygen|address|pay|history` through the real `machpay` entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from machpay.cli import cli
from machpay.protocol import load_keypair

from .conftest import Served


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "agent",
            "--key",
            str(tmp_path / "agent.json"),
            "--state-dir",
            str(tmp_path / "st"),
            *args,
        ],
        catch_exceptions=False,
    )
    return result.exit_code, result.stdout, result.stderr


def test_keygen_then_address(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, "keygen")
    assert code == 0, err
    assert out.strip() == load_keypair(tmp_path / "agent.json").address
    code, again, _ = run(tmp_path, "address")
    assert (code, again) == (0, out)
    code, _, err = run(tmp_path, "keygen")
    assert code != 0
    assert "--force" in err


def test_address_without_a_key_says_how_to_make_one(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, "address")
    assert code != 0
    assert "machpay agent keygen" in err


def test_pay_prints_body_and_receipt_then_history(tmp_path: Path, served: Served) -> None:
    run(tmp_path, "keygen")
    code, out, err = run(tmp_path, "pay", f"{served.url}/v1/forecast?city=Oslo")
    assert code == 0, err
    assert json.loads(out)["paid"] == 1_000
    assert "paid 1000 lamports" in err
    assert served.app.accepted[0].id.hex() in err
    code, out, err = run(
        tmp_path,
        "pay",
        "-d",
        '{"text":"hei"}',
        "-H",
        "Content-Type: application/json",
        "--json",
        f"{served.url}/v1/translate",
    )
    assert code == 0, err
    assert json.loads(out)["method"] == "POST"
    receipt = json.loads(err.splitlines()[-1])
    assert receipt["cumulative"] == 3_500  # same vendor, same channel: 1000 + 2500
    code, out, _ = run(tmp_path, "history", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["service"] for r in rows] == ["translate", "weather"]


def test_pay_max_price_refuses(tmp_path: Path, served: Served) -> None:
    run(tmp_path, "keygen")
    code, out, err = run(tmp_path, "pay", "--max-price", "999", f"{served.url}/v1/forecast")
    assert code != 0
    assert "max_per_call" in err
    assert out == ""
    assert served.app.accepted == []


def test_pay_a_free_url(tmp_path: Path, served: Served) -> None:
    run(tmp_path, "keygen")
    code, _, err = run(tmp_path, "pay", "-X", "get", f"{served.url}/free")
    assert code == 0
    assert "not paid" in err


def test_help_documents_every_command(tmp_path: Path) -> None:
    for command in ("keygen", "address", "pay", "history"):
        code, out, _ = run(tmp_path, command, "--help")
        assert code == 0
        assert "Usage:" in out
    _, out, _ = run(tmp_path, "pay", "--help")
    for option in ("-X", "-d", "--max-price", "--pin-deployment"):
        assert option in out


def test_pay_with_a_policy_file(tmp_path: Path, served: Served) -> None:
    run(tmp_path, "keygen")
    policy = tmp_path / "policy.toml"
    policy.write_text("max_per_vendor = 1500\n")
    code, _, err = run(tmp_path, "pay", "--policy", str(policy), f"{served.url}/v1/forecast")
    assert code == 0, err
    code, _, err = run(tmp_path, "pay", "--policy", str(policy), f"{served.url}/v1/forecast")
    assert code != 0
    assert "max_per_vendor" in err
    policy.write_text("max_per_vendr = 1\n")
    code, _, err = run(tmp_path, "pay", "--policy", str(policy), f"{served.url}/v1/forecast")
    assert code != 0
    assert "max_per_vendr" in err


def test_owner_policy_file_is_the_default(
    tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "owner.toml"
    policy.write_text("max_per_call = 999\n")
    monkeypatch.setenv("MACHPAY_AGENT_POLICY", str(policy))
    run(tmp_path, "keygen")
    code, _, err = run(tmp_path, "pay", f"{served.url}/v1/forecast")
    assert code != 0
    assert "max_per_call" in err
    from machpay.sdk import Agent

    with Agent.load(tmp_path / "agent.json", state_dir=tmp_path / "st") as agent:
        assert agent.policy.max_per_call == 999
