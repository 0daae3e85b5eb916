"""Account, AccountHistory, User, Territory2 (+ Type, Model), UserTerritory2Association,
ObjectTerritory2Association, DatedConversionRate / CurrencyType -> the seven reference
tables of CONTRACT.md section 2, as rows of text in ``REFERENCE_FILE_COLUMNS`` order.

Each function returns ``(rows, rejects)``; a row that is not mapped, or only in part,
becomes a ``Reject`` with its file, line and reason. The mapping and its defaults
are documented in ``docs/import-salesforce.md``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from pipelines.importers.sf_export import Reject, SfObject
from pipelines.importers.sf_values import (
    country_code,
    looks_like_user_id,
    money,
    rfc3339,
    sf_bool,
    sf_date,
    sf_datetime,
    sf_decimal,
    sf_id,
)

Rows = list[dict[str, str | None]]
RATE_QUANTUM = Decimal("1E-10")  # fx_rates.rate_to_reporting: 10 fractional digits
RATE_MAX_EXCLUSIVE = Decimal(10) ** 8
STATIC_RATE_DATE = date(1970, 1, 1)  # CurrencyType rates have no date: valid since then
DEFAULT_MANAGER_ROLES = ("Owner",)


# ----------------------------------------------------------------------- accounts


def accounts(account: SfObject) -> tuple[Rows, list[Reject]]:
    """``accounts``: Id, Name, billing country code (else a known country name), state
    code (else state), city, postal code, industry."""
    rows: Rows = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for i, r in enumerate(account.rows):
        account_id = sf_id(r.get("Id"))
        if not account_id:
            rejects.append(account.reject(i, "missing_field", "Account has no Id"))
            continue
        if account_id in seen:
            rejects.append(account.reject(i, "duplicate", f"Account {account_id} appears twice"))
            continue
        seen.add(account_id)
        country = country_code(r.get("BillingCountryCode"), r.get("BillingCountry"))
        if country is None and (r.get("BillingCountry") or r.get("BillingCountryCode")):
            rejects.append(account.reject(
                i, "unknown_country",
                f"BillingCountry {r.get('BillingCountry')!r} is not an ISO 3166-1 code or a known "
                "name: the account is imported without a country (no territory); enable State "
                "and Country Picklists to export BillingCountryCode"))
        rows.append({
            "account_id": account_id, "account_name": r.get("Name"), "country": country,
            "region": r.get("BillingStateCode") or r.get("BillingState"),
            "city": r.get("BillingCity"), "postal_code": r.get("BillingPostalCode"),
            "industry": r.get("Industry"),
        })
    return rows, rejects


def account_assignments(account: SfObject, history: SfObject) -> tuple[Rows, list[Reject]]:
    """``account_assignments``: the current ``Account.OwnerId`` since always, or, with
    AccountHistory ``Field='Owner'`` rows (the pair's user-id row), one interval per
    owner: the first change's OldValue until it, each NewValue from its change on."""
    changes: dict[str, list[tuple]] = defaultdict(list)
    rejects: list[Reject] = []
    for i, r in enumerate(history.rows):
        if (r.get("Field") or "").casefold() != "owner":
            continue
        if not looks_like_user_id(r.get("NewValue")):
            continue  # the pair's other row holds the owners' names
        try:
            when = sf_datetime(r.get("CreatedDate"))
        except ValueError as exc:
            rejects.append(history.reject(i, "bad_timestamp", str(exc)))
            continue
        if when is None:
            rejects.append(history.reject(i, "missing_field", "AccountHistory has no CreatedDate"))
            continue
        changes[sf_id(r.get("AccountId")) or ""].append(
            (when, sf_id(r.get("Id")) or "", sf_id(r.get("OldValue")), sf_id(r.get("NewValue")), i))
    rows: Rows = []
    known: set[str] = set()
    for i, r in enumerate(account.rows):
        account_id, owner = sf_id(r.get("Id")), sf_id(r.get("OwnerId"))
        if not account_id or account_id in known:
            continue
        known.add(account_id)
        if not owner:
            rejects.append(account.reject(i, "missing_field", "Account has no OwnerId: no account "
                                          "manager (events are no_account_manager)"))
            continue
        history_rows = sorted(changes.get(account_id, []))
        if not history_rows:
            rows.append(_assignment(account_id, owner, None, None))
            continue
        start, holder = None, (history_rows[0][2] if looks_like_user_id(history_rows[0][2])
                               else None)
        for when, _hid, _old, new, _line in history_rows:
            if holder and start != when:
                rows.append(_assignment(account_id, holder, start, when))
            start, holder = when, new
        if holder != owner:
            rejects.append(account.reject(
                i, "owner_history_mismatch",
                f"AccountHistory ends with owner {holder}, Account.OwnerId is {owner}: the "
                f"current owner is used from {rfc3339(start)}"))
        rows.append(_assignment(account_id, owner, start, None))
    for account_id, items in changes.items():
        if account_id not in known:
            rejects += [history.reject(item[4], "unknown_account",
                                       f"AccountId {account_id} is not in Account.csv")
                        for item in items]
    return rows, rejects


def _assignment(account_id: str, owner: str, start, end) -> dict[str, str | None]:
    return {"account_id": account_id, "account_manager_id": owner,
            "valid_from": rfc3339(start) if start else None,
            "valid_to": rfc3339(end) if end else None}


# ---------------------------------------------------------------------- territories


def territories(territory: SfObject, types: SfObject,
                models: SfObject) -> tuple[Rows, list[Reject]]:
    """``territories``: Id, Name, ParentTerritory2Id, level = the Territory2Type's label
    (else ``level <depth>``, the root being 1). Only the Active Territory2Model's
    territories when Territory2Model is exported."""
    rejects: list[Reject] = []
    active = {sf_id(m.get("Id")) for m in models.rows if (m.get("State") or "") == "Active"}
    kept: dict[str, dict[str, str | None]] = {}
    for i, r in enumerate(territory.rows):
        tid = sf_id(r.get("Id"))
        if not tid:
            rejects.append(territory.reject(i, "missing_field", "Territory2 has no Id"))
            continue
        if active and sf_id(r.get("Territory2ModelId")) not in active:
            rejects.append(territory.reject(i, "inactive_model", "the territory belongs to a "
                                            "Territory2Model that is not Active"))
            continue
        kept[tid] = {"row": i, "name": r.get("Name"), "parent": sf_id(r.get("ParentTerritory2Id")),
                     "type": sf_id(r.get("Territory2TypeId"))}
    labels = {sf_id(t.get("Id")): t.get("MasterLabel") or t.get("DeveloperName")
              for t in types.rows}
    for t in kept.values():
        if t["parent"] and t["parent"] not in kept:
            rejects.append(territory.reject(
                t["row"], "unknown_parent", f"ParentTerritory2Id {t['parent']} is not an imported "
                "territory: imported as a root"))
            t["parent"] = None
    rows = [{"territory_id": tid, "territory_name": t["name"],
             "parent_territory_id": t["parent"],
             "level": labels.get(t["type"]) or f"level {territory_depth(kept, tid) + 1}"}
            for tid, t in kept.items()]
    return rows, rejects


def territory_depth(tree: dict[str, dict], tid: str) -> int:
    """Edges from ``tid`` up to its root (cycles stop the walk)."""
    depth, seen = 0, {tid}
    while (parent := tree[tid]["parent"]) and parent in tree and parent not in seen:
        seen.add(parent)
        tid, depth = parent, depth + 1
    return depth


def territory_managers(territory: SfObject, associations: SfObject, kept: set[str],
                       manager_roles: tuple[str, ...] = DEFAULT_MANAGER_ROLES,
                       ) -> tuple[Rows, list[Reject]]:
    """``territory_managers``, one per territory, since always: the territory's forecast
    manager (``Territory2.ForecastUserId``), else its active UserTerritory2Association
    user whose RoleInTerritory2 is one of ``manager_roles`` (``*``: any role), the
    smallest user id on a tie. A territory without one is managed from its parent."""
    rejects: list[Reject] = []
    chosen: dict[str, str] = {}
    for r in territory.rows:
        tid, forecast = sf_id(r.get("Id")), sf_id(r.get("ForecastUserId"))
        if tid in kept and forecast:
            chosen[tid] = forecast
    roles = {role.casefold() for role in manager_roles}
    candidates: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for i, r in enumerate(associations.rows):
        tid, user = sf_id(r.get("Territory2Id")), sf_id(r.get("UserId"))
        role = r.get("RoleInTerritory2") or ""
        try:
            active = sf_bool(r.get("IsActive"), default=True)
        except ValueError as exc:
            rejects.append(associations.reject(i, "bad_value", str(exc)))
            continue
        if tid not in kept:
            rejects.append(associations.reject(i, "unknown_territory",
                                               f"Territory2Id {tid} is not an imported territory"))
        elif not user:
            rejects.append(associations.reject(i, "missing_field", "no UserId"))
        elif not active:
            rejects.append(associations.reject(i, "inactive", "IsActive is false"))
        elif chosen.get(tid) == user:
            continue
        elif "*" not in roles and role.casefold() not in roles:
            rejects.append(associations.reject(
                i, "not_a_manager_role", f"RoleInTerritory2 {role or '(empty)'!r} is not a "
                f"manager role ({', '.join(manager_roles)}; see --manager-role)"))
        else:
            candidates[tid].append((user, i))
    for tid, users in candidates.items():
        users.sort()
        if tid not in chosen:
            chosen[tid] = users[0][0]
            users = users[1:]
        rejects += [associations.reject(i, "several_managers",
                                        f"territory {tid} is managed by {chosen[tid]}")
                    for _user, i in users]
    rows = [{"territory_id": tid, "manager_id": user, "valid_from": None, "valid_to": None}
            for tid, user in sorted(chosen.items())]
    return rows, rejects


def territory_rules(associations: SfObject, account_rows: Rows,
                    territory_rows: Rows) -> tuple[Rows, list[Reject]]:
    """``territory_rules`` from ObjectTerritory2Association: the contract assigns
    territories by geography, so each account in a territory gives a rule matching its
    billing address exactly (country, region, city, postal code as prefix), since always.
    An account in several territories keeps the deepest (then smallest id); a second
    account at the same address in another territory cannot be told apart (rejected)."""
    rejects: list[Reject] = []
    by_account = {a["account_id"]: a for a in account_rows}
    tree = {t["territory_id"]: {"parent": t["parent_territory_id"]} for t in territory_rows}
    picks: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for i, r in enumerate(associations.rows):
        kind, account_id = r.get("SobjectType"), sf_id(r.get("ObjectId"))
        tid = sf_id(r.get("Territory2Id"))
        if kind and kind != "Account":
            rejects.append(associations.reject(i, "not_an_account", f"SobjectType is {kind}"))
        elif account_id not in by_account:
            rejects.append(associations.reject(i, "unknown_account",
                                               f"ObjectId {account_id} is not in Account.csv"))
        elif tid not in tree:
            rejects.append(associations.reject(i, "unknown_territory",
                                               f"Territory2Id {tid} is not an imported territory"))
        elif not by_account[account_id]["country"]:
            rejects.append(associations.reject(i, "no_country", f"account {account_id} has no "
                                               "billing country: no rule can match it"))
        else:
            picks[account_id].append((-territory_depth(tree, tid), tid, i))
    rules: dict[tuple, tuple[str, str]] = {}
    for account_id in sorted(picks):
        choice, *others = sorted(picks[account_id])
        rejects += [associations.reject(i, "several_territories", f"account {account_id} is "
                                        f"in several territories: {choice[1]} (deepest) is used")
                    for _d, _t, i in others]
        a = by_account[account_id]
        key = tuple((a[c] or "").strip().casefold()
                    for c in ("country", "region", "city", "postal_code"))
        tid = choice[1]
        if key in rules and rules[key][0] != tid:
            rejects.append(associations.reject(
                choice[2], "same_geography",
                f"account {account_id} has the billing address of account {rules[key][1]}, which "
                f"is in territory {rules[key][0]}: it is attributed there too"))
            continue
        rules.setdefault(key, (tid, account_id))
    rows = []
    for (_k, (tid, account_id)) in sorted(rules.items(), key=lambda kv: (kv[1][0], kv[0])):
        a = by_account[account_id]
        rows.append({"territory_id": tid, "country": a["country"], "region": a["region"],
                     "city": a["city"], "postal_prefix": a["postal_code"],
                     "valid_from": None, "valid_to": None})
    return rows, rejects


# --------------------------------------------------------------------------- people


def people(user: SfObject, manager_rows: Rows, assignment_rows: Rows) -> tuple[Rows, list[Reject]]:
    """``people``: every User (Name, Email, ManagerId as reports_to); role
    ``territory_manager`` / ``account_manager`` / ``user`` from what the import assigns.
    A referenced user missing from User.csv gets a row with its id only (rejected note)."""
    territory_people = {m["manager_id"] for m in manager_rows}
    account_people = {a["account_manager_id"] for a in assignment_rows}
    rows: dict[str, dict[str, str | None]] = {}
    rejects: list[Reject] = []
    for i, r in enumerate(user.rows):
        uid = sf_id(r.get("Id"))
        if not uid:
            rejects.append(user.reject(i, "missing_field", "User has no Id"))
            continue
        name = r.get("Name") or " ".join(p for p in (r.get("FirstName"), r.get("LastName")) if p)
        rows[uid] = {"person_id": uid, "name": name or None, "email": r.get("Email"),
                     "role": _role(uid, territory_people, account_people),
                     "reports_to": sf_id(r.get("ManagerId"))}
    for uid in sorted((territory_people | account_people) - set(rows)):
        rejects.append(Reject(user.file, None, uid, "unknown_user", f"user {uid} is assigned but "
                              "not in User.csv: a people row with only its id is written"))
        rows[uid] = {"person_id": uid, "name": None, "email": None,
                     "role": _role(uid, territory_people, account_people), "reports_to": None}
    return list(rows.values()), rejects


def _role(uid: str, territory_people: set[str], account_people: set[str]) -> str:
    if uid in territory_people:
        return "territory_manager"
    return "account_manager" if uid in account_people else "user"


# ----------------------------------------------------------------------- fx rates


def corporate_currency(currency_type: SfObject) -> str | None:
    """The ``IsCorporate`` currency of CurrencyType, if exported."""
    for r in currency_type.rows:
        if (r.get("IsCorporate") or "").lower() == "true" and r.get("IsoCode"):
            return r["IsoCode"].upper()
    return None


def fx_rates(dated: SfObject, currency_type: SfObject, *, reporting: str,
             corporate: str) -> tuple[Rows, list[Reject], set[str]]:
    """``fx_rates`` from DatedConversionRate (else CurrencyType, valid since 1970-01-01).
    Salesforce rates are units of a currency per one corporate-currency unit, so
    ``rate_to_reporting(c) = rate(reporting) / rate(c)`` on every date either changes,
    rounded half-even to 10 digits. Returns the rows, rejects and the currencies that
    convert (the reporting currency included)."""
    source = dated if dated.rows else currency_type
    rejects: list[Reject] = []
    starts: dict[str, dict[date, Decimal]] = defaultdict(dict)
    for i, r in enumerate(source.rows):
        code = (r.get("IsoCode") or "").upper()
        try:
            money(Decimal(0), code)
            rate = sf_decimal(r.get("ConversionRate"))
            start = sf_date(r.get("StartDate")) if source is dated else STATIC_RATE_DATE
        except ValueError as exc:
            rejects.append(source.reject(i, "bad_rate", str(exc)))
            continue
        if rate is None or rate <= 0 or start is None:
            rejects.append(source.reject(i, "bad_rate", "ConversionRate must be > 0 and "
                                         "StartDate set"))
            continue
        starts[code][start] = rate
    if corporate not in starts:
        starts[corporate] = {min((d for s in starts.values() for d in s),
                                 default=STATIC_RATE_DATE): Decimal(1)}
    rows: Rows = []
    convertible = {reporting}
    if reporting not in starts:
        return rows, rejects, convertible
    for code in sorted(set(starts) - {reporting}):
        days = sorted(set(starts[code]) | set(starts[reporting]))
        for day in days:
            mine, theirs = _rate_on(starts[code], day), _rate_on(starts[reporting], day)
            if mine is None or theirs is None:
                continue
            rate = (theirs / mine).quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)
            if not 0 < rate < RATE_MAX_EXCLUSIVE:
                rejects.append(Reject(source.file, None, code, "bad_rate",
                                      f"{code} on {day}: {rate} does not fit fx_rates"))
                continue
            rows.append({"currency": code, "rate_date": day.isoformat(),
                         "rate_to_reporting": f"{rate:f}"})
            convertible.add(code)
    return rows, rejects, convertible


def _rate_on(rates: dict[date, Decimal], day: date) -> Decimal | None:
    valid = [d for d in rates if d <= day]
    return rates[max(valid)] if valid else None
