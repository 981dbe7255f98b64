"""Groups, registry models and ledger rows as the gateway holds them; settlements kept for later,
and the error of a billed call while the wallet store is unreachable."""

from __future__ import annotations

from typing import Any

import msgspec

from tollway.core.catalog import ModelInfo
from tollway.core.errors import TollwayError
from tollway.core.money import MICRO


class BillingUnavailable(TollwayError):
    """503 ``billing_unavailable``: the shared wallet (Redis) cannot be reached, so a billed call
    cannot hold its credits; the caller may try again after ``retry_after`` seconds."""

    status = 503
    default_code = "billing_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Group(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    name: str
    description: str = ""
    multiplier: int = MICRO  # price multiplier in parts per million (1.0x)
    restricted: bool = False  # its keys may call only models authorized to it (or to the key)
    created_at: float = 0.0
    updated_at: float = 0.0

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description,
                "multiplier": self.multiplier / MICRO, "multiplier_ppm": self.multiplier,
                "restricted": self.restricted,
                "created_at": self.created_at, "updated_at": self.updated_at}


class ModelRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A row of the model registry (seed 004's ``/admin/model/*``)."""

    id: int
    name: str
    provider: str
    upstream_id: str = ""
    display_name: str = ""
    description: str = ""
    category: str = "chat"
    capabilities: tuple[str, ...] = ("chat",)
    modalities: tuple[str, ...] = ("text", "stream", "openai")
    aliases: tuple[str, ...] = ()
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    price_in: int = 0  # micro-credits per million input tokens
    price_out: int = 0
    credit_cost: int = 0  # micro-credits per request (per image for an image model)
    unit_price: int = 0  # micro-credits per unit of price_unit (core.media.UNITS)
    price_unit: str = ""
    rpm: int | None = None
    tpm: int | None = None
    max_output_tokens: int | None = None
    group_id: int | None = None
    multiple: bool = False
    enabled: bool = True
    created_at: float = 0.0
    updated_at: float = 0.0

    def info(self, base: ModelInfo | None = None) -> ModelInfo:
        """The routable model this row describes (an enabled row only is routed). Over ``base``,
        the code or YAML model of the same name on the same provider, a row left without an
        upstream id, display name or description keeps the base's, and keeps its fallbacks and
        aliases (with the row's own): an admin who only prices or limits a configured model does
        not re-route it."""
        if base is not None and base.provider != self.provider:
            base = None
        aliases = self.aliases if base is None else tuple(dict.fromkeys((*base.aliases, *self.aliases)))
        return ModelInfo(
            id=self.name, provider=self.provider,
            upstream_id=self.upstream_id or (base.upstream_id if base is not None else self.name),
            display_name=self.display_name or (base.display_name if base is not None else "") or self.name,
            description=self.description or (base.description if base is not None else ""), category=self.category,
            capabilities=self.capabilities, modalities=self.modalities, aliases=aliases,
            fallbacks=base.fallbacks if base is not None else (),
            price_in=self.price_in, price_out=self.price_out, credit_cost=self.credit_cost,
            unit_price=self.unit_price, price_unit=self.price_unit, rpm=self.rpm,
            tpm=self.tpm, max_output_tokens=self.max_output_tokens, meta={"registry_id": self.id},
        )

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "provider": self.provider, "upstream_id": self.upstream_id,
            "display_name": self.display_name, "description": self.description, "category": self.category,
            "capabilities": list(self.capabilities), "modalities": list(self.modalities),
            "aliases": list(self.aliases), "config": self.config,
            "price_in": self.price_in / MICRO, "price_out": self.price_out / MICRO,
            "credit_cost": self.credit_cost / MICRO, "price_in_micro": self.price_in,
            "price_out_micro": self.price_out, "credit_cost_micro": self.credit_cost,
            "unit_price": self.unit_price / MICRO, "unit_price_micro": self.unit_price, "price_unit": self.price_unit,
            "rpm": self.rpm, "tpm": self.tpm, "max_output_tokens": self.max_output_tokens,
            "group_id": self.group_id, "multiple": self.multiple, "enabled": self.enabled,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One credit movement. ``amount`` is what the balance moved by (signed micro-credits)."""

    key_id: int
    kind: str  # recharge | charge | refund
    amount: int
    reserved: int = 0
    month: str = ""
    request_id: str | None = None
    model: str | None = None
    note: str | None = None
    created_at: float = 0.0
    id: int | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "key_id": self.key_id, "kind": self.kind, "amount": self.amount / MICRO,
                "amount_micro": self.amount, "reserved_micro": self.reserved, "month": self.month,
                "request_id": self.request_id, "model": self.model, "note": self.note,
                "created_at": self.created_at}


class PendingSettlement(msgspec.Struct, frozen=True, kw_only=True):
    """A served request whose settlement the wallet store could not take: kept in the database
    (beside the ledger) until it is applied to the wallet and booked. ``hold_id`` names the hold
    it releases (a settlement is applied once per hold); ``charge`` is what the request cost."""

    hold_id: str
    key_id: int
    reserved: int
    charge: int
    quota: int | None = None  # the key's monthly quota when it was admitted
    request_id: str
    model: str | None = None
    created_at: float = 0.0
