"""What venus-os_dbus-mqtt-battery accepts, as a checker for every payload the tests see.

Written from the driver facts in ../shared/docs/victron-dbus-mqtt-battery.md:
the key table, numbers only on numeric paths (0/1 for flags, never JSON
booleans, strings only on the ``_s`` paths), null (invalidate) anywhere but on
Dc.Power, Dc.Voltage and Soc, which are required and break the driver as null;
at most 24 cells; History paths added in the driver's table.
"""

from typing import Any, Dict, List

STRING_PATHS = {
    "System/MinVoltageCellId",
    "System/MaxVoltageCellId",
    "System/MinTemperatureCellId",
    "System/MaxTemperatureCellId",
    "Info/ChargeMode",
    "Info/ChargeLimitation",
    "Info/DischargeLimitation",
    "ConnectionInformation",
} | {"System/Temperature%dName" % i for i in range(1, 5)}

NUMERIC_PATHS = (
    {
        "Dc/Power",
        "Dc/Voltage",
        "Dc/Current",
        "Dc/Temperature",
        "Dc/MidVoltage",
        "Dc/MidVoltageDeviation",
        "Soc",
        "Soh",
        "SocBms",
        "InstalledCapacity",
        "Capacity",
        "ConsumedAmphours",
        "TimeToGo",
        "Balancing",
        "SystemSwitch",
        "State",
        "Heating",
        "CurrentAvg",
        "Info/MaxChargeVoltage",
        "Info/MaxChargeCurrent",
        "Info/MaxDischargeCurrent",
        "Info/MaxChargeCellVoltage",
        "Info/BatteryLowVoltage",
        "Info/ChargeRequest",
        "History/ChargeCycles",
        "History/MinimumVoltage",
        "History/MaximumVoltage",
        "History/TotalAhDrawn",
        "History/ChargedEnergy",
        "History/DischargedEnergy",
        "System/MinCellVoltage",
        "System/MaxCellVoltage",
        "System/MinCellTemperature",
        "System/MaxCellTemperature",
        "System/MOSTemperature",
        "System/NrOfCellsPerBattery",
        "System/NrOfModulesOnline",
        "System/NrOfModulesOffline",
        "System/NrOfModulesBlockingCharge",
        "System/NrOfModulesBlockingDischarge",
        "Voltages/Sum",
        "Voltages/Diff",
        "Io/AllowToCharge",
        "Io/AllowToDischarge",
        "Io/AllowToBalance",
        "Io/AllowToHeat",
        "Io/ExternalRelay",
        "Io/ForceChargingOff",
        "Io/ForceDischargingOff",
        "Io/TurnBalancingOff",
    }
    | {
        "Alarms/%s" % name
        for name in (
            "LowVoltage",
            "HighVoltage",
            "LowSoc",
            "HighChargeCurrent",
            "HighDischargeCurrent",
            "HighCurrent",
            "CellImbalance",
            "HighChargeTemperature",
            "LowChargeTemperature",
            "LowCellVoltage",
            "LowTemperature",
            "HighTemperature",
            "FuseBlown",
            "BmsCable",
            "HighCellVoltage",
            "HighInternalTemperature",
            "InternalFailure",
            "StateOfHealth",
        )
    }
    | {"Voltages/Cell%d" % i for i in range(1, 25)}
    | {"Balances/Cell%d" % i for i in range(1, 25)}
    | {"System/Temperature%d" % i for i in range(1, 5)}
)

# Null would break the driver (the first three) or make the battery no BMS for DVCC (the limits).
REQUIRED_PATHS = {"Dc/Power", "Dc/Voltage", "Soc", "Info/MaxChargeVoltage", "Info/MaxChargeCurrent", "Info/MaxDischargeCurrent"}

FLAG_PATHS = {"Io/AllowToCharge", "Io/AllowToDischarge", "Balancing"} | {"Balances/Cell%d" % i for i in range(1, 25)}


def problems(payload: Dict[str, Any]) -> List[str]:
    """Every way ``payload`` would be rejected or mishandled by the driver (empty = fine)."""
    found: List[str] = []
    if not isinstance(payload.get("Dc"), dict) or "Power" not in payload["Dc"] or "Voltage" not in payload["Dc"]:
        found.append("Dc.Power and Dc.Voltage are required")
    if "Soc" not in payload:
        found.append("Soc is required")
    for path, value in _leaves(payload):
        if value is None:
            if path in REQUIRED_PATHS:
                found.append("%s must never be null (the driver's update loop dies on it)" % path)
            elif path not in STRING_PATHS and path not in NUMERIC_PATHS:
                found.append("%s is not a path of the driver" % path)
            continue
        if path in STRING_PATHS:
            if not isinstance(value, str):
                found.append("%s must be a string, got %r" % (path, value))
        elif path in NUMERIC_PATHS:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                found.append("%s must be a number, got %r" % (path, value))
            elif path in FLAG_PATHS and value not in (0, 1):
                found.append("%s must be 0 or 1, got %r" % (path, value))
            elif path.startswith("Alarms/") and value not in (0, 1, 2):
                found.append("%s must be 0, 1 or 2, got %r" % (path, value))
        else:
            found.append("%s is not a path of the driver" % path)
    soc = payload.get("Soc")
    if isinstance(soc, (int, float)) and not 0 <= soc <= 100:
        found.append("Soc out of range: %r" % soc)
    return found


def _leaves(data: Dict[str, Any], prefix: str = ""):
    for key, value in data.items():
        path = prefix + key
        if isinstance(value, dict):
            for leaf in _leaves(value, path + "/"):
                yield leaf
        else:
            yield path, value
