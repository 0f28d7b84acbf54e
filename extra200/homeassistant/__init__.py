"""Home Assistant: MQTT device discovery, availability and state for the bank and each battery.

The rules come from the shared notes ``home-assistant-discovery.md`` (checked
against a running Home Assistant 2026.11):

* device-based discovery: one retained QoS 1 config per device on
  ``<prefix>/device/<id>/config`` with ``dev``, ``o`` (origin) and ``cmps``;
  one device for the bank and one per battery (``via_device`` the bank);
* identities that survive restarts and re-cabling: a battery is identified by
  its barcode where the console gives one, else by bank id and address; a bank
  id of each bank's own (``_resolve_bank``: configured, else recorded, else from
  the master's barcode), so two banks never share ids or device names;
* correct device_class / unit / state_class triples, ``suggested_display_precision``
  and an icon on every entity, ``entity_category: diagnostic`` for secondary data,
  ``default_entity_id`` with its domain; binary sensors (``ON`` / ``OFF``) for
  alarms and permissions, with details as JSON attributes (``<key>_attributes`` in
  the state); per-cell entities other than the voltages disabled by default;
* availability: the daemon's retained ``online``/``offline`` (last will) plus one
  topic per battery, ``availability_mode: all``; ``expire_after`` on every
  entity so values go unavailable when polling stops;
* configs re-sent when Home Assistant announces ``online`` on its status topic
  and after every reconnect; entities that no longer exist are removed (a
  whole device: empty retained config; one component: reduced to
  ``{"p": <its platform>}``, as simply omitting it does not remove it; the
  record keeps each component's platform);
* one JSON state message per device per poll, never within a second of a new
  config (Home Assistant subscribes in batches and would drop it).

The same entity tables produce the manual YAML (``render_manual_yaml``) for
users who prefer ``mqtt: !include pylon-batteries.yaml`` and the
sample dashboard (``render_dashboard_yaml``).  Topics for state and
availability are by address (``<topic_base>/homeassistant/battery_<N>/state``),
so the YAML and discovery read the same messages; only the identities differ.

What has been announced is recorded in ``<state_dir>/homeassistant.json``, so
after a restart the daemon can still remove a battery that vanished while it
was down, or components of a lowered cell level.

The modules, as the data flows:

* ``values``: the views of a battery and of the bank, and the functions that read
  a state from them (texts, alarms, events, limits, cells);
* ``entities``: the entity tables (bank, battery, cells) and the JSON state they make;
* ``discovery``: ids, names and topics, and the discovery payload of one device;
* ``record``: the record of what was announced (``homeassistant.json``);
* ``publisher``: ``HomeAssistantPublisher``, what to announce, remove and send each poll;
* ``yaml_files``: the manual YAML and the dashboard.
"""

from .discovery import DEFAULT_BANK_ID, DEFAULT_BANK_NAME, expire_after_for
from .entities import BANK_ENTITIES, STAT_COUNTERS, battery_entities
from .publisher import HomeAssistantPublisher
from .record import recorded_bank_id
from .values import battery_alarms, clip_text, limit_alarms, readable_name
from .yaml_files import render_dashboard_yaml, render_manual_yaml

__all__ = [
    "BANK_ENTITIES",
    "DEFAULT_BANK_ID",
    "DEFAULT_BANK_NAME",
    "STAT_COUNTERS",
    "HomeAssistantPublisher",
    "battery_alarms",
    "battery_entities",
    "clip_text",
    "expire_after_for",
    "limit_alarms",
    "readable_name",
    "recorded_bank_id",
    "render_dashboard_yaml",
    "render_manual_yaml",
]
