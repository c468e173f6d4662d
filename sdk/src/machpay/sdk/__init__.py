"""MachPay agent SDK: pay per call for HTTP APIs with durable, policy-checked intents.

::

    from machpay.sdk import Agent, SpendPolicy, receipt

    agent = Agent.load(policy=SpendPolicy(max_per_call=5_000))
    with agent.client() as http:
        response = http.get("https://vendor.example/v1/forecast?city=Oslo")
    print(response.json(), receipt(response))
"""

from machpay.sdk.agent import Agent
from machpay.sdk.auth import RECEIPT_EXTENSION, MachPayAuth, receipt
from machpay.sdk.discovery import (
    FileRegistry,
    HttpRegistry,
    Registry,
    RegistryError,
    ServiceOffer,
    StaticRegistry,
)
from machpay.sdk.errors import (
    LedgerError,
    MachPayError,
    PaymentRejected,
    PaymentUnsupported,
    PolicyViolation,
)
from machpay.sdk.identity import AgentWallet, default_key_path, default_state_dir
from machpay.sdk.ledger import AgentLedger, Allocation, ReceiptRecord
from machpay.sdk.payer import Deployment, Payer, Receipt
from machpay.sdk.policy import UNLIMITED, SpendPolicy
from machpay.sdk.telemetry import CallRecord, Outcome, TelemetryPusher

__all__ = [
    "RECEIPT_EXTENSION",
    "UNLIMITED",
    "Agent",
    "AgentLedger",
    "AgentWallet",
    "Allocation",
    "CallRecord",
    "Deployment",
    "FileRegistry",
    "HttpRegistry",
    "LedgerError",
    "MachPayAuth",
    "MachPayError",
    "Outcome",
    "Payer",
    "PaymentRejected",
    "PaymentUnsupported",
    "PolicyViolation",
    "Receipt",
    "ReceiptRecord",
    "Registry",
    "RegistryError",
    "ServiceOffer",
    "SpendPolicy",
    "StaticRegistry",
    "TelemetryPusher",
    "default_key_path",
    "default_state_dir",
    "receipt",
]
