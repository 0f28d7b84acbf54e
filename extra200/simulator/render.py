"""Text of the simulated console's replies: pure functions from unit snapshots to framed bytes.

Layouts follow ``docs/console-protocol.md`` §9-§14 (column names, field
labels, units, padding that shifts with value lengths); the text is written
here from those facts, not copied from captures.

A ``Reply`` keeps the payload as separate lines, each with its own line end,
so the console can page it; the console adds the echo before and the prompt
after.  Line ends are the console's mixed ones: table rows end ``\\r\\r\\n``
(the last one ``\\r\\n``), key : value lines are ``\\r<line>\\r\\n``.
"""

import datetime
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from .bank import UnitSnapshot
from .firmware import Firmware

PAGER = b"\rPress [Enter] to be continued,other key to exit"
# after Enter the firmware blanks the pager line before going on
PAGER_ERASE = b"\r\r" + b" " * 50 + b"\r\r"
RULE = " " + "-" * 28

# Symbolic names printed after a set event word.  Only COULFULL (0x2000) is
# observed; the others are our reading of the Protect ENA tokens (inferred),
# clients must rely on the hex value.
POWER_EVENT_NAMES = (
    (0x1, "POV"),
    (0x2, "PHV"),
    (0x8, "PLV"),
    (0x10, "PUV"),
    (0x20, "PSLP"),
    (0x100, "POT"),
    (0x200, "PHT"),
    (0x800, "PLT"),
    (0x1000, "PUT"),
    (0x2000, "COULFULL"),
    (0x8000, "COULLOW"),
    (0x10000, "SC"),
    (0x20000, "DOC2"),
    (0x40000, "COC2"),
    (0x80000, "DOC"),
    (0x100000, "COC"),
)
BAT_EVENT_NAMES = (
    (0x1, "BOV"),
    (0x2, "BHV"),
    (0x8, "BLV"),
    (0x10, "BUV"),
    (0x20, "BSLP"),
    (0x100, "BOT"),
    (0x200, "BHT"),
    (0x800, "BLT"),
    (0x1000, "BUT"),
)
FAULT_NAMES = (
    (0x1, "RVIN"),
    (0x2, "INOV"),
    (0x4, "CURERR"),
    (0x8, "OZERR"),
    (0x10, "SLPERR"),
    (0x20, "TSENERR"),
    (0x40, "VSENERR"),
    (0x80, "I2CERR"),
    (0x100, "CANADDR"),
    (0x200, "CANERR"),
    (0x400, "CMOSERR"),
    (0x800, "DMOSERR"),
)


@dataclass(frozen=True)
class Reply:
    """One framed reply without echo and prompt: ``head``, payload ``lines``, then ``tail``."""

    head: bytes
    lines: Tuple[bytes, ...]
    tail: bytes
    page_lines: int = 0  # pause after this many payload lines; 0 = never

    def data(self) -> bytes:
        return self.head + b"".join(self.lines) + self.tail


def _enc(text: str) -> bytes:
    return text.encode("latin-1", "replace")


def table_lines(rows: Sequence[str]) -> List[bytes]:
    """Table rows: ``row\\r\\r\\n``, the last one ``row\\r\\n``."""
    return [_enc(row) + (b"\r\n" if i == len(rows) - 1 else b"\r\r\n") for i, row in enumerate(rows)]


def kv_lines(lines: Sequence[str]) -> List[bytes]:
    """Key : value lines: ``\\r<line>\\r\\n``."""
    return [b"\r" + _enc(line) + b"\r\n" for line in lines]


TABLE_HEAD = b"\r@\r\r\n"
KV_HEAD = b"\r@\r\n"


def success_tail(fw: Firmware) -> bytes:
    return b"\r" + _enc(fw.completion) + b"\r\n\r$$\r\n"


ERROR_TAIL = b"\r$$\r\n"


def table_reply(fw: Firmware, rows: Sequence[str], page_lines: int = 0) -> Reply:
    return Reply(TABLE_HEAD, tuple(table_lines(rows)), success_tail(fw), page_lines)


def kv_reply(fw: Firmware, lines: Sequence[str], page_lines: int = 0) -> Reply:
    return Reply(KV_HEAD, tuple(kv_lines(lines)), success_tail(fw), page_lines)


def unknown_command(word: str) -> Reply:
    return Reply(KV_HEAD, tuple(kv_lines(["Unknown command '%s' - try 'help'" % word])), ERROR_TAIL)


def invalid_command(fw: Firmware, usage: str, prefix: Sequence[str] = ()) -> Reply:
    # the usage text line comes without the leading CR the others have (as observed)
    lines = kv_lines(list(prefix) + [fw.invalid, "Usage:"]) + [_enc(usage) + b"\r\n"]
    return Reply(KV_HEAD, tuple(lines), ERROR_TAIL)


def done(fw: Firmware) -> Reply:
    """A command that prints nothing but succeeds (login, logout)."""
    return Reply(KV_HEAD, (), success_tail(fw))


# ------------------------------------------------------------------ pwr table


def _cells(values: Sequence[Tuple[str, int]]) -> str:
    return "".join(text.ljust(width) for text, width in values)


def _pwr_columns(fw: Firmware) -> List[Tuple[str, int, int]]:
    """(header name, header width, row width) of each pwr column in this firmware's layout."""
    cols = [("Power", 6, 6), ("Volt", 7, 7), ("Curr", 7, 7), ("Tempr", 7, 7)]
    if fw.pwr_layout in ("ids", "ids_sysalarm"):
        cols += [
            ("Tlow", 7, 7),
            ("Tlow.Id", 9, 9),
            ("Thigh", 7, 7),
            ("Thigh.Id", 9, 9),
            ("Vlow", 7, 7),
            ("Vlow.Id", 9, 9),
            ("Vhigh", 7, 7),
            ("Vhigh.Id", 9, 9),
        ]
    else:
        cols += [("Tlow", 7, 7), ("Thigh", 7, 7), ("Vlow", 7, 7), ("Vhigh", 7, 7)]
    cols += [
        ("Base.St", 9, 9),
        ("Volt.St", 9, 9),
        ("Curr.St", 9, 9),
        ("Temp.St", 9, 9),
        ("Coulomb", 9, 9),
        ("Time", 21, 21),
        ("B.V.St", 9, 9),
    ]
    if fw.pwr_layout == "mos":
        # B67-B69: the header's B.T.St is one wider than the rows', so MosTempr and
        # M.T.St values sit one character left of their names ("-" sits under them)
        cols += [("B.T.St", 9, 8), ("MosTempr", 9, 9), ("M.T.St", 8, 8)]
    elif fw.pwr_layout == "ids":
        cols += [("B.T.St", 9, 9), ("MosTempr", 9, 9), ("M.T.St", 8, 8)]
    elif fw.pwr_layout == "ids_sysalarm":
        cols += [("B.T.St", 8, 8), ("MosTempr", 9, 9), ("M.T.St", 9, 9), ("SysAlarm.St", 8, 8)]
    elif fw.pwr_layout == "pytes":
        cols += [("B.T.St", 9, 9), ("Barcode", 21, 21), ("DevType", 20, 20)]
    else:
        cols += [("B.T.St", 8, 8)]
    return cols


def _pwr_values(fw: Firmware, s: UnitSnapshot) -> List[str]:
    values = [str(s.address), str(s.voltage_mv), str(s.current_ma), str(s.bms_temp_mc)]
    if fw.pwr_layout in ("ids", "ids_sysalarm"):
        values += [
            str(s.temp_low_mc),
            str(s.temp_low_index),
            str(s.temp_high_mc),
            str(s.temp_high_index),
            str(s.cell_low_mv),
            str(s.cell_low_index),
            str(s.cell_high_mv),
            str(s.cell_high_index),
        ]
    else:
        values += [str(s.temp_low_mc), str(s.temp_high_mc), str(s.cell_low_mv), str(s.cell_high_mv)]
    values += [s.base_state, s.volt_state, s.curr_state, s.temp_state, "%d%%" % s.soc, s.rtc, s.bv_state, s.bt_state]
    if fw.pwr_layout in ("mos", "ids", "ids_sysalarm"):
        if s.mos_temp_mc is None:
            # a unit without MOSFET sensor; B67-B69 print the "-" one column right
            dash = " -" if fw.pwr_layout == "mos" else "-"
            values += [dash, dash]
        else:
            values += [str(s.mos_temp_mc), s.mos_state]
        if fw.pwr_layout == "ids_sysalarm":
            values.append(s.sys_alarm)
    elif fw.pwr_layout == "pytes":
        values += [s.barcode, s.model]
    return values


def _absent_row(fw: Firmware, address: int) -> str:
    # always the old 16-field layout, whatever the header says (§9)
    row = [(str(address), 6)] + [("-", 7)] * 7 + [("Absent", 9)] + [("-", 9)] * 4 + [("-", 21), ("-", 9)]
    if fw.pwr_layout == "pytes":
        row += [("-", 9), ("-", 21), ("-", 20)]
    else:
        row += [("-", 8)]
    return _cells(row)


def pwr_table(fw: Firmware, units: Sequence[UnitSnapshot]) -> List[str]:
    """Header and one row per slot (``fw.pwr_rows``), or per present unit when that is 0."""
    columns = _pwr_columns(fw)
    rows = [_cells([(name, width) for name, width, _ in columns])]
    by_address = {u.address: u for u in units}
    slots = range(1, fw.pwr_rows + 1) if fw.pwr_rows else sorted(a for a, u in by_address.items() if u.present)
    for address in slots:
        unit = by_address.get(address)
        if unit is None or not unit.present:
            rows.append(_absent_row(fw, address))
        else:
            rows.append(_cells(list(zip(_pwr_values(fw, unit), (width for _, _, width in columns)))))
    return rows


# ----------------------------------------------------------------- pwr N


def _names(value: int, table: Sequence[Tuple[int, str]]) -> str:
    return " ".join(name for bit, name in table if value & bit)


def _kv(label: str, value: object, width: int, unit: str = "") -> str:
    return " %s: %s%s" % (label.ljust(16), str(value).ljust(width), unit)


def _event(label: str, value: int, table: Sequence[Tuple[int, str]], width: int) -> str:
    """``0x2000     COULFULL``: hex, then the names of the set bits."""
    return _kv(label, "0x%x" % value, width) + (_names(value, table) if value else "")


def pwr_detail(fw: Firmware, s: UnitSnapshot) -> Reply:
    """``pwr N``: key : value block between rules, units in their own column."""
    master = s.address == 1
    charge_times = s.charge_times if master else 0  # counters are only kept by the master
    seconds = s.state_seconds if master else 0
    if fw.detail_layout == "pytes":
        return _pwr_detail_pytes(fw, s, charge_times, seconds)
    first = [
        RULE,
        " Power  %d" % s.address,
        "",
        _kv("Voltage", s.voltage_mv, 12, "mV"),
        _kv("Current", s.current_ma, 12, "mA"),
        _kv("Temperature", s.bms_temp_mc, 12, "mC"),
        _kv("Coulomb", s.soc, 12, "%"),
        _kv("Total Coulomb", s.capacity_mah, 12, "mAH"),
        _kv("Max Voltage", s.max_voltage_mv, 12, "mV"),
        _kv("Charge Times", charge_times, 12),
        _kv("Basic Status", s.base_state, 8),
    ]
    if s.base_state == "Charge":
        first.append(_kv("Charge Sec.", seconds, 8, "s"))
    elif s.base_state == "Dischg":
        first.append(_kv("Discharge Sec.", seconds, 8, "s"))
    first += [
        _kv("Volt Status", s.volt_state, 8),
        _kv("Current Status", s.curr_state, 8),
        _kv("Tmpr. Status", s.temp_state, 8),
        _kv("Coul. Status", s.coul_state, 8),
        _kv("Soh. Status", s.soh_state, 8),
        _kv("Heater Status", "ON" if s.heater else "OFF", 8),
    ]
    second = [
        _event("Bat Events", s.bat_events, BAT_EVENT_NAMES, 11),
        _event("Power Events", s.power_events, POWER_EVENT_NAMES, 11),
        _event("System Fault", s.system_fault, FAULT_NAMES, 11),
        RULE,
    ]
    # the Protect ENA line breaks the table's line ends: "\r\n" before, "\r" after
    protect = b"\r" + _enc(_kv("Protect ENA", fw.protect + " ", 0)) + b"\r\r\n"
    lines = table_lines(first) + [protect] + table_lines(second)
    return Reply(TABLE_HEAD, tuple(lines), success_tail(fw))


def _pwr_detail_pytes(fw: Firmware, s: UnitSnapshot, charge_times: int, seconds: int) -> Reply:
    work = {"Charge": 1, "Dischg": 2}.get(s.base_state, 0)
    first = [
        RULE,
        " Power  %d" % s.address,
        "",
        _kv("Voltage", s.voltage_mv, 20, "mV"),
        _kv("SOC Voltage", s.voltage_mv, 20, "mV"),
        _kv("Current", s.current_ma, 20, "mA"),
        _kv("Temperature", s.bms_temp_mc, 20, "mC"),
        _kv("Coulomb", s.soc, 20, "%"),
        _kv("Total Coulomb", s.capacity_mah * 3600, 20, "mAS"),
        _kv("Real Coulomb", s.remaining_mah, 20, "mAH"),
        _kv("Total Power In", s.stat("Total Power In"), 20, "AS"),
        _kv("Total Power Out", s.stat("Total Power Out"), 20, "AS"),
        _kv("Charge Count", s.stat("Charge Cnt."), 16),
        _kv("Discharge Count", s.stat("Discharge Cnt."), 16),
        _kv("Charge Times", charge_times, 16),
        _kv("Work Status", work, 16),
        _kv("Bat Num", len(s.cells_mv), 16),
        _kv("Barcode", s.barcode, 16),
        _kv("DevType", s.model, 16),
        _kv("Firm Version", s.main_soft_version, 16),
        _kv("Next Device", 0, 16),
        _kv("Basic Status", s.base_state, 8),
        _kv("Volt Status", s.volt_state, 8),
        _kv("Current Status", s.curr_state, 8),
        _kv("Tmpr. Status", s.temp_state, 8),
        _kv("Coul. Status", s.coul_state, 8),
        _kv("Bat Status", "VNOR TNOR", 8),
        _kv("Heater Status", "ON" if s.heater else "OFF", 8),
        _kv("CMOS Status", "ON", 8),
        _kv("DMOS Status", "ON", 8),
        _kv("Input Status", "OFF", 8),
        _kv("Terminal Res.", "ON", 8),
    ]
    protect = [
        b"\r" + _enc(_kv("Bat Protect ENA", "OV HV LV UV SLP OT HT LT UT", 0)) + b"\r\n",
        b"\r"
        + _enc(_kv("Pwr Protect ENA", "OV HV LV UV SLP OT HT LT UT COC COC1 COC2 COCA DOCA DOC DOC1 DOC2 SC", 0))
        + b"\r\r\n",
    ]
    second = [
        _event("Bat Events", s.bat_events, BAT_EVENT_NAMES, 10),
        _event("Power Events", s.power_events, POWER_EVENT_NAMES, 10),
        _event("System Fault", s.system_fault, FAULT_NAMES, 10),
        RULE,
    ]
    lines = table_lines(first) + protect + table_lines(second)
    return Reply(TABLE_HEAD, tuple(lines), success_tail(fw))


# ------------------------------------------------------------------ bat N


def bat_table(fw: Firmware, s: UnitSnapshot) -> List[str]:
    """``bat N``: header and one row per cell, in the firmware's variant (A, B, C or D)."""
    variant = fw.bat_variant
    coulomb = 0 if (fw.slave_coulomb_zero and s.address != 1) else s.remaining_mah
    front = [("Battery", 9), ("Volt", 9)] + ([] if variant == "C" else [("Curr", 9)]) + [("Tempr", 9)]
    states = [("Base State", 13), ("Volt. State", 13), ("Curr. State", 13)]
    if variant == "D":
        states += [("DTemp. State", 13), ("CTemp. State", 13), ("SOC", 13), ("Coulomb", 17)]
        header = _cells(front + states) + "BAL"
    elif variant == "A":
        states += [("Temp. State", 13), ("SOC", 13), ("Coulomb", 13), ("BAL", 12)]
        header = _cells(front + states)
    else:
        states += [("Temp. State", 13), ("Coulomb", 12)]
        header = _cells(front + states)
    rows = [header]
    for i, mv in enumerate(s.cells_mv):
        values = [(str(i), 9), (str(mv), 9)]
        if variant != "C":
            values.append((str(s.current_ma), 9))
        values += [(str(s.cell_temps_mc[i]), 9), (s.base_state, 13), (s.cell_states[i], 13), (s.curr_state, 13)]
        bal = "Y" if s.balancing[i] else "N"
        if variant == "D":
            values += [(s.cell_temp_states[i], 13), (s.cell_temp_states[i], 13), ("%d%%" % s.soc, 13), (str(coulomb), 13)]
            rows.append(_cells(values) + "mAH " + bal)
        elif variant == "A":
            # SOC right-aligned in 2 digits, Coulomb in 14: "100%" pushes the rest one column right
            rows.append(_cells(values + [(s.cell_temp_states[i], 13)]) + "%2d%%%14d mAH      %s" % (s.soc, coulomb, bal))
        else:
            rows.append(_cells(values + [(s.cell_temp_states[i], 13)]) + "%3d%%%11d mAH" % (s.soc, coulomb))
    return rows


# ------------------------------------------------------------------ info N


def _specification(s: UnitSnapshot) -> str:
    volts = "51.2V" if len(s.cells_mv) == 16 else "48V"
    return "%s/%dAH" % (volts, int(round(s.capacity_mah / 1000.0)))


def info_lines(fw: Firmware, s: UnitSnapshot, console_baud: int) -> List[str]:
    def kv(label: str, value: object) -> str:
        return "%s: %s" % (label.ljust(20), value)

    lines = [
        kv("Device address", s.address),
        kv("Manufacturer", s.manufacturer),
        kv("Device name", s.model),
        kv("Board version", s.board_version),
        kv("Main Soft version", s.main_soft_version),
    ]
    if fw.info_layout == "pytes":
        lines.append(kv("Iterate version", s.main_soft_version + ".T1"))
    lines += [
        kv("Soft  version", s.soft_version),
        kv("Boot  version", fw.boot_version),
        kv("Comm version", fw.comm_version),
        kv("Release Date", fw.release_date),
        kv("Barcode", s.barcode),
    ]
    if fw.info_layout == "pytes":
        lines += [kv("Board ID", "SIM%021d" % s.address), kv("Board SRAM Size", "96KB"), kv("Board FLASH Size", "256KB")]
    else:
        lines.append("")
    lines += [
        kv("Specification", _specification(s)),
        kv("Cell Number", len(s.cells_mv)),
        kv("Max Dischg Curr", "%dmA" % -s.max_discharge_ma),
        kv("Max Charge Curr", "%dmA" % s.max_charge_ma),
    ]
    if fw.info_layout != "pytes":
        lines.append(kv("EPONPort rate", 1200))
    lines.append(kv("Console Port rate", console_baud))
    return lines


# ------------------------------------------------------------------ stat N

_STAT_EVENTS = (
    "SC Times",
    "Bat OV Times",
    "Bat HV Times",
    "Bat LV Times",
    "Bat UV Times",
    "Bat SLP Times",
    "Pwr OV Times",
    "Pwr HV Times",
    "Pwr LV Times",
    "Pwr UV Times",
    "Pwr SLP Times",
    "COT Times",
    "CUT Times",
    "DOT Times",
    "DUT Times",
    "CHT Times",
    "CLT Times",
    "DHT Times",
    "DLT Times",
)
_STAT_TAIL = ("HT@0.5C Cnt", "LT@0.5C Cnt", "HT Cnt", "LT Cnt", "LV Cnt", "LifeWarn Times", "LifeAlarm Times")
STAT_LABELS = {
    "old": (
        (
            "Data Items",
            "HisData Items",
            "MiscData Items",
            "Charge Cnt.",
            "Discharge Cnt.",
            "Charge Times",
            "Status Cnt.",
            "Idle Times",
            "COC Times",
            "DOC Times",
            "COCA Times",
            "DOCA Times",
        )
        + _STAT_EVENTS
        + (
            "Shut Times",
            "Reset Times",
            "RV Times",
            "Input OV Times",
            "SOH Times",
            "BMICERR Times",
            "CYCLE Times",
            "Pwr Percent",
            "Pwr Coulomb",
            "Dsg Cap",
        )
        + _STAT_TAIL
    ),
    "us": (
        (
            "Data Items",
            "HisData Items",
            "Charge Cnt.",
            "Discharge Cnt.",
            "Charge Times",
            "Status Cnt.",
            "Idle Times",
            "COC Times",
            "COC2 Times",
            "DOC Times",
            "DOC2 Times",
            "COCA Times",
            "DOCA Times",
        )
        + _STAT_EVENTS
        + (
            "Shut Times",
            "Reset Times",
            "RV Times",
            "Input OV Times",
            "SOH Times",
            "BMICERR Times",
            "CYCLE Times",
            "SOH",
            "Pwr Percent",
            "Pwr Coulomb",
            "Dsg Cap",
        )
        + _STAT_TAIL
    ),
    "pytes": (
        (
            "Data Items",
            "HisData Items",
            "Charge Cnt.",
            "Discharge Cnt.",
            "Charge Times",
            "Status Cnt.",
            "Idle Times",
            "COC Times",
            "DOC Times",
            "COCA Times",
            "DOCA Times",
        )
        + _STAT_EVENTS
        + (
            "Shut Times",
            "Reset Times",
            "RV Times",
            "Input OV Times",
            "SOH Times",
            "I2CERR Times",
            "CYCLE Times",
            "Pwr Percent",
            "Pwr Coulomb",
        )
        + _STAT_TAIL
    ),
    "us3000d": (
        (
            "Charge Secs.",
            "Discharge Secs.",
            "Charge Times",
            "Discharge Times",
            "Idle Times",
            "COC2 Times",
            "DOC2 Times",
            "COC Times",
            "DOC Times",
            "COCA Times",
            "DOCA Times",
        )
        + _STAT_EVENTS
        + (
            "RV Times",
            "Input OV Times",
            "SOH Times",
            "BMICERR Times",
            "CYCLE Times",
            "SOH",
            "Dsg Cap",
            "HT@0.5C Secs",
            "LT@0.5C Secs",
            "HT Secs",
            "LT Secs",
            "LV Secs",
            "SOC LOW Secs",
            "Shut Times",
            "Reset Times",
            "Power on Times",
        )
    ),
}


def stat_value(s: UnitSnapshot, label: str) -> int:
    """The number ``stat`` prints for ``label``: the scenario's, else derived from the unit, else 0."""
    stats = dict(s.stats)
    if label in stats:
        return stats[label]
    if label == "Pwr Percent":
        return s.soc
    if label == "Pwr Coulomb":
        return s.remaining_mah * 3600
    if label == "SOH":
        return 100
    return 0


def stat_rows(fw: Firmware, s: UnitSnapshot) -> List[str]:
    width = 10 if fw.stat_layout == "pytes" else 8
    rows = ["Device address".ljust(18) + str(s.address).rjust(width)]
    for label in STAT_LABELS[fw.stat_layout]:
        rows.append("%s: %s" % (label.ljust(16), str(stat_value(s, label)).rjust(width)))
    return rows


# --------------------------------------------------------------- help, log

# (command, description) as this simulator describes them; real firmware words its own
HELP_COMMANDS = (
    ("bat", "Cell data of one unit - bat [index]"),
    ("help", "This list - help"),
    ("info", "Unit identity and ratings - info [index]"),
    ("log", "Event log of this unit - log"),
    ("login", "Enter debug mode - login [password]"),
    ("logout", "Back to user mode - logout"),
    ("pwr", "Power data of the bank or of one unit - pwr [index]"),
    ("stat", "Lifetime counters - stat [index]"),
)


def help_lines() -> List[str]:
    local = ["%s%s" % (name.ljust(9), text) for name, text in HELP_COMMANDS]
    remote = ["%s%s" % (name.ljust(9), text) for name, text in HELP_COMMANDS if name in ("bat", "info", "pwr", "stat")]
    return ["Local command:"] + local + ["*" * 58, "Remote command:"] + remote + ["*" * 58]


def usage(command: str) -> str:
    for name, text in HELP_COMMANDS:
        if name == command:
            return text
    return command


LOG_TEXTS = (
    "The device start charging.",
    "The device start discharging.",
    "The coulomb of device is low.",
    "The coulomb of device is normal.",
)


def log_lines(start: datetime.datetime, entries: int = 9) -> List[str]:
    """``log``: the newest entry first, one blank line after each."""
    lines: List[str] = []
    for index in range(entries - 1, -1, -1):
        moment = start - datetime.timedelta(seconds=(entries - index) * 397)
        lines += [
            " Index   : %-6d" % index,
            " Time    : %s" % moment.strftime("%y-%m-%d %H:%M:%S"),
            " ModID   : BMM",
            " Code    : %x" % (0x2C40 + index if index % 2 else 0),
            " Info    : %s " % LOG_TEXTS[index % len(LOG_TEXTS)],
            "",
        ]
    return lines
