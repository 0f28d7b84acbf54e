"""Home Assistant discovery: the ids, names and topics of the devices, and their discovery payloads.

Identities survive restarts and re-cabling: a battery's device id is its barcode
where the console gives one, else its bank id and address; the bank id is the
configured one, else the recorded one, else one from the master's barcode
(``automatic_bank_id``).  State and availability topics are by address, so the
manual YAML and discovery read the same messages.  ``discovery_payload`` builds
one device's retained config (``dev``, ``o``, ``cmps``, availability), with
Home Assistant's abbreviations.  Pure.
"""

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .. import __version__
from ..config import Config
from ..model import Battery
from .entities import Entity, attributes_key, entity_icon

ORIGIN_NAME = "extra200tomqtt"
MIN_EXPIRE_AFTER = 30  # seconds
DEFAULT_BANK_ID = "pylontech"  # the YAML files' bank id, and the start of an automatic one
DEFAULT_BANK_NAME = "Battery bank"  # the YAML files' bank name
_MANUFACTURERS = {"pylon": "Pylontech", "pytes": "Pytes"}

# Abbreviations for discovery payloads, all from Home Assistant's abbreviation table.
_ABBREVIATIONS = {
    "platform": "p",
    "unique_id": "uniq_id",
    "default_entity_id": "def_ent_id",
    "device_class": "dev_cla",
    "unit_of_measurement": "unit_of_meas",
    "state_class": "stat_cla",
    "suggested_display_precision": "sug_dsp_prc",
    "entity_category": "ent_cat",
    "enabled_by_default": "en",
    "expire_after": "exp_aft",
    "value_template": "val_tpl",
    "state_topic": "stat_t",
    "availability": "avty",
    "availability_mode": "avty_mode",
    "topic": "t",
    "identifiers": "ids",
    "manufacturer": "mf",
    "model": "mdl",
    "sw_version": "sw",
    "hw_version": "hw",
    "serial_number": "sn",
    "support_url": "url",
    "icon": "ic",
    "json_attributes_topic": "json_attr_t",
    "json_attributes_template": "json_attr_tpl",
}


def safe_id(text: str) -> str:
    """Only ``[a-zA-Z0-9_-]``: what discovery topics and ids may contain."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text.strip()) or "_"


def bank_key(bank_id: str) -> str:
    return "%s_bank" % bank_id


def battery_key(bank_id: str, address: int, barcode: Optional[str]) -> str:
    """The device id of a battery: by barcode where known (stable across re-cabling), else by address."""
    return "%s_%s" % (bank_id, safe_id(barcode)) if barcode else "%s_battery_%d" % (bank_id, address)


def topic_id(address: Optional[int]) -> str:
    return "bank" if address is None else "battery_%d" % address


def state_topic(topic_base: str, address: Optional[int]) -> str:
    return "%s/homeassistant/%s/state" % (topic_base, topic_id(address))


def device_availability_topic(topic_base: str, address: Optional[int]) -> str:
    return "%s/homeassistant/%s/availability" % (topic_base, topic_id(address))


def discovery_topic(prefix: str, device_key: str) -> str:
    return "%s/device/%s/config" % (prefix, device_key)


def daemon_availability_topic(topic_base: str) -> str:
    """The daemon's retained online/offline topic (``MqttLink.availability_topic``)."""
    return "%s/status" % topic_base


def expire_after_for(config: Config) -> int:
    """Seconds without a state before Home Assistant shows values as unavailable."""
    if config.homeassistant.expire_after:
        return int(config.homeassistant.expire_after)
    return max(MIN_EXPIRE_AFTER, int(3 * config.serial.reading_freq + 0.999))


def component(
    entity: Entity, unique_prefix: str, entity_prefix: str, expire_after: Optional[int], state_topic_: Optional[str] = None
) -> Dict[str, Any]:
    """An entity's options with full key names (no platform or device: those depend on the style).

    ``state_topic_`` is the device's state topic, for entities with JSON attributes.
    """
    options: Dict[str, Any] = {
        "name": entity.name,
        "unique_id": "%s_%s" % (unique_prefix, entity.key),
        "default_entity_id": "%s.%s_%s" % (entity.platform, entity_prefix, entity.key),
        "value_template": "{{ value_json.%s }}" % entity.key,
    }
    icon = entity_icon(entity)
    if icon:
        options["icon"] = icon
    if entity.attributes is not None and state_topic_:
        options["json_attributes_topic"] = state_topic_
        options["json_attributes_template"] = "{{ value_json.%s | tojson }}" % attributes_key(entity)
    if entity.device_class:
        options["device_class"] = entity.device_class
    if entity.unit:
        options["unit_of_measurement"] = entity.unit
    if entity.state_class:
        options["state_class"] = entity.state_class
    if entity.precision is not None:
        options["suggested_display_precision"] = entity.precision
    if entity.options:
        options["options"] = list(entity.options)
    if entity.diagnostic:
        options["entity_category"] = "diagnostic"
    if not entity.enabled:
        options["enabled_by_default"] = False
    if expire_after:
        options["expire_after"] = expire_after
    return options


def abbreviate(options: Dict[str, Any]) -> Dict[str, Any]:
    """Full key names -> Home Assistant's abbreviations (one level; values unchanged)."""
    return {_ABBREVIATIONS.get(key, key): value for key, value in options.items()}


def entity_prefix(bank_id: str, address: Optional[int]) -> str:
    """The object-id part of entity ids: ``pylontech_bank``, ``pylontech_battery_2``."""
    return ("%s_%s" % (bank_id, topic_id(address))).lower()


def _origin() -> Dict[str, Any]:
    return {"name": ORIGIN_NAME, "sw": __version__}


def bank_device(bank_id: str, bank_name: str, with_version: bool) -> Dict[str, Any]:
    device: Dict[str, Any] = {"identifiers": [bank_key(bank_id)], "name": bank_name, "model": "Battery bank"}
    if with_version:  # the daemon's version; a static YAML file would soon be wrong
        device["sw_version"] = __version__
    return device


def battery_device(
    bank_id: str, key: str, battery: Optional[Battery], address: int, bank_name: str = DEFAULT_BANK_NAME
) -> Dict[str, Any]:
    """The device block of one battery: identity, model and firmware from ``info N`` where read."""
    device: Dict[str, Any] = {"identifiers": [key], "name": battery_name(bank_name, address)}
    info = battery.info if battery is not None else None
    row = battery.row if battery is not None else None
    manufacturer = info.manufacturer if info is not None else None
    if manufacturer:
        device["manufacturer"] = _MANUFACTURERS.get(manufacturer.strip().lower(), manufacturer.strip())
    model = (info.device_name if info is not None else None) or (row.device_type if row is not None else None)
    if model:
        device["model"] = model
    if info is not None and (info.main_soft_version or info.soft_version):
        device["sw_version"] = info.main_soft_version or info.soft_version
    if info is not None and info.board_version:
        device["hw_version"] = info.board_version
    barcode = battery.barcode if battery is not None else None
    if barcode:
        device["serial_number"] = barcode
    device["via_device"] = bank_key(bank_id)
    return device


def automatic_bank_id(master_barcode: Optional[str], port: str) -> str:
    """A bank id of its own for each bank: from the master battery's barcode, else from the console port.

    ``pylontech_210001`` (the barcode's last 6 characters), ``pylontech_ttyusb0``.
    """
    if master_barcode:
        tail = re.sub(r"[^a-z0-9]", "", master_barcode.lower())[-6:]
        if tail:
            return "%s_%s" % (DEFAULT_BANK_ID, tail)
    name = port.rstrip("/").split("://")[-1].split("?")[0]
    name = name.rsplit("/", 1)[-1] or name
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "bank"
    return "%s_%s" % (DEFAULT_BANK_ID, slug)


def automatic_bank_name(bank_id: str, manufacturer: Optional[str]) -> str:
    """``Pylontech 210001`` for ``pylontech_210001``: what tells two banks apart in Home Assistant."""
    if bank_id == DEFAULT_BANK_ID:
        return DEFAULT_BANK_NAME
    suffix = bank_id[len(DEFAULT_BANK_ID) + 1 :] if bank_id.startswith(DEFAULT_BANK_ID + "_") else bank_id
    maker = _MANUFACTURERS.get((manufacturer or "").strip().lower(), "Pylontech")
    return "%s %s" % (maker, suffix.upper() if suffix.isalnum() else suffix)


def battery_name(bank_name: str, address: int) -> str:
    """A battery device's name, which starts with its bank's so two banks' batteries differ.

    ``Battery 2`` in the bank of the default name (as before; two banks cannot both have the
    default id), ``Pylontech 210001 battery 2`` otherwise.
    """
    return "Battery %d" % address if bank_name == DEFAULT_BANK_NAME else "%s battery %d" % (bank_name, address)


@dataclass
class PolledDevice:
    """One device as this poll sees it: its id, its device block, its entities and their values."""

    key: str
    address: Optional[int]  # None: the bank
    barcode: Optional[str]
    device: Dict[str, Any]
    entities: List[Entity]
    values: Dict[str, Any]
    available: bool


def discovery_payload(
    device: PolledDevice,
    keep: List[Entity],
    removed: List[str],
    platforms: Dict[str, str],
    bank_id: str,
    topic_base: str,
    daemon_availability: str,
    expire_after: int,
) -> Dict[str, Any]:
    """The device's discovery config: the entities in ``keep``, and ``{"p": <platform>}`` for each ``removed`` key
    (``platforms`` gives it where not ``sensor``), available while the daemon and the device both are."""
    prefix = entity_prefix(bank_id, device.address)
    topic = state_topic(topic_base, device.address)
    components: Dict[str, Any] = {}
    for entity in keep:
        options = abbreviate(component(entity, device.key, prefix, expire_after, topic))
        options["p"] = entity.platform
        components[entity.key] = options
    for key in removed:
        components[key] = {"p": platforms.get(key, "sensor")}
    return {
        "dev": abbreviate(device.device),
        "o": _origin(),
        "stat_t": topic,
        "avty": [{"t": daemon_availability}, {"t": device_availability_topic(topic_base, device.address)}],
        "avty_mode": "all",
        "cmps": components,
    }
