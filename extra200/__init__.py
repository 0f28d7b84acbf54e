"""extra200tomqtt: Pylontech / Pytes RS232 console to MQTT (Victron dbus-mqtt-battery, Home Assistant).

Modules, in the order the data flows:

config        the typed configuration schema and its loader
framing       cuts one command's reply out of the console byte stream (pure)
transport     the serial console: open by URL, wake-up (finding the baud), send a command, read its reply
baudmemory    the console baud that answered last time, kept in the state directory
parsing       console tables and key:value blocks to typed records (pure)
crosscheck    which values may be believed: two reads agree, pwr and bat agree, no impossible jump (pure)
model         the records, in SI units
derive        per-unit and bank figures (pure)
charge        CVL / CCL / DCL and alarms for Victron DVCC (pure), and their state across restarts
victron       dbus-mqtt-battery JSON payloads (pure) and the last word that stops charging
homeassistant Home Assistant discovery and state payloads (pure)
mqtt          the MQTT connections (paho-mqtt 1.6 and 2.x): the main one, and the Victron one with its last will
...           further outputs: energy counters, status file, events log, database
poller        the commands of one poll: the state first (published at once), then cells and identity
daemon        the loop that ties them together
cli           the command line
simulator     a Pylontech console emulator (pyserial URL pylonsim://, or a pseudo-terminal)
"""

__version__ = "2.0.0"
