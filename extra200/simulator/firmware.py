"""Firmware presets of the simulated console: which layouts it prints and which commands it rejects.

A preset bundles everything that differs between firmware generations in
``docs/console-protocol.md`` §9-§16: the ``pwr`` table layout and its row
count, the ``bat`` variant, the ``pwr N`` / ``info`` / ``stat`` layouts, the
completion text, the prompt, and the commands the firmware refuses.  A
scenario names a preset and may override any field.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Mapping, Tuple

# pwr table layouts (console-protocol.md §9)
PWR_LAYOUTS = ("old", "mos", "ids", "ids_sysalarm", "pytes")
BAT_VARIANTS = ("A", "B", "C", "D")
DETAIL_LAYOUTS = ("pylon", "pytes")
STAT_LAYOUTS = ("old", "us", "pytes", "us3000d")
INFO_LAYOUTS = ("pylon", "pytes")
# what a firmware may refuse: the whole-bank table, and the indexed forms of info / stat
REJECTABLE = ("pwr_table", "info_n", "stat_n")

PROTECT_PYLON = (
    "BOV BHV BLV BUV POV PHV PLV PUV CBOT CBHT CBLT CBUT DBOT DBHT DBLT DBUT POT PHT COC COC2 COCA DOCA DOC DOC2 SC LCOUL"
)
PROTECT_PYLON_OLD = (
    "BOV BHV BLV BUV POV PHV PLV PUV CBOT CBHT CBLT CBUT DBOT DBHT DBLT DBUT POT PHT PLT PUT COC COC2 COCA DOCA DOC DOC2 SC LCOUL"
)


@dataclass(frozen=True)
class Firmware:
    """What one firmware prints; every field may be overridden by a scenario."""

    name: str
    pwr_layout: str = "mos"
    pwr_rows: int = 16  # address slots in the pwr table; 0 = present units only (US3000D)
    bat_variant: str = "A"
    detail_layout: str = "pylon"  # pwr N
    stat_layout: str = "us"
    info_layout: str = "pylon"
    rejects: FrozenSet[str] = frozenset()
    completion: str = "Command completed successfully"
    invalid: str = "Invalid command or fail to excute."  # sic, as the firmware spells it
    prompt: str = "pylon>"
    manufacturer: str = "Pylon"
    model: str = "US2000C"
    board_version: str = "V10R04"
    main_soft_version: str = "B67.5.0"
    soft_version: str = "V1.7"
    boot_version: str = "V2.0"
    comm_version: str = "V2.0"
    release_date: str = "20-12-11"
    help_page_lines: int = 12  # help pauses after this many lines; 0 = never
    log_page_entries: int = 3  # log pauses after this many entries
    slave_coulomb_zero: bool = False  # bat N of a slave prints 0 mAH (US3000D master)
    whole_degrees: bool = False  # temperatures in 1 degree steps (US2000 non-C)
    protect: str = PROTECT_PYLON


PRESETS: Dict[str, Firmware] = {
    f.name: f
    for f in (
        Firmware(
            name="us2kbpl-b66",
            pwr_layout="old",
            pwr_rows=8,
            bat_variant="B",
            stat_layout="old",
            model="US2KBPL",
            board_version="PHANTOMSAV10R03",
            main_soft_version="B66.6",
            soft_version="V2.4",
            release_date="20-05-28",
            whole_degrees=True,
            protect=PROTECT_PYLON_OLD,
        ),
        Firmware(name="us2000c-b67"),
        Firmware(
            name="us3000c-b69",
            model="US3000C",
            main_soft_version="B69.25.0.0",
            soft_version="V2.1",
            release_date="23-03-10",
            help_page_lines=0,
        ),
        Firmware(
            name="us5000-b69-26",
            pwr_layout="ids_sysalarm",
            model="US5000",
            board_version="V10R02",
            main_soft_version="B69.26.0.0",
            soft_version="V2.3",
            release_date="24-08-20",
        ),
        Firmware(
            name="us3000d-b1.4",
            pwr_layout="ids",
            pwr_rows=0,
            bat_variant="D",
            stat_layout="us3000d",
            rejects=frozenset({"info_n", "stat_n"}),
            completion="Command completed successfully!",
            model="US3000D",
            board_version="",
            main_soft_version="B1.4.0.0",
            soft_version="V1.1",
            boot_version="V0.02",
            release_date="25-11-13",
            help_page_lines=0,
            slave_coulomb_zero=True,
        ),
        Firmware(
            name="pytes-v1.10",
            pwr_layout="pytes",
            bat_variant="C",
            detail_layout="pytes",
            stat_layout="pytes",
            info_layout="pytes",
            rejects=frozenset({"stat_n"}),
            prompt="PYTES>",
            manufacturer="PYTES",
            model="E-BOX-48100V-D",
            board_version="SQB0010",
            main_soft_version="SPBMS16SRP2304V1.10.7.1C",
            soft_version="V1.10",
            boot_version="V1.13",
            release_date="23-10-13",
        ),
        Firmware(
            name="pytes-4850p",
            pwr_layout="old",
            pwr_rows=8,
            bat_variant="B",
            stat_layout="pytes",
            info_layout="pytes",
            prompt="PYTES>",
            manufacturer="PYTES",
            model="E-BOX-4850P",
            board_version="SQB0008",
            main_soft_version="V1.3.19",
            soft_version="V1.3",
            release_date="22-06-01",
            protect=PROTECT_PYLON_OLD,
        ),
        # No capture of an Extra2000 exists; this follows what the original
        # extra200tomqtt does with one (pwr N, bat N, info 1 after login debug)
        # and treats the whole-bank table and stat N as not implemented.
        Firmware(
            name="extra2000",
            pwr_layout="old",
            pwr_rows=8,
            bat_variant="B",
            stat_layout="old",
            rejects=frozenset({"pwr_table", "stat_n"}),
            model="Extra2000",
            board_version="V10R02",
            main_soft_version="B51.2",
            soft_version="V1.2",
            release_date="16-03-22",
            whole_degrees=True,
            protect=PROTECT_PYLON_OLD,
        ),
    )
}

_CHOICES: Mapping[str, Tuple[str, ...]] = {
    "pwr_layout": PWR_LAYOUTS,
    "bat_variant": BAT_VARIANTS,
    "detail_layout": DETAIL_LAYOUTS,
    "stat_layout": STAT_LAYOUTS,
    "info_layout": INFO_LAYOUTS,
}


def build_firmware(spec: Any, problems: List[str]) -> Firmware:
    """A preset name, or ``{preset: NAME, field: value, ...}``, to a ``Firmware``; problems are appended."""
    if spec is None:
        spec = "us2000c-b67"
    if isinstance(spec, str):
        spec = {"preset": spec}
    if not isinstance(spec, Mapping):
        problems.append("firmware: expected a preset name or a mapping")
        return PRESETS["us2000c-b67"]
    name = str(spec.get("preset", "us2000c-b67"))
    if name not in PRESETS:
        problems.append("firmware.preset: unknown %r (known: %s)" % (name, ", ".join(sorted(PRESETS))))
        return PRESETS["us2000c-b67"]
    base = PRESETS[name]
    fields = {f.name: f for f in dataclasses.fields(Firmware)}
    changes: Dict[str, Any] = {}
    for key, value in spec.items():
        if key == "preset":
            continue
        if key not in fields or key == "name":
            problems.append("firmware.%s: unknown key" % key)
            continue
        current = getattr(base, key)
        if key == "rejects":
            values = [value] if isinstance(value, str) else list(value or [])
            bad = [v for v in values if v not in REJECTABLE]
            if bad:
                problems.append("firmware.rejects: %s not in %s" % (bad, ", ".join(REJECTABLE)))
                continue
            changes[key] = frozenset(values)
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                problems.append("firmware.%s: expected true or false" % key)
                continue
            changes[key] = value
        elif isinstance(current, int):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append("firmware.%s: expected a whole number >= 0" % key)
                continue
            changes[key] = value
        else:
            value = "" if value is None else str(value)
            if key in _CHOICES and value not in _CHOICES[key]:
                problems.append("firmware.%s: %r not in %s" % (key, value, ", ".join(_CHOICES[key])))
                continue
            changes[key] = value
    if changes.get("pwr_rows", base.pwr_rows) not in (0, 8, 16):
        problems.append("firmware.pwr_rows: expected 0, 8 or 16")
        changes.pop("pwr_rows", None)
    return dataclasses.replace(base, **changes)
