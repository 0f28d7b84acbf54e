"""extra200tomqtt: Pylontech / Pytes RS232 console to MQTT (Victron dbus-mqtt-battery, Home Assistant).

Modules, in the order the data flows:

config        the typed configuration schema and its loader
framing       cuts one command's reply out of the console byte stream (pure)
transport     the serial console: open by URL, wake-up (finding the baud), send a command, read its reply
baudmemory    the console baud that answered last time, kept in the state directory
parsing       console tables and key:value blocks to typed records (pure)
model         the records, in SI units
derive        per-unit and bank figures (pure)
charge_limits CVL / CCL / DCL and alarms for Victron DVCC (pure)
victron       dbus-mqtt-battery JSON payloads (pure)
homeassistant Home Assistant discovery and state payloads (pure)
mqtt          the one MQTT connection (paho-mqtt 1.6 and 2.x)
...           further outputs: energy counters, status file, events log, database
poller        the polling loop that ties them together
cli           the command line
simulator     a Pylontech console emulator (pyserial URL pylonsim://, or a pseudo-terminal)
"""

__version__ = "2.0.0"

